//! `finq bench sync`: the initial sync of N transactions from the simulator (its own process,
//! standing in for Plaid's servers) over loopback HTTP into PostgreSQL, measured against the
//! straightforward way (one INSERT per row, autocommit) and the ceiling (plain COPY) on a
//! sample of the same rows, plus one incremental update. The last line is one JSON object.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use finq_connectors::plaid::PlaidClient;
use finq_connectors::plaid::link::link_sandbox_institution;
use finq_connectors::plaid::sync::{SyncSettings, sync_item};
use finq_core::config::Settings;
use finq_core::local_pg::LocalPostgres;
use finq_core::vault::TokenVault;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgPool, Row};
use tokio::io::AsyncBufReadExt;

fn peak_rss_mb() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage works on Linux");
    usage.max_rss() as f64 / 1024.0 // kilobytes on Linux
}

/// A throwaway database on the configured server (DATABASE_URL or the private cluster).
async fn bench_database() -> Result<(PgConnectOptions, String)> {
    let settings = Settings::load()?;
    let base = match &settings.database_url {
        Some(url) => PgConnectOptions::from_str(url.expose_secret()).context("DATABASE_URL")?,
        None => {
            LocalPostgres::new(&settings.data_dir)?
                .ensure_running()
                .await?
        }
    };
    let name = format!("finq_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect_with(&base).await?;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .await?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    conn.close().await?;
    Ok((base, name))
}

async fn drop_database(base: &PgConnectOptions, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect_with(base).await {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

pub async fn sync(transactions: usize, sample: usize, incremental: usize) -> Result<ExitCode> {
    if transactions < 1000 {
        bail!("--transactions must be at least 1000");
    }
    let (base, name) = bench_database().await?;
    let result = run(&base, &name, transactions, sample, incremental).await;
    drop_database(&base, &name).await;
    let figures = result?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(ExitCode::SUCCESS)
}

async fn run(
    base: &PgConnectOptions,
    name: &str,
    transactions: usize,
    sample: usize,
    incremental: usize,
) -> Result<serde_json::Value> {
    let pool = finq_core::db::connect_with(base.clone().database(name)).await?;

    // The simulator in its own process, as Plaid would be.
    eprintln!("starting the simulator with {transactions} transactions…");
    let mut sim = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "sim",
            "serve",
            "--seed",
            "1",
            "--transactions",
            &transactions.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `finq sim serve`")?;
    let mut lines = tokio::io::BufReader::new(sim.stdout.take().expect("piped")).lines();
    let url = lines
        .next_line()
        .await?
        .context("the simulator printed no URL")?;
    let client = PlaidClient::new(&url, "bench", SecretString::from("bench-secret"));
    let vault = TokenVault::from_key(&rand_key());

    let t = Instant::now();
    let item =
        link_sandbox_institution(&pool, &client, &vault, "ins_109508", "sim", |_| None).await?;
    eprintln!(
        "linked (the simulator generated the history) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let settings = SyncSettings::default();
    let t = Instant::now();
    let outcome = sync_item(&pool, &client, &vault, &item.item_id, settings, &|_| {}).await?;
    let seconds = t.elapsed().as_secs_f64();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM plaid_transactions")
        .fetch_one(&pool)
        .await?;
    if stored as usize != transactions || outcome.added as usize != transactions {
        bail!(
            "synced {stored} rows ({} added) instead of {transactions}",
            outcome.added
        );
    }
    let tx_per_s = transactions as f64 / seconds;
    eprintln!(
        "initial sync: {transactions} transactions in {seconds:.2} s = {tx_per_s:.0} tx/s ({} pages)",
        outcome.pages
    );

    // The same rows, two other ways, measured now.
    let (row_insert_per_s, copy_rows_per_s) = baselines(&pool, sample).await?;
    eprintln!(
        "one INSERT per row: {row_insert_per_s:.0} rows/s; plain COPY: {copy_rows_per_s:.0} rows/s ({sample}-row sample)"
    );

    // An incremental update of about `incremental` changes.
    let churn = reqwest::Client::new()
        .post(format!("{url}/sim/items/{}/churn", item.item_id))
        .json(&serde_json::json!({ "changes": incremental }))
        .send()
        .await?
        .error_for_status()?;
    drop(churn);
    let t = Instant::now();
    let inc = sync_item(&pool, &client, &vault, &item.item_id, settings, &|_| {}).await?;
    let incremental_ms = t.elapsed().as_secs_f64() * 1000.0;
    let changes = inc.added + inc.modified + inc.removed;
    eprintln!("incremental update: {changes} changes in {incremental_ms:.1} ms");

    let _ = sim.kill().await;
    pool.close().await;
    Ok(serde_json::json!({
        "transactions": transactions,
        "seconds": round(seconds, 3),
        "tx_per_s": tx_per_s.round(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "row_insert_per_s": row_insert_per_s.round(),
        "copy_rows_per_s": copy_rows_per_s.round(),
        "speedup_vs_row_insert": round(tx_per_s / row_insert_per_s, 1),
        "sample_rows": sample,
        "incremental_changes": changes,
        "incremental_ms": round(incremental_ms, 1),
        "pages": outcome.pages,
    }))
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (std::process::id() as u8)
            .wrapping_mul(31)
            .wrapping_add(i as u8);
    }
    key
}

/// One INSERT per row in autocommit (the straightforward ORM way) and plain COPY, on the
/// first `sample` synced rows, into empty copies of the table.
async fn baselines(pool: &PgPool, sample: usize) -> Result<(f64, f64)> {
    const COLS: &str = "plaid_transaction_id, item_id, account_id, amount, iso_currency_code, date, authorized_date, \
                        name, merchant_name, payment_channel, pending, pending_transaction_id, plaid_category, \
                        plaid_detailed_category, plaid_category_confidence";
    for t in ["bench_insert", "bench_copy"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {t} (LIKE plaid_transactions INCLUDING DEFAULTS INCLUDING INDEXES)"
        )))
        .execute(pool)
        .await?;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM plaid_transactions ORDER BY plaid_transaction_id LIMIT {sample}"
    )))
    .fetch_all(pool)
    .await?;

    let t = Instant::now();
    for r in &rows {
        sqlx::query(
            "INSERT INTO bench_insert (plaid_transaction_id, item_id, account_id, amount, iso_currency_code, date,
                 authorized_date, name, merchant_name, payment_channel, pending, pending_transaction_id,
                 plaid_category, plaid_detailed_category, plaid_category_confidence)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(r.get::<String, _>(0))
        .bind(r.get::<String, _>(1))
        .bind(r.get::<String, _>(2))
        .bind(r.get::<Decimal, _>(3))
        .bind(r.get::<Option<String>, _>(4))
        .bind(r.get::<chrono::NaiveDate, _>(5))
        .bind(r.get::<Option<chrono::NaiveDate>, _>(6))
        .bind(r.get::<String, _>(7))
        .bind(r.get::<Option<String>, _>(8))
        .bind(r.get::<Option<String>, _>(9))
        .bind(r.get::<bool, _>(10))
        .bind(r.get::<Option<String>, _>(11))
        .bind(r.get::<Option<String>, _>(12))
        .bind(r.get::<Option<String>, _>(13))
        .bind(r.get::<Option<String>, _>(14))
        .execute(pool)
        .await?;
    }
    let insert_rate = rows.len() as f64 / t.elapsed().as_secs_f64();

    let mut text = String::new();
    for r in &rows {
        let cells: Vec<String> = (0..15)
            .map(|i| match i {
                3 => r.get::<Decimal, _>(i).to_string(),
                5 => r.get::<chrono::NaiveDate, _>(i).to_string(),
                6 => r
                    .get::<Option<chrono::NaiveDate>, _>(i)
                    .map_or("\\N".into(), |d| d.to_string()),
                10 => {
                    if r.get::<bool, _>(i) {
                        "t".into()
                    } else {
                        "f".into()
                    }
                }
                _ => r.get::<Option<String>, _>(i).map_or("\\N".into(), |s| {
                    s.replace('\\', "\\\\").replace('\t', "\\t")
                }),
            })
            .collect();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    let mut conn = pool.acquire().await?;
    let t = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY bench_copy ({COLS}) FROM STDIN"))
        .await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    let copy_rate = rows.len() as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    // Gone before the incremental update is timed, with nothing left for autovacuum.
    sqlx::query("DROP TABLE bench_insert, bench_copy")
        .execute(pool)
        .await?;
    Ok((insert_rate, copy_rate))
}

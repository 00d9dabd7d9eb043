//! `finq bench sync`: the initial sync of N transactions from the simulator (its own process,
//! standing in for Plaid's servers) over loopback HTTP into PostgreSQL, measured against the
//! straightforward way (one INSERT per row, autocommit) and the ceiling (plain COPY) on a
//! sample of the same rows, plus one incremental update. The last line is one JSON object.
//!
//! `finq bench pipeline`: the whole pipeline, first run, no-op run, incremental run, and
//! dashboard queries on DuckDB against PostgreSQL (see [`pipeline`]).
//!
//! `finq bench webhooks`: `finq serve` under load, and how fresh DuckDB is after a webhook
//! (see [`webhooks`]).

pub mod webhooks;

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use finq_analytics::query::{QueryEngine, Trust};
use finq_connectors::plaid::PlaidClient;
use finq_connectors::plaid::link::link_sandbox_institution;
use finq_connectors::plaid::sync::{STORED_COLUMNS, SyncSettings, stored_column_list, sync_item};
use finq_core::config::Settings;
use finq_core::local_pg::LocalPostgres;
use finq_core::pipeline::{Context as RunContext, PipelineReport, Stages, StepKind};
use finq_core::vault::TokenVault;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgPool, Row};
use tokio::io::AsyncBufReadExt;

use crate::app::App;

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

    let (mut sim, url) = spawn_simulator(transactions).await?;
    let client = PlaidClient::new(&url, "bench", SecretString::from("bench-secret"));
    let vault = TokenVault::from_key(&rand_key());

    let t = Instant::now();
    let item =
        link_sandbox_institution(&pool, &client, &vault, "ins_109508", "sim", None, |_| None)
            .await?;
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

/// The simulator in its own process, as Plaid would be. Returns it and its base URL.
async fn spawn_simulator(transactions: usize) -> Result<(tokio::process::Child, String)> {
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
    Ok((sim, url))
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
/// first `sample` synced rows, into empty copies of the table. The columns are the sync's
/// own ([`STORED_COLUMNS`]), so the three ways write the same data.
async fn baselines(pool: &PgPool, sample: usize) -> Result<(f64, f64)> {
    for t in ["bench_insert", "bench_copy"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {t} (LIKE plaid_transactions INCLUDING DEFAULTS INCLUDING INDEXES)"
        )))
        .execute(pool)
        .await?;
    }
    let columns = format!("item_id, {}", stored_column_list());
    let as_text: Vec<String> = std::iter::once("item_id".to_string())
        .chain(STORED_COLUMNS.iter().map(|(n, _)| format!("{n}::text")))
        .collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM plaid_transactions ORDER BY plaid_transaction_id LIMIT {sample}",
        as_text.join(", ")
    )))
    .fetch_all(pool)
    .await?;
    let cells: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|r| (0..as_text.len()).map(|i| r.get(i)).collect())
        .collect();

    // Each value cast from text to its column's type, as an ORM's bind would send it.
    let placeholders: Vec<String> = std::iter::once("$1".to_string())
        .chain(
            STORED_COLUMNS
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| format!("${}::{}", i + 2, ty.trim_end_matches(" NOT NULL"))),
        )
        .collect();
    let insert = format!(
        "INSERT INTO bench_insert ({columns}) VALUES ({})",
        placeholders.join(", ")
    );
    let t = Instant::now();
    for row in &cells {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.as_str()));
        for cell in row {
            q = q.bind(cell);
        }
        q.execute(pool).await?;
    }
    let insert_rate = cells.len() as f64 / t.elapsed().as_secs_f64();

    let mut text = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .map(|c| match c {
                None => "\\N".to_string(),
                Some(v) => v
                    .replace('\\', "\\\\")
                    .replace('\t', "\\t")
                    .replace('\n', "\\n")
                    .replace('\r', "\\r"),
            })
            .collect();
        text.push_str(&line.join("\t"));
        text.push('\n');
    }
    let mut conn = pool.acquire().await?;
    let t = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY bench_copy ({columns}) FROM STDIN"))
        .await?;
    copy.send(text.into_bytes()).await?;
    copy.finish().await?;
    let copy_rate = cells.len() as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    // Gone before the incremental update is timed, with nothing left for autovacuum.
    sqlx::query("DROP TABLE bench_insert, bench_copy")
        .execute(pool)
        .await?;
    Ok((insert_rate, copy_rate))
}

/// `finq bench pipeline`: the whole pipeline on N transactions: the full mirror build, a run
/// with nothing new, an incremental run after `changes` changes at the bank (sync,
/// transforms, mirror), and dashboard queries on DuckDB against the same questions in SQL on
/// PostgreSQL's tables. The last line is one JSON object.
pub async fn pipeline(transactions: usize, changes: usize, repeat: usize) -> Result<ExitCode> {
    if transactions < 1000 {
        bail!("--transactions must be at least 1000");
    }
    let (base, name) = bench_database().await?;
    let result = run_pipeline(&base, &name, transactions, changes, repeat.max(1)).await;
    drop_database(&base, &name).await;
    let figures = result?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(ExitCode::SUCCESS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn step_ms(report: &PipelineReport, kind: StepKind) -> f64 {
    report
        .steps
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.millis as f64)
        .sum()
}

/// Dashboard questions: (name, DuckDB SQL on the mirror, the same in PostgreSQL). Both
/// sides compare the date column with a date (not a timestamp, which would convert every
/// row's date before comparing it).
const AGGREGATES: &[(&str, &str, &str)] = &[
    (
        "spending_by_category_90d",
        "SELECT category, -sum(amount) AS spent FROM transactions
         WHERE amount < 0 AND date > (SELECT max(date) FROM transactions) - 90
         GROUP BY category ORDER BY spent DESC",
        "SELECT category, -sum(amount) AS spent FROM unified_transactions
         WHERE amount < 0 AND date > (SELECT max(date) FROM unified_transactions) - 90
         GROUP BY category ORDER BY spent DESC",
    ),
    (
        "monthly_income_spending_24m",
        "SELECT date_trunc('month', date) AS month,
                sum(amount) FILTER (WHERE amount > 0) AS income,
                -sum(amount) FILTER (WHERE amount < 0) AS spending
         FROM transactions
         WHERE date > CAST((SELECT max(date) FROM transactions) - INTERVAL 24 MONTH AS DATE)
         GROUP BY month ORDER BY month",
        "SELECT date_trunc('month', date) AS month,
                sum(amount) FILTER (WHERE amount > 0) AS income,
                -sum(amount) FILTER (WHERE amount < 0) AS spending
         FROM unified_transactions
         WHERE date > CAST((SELECT max(date) FROM unified_transactions) - INTERVAL '24 months' AS DATE)
         GROUP BY month ORDER BY month",
    ),
    (
        "top_merchants",
        "SELECT merchant, count(*) AS n, -sum(amount) AS spent FROM transactions
         WHERE amount < 0 AND merchant IS NOT NULL
         GROUP BY merchant ORDER BY spent DESC LIMIT 20",
        "SELECT merchant, count(*) AS n, -sum(amount) AS spent FROM unified_transactions
         WHERE amount < 0 AND merchant IS NOT NULL
         GROUP BY merchant ORDER BY spent DESC LIMIT 20",
    ),
    (
        "daily_balance_history",
        "SELECT account_id, date, sum(sum(amount)) OVER (PARTITION BY account_id ORDER BY date) AS balance_change
         FROM transactions WHERE account_id IS NOT NULL
         GROUP BY account_id, date ORDER BY account_id, date",
        "SELECT account_id, date, sum(sum(amount)) OVER (PARTITION BY account_id ORDER BY date) AS balance_change
         FROM unified_transactions WHERE account_id IS NOT NULL
         GROUP BY account_id, date ORDER BY account_id, date",
    ),
    (
        "net_worth_by_month",
        "WITH now AS (SELECT sum(CASE WHEN type IN ('credit', 'loan') THEN -current_balance ELSE current_balance END) AS nw
                      FROM accounts),
              m AS (SELECT date_trunc('month', date) AS month, sum(amount) AS flow FROM transactions GROUP BY 1)
         SELECT month, (SELECT nw FROM now)
                - coalesce(sum(flow) OVER (ORDER BY month DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                AS net_worth
         FROM m ORDER BY month",
        "WITH now AS (SELECT sum(CASE WHEN type IN ('credit', 'loan') THEN -current_balance ELSE current_balance END) AS nw
                      FROM plaid_accounts),
              m AS (SELECT date_trunc('month', date) AS month, sum(amount) AS flow FROM unified_transactions GROUP BY 1)
         SELECT month, (SELECT nw FROM now)
                - coalesce(sum(flow) OVER (ORDER BY month DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                AS net_worth
         FROM m ORDER BY month",
    ),
];

/// What a benchmark runs against: an app on the throwaway database with its own data
/// directory (polling off), and the simulator of `transactions` in its own process.
struct Bench {
    app: App,
    sim: tokio::process::Child,
    url: String,
    data: tempfile::TempDir,
}

async fn bench_app(base: &PgConnectOptions, name: &str, transactions: usize) -> Result<Bench> {
    let pool = finq_core::db::connect_with(base.clone().database(name)).await?;
    let (sim, url) = spawn_simulator(transactions).await?;
    let data = tempfile::tempdir()?;
    let (data_dir, sim_url) = (data.path().display().to_string(), url.clone());
    let settings = Settings::from_env_fn(|k| match k {
        "FINQ_DATA_DIR" => Some(data_dir.clone()),
        "PLAID_BASE_URL" => Some(sim_url.clone()),
        "FINQ_POLL_AFTER_HOURS" => Some("0".into()),
        _ => None,
    })?;
    let app = App {
        settings,
        pool,
        vault: std::sync::Arc::new(TokenVault::from_key(&rand_key())),
    };
    Ok(Bench {
        app,
        sim,
        url,
        data,
    })
}

/// After a first load: what autovacuum would do within the minute (a pass over every table
/// the load filled, setting hint bits and statistics) and the write-back of everything the
/// load wrote, done now so that neither runs during the figures measured next. The figures
/// are those of a history at rest, which is what a person's next run meets.
async fn settle(pool: &PgPool) -> Result<()> {
    let t = Instant::now();
    sqlx::query("VACUUM (ANALYZE)").execute(pool).await?;
    // CHECKPOINT needs a superuser (or pg_checkpoint): finq's private cluster's is one.
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        eprintln!("no checkpoint after the first load: {e}");
    }
    eprintln!(
        "vacuumed and checkpointed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Link First Platypus Bank of the benchmark's simulator, with `webhook`; its item id.
async fn bench_link(app: &App, sim_url: &str, webhook: Option<String>) -> Result<String> {
    let client = PlaidClient::new(sim_url, "bench", SecretString::from("bench-secret"));
    let linked = link_sandbox_institution(
        &app.pool,
        &client,
        &app.vault,
        "ins_109508",
        "sim",
        webhook,
        |_| None,
    )
    .await?;
    Ok(linked.item_id)
}

async fn run_pipeline(
    base: &PgConnectOptions,
    name: &str,
    transactions: usize,
    changes: usize,
    repeat: usize,
) -> Result<serde_json::Value> {
    let Bench {
        app,
        mut sim,
        url,
        data: _data,
    } = bench_app(base, name, transactions).await?;
    let pool = app.pool.clone();
    let item = bench_link(&app, &url, None).await?;
    let plan = crate::pipeline::plan(&app)?;
    let ctx = RunContext::new(pool.clone());
    let run = async || {
        let report = finq_core::pipeline::run(&ctx, &plan, Stages::All).await;
        if !report.ok() {
            let failed: Vec<String> = report
                .failed()
                .map(|s| format!("{}: {}", s.name, s.error.as_deref().unwrap_or("")))
                .collect();
            bail!("the pipeline failed: {}", failed.join("; "));
        }
        Ok(report)
    };

    let t = Instant::now();
    let first = run().await?;
    let initial_run_s = t.elapsed().as_secs_f64();
    eprintln!(
        "first run (sync {:.1} s, transforms {:.1} s, mirror {:.1} s): {initial_run_s:.1} s",
        step_ms(&first, StepKind::Source) / 1e3,
        step_ms(&first, StepKind::Transform) / 1e3,
        step_ms(&first, StepKind::Sink) / 1e3,
    );
    settle(&pool).await?;

    let mirror =
        finq_analytics::mirror::DuckMirror::new(finq_analytics::mirror_path(&app.settings)?);
    let mut full = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        let r = mirror.rebuild(&pool).await?;
        full.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            r.rows as usize == transactions,
            "the rebuild wrote {} rows",
            r.rows
        );
    }
    let mirror_full_s = median(full);
    eprintln!("full mirror build: {mirror_full_s:.2} s");

    let mut noop = Vec::new();
    for _ in 0..repeat.max(3) {
        let t = Instant::now();
        run().await?;
        noop.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let noop_run_ms = median(noop);
    eprintln!("run with nothing new at the bank: {noop_run_ms:.0} ms");

    let (mut e2e, mut sink, mut sync, mut derive, mut applied) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..repeat {
        reqwest::Client::new()
            .post(format!("{url}/sim/items/{item}/churn"))
            .json(&serde_json::json!({ "changes": changes }))
            .send()
            .await?
            .error_for_status()?;
        let t = Instant::now();
        let r = run().await?;
        e2e.push(t.elapsed().as_secs_f64() * 1e3);
        sync.push(step_ms(&r, StepKind::Source));
        derive.push(step_ms(&r, StepKind::Transform));
        sink.push(step_ms(&r, StepKind::Sink));
        applied = r
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::Source)
            .map(|s| {
                s.counts.get("added").unwrap_or(&0)
                    + s.counts.get("modified").unwrap_or(&0)
                    + s.counts.get("removed").unwrap_or(&0)
            })
            .sum::<u64>();
    }
    let incremental_e2e_ms = median(e2e);
    let mirror_incremental_ms = median(sink);
    eprintln!(
        "incremental run after {applied} changes: {incremental_e2e_ms:.0} ms (mirror {mirror_incremental_ms:.0} ms)"
    );
    let peak = peak_rss_mb();

    // Dashboard questions, warm, median of several.
    let mut engine = QueryEngine::open(&finq_analytics::mirror_path(&app.settings)?, Trust::User)?;
    let mut aggregates = Vec::new();
    let mut speedups = Vec::new();
    for (name, duck_sql, pg_sql) in AGGREGATES {
        engine.run(duck_sql)?;
        sqlx::query(sqlx::AssertSqlSafe(*pg_sql))
            .fetch_all(&pool)
            .await?;
        let (mut d, mut p) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            engine.run(duck_sql)?;
            d.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            sqlx::query(sqlx::AssertSqlSafe(*pg_sql))
                .fetch_all(&pool)
                .await?;
            p.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (duckdb_ms, postgres_ms) = (median(d), median(p));
        speedups.push(postgres_ms / duckdb_ms);
        eprintln!("{name}: DuckDB {duckdb_ms:.1} ms, PostgreSQL {postgres_ms:.1} ms");
        aggregates.push(serde_json::json!({
            "name": name,
            "duckdb_ms": round(duckdb_ms, 1),
            "postgres_ms": round(postgres_ms, 1),
            "speedup": round(postgres_ms / duckdb_ms, 1),
        }));
    }
    drop(engine);
    let _ = sim.kill().await;
    pool.close().await;
    Ok(serde_json::json!({
        "transactions": transactions,
        "build_profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        "initial_run_s": round(initial_run_s, 2),
        "mirror_full_s": round(mirror_full_s, 2),
        "noop_run_ms": round(noop_run_ms, 1),
        "incremental_changes": applied,
        "incremental_e2e_ms": round(incremental_e2e_ms, 1),
        "sync_incremental_ms": round(median(sync), 1),
        "derive_incremental_ms": round(median(derive), 1),
        "mirror_incremental_ms": round(mirror_incremental_ms, 1),
        "aggregates": aggregates,
        "median_speedup": round(median(speedups), 1),
        "peak_rss_mb": round(peak, 1),
    }))
}

/// `finq bench queries`: the dashboard questions of [`pipeline`] on an existing mirror,
/// in this process, warm, median of `repeat` runs each, plus the time to open the mirror.
/// Compare with DuckDB's own client on the same file (`scripts/bench-duckdb-client`).
pub fn queries(mirror: &std::path::Path, repeat: usize) -> Result<ExitCode> {
    let t = Instant::now();
    let mut engine = QueryEngine::open(mirror, Trust::User)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut out = Vec::new();
    for (name, duck_sql, _) in AGGREGATES {
        engine.run(duck_sql)?;
        let mut d = Vec::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            engine.run(duck_sql)?;
            d.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(d);
        eprintln!("{name}: {ms:.1} ms");
        out.push(serde_json::json!({ "name": name, "duckdb_ms": round(ms, 1) }));
    }
    println!(
        "{}",
        serde_json::json!({
            "client": "finq",
            "build_profile": if cfg!(debug_assertions) { "dev" } else { "release" },
            "open_ms": round(open_ms, 1),
            "aggregates": out,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// `finq bench startup`: `finq repl` as a whole process, from exec until it has opened
/// the mirror, read the names for completion and shown its prompt, taking `\q` and
/// exiting (an upper bound on the time to the prompt); median of `repeat`. The baseline in
/// the same run: the REPL on a data directory without a mirror.
pub fn startup(mirror: &std::path::Path, repeat: usize) -> Result<ExitCode> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    anyhow::ensure!(
        mirror.exists(),
        "no mirror at {}: build one first, e.g. `finq demo --transactions 1000000`",
        mirror.display()
    );
    let transactions = QueryEngine::open(mirror, Trust::User)?
        .run("SELECT count(*) FROM transactions")?
        .rows()[0][0]
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_default();
    let exe = std::env::current_exe().context("cannot find the finq binary")?;
    let time = |data: &std::path::Path| -> Result<f64> {
        let t = Instant::now();
        let mut child = Command::new(&exe)
            .arg("repl")
            .env("FINQ_DATA_DIR", data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `finq repl`")?;
        child.stdin.take().expect("piped").write_all(b"\\q\n")?;
        let out = child.wait_with_output()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.success() && stderr.contains("finq REPL") && !stderr.contains("note:"),
            "`finq repl` did not start cleanly: {stderr}"
        );
        Ok(ms)
    };
    let with_mirror = tempfile::tempdir()?;
    std::os::unix::fs::symlink(
        std::fs::canonicalize(mirror)?,
        with_mirror.path().join("finq.duckdb"),
    )?;
    let without = tempfile::tempdir()?;
    // One run each to warm the page cache, then alternate.
    time(with_mirror.path())?;
    time(without.path())?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(1) {
        a.push(time(with_mirror.path())?);
        b.push(time(without.path())?);
    }
    let max = a.iter().copied().fold(0.0, f64::max);
    let (ms, baseline) = (median(a), median(b));
    eprintln!(
        "finq repl to the prompt and out, {transactions} transactions: median {ms:.1} ms (max {max:.1}); without a mirror {baseline:.1} ms"
    );
    println!(
        "{}",
        serde_json::json!({
            "build_profile": if cfg!(debug_assertions) { "dev" } else { "release" },
            "transactions": transactions,
            "repeat": repeat,
            "startup_ms": round(ms, 1),
            "startup_max_ms": round(max, 1),
            "startup_without_mirror_ms": round(baseline, 1),
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// The dashboard questions as DuckDB SQL, for other clients (`--print-sql`).
pub fn print_queries() -> Result<ExitCode> {
    let q: Vec<_> = AGGREGATES
        .iter()
        .map(|(name, sql, _)| serde_json::json!({ "name": name, "sql": sql }))
        .collect();
    println!("{}", serde_json::to_string(&q)?);
    Ok(ExitCode::SUCCESS)
}

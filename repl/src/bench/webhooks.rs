//! `finq bench webhooks`: `finq serve`'s webhook endpoint under load, and freshness.
//!
//! The server runs in this process on a loopback port, against a throwaway database, with
//! the simulator in its own process (standing in for Plaid: it serves the verification
//! key, signs the webhooks and fires them). One item of `transactions` is linked with the
//! server as its webhook URL, synced and mirrored.
//!
//! - Load: `concurrency` senders post `requests` genuine webhooks (signed by the simulator,
//!   each fully verified and stored by the server) over keep-alive connections; verified
//!   webhooks per second and the time to each answer. Twice: webhooks that need no sync,
//!   then a mix in which two in three call for one (they coalesce into the item's waiting
//!   job, and the worker syncs throughout).
//! - Steady rate: the same mix offered at `rate` webhooks per second, each sent at its
//!   scheduled time whatever the answers before it did (open loop, as webhooks arrive from
//!   Plaid); the time to each answer counts from when it was due whenever the server kept
//!   its connection busy past that, so a slow answer delays the count of those behind it.
//! - Freshness: 1.3 s after the item's last sync started (finq spaces an item's syncs by
//!   1.2 s, as Plaid allows), the simulator changes `changes` transactions and fires
//!   `SYNC_UPDATES_AVAILABLE` as Plaid does; the time from the webhook's sending (the
//!   simulator records it) until the sync job it makes is done, which is when the changes
//!   are in DuckDB (checked: the mirror's count equals PostgreSQL's). Also reported from
//!   the request that made the changes, which adds the simulator's own work on them.
//!
//! The last line printed is one JSON object.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use finq_core::pipeline::Stages;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;

use super::{Bench, bench_app, bench_database, drop_database, median, round};
use crate::app::App;
use crate::server::{OwnerSecret, ServeOptions, router};

/// What `finq bench webhooks` is asked for (its command-line arguments).
#[derive(clap::Args, Debug)]
pub struct Options {
    #[arg(long, default_value_t = 1_000_000)]
    pub transactions: usize,
    /// Changes at the bank for each freshness measurement.
    #[arg(long, default_value_t = 500)]
    pub changes: usize,
    /// Webhooks sent in the load test.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Senders at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Webhooks per second offered in the steady-rate test (spread over the senders'
    /// connections).
    #[arg(long, default_value_t = 5000)]
    pub rate: u32,
    /// Freshness measurements (the median and the worst are reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

pub async fn run(options: Options) -> Result<ExitCode> {
    if options.transactions < 1000 {
        bail!("--transactions must be at least 1000");
    }
    if options.concurrency == 0 || options.requests < options.concurrency {
        bail!("--requests must be at least --concurrency, which must be at least 1");
    }
    if options.rate == 0 {
        bail!("--rate must be at least 1 webhook per second");
    }
    let (base, name) = bench_database().await?;
    let result = measure(&base, &name, &options).await;
    drop_database(&base, &name).await;
    let figures = result?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(ExitCode::SUCCESS)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(base: &PgConnectOptions, name: &str, options: &Options) -> Result<Value> {
    let &Options {
        transactions,
        changes,
        requests,
        concurrency,
        rate,
        repeat,
    } = options;
    let repeat = repeat.max(1);
    let Bench {
        app,
        mut sim,
        url: sim_url,
        data: _data,
    } = bench_app(base, name, transactions).await?;
    let pool = app.pool.clone();

    // The server, as `finq serve` runs it.
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (routes, worker) = router(
        app.clone(),
        ServeOptions {
            secret: OwnerSecret::random(),
            loopback_only: true,
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let hook = format!("http://{addr}/plaid/webhook");

    let item = super::bench_link(&app, &sim_url, Some(hook.clone())).await?;
    let t = Instant::now();
    let report = crate::pipeline::run(&app, Stages::All, None, false).await?;
    if !report.ok() {
        bail!("the first run failed");
    }
    eprintln!(
        "linked, synced and mirrored {transactions} transactions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    super::settle(&pool).await?;
    let http = reqwest::Client::new();

    // Load: genuine webhooks, signed by the simulator (valid for five minutes).
    let sign = |payload: Value| {
        let (http, url) = (http.clone(), format!("{sim_url}/sim/webhooks/sign"));
        async move {
            let signed: Value = http
                .post(url)
                .json(&payload)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Ok::<_, anyhow::Error>((
                signed["body"].as_str().context("body")?.to_string(),
                signed["jwt"].as_str().context("jwt")?.to_string(),
            ))
        }
    };
    let mut signed = Vec::new();
    for code in [
        "WEBHOOK_UPDATE_ACKNOWLEDGED",
        "SYNC_UPDATES_AVAILABLE",
        "DEFAULT_UPDATE",
    ] {
        signed.push(sign(finq_connectors::sim::webhook_payload(code, &item, 1)).await?);
    }
    // Warm up: the verification key is fetched once, connections opened.
    for (body, jwt) in &signed {
        post(&http, &hook, body, jwt).await?;
    }
    wait_idle(&pool).await?;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&pool)
        .await?;
    // Webhooks that need no sync (stored and acknowledged), then a mix in which two in
    // three call for a sync: they coalesce, and the worker syncs the whole time.
    let quiet = load(&hook, &signed[..1], requests, concurrency, None).await?;
    eprintln!("{} (no syncs)", quiet.describe(requests, concurrency));
    wait_idle(&pool).await?;
    let mixed = load(&hook, &signed, requests, concurrency, None).await?;
    eprintln!(
        "{} (two in three call for a sync)",
        mixed.describe(requests, concurrency)
    );
    wait_idle(&pool).await?;
    let steady = load(&hook, &signed, requests, concurrency, Some(rate)).await?;
    eprintln!(
        "{} (two in three call for a sync), offered at {rate}/s",
        steady.describe(requests, concurrency)
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
        .fetch_one(&pool)
        .await?;
    if ((stored - before) as usize) < 3 * requests {
        bail!(
            "only {} of {} webhooks were stored",
            stored - before,
            3 * requests
        );
    }

    // Freshness: changes at the bank → webhook → sync job → DuckDB.
    let (mut fresh, mut fresh_from_request) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        wait_idle(&pool).await?;
        // finq starts an item's syncs at least 1.2 s apart (Plaid's limit is 50 a minute):
        // each measurement starts after that, as a change at the bank usually does.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let last_job: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM jobs")
            .fetch_one(&pool)
            .await?;
        let t = Instant::now();
        let requested = chrono::Utc::now();
        http.post(format!("{sim_url}/sim/items/{item}/churn"))
            .json(&json!({ "changes": changes }))
            .send()
            .await?
            .error_for_status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE id > $1 AND state = 'done')",
            )
            .bind(last_job)
            .fetch_one(&pool)
            .await?;
            if done {
                break;
            }
            if Instant::now() > deadline {
                bail!("no webhook-driven sync finished within a minute");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (done, from_request) = (chrono::Utc::now(), t.elapsed().as_secs_f64() * 1e3);
        // From the moment the simulator sent its webhook (it records each attempt).
        let listed: Value = http
            .get(format!("{sim_url}/sim/webhooks"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let sent = listed["deliveries"]
            .as_array()
            .context("the simulator's list of deliveries")?
            .iter()
            .filter(|d| {
                d["webhook_code"] == "SYNC_UPDATES_AVAILABLE" && d["item_id"] == item.as_str()
            })
            .filter_map(|d| d["sent_at"].as_str())
            .filter_map(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&chrono::Utc))
            .filter(|at| *at >= requested)
            .min()
            .with_context(|| {
                format!("the simulator recorded no SYNC_UPDATES_AVAILABLE for the changes since {requested}: {listed}")
            })?;
        let ms = (done - sent).num_microseconds().unwrap_or(0) as f64 / 1e3;
        fresh.push(ms);
        fresh_from_request.push(from_request);
        eprintln!(
            "{changes} changes at the bank visible in DuckDB {ms:.0} ms after the webhook was sent ({from_request:.0} ms after they were asked of the simulator)"
        );
    }
    wait_idle(&pool).await?;
    worker.shutdown().await;
    let _ = stop.send(());
    let _ = server.await;
    let in_duckdb = duckdb_count(&app)?;
    let in_postgres: i64 = sqlx::query_scalar("SELECT count(*) FROM plaid_transactions")
        .fetch_one(&pool)
        .await?;
    if in_duckdb != in_postgres {
        bail!("DuckDB holds {in_duckdb} transactions, PostgreSQL {in_postgres}");
    }
    let _ = sim.kill().await;
    let worst = fresh.iter().copied().fold(0.0, f64::max);
    let worst_from_request = fresh_from_request.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "benchmark": "webhooks",
        "transactions": transactions,
        "requests": requests,
        "concurrency": concurrency,
        "webhooks_per_s": round(quiet.per_s, 0),
        "answer_p50_ms": round(quiet.p50, 2),
        "answer_p99_ms": round(quiet.p99, 2),
        "mixed_webhooks_per_s": round(mixed.per_s, 0),
        "mixed_answer_p50_ms": round(mixed.p50, 2),
        "mixed_answer_p99_ms": round(mixed.p99, 2),
        "rate_offered_per_s": rate,
        "rate_webhooks_per_s": round(steady.per_s, 0),
        "rate_answer_p50_ms": round(steady.p50, 2),
        "rate_answer_p99_ms": round(steady.p99, 2),
        "changes": changes,
        "freshness_median_ms": round(median(fresh), 0),
        "freshness_worst_ms": round(worst, 0),
        "freshness_from_request_median_ms": round(median(fresh_from_request), 0),
        "freshness_from_request_worst_ms": round(worst_from_request, 0),
    }))
}

struct Load {
    per_s: f64,
    p50: f64,
    p99: f64,
}

impl Load {
    fn describe(&self, requests: usize, concurrency: usize) -> String {
        format!(
            "{requests} verified webhooks from {concurrency} senders: {:.0}/s, answer p50 {:.2} ms, p99 {:.2} ms",
            self.per_s, self.p50, self.p99
        )
    }
}

/// `requests` webhooks (taken in turn from `signed`) from `concurrency` senders, each on its
/// own keep-alive connection: as fast as the answers come (`rate` `None`), or the `i`th
/// due at `i / rate` seconds, sent by sender `i % concurrency`.
async fn load(
    hook: &str,
    signed: &[(String, String)],
    requests: usize,
    concurrency: usize,
    rate: Option<u32>,
) -> Result<Load> {
    let signed = Arc::new(signed.to_vec());
    let t = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..concurrency {
        let (hook, signed) = (hook.to_string(), signed.clone());
        senders.spawn(async move {
            // One bare HTTP/1 client per sender: one keep-alive connection each.
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<axum::body::Bytes>>();
            let mut times = Vec::with_capacity(requests / concurrency + 1);
            for i in (sender..requests).step_by(concurrency) {
                let (body, jwt) = &signed[i % signed.len()];
                let request = axum::http::Request::post(&hook)
                    .header("Plaid-Verification", jwt.as_str())
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(axum::body::Bytes::from(
                        body.clone(),
                    )))?;
                // When the answer's clock starts: at the send, unless an answer before
                // kept this connection busy past the time this one was due, in which case
                // at that time (the server's delay counts; the timer's own does not).
                let start = match rate {
                    None => Instant::now(),
                    Some(rate) => {
                        let due = t + Duration::from_secs_f64(i as f64 / f64::from(rate));
                        let now = Instant::now();
                        if now >= due {
                            due
                        } else {
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        }
                    }
                };
                let response = client.request(request).await?;
                let status = response.status();
                http_body_util::BodyExt::collect(response.into_body()).await?;
                times.push(start.elapsed().as_secs_f64() * 1e3);
                if !status.is_success() {
                    bail!("the server answered {status}");
                }
            }
            Ok::<_, anyhow::Error>(times)
        });
    }
    let mut times = Vec::with_capacity(requests);
    for result in senders.join_all().await {
        times.extend(result?);
    }
    let elapsed = t.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    Ok(Load {
        per_s: requests as f64 / elapsed,
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
    })
}

async fn post(http: &reqwest::Client, hook: &str, body: &str, jwt: &str) -> Result<()> {
    let response = http
        .post(hook)
        .header("Plaid-Verification", jwt)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("the server answered {}", response.status());
    }
    Ok(())
}

/// Until no sync job is queued or running.
async fn wait_idle(pool: &PgPool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while finq_core::jobs::busy(pool).await? {
        if Instant::now() > deadline {
            bail!("the job queue did not drain");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn duckdb_count(app: &App) -> Result<i64> {
    let mut engine = finq_analytics::query::QueryEngine::open(
        &finq_analytics::mirror_path(&app.settings)?,
        finq_analytics::query::Trust::User,
    )?;
    let rows = engine.run("SELECT count(*) FROM transactions")?.rows();
    rows.first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
        .context("no count")?
        .parse()
        .context("a count")
}

//! `finq serve`: Plaid webhooks in, syncs out.
//!
//! Every webhook is verified first, as Plaid prescribes (`finq_connectors::plaid::webhook`);
//! a refused one gets a 4xx, is logged with the reason, and changes nothing. A verified one
//! is stored (`webhook_events`) and, when it calls for a sync, turned into a job of the
//! PostgreSQL queue (`finq_core::jobs`) in the same transaction; the answer follows the
//! commit; webhooks that arrive together share one statement and one commit ([`Intake`]).
//! Item health is recorded on the item at once: errors (`ERROR`, which also queues a sync
//! to confirm it, revocations), and notices that leave the item working
//! (`PENDING_EXPIRATION`, `PENDING_DISCONNECT`, `NEW_ACCOUNTS_AVAILABLE`). One worker runs
//! the queued syncs through the pipeline, retrying failures with backoff unless the item
//! needs its user, and polls items no webhook reached. A job still running when the server
//! is killed runs again at the next start; a stopping server waits [`SHUTDOWN_GRACE`] for
//! it, then releases it.
//!
//! [`link`]: the Link page for the owner (a per-server secret in its URL), to link a bank
//! in a browser or repair a login.

pub mod link;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::App;
use finq_connectors::plaid::items;
use finq_connectors::plaid::webhook::{ItemEnvironments, WebhookVerifier};
use finq_core::jobs;
use finq_core::pipeline::Stages;

use crate::pipeline;
use finq_connectors::plaid::connect::Connections;
pub use link::OwnerSecret;

/// Plaid's webhooks are small; anything larger is refused unread.
const MAX_WEBHOOK_BYTES: usize = 64 * 1024;
/// How often the worker looks for jobs that became due (retries) without being woken.
const POLL: Duration = Duration::from_secs(5);
/// How often the worker looks for items to poll.
const POLL_EVERY: Duration = Duration::from_secs(60);
/// The queue's kind of job for syncing one item.
const SYNC_JOB: &str = "sync";
/// Syncs of one item start at least this far apart: Plaid allows an item 50
/// `/transactions/sync` calls a minute, and a burst of webhooks makes one sync, not many.
const SYNC_SPACING: Duration = Duration::from_millis(1200);

struct ServerState {
    app: App,
    verifier: WebhookVerifier<ItemEnvironments>,
    /// Wakes the worker when a job is queued.
    wake: tokio::sync::Notify,
    /// The Link page's secret.
    secret: OwnerSecret,
    /// The Link page answers only to loopback `Host` names.
    loopback_only: bool,
    /// Plaid clients for the Link page (and the in-process simulator, when it links).
    links: tokio::sync::Mutex<Connections>,
    known_items: KnownItems,
    intake: Intake,
}

/// Which items finq has, as webhooks ask: an item seen in the last few seconds is taken as
/// known without a query (a burst of webhooks costs one lookup); others are looked up.
#[derive(Default)]
struct KnownItems(std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>);

impl KnownItems {
    const FRESH: Duration = Duration::from_secs(5);

    async fn contains(&self, pool: &sqlx::PgPool, item_id: &str) -> Result<bool, sqlx::Error> {
        if item_id.is_empty() {
            return Ok(false);
        }
        {
            let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(item_id).is_some_and(|t| t.elapsed() < Self::FRESH) {
                return Ok(true);
            }
        }
        let known = items::exists(pool, item_id).await?;
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if known {
            seen.insert(item_id.to_string(), std::time::Instant::now());
        } else {
            seen.remove(item_id);
        }
        Ok(known)
    }
}

/// How the server is reached.
pub struct ServeOptions {
    pub secret: OwnerSecret,
    /// Listening on loopback: the Link page refuses other `Host` names.
    pub loopback_only: bool,
}

/// How long stopping waits for a running job (a first sync of years of history can take
/// minutes; a service manager kills what does not stop within its own timeout).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The queue's worker; [`Worker::shutdown`] lets the running job finish, for a while.
pub struct Worker {
    stop: tokio::sync::watch::Sender<bool>,
    handle: std::thread::JoinHandle<()>,
    state: Arc<ServerState>,
}

impl Worker {
    /// Stop taking jobs and wait up to [`SHUTDOWN_GRACE`] for the running one.
    pub async fn shutdown(self) {
        self.shutdown_within(SHUTDOWN_GRACE).await
    }

    /// Stop taking jobs and wait up to `grace` for the running one. A job still running
    /// then is released: the next start runs it at once (a sync interrupted at any point
    /// loses nothing), instead of after its lease.
    pub async fn shutdown_within(self, grace: Duration) {
        let _ = self.stop.send(true);
        let handle = self.handle;
        let joined = tokio::task::spawn_blocking(move || handle.join());
        if tokio::time::timeout(grace, joined).await.is_err() {
            match jobs::release_running(&self.state.app.pool).await {
                Ok(n) => tracing::warn!(
                    jobs = n,
                    grace_s = grace.as_secs_f64(),
                    "a job was still running when the server stopped: it runs again at the next start"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not release the running job; it runs again when its lease ends")
                }
            }
        }
        let mut links = self.state.links.lock().await;
        std::mem::replace(&mut *links, Connections::new(&self.state.app.settings))
            .stop()
            .await;
    }
}

/// The routes, and the worker that runs the jobs they queue.
pub fn router(app: App, options: ServeOptions) -> (Router, Worker) {
    let verifier = WebhookVerifier::new(ItemEnvironments::new(app.pool.clone(), &app.settings));
    let links = tokio::sync::Mutex::new(Connections::new(&app.settings));
    let app_pool = app.pool.clone();
    let state = Arc::new(ServerState {
        app,
        verifier,
        wake: tokio::sync::Notify::new(),
        secret: options.secret,
        loopback_only: options.loopback_only,
        links,
        known_items: KnownItems::default(),
        intake: Intake::spawn(app_pool),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handle = spawn_worker(state.clone(), stopped);
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/plaid/webhook",
            post(webhook)
                .fallback(wrong_method)
                .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .merge(link::routes(state.clone()))
        .layer(
            // The path only: the Link page's URL carries its secret in the query.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                },
            ),
        )
        .with_state(state.clone());
    (
        router,
        Worker {
            stop,
            handle,
            state,
        },
    )
}

/// Where a running `finq serve` says how to reach its Link page (owner-only file).
pub fn serve_file(settings: &finq_core::config::Settings) -> std::path::PathBuf {
    settings.data_dir.join("serve.json")
}

/// What the last `finq serve` started on this data directory recorded (`url`, `link`,
/// `pid`), if anything.
fn recorded_server(settings: &finq_core::config::Settings) -> Option<Value> {
    let text = std::fs::read_to_string(serve_file(settings)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The Link page's URL of a running `finq serve` on this data directory, if one answers.
pub async fn running_link_page(settings: &finq_core::config::Settings) -> Option<String> {
    let v = recorded_server(settings)?;
    let (base, link) = (v["url"].as_str()?, v["link"].as_str()?);
    let alive = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    alive.then(|| link.to_string())
}

fn write_owner_only(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// How long a starting server waits for another one's lock.
const SERVE_LOCK_WAIT: Duration = Duration::from_secs(3);

/// One `finq serve` per database: its worker takes over jobs it finds running (their
/// server died), which a second server would do to the first one's. A session lock held
/// on a connection of its own for as long as the server runs (PostgreSQL releases it
/// when the connection ends, however the process ends). `elsewhere` says where the other
/// server may be, for the error.
async fn hold_serve_lock(
    pool: &sqlx::PgPool,
    elsewhere: Option<&str>,
) -> Result<sqlx::PgConnection> {
    let mut conn = pool
        .acquire()
        .await
        .context("cannot reach PostgreSQL")?
        .detach();
    // A server restarted right after it was killed may find its old session still
    // ending: it waits a little before giving up.
    let deadline = std::time::Instant::now() + SERVE_LOCK_WAIT;
    loop {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('finq.serve', 0))")
                .fetch_one(&mut conn)
                .await
                .context("cannot take finq serve's lock in PostgreSQL")?;
        if locked {
            return Ok(conn);
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "another `finq serve` is running against this database: stop it first (one server per database takes the webhooks and runs the jobs){}",
                elsewhere
                    .map(|url| format!(" (the last one started on this data directory: {url})"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn serve(app: App, addr: SocketAddr) -> Result<()> {
    let last = recorded_server(&app.settings);
    let _lock = hold_serve_lock(&app.pool, last.as_ref().and_then(|v| v["url"].as_str())).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let secret = OwnerSecret::random();
    // A browser on this machine reaches an unspecified address through loopback.
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let base = format!("http://{shown}");
    let link_url = format!("{base}/link?token={}", secret.expose());
    let file = serve_file(&app.settings);
    if let Err(e) = write_owner_only(
        &file,
        &json!({ "url": base, "link": link_url, "pid": std::process::id() }).to_string(),
    ) {
        tracing::warn!(error = %e, path = %file.display(), "could not record the Link page's address");
    }
    let (router, worker) = router(
        app,
        ServeOptions {
            secret,
            loopback_only: local.ip().is_loopback(),
        },
    );
    eprintln!("finq serve: listening on http://{local}");
    // The secret goes to the terminal (stdout), never to the log.
    println!("Link a bank in your browser: {link_url}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            // Ctrl-C, or SIGTERM as service managers send it.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("shutting down: finishing the running job");
        })
        .await?;
    worker.shutdown().await;
    let _ = std::fs::remove_file(&file);
    Ok(())
}

/// Queue a sync of every item no successful sync reached for `after` (a webhook may have
/// been missed); the number of items. Requests for items already waiting coalesce.
pub async fn poll(app: &App, after: Duration) -> Result<usize> {
    let due = items::due_for_poll(&app.pool, after).await?;
    if !due.is_empty() {
        let mut tx = app.pool.begin().await?;
        for item in &due {
            jobs::enqueue_spaced(&mut tx, SYNC_JOB, item, SYNC_SPACING).await?;
        }
        tx.commit().await?;
        tracing::info!(
            items = due.len(),
            hours = after.as_secs_f64() / 3600.0,
            "polling items with no recent sync"
        );
    }
    Ok(due.len())
}

/// Run queued jobs until told to stop, one at a time; poll items no webhook reached.
/// The worker on a thread of its own, at a lower CPU priority (nice 10, inherited by the
/// threads it starts, DuckDB's among them): a sync in progress yields the cores to
/// answering webhooks. It has its own runtime and connections (a connection belongs to
/// the runtime that opened it).
fn spawn_worker(
    state: Arc<ServerState>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("finq-worker".into())
        .spawn(move || {
            // SAFETY: setpriority has no memory effects; `who` 0 with PRIO_PROCESS is the
            // calling thread on Linux.
            if unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 10) } != 0 {
                tracing::debug!("could not lower the worker's CPU priority");
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the job worker");
                    return;
                }
            };
            runtime.block_on(async move {
                let options = (*state.app.pool.connect_options()).clone();
                let app = match finq_core::db::connect_with(options).await {
                    Ok(pool) => App {
                        pool,
                        ..state.app.clone()
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "the job worker cannot reach PostgreSQL");
                        return;
                    }
                };
                work(app, state, stop).await;
            });
        })
        .expect("spawning the worker thread")
}

async fn work(app: App, state: Arc<ServerState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    match jobs::release_running(&app.pool).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            jobs = n,
            "taking over jobs left running by a stopped server"
        ),
        Err(e) => tracing::error!(error = %e, "the job queue is unavailable"),
    }
    let poll_after = app.settings.poll_after;
    let mut last_poll: Option<std::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if last_poll.is_none_or(|t| t.elapsed() >= POLL_EVERY) {
            last_poll = Some(std::time::Instant::now());
            if !poll_after.is_zero()
                && let Err(e) = poll(&app, poll_after).await
            {
                tracing::error!(error = %e, "could not look for items to poll");
            }
            match jobs::prune_webhooks(&app.pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    webhooks = n,
                    days = jobs::WEBHOOKS_KEPT_DAYS,
                    "forgot old webhooks"
                ),
                Err(e) => tracing::error!(error = %e, "could not prune old webhooks"),
            }
        }
        match step(&app).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "the job queue is unavailable"),
        }
        // Until woken by a new job, or the next queued one is due.
        let due = match jobs::next_due(&app.pool).await {
            Ok(Some(due)) => due.min(POLL),
            _ => POLL,
        };
        tokio::select! {
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(due) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// Run one due job, if there is one: `true` when one ran.
pub async fn step(app: &App) -> Result<bool> {
    let Some(job) = jobs::claim(&app.pool).await? else {
        return Ok(false);
    };
    let span =
        tracing::info_span!("job", id = job.id, item_id = %job.item_id, attempt = job.attempts);
    let _enter = span.enter();
    let outcome = match pipeline::run(app, Stages::All, Some(&job.item_id), false).await {
        Ok(report) if report.ok() => Ok(()),
        Ok(report) => Err(report
            .failed()
            .map(|s| format!("{}: {}", s.name, s.error.as_deref().unwrap_or("failed")))
            .collect::<Vec<_>>()
            .join("; ")),
        Err(e) => Err(format!("{e:#}")),
    };
    match outcome {
        Ok(()) => {
            tracing::info!("sync done");
            jobs::complete(&app.pool, job.id).await?;
        }
        Err(error) => match items::blocking_error(&app.pool, &job.item_id).await? {
            // Retrying cannot mend what only the user can: the job ends here.
            Some(code) => {
                tracing::warn!(%error, %code, "sync failed: the item needs its user, not retried");
                jobs::abandon(&app.pool, job.id, &error).await?;
            }
            None => {
                tracing::error!(%error, "sync failed; it will be retried");
                jobs::fail(&app.pool, job.id, &error).await?;
            }
        },
    }
    Ok(true)
}

async fn healthz(State(state): State<Arc<ServerState>>) -> (StatusCode, axum::Json<Value>) {
    match sqlx::query("SELECT 1").execute(&state.app.pool).await {
        Ok(_) => (StatusCode::OK, axum::Json(json!({ "status": "ok" }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "error", "error": format!("database: {e}") })),
        ),
    }
}

/// What a webhook calls for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// New or changed transactions (or a repaired login, or new accounts): sync the item.
    Sync,
    /// Plaid's `ERROR`: record its code on the item (`finq items` shows it) and queue a
    /// sync to confirm it. Webhooks come out of order (a retried `ERROR` after
    /// `LOGIN_REPAIRED`): the sync clears the error if the item works, and is not retried
    /// if it does not.
    Error(String),
    /// Record this error code on the item (access revoked).
    ItemError(String),
    /// Record this notice on the item: it works, but its user should go through Link's
    /// update mode (`finq items` says so; a sync neither needs nor clears it).
    Notice(String),
    /// The login works again: clear the item's error, and sync.
    Repaired,
    /// Nothing to do; stored and acknowledged.
    Nothing,
}

impl Action {
    /// Whether it queues a sync of the item.
    fn syncs(&self) -> bool {
        matches!(self, Action::Sync | Action::Repaired | Action::Error(_))
    }

    /// Whether it records something on the item's health.
    fn records_health(&self) -> bool {
        matches!(
            self,
            Action::Error(_) | Action::ItemError(_) | Action::Notice(_)
        )
    }
}

fn action(kind: &str, code: &str, payload: &Value) -> Action {
    match (kind, code) {
        (
            "TRANSACTIONS",
            "SYNC_UPDATES_AVAILABLE"
            | "INITIAL_UPDATE"
            | "HISTORICAL_UPDATE"
            | "DEFAULT_UPDATE"
            | "TRANSACTIONS_REMOVED",
        ) => Action::Sync,
        ("ITEM", "ERROR") => match payload["error"]["error_code"].as_str() {
            Some(c) => Action::Error(c.to_string()),
            None => Action::Nothing,
        },
        ("ITEM", "USER_PERMISSION_REVOKED" | "USER_ACCOUNT_REVOKED") => {
            Action::ItemError(code.to_string())
        }
        // New accounts are shared through Link's update mode (account selection), not by
        // a sync.
        ("ITEM", code) if items::NOTICES.contains(&code) => Action::Notice(code.to_string()),
        ("ITEM", "LOGIN_REPAIRED") => Action::Repaired,
        _ => Action::Nothing,
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> (StatusCode, axum::Json<Value>) {
    tracing::error!(error = %e, "could not store the webhook");
    // Not 200: Plaid retries.
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": "database unavailable" })),
    )
}

/// Anything but a POST to the webhook path: refused, and logged with the reason.
async fn wrong_method(method: axum::http::Method) -> (StatusCode, axum::Json<Value>) {
    tracing::warn!(reason = %format!("method {method}, not POST"), "webhook refused");
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({ "error": "webhooks are POSTed" })),
    )
}

async fn webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> (StatusCode, axum::Json<Value>) {
    // A body over the limit (or one that could not be read) is refused with its reason.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            tracing::warn!(reason = %rejection.body_text(), "webhook refused");
            return (
                rejection.status(),
                axum::Json(json!({ "error": rejection.body_text() })),
            );
        }
    };
    let token = headers
        .get("plaid-verification")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = state.verifier.verify(token, &body).await {
        if e.is_transient() {
            tracing::warn!(reason = %e, "webhook not verified for now: Plaid will send it again");
            // Not a refusal: Plaid retries.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": "the verification key is unavailable" })),
            );
        }
        tracing::warn!(reason = %e, "webhook refused");
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": "webhook not verified" })),
        );
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        tracing::warn!(reason = "the body is not JSON", "webhook refused");
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "body is not JSON" })),
        );
    };
    let field = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (kind, code, item_id) = (
        field("webhook_type"),
        field("webhook_code"),
        field("item_id"),
    );
    tracing::info!(%kind, %code, %item_id, "webhook received");
    let action = action(&kind, &code, &payload);
    let known = match state.known_items.contains(&state.app.pool, &item_id).await {
        Ok(k) => k,
        Err(e) => return unavailable(&e),
    };
    if known {
        let health = match &action {
            Action::Error(c) | Action::ItemError(c) => {
                let message = payload["error"]["error_message"].as_str();
                items::set_error(&state.app.pool, &item_id, c, message)
                    .await
                    .map(|_| ())
            }
            Action::Notice(c) => items::set_notice(&state.app.pool, &item_id, c)
                .await
                .map(|_| ()),
            Action::Repaired => {
                items::clear_error(&state.app.pool, &item_id, &["ITEM_LOGIN_REQUIRED"]).await
            }
            _ => Ok(()),
        };
        if let Err(e) = health {
            return unavailable(&e);
        }
    }
    let stored = state
        .intake
        .store(Received {
            body,
            job: action.syncs().then_some(SYNC_JOB),
            health: action.records_health(),
            kind,
            code,
            item_id: item_id.clone(),
            known,
        })
        .await;
    match stored {
        Ok(outcome) => {
            if matches!(outcome.as_str(), "queued" | "coalesced") {
                state.wake.notify_one();
            }
            if outcome == "unknown_item" {
                tracing::warn!(%item_id, "webhook for an unknown item");
            }
            (StatusCode::OK, axum::Json(json!({ "status": outcome })))
        }
        Err(e) => unavailable(&e),
    }
}

/// A verified webhook on its way to [`jobs::intake`].
struct Received {
    body: axum::body::Bytes,
    kind: String,
    code: String,
    item_id: String,
    known: bool,
    job: Option<&'static str>,
    health: bool,
}

impl Received {
    fn webhook(&self) -> jobs::Webhook<'_> {
        jobs::Webhook {
            body: &self.body,
            webhook_type: &self.kind,
            webhook_code: &self.code,
            item_id: &self.item_id,
            known: self.known,
            job: self.job,
            health: self.health,
        }
    }
}

type Answer = tokio::sync::oneshot::Sender<Result<String, String>>;

/// Verified webhooks are stored in batches (group commit): each batch is what arrived
/// while the batches before it were being stored, so a burst costs PostgreSQL a few
/// statements and commits instead of one per webhook, and a lone webhook waits for nothing.
struct Intake {
    queue: tokio::sync::mpsc::UnboundedSender<(Received, Answer)>,
}

impl Intake {
    /// Batches being stored at once (each holds a connection).
    const IN_FLIGHT: usize = 3;
    const MAX_BATCH: usize = 256;

    /// Runs on the current tokio runtime until the `Intake` is dropped.
    fn spawn(pool: sqlx::PgPool) -> Intake {
        let (queue, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(Received, Answer)>();
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(Self::IN_FLIGHT));
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let Some(first) = arrived.recv().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < Self::MAX_BATCH {
                    match arrived.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    Self::store_batch(&pool, batch).await;
                    drop(slot);
                });
            }
        });
        Intake { queue }
    }

    /// Store a batch and answer each of its webhooks. A batch that fails is stored again
    /// one webhook at a time, so a webhook PostgreSQL refuses fails alone.
    async fn store_batch(pool: &sqlx::PgPool, batch: Vec<(Received, Answer)>) {
        let webhooks: Vec<jobs::Webhook<'_>> = batch.iter().map(|(r, _)| r.webhook()).collect();
        let stored = jobs::intake(pool, &webhooks, SYNC_SPACING).await;
        drop(webhooks);
        match stored {
            Ok(outcomes) => {
                for ((_, answer), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, webhooks = batch.len(), "a batch of webhooks failed; storing them one by one");
                for (r, answer) in batch {
                    let stored = jobs::intake(pool, &[r.webhook()], SYNC_SPACING).await;
                    let _ = answer.send(match stored {
                        Ok(mut outcome) => outcome.pop().ok_or_else(|| "no outcome".to_string()),
                        Err(e) => Err(e.to_string()),
                    });
                }
            }
            Err(e) => {
                for (_, answer) in batch {
                    let _ = answer.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Store one webhook (with whatever else is arriving): its outcome.
    async fn store(&self, webhook: Received) -> Result<String, String> {
        let (answer, outcome) = tokio::sync::oneshot::channel();
        self.queue
            .send((webhook, answer))
            .map_err(|_| "the server is shutting down".to_string())?;
        outcome
            .await
            .map_err(|_| "the webhook's batch was dropped".to_string())?
    }
}

#[cfg(test)]
mod attacks;

#[cfg(test)]
mod tests {
    use super::*;
    use finq_connectors::sim::{SimConfig, Simulator};
    use finq_core::config::Settings;
    use finq_core::vault::TokenVault;
    use tower::ServiceExt;

    /// A simulator serving on loopback, an app on the test's database that talks to it
    /// (polling off: tests drive it), and one item linked.
    pub(super) struct Setup {
        pub sim: Simulator,
        pub sim_server: finq_connectors::sim::SimServer,
        pub app: App,
        pub item: String,
        _data: tempfile::TempDir,
    }

    pub(super) async fn setup(pool: &sqlx::PgPool, seed: u64, transactions: usize) -> Setup {
        let sim = Simulator::new(SimConfig {
            seed,
            transactions,
            ..Default::default()
        });
        let sim_server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (data, base) = (
            dir.path().to_str().unwrap().to_string(),
            sim_server.base_url.clone(),
        );
        let settings = Settings::from_env_fn(|k| match k {
            "FINQ_DATA_DIR" => Some(data.clone()),
            "PLAID_BASE_URL" => Some(base.clone()),
            "FINQ_POLL_AFTER_HOURS" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        let app = App {
            settings,
            pool: pool.clone(),
            vault: Arc::new(TokenVault::from_key(&[5; 32])),
        };
        let item = finq_connectors::plaid::connect::link(
            &app.pool,
            &app.vault,
            &app.settings,
            "ins_109508",
            None,
        )
        .await
        .unwrap()
        .item_id;
        Setup {
            sim,
            sim_server,
            app,
            item,
            _data: dir,
        }
    }

    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn one_server_per_database(pool: sqlx::PgPool) {
        let first = hold_serve_lock(&pool, None).await.unwrap();
        let err = hold_serve_lock(&pool, None).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("another `finq serve` is running against this database"),
            "{err}"
        );
        // The lock goes with the first server's connection, however it ends (the next
        // server waits for its session to end).
        drop(first);
        hold_serve_lock(&pool, None)
            .await
            .expect("the lock is free once the first server's connection is gone");
    }

    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn sync_updates_available_webhook_syncs_that_item(pool: sqlx::PgPool) {
        let s = setup(&pool, 2, 120).await;
        let (sim, app, item, dir_path) = (
            s.sim.clone(),
            s.app.clone(),
            s.item.clone(),
            s.app.settings.data_dir.clone(),
        );

        // Each request goes through the router as the server would route it.
        let app_handle = app.clone();
        let (app, _worker) = router(
            app,
            ServeOptions {
                secret: OwnerSecret::random(),
                loopback_only: true,
            },
        );
        let call = |method: &str, uri: &str, body: String, token: Option<String>| {
            let mut request = axum::http::Request::builder().method(method).uri(uri);
            if let Some(t) = token {
                request = request.header("Plaid-Verification", t);
            }
            let request = request.body(axum::body::Body::from(body)).unwrap();
            let app = app.clone();
            async move {
                let response = app.oneshot(request).await.unwrap();
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (
                    status,
                    serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
                )
            }
        };
        let rows = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM unified_transactions")
                .fetch_one(&pool)
                .await
                .unwrap()
        };

        let (status, health) = call("GET", "/healthz", String::new(), None).await;
        assert_eq!(status, 200);
        assert_eq!(health["status"], "ok");

        // Refused, and nothing happens: no signature, a signature over another body, a
        // forged token, a body over 64 KiB, another method.
        let sync = json!({ "webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": item,
                           "initial_update_complete": true, "historical_update_complete": true, "environment": "sandbox" });
        let (body, token) = sim.sign_webhook(&sync);
        let (status, _) = call("POST", "/plaid/webhook", body.clone(), None).await;
        assert_eq!(status, 401);
        let (status, _) = call("POST", "/plaid/webhook", "not json".into(), None).await;
        assert_eq!(status, 401);
        let reindented = serde_json::to_string(&sync).unwrap();
        let (status, _) = call("POST", "/plaid/webhook", reindented, Some(token.clone())).await;
        assert_eq!(status, 401);
        let (status, _) = call(
            "POST",
            "/plaid/webhook",
            body.clone(),
            Some("eyJhbGciOiJub25lIn0.e30.".into()),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _) = call(
            "POST",
            "/plaid/webhook",
            " ".repeat(MAX_WEBHOOK_BYTES + 1),
            Some(token.clone()),
        )
        .await;
        assert_eq!(status, 413);
        let (status, _) = call("GET", "/plaid/webhook", String::new(), None).await;
        assert_eq!(status, 405);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(rows().await, 0, "a refused webhook started a sync");

        // Signed by the simulator, as Plaid signs: verified and acted on.
        let ack = json!({ "webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED", "item_id": item });
        let (ack_body, ack_token) = sim.sign_webhook(&ack);
        let (_, other) = call("POST", "/plaid/webhook", ack_body, Some(ack_token)).await;
        assert_eq!(other["status"], "ignored");
        let (status, started) = call("POST", "/plaid/webhook", body, Some(token)).await;
        assert_eq!(status, 200);
        assert_eq!(started["status"], "queued");
        // A webhook for an item finq does not have is stored and acknowledged.
        let stranger = json!({ "webhook_type": "TRANSACTIONS", "webhook_code": "DEFAULT_UPDATE", "item_id": "nobody" });
        let (b, t) = sim.sign_webhook(&stranger);
        let (status, unknown) = call("POST", "/plaid/webhook", b, Some(t)).await;
        assert_eq!(
            (status.as_u16(), unknown["status"].as_str()),
            (200, Some("unknown_item"))
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n = rows().await;
            if n == 120 && dir_path.join("finq.duckdb").exists() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "webhook sync did not finish ({n} rows)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let log: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_log WHERE item_id = $1 AND outcome = 'ok'",
        )
        .bind(&item)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(log, 1);
        // Every verified webhook is kept, byte for byte; the refused ones are not.
        let events: Vec<(String, String)> =
            sqlx::query_as("SELECT webhook_code, outcome FROM webhook_events ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            events,
            [
                (
                    "WEBHOOK_UPDATE_ACKNOWLEDGED".to_string(),
                    "ignored".to_string()
                ),
                ("SYNC_UPDATES_AVAILABLE".into(), "queued".into()),
                ("DEFAULT_UPDATE".into(), "unknown_item".into()),
            ]
        );
        let stored: String = sqlx::query_scalar(
            "SELECT body FROM webhook_events WHERE webhook_code = 'SYNC_UPDATES_AVAILABLE'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stored, sim.sign_webhook(&sync).0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state: String = sqlx::query_scalar("SELECT state FROM jobs")
                .fetch_one(&pool)
                .await
                .unwrap();
            if state == "done" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "job {state}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let idle = || {
            let pool = pool.clone();
            async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
                while jobs::busy(&pool).await.unwrap() {
                    assert!(std::time::Instant::now() < deadline, "jobs never ran");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        };
        // A webhook that calls for a sync: queued, or joined to the waiting one.
        let sends_sync = |payload: &Value| {
            let (body, token) = sim.sign_webhook(payload);
            let reply = call("POST", "/plaid/webhook", body, Some(token));
            async move {
                let (_, r) = reply.await;
                assert!(
                    matches!(r["status"].as_str(), Some("queued" | "coalesced")),
                    "{r}"
                );
            }
        };
        let ok_syncs = || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_log WHERE outcome = 'ok'")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        // Item health: the bank wants a new login. Its ERROR webhook is recorded on the
        // item and queues a sync to confirm it, which fails and is not retried.
        assert!(sim.reset_login(&item));
        let error = finq_connectors::sim::webhook_payload("ERROR", &item, 0);
        sends_sync(&error).await;
        let code = finq_e2e::error_code(&pool, &item).await;
        assert_eq!(code.as_deref(), Some("ITEM_LOGIN_REQUIRED"));
        idle().await;
        let (failed, attempts): (String, i32) =
            sqlx::query_as("SELECT state, attempts FROM jobs ORDER BY id DESC LIMIT 1")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((failed.as_str(), attempts), ("failed", 1));
        let code = finq_e2e::error_code(&pool, &item).await;
        assert_eq!(code.as_deref(), Some("ITEM_LOGIN_REQUIRED"));
        // LOGIN_REPAIRED clears it and queues a sync.
        assert!(sim.repair_login(&item));
        sends_sync(&finq_connectors::sim::webhook_payload(
            "LOGIN_REPAIRED",
            &item,
            0,
        ))
        .await;
        let code = finq_e2e::error_code(&pool, &item).await;
        assert_eq!(code, None);
        idle().await;
        // The ERROR again, late (Plaid retries, and webhooks come out of order): the sync
        // it queues finds the item working and clears it.
        sends_sync(&error).await;
        idle().await;
        assert_eq!(finq_e2e::error_code(&pool, &item).await, None);
        // A notice (consent ends soon) is not an error: recorded apart, left by the sync
        // that follows, cleared when the user has been through Link's update mode.
        let expiring = finq_connectors::sim::webhook_payload("PENDING_EXPIRATION", &item, 0);
        let (b, t) = sim.sign_webhook(&expiring);
        let (_, r) = call("POST", "/plaid/webhook", b, Some(t)).await;
        assert_eq!(r["status"], "recorded");
        let notice = || finq_e2e::notice_code(&pool, &item);
        assert_eq!(notice().await.as_deref(), Some("PENDING_EXPIRATION"));
        assert_eq!(finq_e2e::error_code(&pool, &item).await, None);
        let synced_before = ok_syncs().await;
        sends_sync(&sync).await;
        idle().await;
        assert!(ok_syncs().await > synced_before);

        // Polling: the item synced a moment ago is not due after 6 hours; with no webhook
        // for a while it is, and polling twice queues one sync.
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        assert_eq!(poll(&app_handle, hours(6)).await.unwrap(), 0);
        sqlx::query("UPDATE sync_log SET finished_at = finished_at - interval '7 hours'")
            .execute(&pool)
            .await
            .unwrap();
        idle().await;
        let synced_ago = |h: u64| {
            let pool = pool.clone();
            async move {
                sqlx::query(
                    "UPDATE sync_log SET finished_at = now() - make_interval(hours => $1),
                                         started_at = now() - make_interval(hours => $1)",
                )
                .bind(h as i32)
                .execute(&pool)
                .await
                .unwrap();
            }
        };
        assert_eq!(
            notice().await.as_deref(),
            Some("PENDING_EXPIRATION"),
            "a sync leaves a notice"
        );
        items::relinked(&pool, &item).await.unwrap();
        assert_eq!(notice().await, None);
        synced_ago(7).await;
        assert_eq!(poll(&app_handle, hours(6)).await.unwrap(), 1);
        // An item that needs its user is left alone.
        sqlx::query("UPDATE plaid_items SET error_code = 'ITEM_LOGIN_REQUIRED'")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(poll(&app_handle, hours(6)).await.unwrap(), 0);
        // One whose syncs failed for a passing reason (the bank down, a failed sync) is
        // polled again, but not at every look: an hour after its last attempt. (Asked of
        // the store, which queues nothing for the worker to run meanwhile.)
        let due = || {
            let pool = pool.clone();
            async move { items::due_for_poll(&pool, hours(6)).await.unwrap().len() }
        };
        for code in ["SYNC_FAILED", "INSTITUTION_DOWN", "INTERNAL_SERVER_ERROR"] {
            idle().await;
            sqlx::query("UPDATE plaid_items SET error_code = $1")
                .bind(code)
                .execute(&pool)
                .await
                .unwrap();
            synced_ago(7).await;
            assert_eq!(due().await, 1, "{code}");
            sqlx::query(
                "INSERT INTO sync_log (item_id, started_at, finished_at, outcome, error)
                 SELECT item_id, now() - interval '10 minutes', now() - interval '10 minutes', 'error', $1
                 FROM plaid_items",
            )
            .bind(code)
            .execute(&pool)
            .await
            .unwrap();
            assert_eq!(due().await, 0, "{code}");
        }
        // A notice (consent ending soon) does not stop polling: the item still works.
        sqlx::query("UPDATE plaid_items SET error_code = NULL, notice_code = 'PENDING_EXPIRATION'")
            .execute(&pool)
            .await
            .unwrap();
        synced_ago(7).await;
        assert_eq!(due().await, 1);
    }

    /// Webhooks arriving together are stored in shared batches: every one is kept, each
    /// answer tells its own outcome, and every `queued` answer is exactly one job.
    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn a_burst_of_webhooks_is_stored_whole_with_one_job_per_queued_answer(
        pool: sqlx::PgPool,
    ) {
        let s = setup(&pool, 3, 20).await;
        let (router, worker) = router(
            s.app.clone(),
            ServeOptions {
                secret: OwnerSecret::random(),
                loopback_only: true,
            },
        );
        let stranger = json!({ "webhook_type": "TRANSACTIONS", "webhook_code": "DEFAULT_UPDATE", "item_id": "nobody" });
        let signed: Vec<(String, String)> = (0..60)
            .map(|i| {
                let payload = if i % 10 == 9 {
                    stranger.clone()
                } else {
                    finq_connectors::sim::webhook_payload("SYNC_UPDATES_AVAILABLE", &s.item, i)
                };
                s.sim.sign_webhook(&payload)
            })
            .collect();
        let mut sending = tokio::task::JoinSet::new();
        for (body, token) in &signed {
            let request = axum::http::Request::post("/plaid/webhook")
                .header("Plaid-Verification", token)
                .body(axum::body::Body::from(body.clone()))
                .unwrap();
            let router = router.clone();
            sending.spawn(async move {
                let response = router.oneshot(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .unwrap();
                let answer: Value = serde_json::from_slice(&bytes).unwrap();
                answer["status"].as_str().unwrap().to_string()
            });
        }
        let answers = sending.join_all().await;
        let count = |outcome: &str| answers.iter().filter(|a| *a == outcome).count() as i64;
        assert_eq!(count("unknown_item"), 6);
        assert_eq!(count("queued") + count("coalesced"), 54);
        assert!(count("queued") >= 1);
        let (events, jobs): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM jobs)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((events, jobs), (60, count("queued")));
        let mut stored: Vec<String> = sqlx::query_scalar("SELECT body FROM webhook_events")
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut sent: Vec<String> = signed.into_iter().map(|(body, _)| body).collect();
        stored.sort();
        sent.sort();
        assert_eq!(stored, sent);
        worker.shutdown().await;
    }

    /// Stopping waits for a running job only so long: a sync still under way is left for
    /// the next start, released at once rather than after its lease.
    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn stopping_does_not_wait_forever_for_a_running_job(pool: sqlx::PgPool) {
        let s = setup(&pool, 4, 50).await;
        let (_router, worker) = router(
            s.app.clone(),
            ServeOptions {
                secret: OwnerSecret::random(),
                loopback_only: true,
            },
        );
        // Every answer from Plaid now takes three seconds.
        s.sim.set_faults(finq_connectors::sim::faults::Faults {
            latency_ms: 3_000,
            ..Default::default()
        });
        let mut tx = pool.begin().await.unwrap();
        jobs::enqueue_spaced(&mut tx, SYNC_JOB, &s.item, Duration::ZERO)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        worker.state.wake.notify_one();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE state = 'running'")
            .fetch_one(&pool)
            .await
            .unwrap()
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the job did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t = std::time::Instant::now();
        worker.shutdown_within(Duration::from_millis(300)).await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let free: bool =
            sqlx::query_scalar("SELECT lease_until < now() FROM jobs WHERE state = 'running'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(free, "the running job is released for the next start");
        // The abandoned worker still ends its job (in a process that exits it would not),
        // and lets go of the database before the test's is dropped.
        s.sim.set_faults(Default::default());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE state = 'running'")
            .fetch_one(&pool)
            .await
            .unwrap()
            > 0
        {
            assert!(std::time::Instant::now() < deadline, "the job never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A webhook PostgreSQL refuses (a NUL in its item id, which `text` cannot hold)
    /// fails alone: the rest of its batch is stored.
    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn a_webhook_that_cannot_be_stored_fails_alone(pool: sqlx::PgPool) {
        let received = |item_id: &str| Received {
            body: axum::body::Bytes::from(format!("{{\"item_id\":{item_id:?}}}")),
            kind: "TRANSACTIONS".into(),
            code: "SYNC_UPDATES_AVAILABLE".into(),
            item_id: item_id.into(),
            known: true,
            job: Some(SYNC_JOB),
            health: false,
        };
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for item_id in ["item-a", "bad\0item", "item-b"] {
            let (answer, outcome) = tokio::sync::oneshot::channel();
            batch.push((received(item_id), answer));
            answers.push(outcome);
        }
        Intake::store_batch(&pool, batch).await;
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap());
        }
        assert_eq!(outcomes[0], Ok("queued".to_string()));
        assert!(outcomes[1].is_err(), "{:?}", outcomes[1]);
        assert_eq!(outcomes[2], Ok("queued".to_string()));
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT item_id FROM webhook_events ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(stored, ["item-a", "item-b"]);
    }

    #[test]
    fn every_transactions_and_item_webhook_has_an_action() {
        let none = Value::Null;
        for code in [
            "SYNC_UPDATES_AVAILABLE",
            "INITIAL_UPDATE",
            "HISTORICAL_UPDATE",
            "DEFAULT_UPDATE",
            "TRANSACTIONS_REMOVED",
        ] {
            assert_eq!(action("TRANSACTIONS", code, &none), Action::Sync, "{code}");
        }
        let error = json!({ "error": { "error_code": "ITEM_LOGIN_REQUIRED" } });
        assert_eq!(
            action("ITEM", "ERROR", &error),
            Action::Error("ITEM_LOGIN_REQUIRED".into())
        );
        for code in ["USER_PERMISSION_REVOKED", "USER_ACCOUNT_REVOKED"] {
            assert_eq!(action("ITEM", code, &none), Action::ItemError(code.into()));
        }
        for code in [
            "PENDING_EXPIRATION",
            "PENDING_DISCONNECT",
            "NEW_ACCOUNTS_AVAILABLE",
        ] {
            assert_eq!(action("ITEM", code, &none), Action::Notice(code.into()));
            assert!(items::NOTICES.contains(&code));
        }
        assert_eq!(action("ITEM", "LOGIN_REPAIRED", &none), Action::Repaired);
        assert_eq!(
            action("ITEM", "WEBHOOK_UPDATE_ACKNOWLEDGED", &none),
            Action::Nothing
        );
        assert_eq!(action("AUTH", "SOMETHING_NEW", &none), Action::Nothing);
    }
}

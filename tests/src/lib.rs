//! Helpers for finq's end-to-end tests.
//!
//! - [`FakeOllama`]: a loopback server speaking Ollama's real HTTP API (`/api/chat` streaming
//!   and not, `/api/tags`, `/api/show`, `/api/version`) that records what finq sends.
//! - [`SimBank`]: the Plaid simulator on a loopback port with a client and a vault.
//! - [`db_fingerprint`]: a digest of every Plaid row, to prove "nothing changed".
//! - [`plaid_post`], [`sandbox_item`]: raw calls to the simulator as a Plaid client makes them.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use finq_connectors::plaid::PlaidClient;
use finq_connectors::sim::{SimConfig, SimServer, Simulator};
use finq_core::vault::TokenVault;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Writes the reply content for a `/api/chat` request body.
pub type Responder = Arc<dyn Fn(&Value) -> String + Send + Sync>;

#[derive(Clone)]
struct FakeState {
    models: Vec<String>,
    reply: Arc<Mutex<String>>,
    queued: Arc<Mutex<std::collections::VecDeque<String>>>,
    responder: Arc<Mutex<Option<Responder>>>,
    /// How long `/api/chat` waits before answering (a slow model).
    delay: Arc<Mutex<std::time::Duration>>,
    chats: Arc<Mutex<Vec<Value>>>,
}

pub struct FakeOllama {
    pub url: String,
    state: FakeState,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl FakeOllama {
    /// Serve with these models pulled; `/api/chat` answers with `reply` as the content.
    pub async fn start(models: &[&str], reply: &str) -> FakeOllama {
        let state = FakeState {
            models: models.iter().map(|m| m.to_string()).collect(),
            reply: Arc::new(Mutex::new(reply.to_string())),
            queued: Arc::new(Mutex::new(Default::default())),
            responder: Arc::new(Mutex::new(None)),
            delay: Arc::new(Mutex::new(std::time::Duration::ZERO)),
            chats: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route(
                "/api/version",
                get(|| async { axum::Json(json!({ "version": "0.12.6" })) }),
            )
            .route("/api/tags", get(tags))
            .route("/api/show", post(show))
            .route("/api/chat", post(chat))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        FakeOllama {
            url,
            state,
            _shutdown: tx,
        }
    }

    pub fn set_reply(&self, reply: &str) {
        *self.state.reply.lock().unwrap() = reply.to_string();
    }

    /// Wait this long before each `/api/chat` reply.
    pub fn set_delay(&self, delay: std::time::Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Replies served in this order before any other (a responder's, or the set reply).
    pub fn queue(&self, replies: &[&str]) {
        self.state
            .queued
            .lock()
            .unwrap()
            .extend(replies.iter().map(|r| r.to_string()));
    }

    /// Reply by looking at each request (once the queue is empty).
    pub fn respond_with(&self, f: impl Fn(&Value) -> String + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Some(Arc::new(f));
    }

    /// The last user message of a chat request.
    pub fn last_user_message(request: &Value) -> String {
        request["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// Whether a chat request asks for a plan (its `format` has `sql`) rather than an
    /// answer (`answer`).
    pub fn wants_plan(request: &Value) -> bool {
        request["format"]["properties"]["sql"].is_object()
    }

    /// Every `/api/chat` request body received so far.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.state.chats.lock().unwrap().clone()
    }

    /// How many chat requests have arrived so far, readable from another thread.
    pub fn chat_counter(&self) -> impl Fn() -> usize + Send + 'static {
        let chats = self.state.chats.clone();
        move || chats.lock().unwrap().len()
    }
}

fn model_entry(name: &str) -> Value {
    json!({
        "name": name, "model": name, "modified_at": "2026-10-01T10:00:00.000000000Z",
        "size": 2019393189u64, "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "details": { "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                     "parameter_size": "3.2B", "quantization_level": "Q4_K_M" }
    })
}

fn has_model(state: &FakeState, name: &str) -> bool {
    let full = if name.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    };
    state.models.iter().any(|m| *m == name || *m == full)
}

async fn tags(State(state): State<FakeState>) -> axum::Json<Value> {
    axum::Json(json!({ "models": state.models.iter().map(|m| model_entry(m)).collect::<Vec<_>>() }))
}

async fn show(
    State(state): State<FakeState>,
    axum::Json(body): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let name = body["model"]
        .as_str()
        .or(body["name"].as_str())
        .unwrap_or("");
    if !has_model(&state, name) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": format!("model '{name}' not found") })),
        );
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "modelfile": "FROM llama3.2", "parameters": "stop \"<|eot_id|>\"", "template": "{{ .Prompt }}",
            "details": { "format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M" },
            "model_info": { "general.architecture": "llama" }, "capabilities": ["completion", "tools"]
        })),
    )
}

async fn chat(State(state): State<FakeState>, body: axum::body::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid JSON" })),
        )
            .into_response();
    };
    state.chats.lock().unwrap().push(request.clone());
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let model = request["model"].as_str().unwrap_or("").to_string();
    if !has_model(&state, &model) {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({ "error": format!("model \"{model}\" not found, try pulling it first") }),
            ),
        )
            .into_response();
    }
    let queued = state.queued.lock().unwrap().pop_front();
    let responder = state.responder.lock().unwrap().clone();
    let content = match (queued, responder) {
        (Some(reply), _) => reply,
        (None, Some(f)) => f(&request),
        (None, None) => state.reply.lock().unwrap().clone(),
    };
    let created = "2026-11-24T12:00:00.000000Z";
    let done = json!({
        "model": model, "created_at": created, "message": { "role": "assistant", "content": "" },
        "done": true, "done_reason": "stop", "total_duration": 1_200_000_000u64, "load_duration": 10_000_000u64,
        "prompt_eval_count": 420, "prompt_eval_duration": 300_000_000u64, "eval_count": 40, "eval_duration": 800_000_000u64
    });
    // Ollama streams unless the request says "stream": false.
    if request["stream"].as_bool().unwrap_or(true) {
        let mut lines = String::new();
        let chars: Vec<char> = content.chars().collect();
        for piece in chars.chunks(7) {
            let chunk = json!({ "model": model, "created_at": created,
                "message": { "role": "assistant", "content": piece.iter().collect::<String>() }, "done": false });
            lines.push_str(&chunk.to_string());
            lines.push('\n');
        }
        lines.push_str(&done.to_string());
        lines.push('\n');
        return ([("content-type", "application/x-ndjson")], lines).into_response();
    }
    let mut whole = done;
    whole["message"]["content"] = Value::String(content);
    axum::Json(whole).into_response()
}

/// Serve `sim` on a loopback port from a runtime of its own (for tests that wait for child
/// processes with blocking calls); its base URL.
pub fn serve_on_own_runtime(sim: &Simulator) -> String {
    let sim = sim.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
            tx.send(server.base_url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// The simulator serving on a loopback port, with a client for it and a vault.
pub struct SimBank {
    pub sim: Simulator,
    pub server: SimServer,
    pub client: PlaidClient,
    pub vault: TokenVault,
}

impl SimBank {
    pub async fn start(seed: u64, transactions: usize) -> SimBank {
        let sim = Simulator::new(SimConfig {
            seed,
            transactions,
            today: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            ..Default::default()
        });
        let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let client = PlaidClient::new(
            &server.base_url,
            "test-client",
            SecretString::from("test-secret"),
        );
        SimBank {
            sim,
            server,
            client,
            vault: TokenVault::from_key(&[42u8; 32]),
        }
    }

    /// Sync `item` with the default settings; panics on failure.
    pub async fn sync(
        &self,
        pool: &sqlx::PgPool,
        item: &str,
    ) -> finq_connectors::plaid::sync::SyncOutcome {
        finq_connectors::plaid::sync::sync_item(
            pool,
            &self.client,
            &self.vault,
            item,
            Default::default(),
            &|_| {},
        )
        .await
        .unwrap()
    }

    /// Link First Platypus Bank; returns the item id.
    pub async fn link(&self, pool: &sqlx::PgPool) -> String {
        link_institution(pool, &self.client, &self.vault, "ins_109508").await
    }
}

/// Link an institution of the simulator `client` talks to, as the sandbox does; the
/// item's id.
pub async fn link_institution(
    pool: &sqlx::PgPool,
    client: &finq_connectors::plaid::PlaidClient,
    vault: &finq_core::vault::TokenVault,
    institution: &str,
) -> String {
    finq_connectors::plaid::link::link_sandbox_institution(
        pool,
        client,
        vault,
        institution,
        "sim",
        None,
        |_| None,
    )
    .await
    .unwrap()
    .item_id
}

/// A digest of every Plaid transaction and account row (all columns but timestamps).
pub async fn db_fingerprint(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar(
        "SELECT md5(coalesce((SELECT string_agg(row_to_json(t)::jsonb - 'updated_at' - 'created_at' - 'id' #>> '{}', '|' ORDER BY plaid_transaction_id)
                              FROM plaid_transactions t), '')
                 || coalesce((SELECT string_agg(row_to_json(a)::jsonb - 'updated_at' #>> '{}', '|' ORDER BY account_id)
                              FROM plaid_accounts a), ''))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// POST a Plaid request with credentials in the headers: (HTTP status, JSON body).
pub async fn plaid_post(url: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("PLAID-CLIENT-ID", "id")
        .header("PLAID-SECRET", "secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A new item through the sandbox flow: (item id, access token).
pub async fn sandbox_item(
    base: &str,
    institution: &str,
    webhook: Option<&str>,
) -> (String, String) {
    let (status, p) = plaid_post(
        &format!("{base}/sandbox/public_token/create"),
        json!({ "institution_id": institution, "initial_products": ["transactions"], "options": { "webhook": webhook } }),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let (status, ex) = plaid_post(
        &format!("{base}/item/public_token/exchange"),
        json!({ "public_token": p["public_token"] }),
    )
    .await;
    assert_eq!(status, 200, "{ex}");
    (
        ex["item_id"].as_str().unwrap().to_string(),
        ex["access_token"].as_str().unwrap().to_string(),
    )
}

/// Derive and mirror through the one runner, with no source: what `finq run` does after
/// syncing. Panics if a step fails.
pub async fn derive_and_mirror(
    pool: &sqlx::PgPool,
    mirror: &std::path::Path,
) -> finq_core::pipeline::PipelineReport {
    derive_into(
        pool,
        vec![finq_analytics::SinkPlugin::Duckdb(
            finq_analytics::mirror::DuckMirror::new(mirror),
        )],
    )
    .await
}

/// The transforms alone, as a run that stopped before its mirror step leaves things.
pub async fn derive_only(pool: &sqlx::PgPool) -> finq_core::pipeline::PipelineReport {
    derive_into(pool, Vec::new()).await
}

async fn derive_into(
    pool: &sqlx::PgPool,
    sinks: Vec<finq_analytics::SinkPlugin>,
) -> finq_core::pipeline::PipelineReport {
    use finq_core::pipeline::{Context, Plan, Stages};
    let plan = Plan {
        sources: Vec::<finq_connectors::SourcePlugin>::new(),
        transforms: vec![
            finq_transforms::TransformConfig::Union.build(),
            finq_transforms::TransformConfig::Transfers.build(),
        ],
        sinks,
    };
    let report = finq_core::pipeline::run(&Context::new(pool.clone()), &plan, Stages::Derive).await;
    assert!(report.ok(), "{:#?}", report.steps);
    report
}

/// A simulated bank of `transactions` linked and synced, derived and mirrored into
/// `dir/finq.duckdb` (where `finq` looks with `FINQ_DATA_DIR=dir`); the mirror's path.
pub async fn bank_mirror(
    pool: &sqlx::PgPool,
    dir: &std::path::Path,
    seed: u64,
    transactions: usize,
) -> std::path::PathBuf {
    let bank = SimBank::start(seed, transactions).await;
    let item = bank.link(pool).await;
    bank.sync(pool, &item).await;
    let path = dir.join("finq.duckdb");
    derive_and_mirror(pool, &path).await;
    path
}

/// Every mirrored table's rows, sorted, as text: two mirrors with equal snapshots hold the
/// same data.
pub fn mirror_snapshot(path: &std::path::Path) -> Vec<(String, Vec<Vec<Option<String>>>)> {
    use finq_analytics::query::{QueryEngine, Trust};
    let mut engine = QueryEngine::open(path, Trust::User).unwrap();
    finq_analytics::mirror::table_names()
        .into_iter()
        .map(|t| {
            let rows = engine
                .run(&format!("SELECT * FROM {t} ORDER BY ALL"))
                .unwrap()
                .rows();
            (t.to_string(), rows)
        })
        .collect()
}

/// Where each mirrored transaction comes from and what it is filled in with, in the mirror
/// and in `unified_transactions`: (id, source, account_id, account_name, institution,
/// item_id), sorted by id. The two must be equal.
pub async fn transaction_origins(
    pool: &sqlx::PgPool,
    path: &std::path::Path,
) -> (Vec<Vec<Option<String>>>, Vec<Vec<Option<String>>>) {
    use finq_analytics::query::{QueryEngine, Trust};
    let columns = "id, source, account_id, account_name, institution, item_id";
    let mirror = QueryEngine::open(path, Trust::User)
        .unwrap()
        .run(&format!("SELECT {columns} FROM transactions ORDER BY id"))
        .unwrap()
        .rows();
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let unified: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM unified_transactions ORDER BY id COLLATE \"C\""
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let unified = unified
        .into_iter()
        .map(|(id, source, a, b, c, d)| vec![Some(id), Some(source), a, b, c, d])
        .collect();
    (mirror, unified)
}

/// `unified_transactions` without its change numbers, sorted, as text.
pub async fn unified_snapshot(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT (to_jsonb(u) - 'seq')::text FROM unified_transactions u ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A Plaid item's transactions as compared with the simulator's ground truth: (amount,
/// pending, date, name, pending_transaction_id, account) by transaction id.
pub type TxState = std::collections::BTreeMap<
    String,
    (
        rust_decimal::Decimal,
        bool,
        String,
        String,
        Option<String>,
        String,
    ),
>;

/// What PostgreSQL holds for `item`.
pub async fn stored_state(conn: &mut sqlx::PgConnection, item: &str) -> TxState {
    use sqlx::Row;
    sqlx::query(
        "SELECT plaid_transaction_id, amount, pending, date::text, name, pending_transaction_id, account_id
         FROM plaid_transactions WHERE item_id = $1",
    )
    .bind(item)
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))))
    .collect()
}

/// The same shape, from the simulator's transactions.
pub fn state_of(txns: Vec<finq_connectors::plaid::types::Transaction>) -> TxState {
    txns.into_iter()
        .map(|t| {
            (
                t.transaction_id,
                (
                    t.amount,
                    t.pending,
                    t.date.to_string(),
                    t.name.unwrap(),
                    t.pending_transaction_id,
                    t.account_id,
                ),
            )
        })
        .collect()
}

/// What differs between two states, in words.
pub fn state_diff(got: &TxState, want: &TxState) -> String {
    let mut out = Vec::new();
    for (k, v) in got {
        match want.get(k) {
            None => out.push(format!("extra {k} {v:?}")),
            Some(w) if w != v => out.push(format!("differs {k}: got {v:?} want {w:?}")),
            _ => {}
        }
    }
    for (k, w) in want {
        if !got.contains_key(k) {
            out.push(format!("missing {k} {w:?}"));
        }
    }
    format!("{} rows vs {}: {}", got.len(), want.len(), out.join("; "))
}

/// An item's status, read through the item store.
async fn item_status(pool: &sqlx::PgPool, item: &str) -> finq_connectors::plaid::items::ItemStatus {
    finq_connectors::plaid::items::statuses(pool, Some(item))
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.item_id == item)
        .expect("a linked item")
}

/// An item's recorded Plaid error code, read through the item store.
pub async fn error_code(pool: &sqlx::PgPool, item: &str) -> Option<String> {
    item_status(pool, item).await.error_code
}

/// An item's notice (`PENDING_EXPIRATION`, …), read through the item store.
pub async fn notice_code(pool: &sqlx::PgPool, item: &str) -> Option<String> {
    item_status(pool, item).await.notice_code
}

/// A query's rows on a mirror file, as text (`None` for NULL).
pub fn mirror_rows(path: &std::path::Path, sql: &str) -> Vec<Vec<Option<String>>> {
    use finq_analytics::query::{QueryEngine, Trust};
    QueryEngine::open(path, Trust::User)
        .unwrap()
        .run(sql)
        .unwrap()
        .rows()
}

/// The URL of a `#[sqlx::test]` database, for a `finq` process to use.
pub fn database_url(pool: &sqlx::PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let (prefix, _) = base.rsplit_once('/').expect("a database URL");
    format!(
        "{prefix}/{}",
        pool.connect_options()
            .get_database()
            .expect("a database name")
    )
}

/// The `finq` binary on a test's database and data directory, with the simulator.
pub fn finq(
    bin: &str,
    db_url: &str,
    data: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(bin)
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("FINQ_DATA_DIR", data)
        .env("PLAID_ENV", "sim")
        .output()
        .expect("the finq binary runs")
}

/// A finished process's stdout; panics with both streams if it failed.
pub fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A finished process's stderr; panics if it succeeded.
pub fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "it succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

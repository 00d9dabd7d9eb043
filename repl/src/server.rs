//! `finq serve`: Plaid webhooks in, syncs out. Every webhook is verified first, as Plaid
//! prescribes (`finq_connectors::plaid::webhook`); a refused one gets a 4xx, is logged
//! with the reason, and changes nothing. `SYNC_UPDATES_AVAILABLE` for a known item runs the
//! pipeline for that item in the background (one at a time) and answers 200 at once, as
//! Plaid expects an answer within 10 seconds.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::App;
use finq_connectors::plaid::items;
use finq_connectors::plaid::webhook::{ItemEnvironments, WebhookVerifier};
use finq_core::pipeline::Stages;

use crate::pipeline;

/// Plaid's webhooks are small; anything larger is refused unread.
const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

struct ServerState {
    app: App,
    verifier: WebhookVerifier<ItemEnvironments>,
    /// Webhook-triggered runs go one at a time.
    running: tokio::sync::Mutex<()>,
}

pub fn router(app: App) -> Router {
    let verifier = WebhookVerifier::new(ItemEnvironments::new(app.pool.clone(), &app.settings));
    let state = Arc::new(ServerState {
        app,
        verifier,
        running: tokio::sync::Mutex::new(()),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/plaid/webhook",
            post(webhook).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

pub async fn serve(app: App, addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let router = router(app);
    eprintln!("finq serve: listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down");
        })
        .await?;
    Ok(())
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

/// Item health from Plaid's ITEM webhooks: errors are recorded on the item (so `finq items`
/// shows them), and a repaired login clears the error.
async fn item_webhook(
    state: &ServerState,
    code: &str,
    item_id: &str,
    payload: &Value,
) -> (StatusCode, axum::Json<Value>) {
    let error_code = match code {
        "ERROR" => payload["error"]["error_code"].as_str().map(str::to_string),
        "PENDING_EXPIRATION"
        | "PENDING_DISCONNECT"
        | "USER_PERMISSION_REVOKED"
        | "USER_ACCOUNT_REVOKED" => Some(code.to_string()),
        "LOGIN_REPAIRED" => None,
        _ => return (StatusCode::OK, axum::Json(json!({ "status": "ignored" }))),
    };
    let message = payload["error"]["error_message"]
        .as_str()
        .map(str::to_string);
    let result = match &error_code {
        Some(c) => items::set_error(&state.app.pool, item_id, c, message.as_deref()).await,
        None => items::clear_login_error(&state.app.pool, item_id)
            .await
            .map(|()| true),
    };
    match result {
        Ok(false) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "unknown_item" })),
        ),
        Ok(_) => (StatusCode::OK, axum::Json(json!({ "status": "recorded" }))),
        Err(e) => {
            tracing::error!(item_id, error = %e, "could not record the item webhook");
            // Not 200: Plaid retries.
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": "database unavailable" })),
            )
        }
    }
}

async fn webhook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let token = headers
        .get("plaid-verification")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = state.verifier.verify(token, &body).await {
        if e.is_transient() {
            tracing::error!(reason = %e, "webhook not verified: its key could not be fetched");
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
    if kind == "ITEM" {
        return item_webhook(&state, &code, &item_id, &payload).await;
    }
    if kind != "TRANSACTIONS" || code != "SYNC_UPDATES_AVAILABLE" {
        return (StatusCode::OK, axum::Json(json!({ "status": "ignored" })));
    }
    let known = items::exists(&state.app.pool, &item_id)
        .await
        .unwrap_or(false);
    if !known {
        tracing::warn!(%item_id, "webhook for an unknown item");
        return (
            StatusCode::OK,
            axum::Json(json!({ "status": "unknown_item" })),
        );
    }
    let task_state = state.clone();
    tokio::spawn(async move {
        let _one_at_a_time = task_state.running.lock().await;
        match pipeline::run(&task_state.app, Stages::All, Some(&item_id), false).await {
            Ok(report) if report.ok() => tracing::info!(%item_id, "webhook sync done"),
            Ok(report) => {
                for s in report.failed() {
                    tracing::error!(%item_id, step = %s.name, error = s.error.as_deref().unwrap_or(""), "webhook sync failed");
                }
            }
            Err(e) => tracing::error!(%item_id, error = %e, "webhook sync failed"),
        }
    });
    (
        StatusCode::OK,
        axum::Json(json!({ "status": "sync_started" })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use finq_connectors::sim::{SimConfig, Simulator};
    use finq_core::config::Settings;
    use finq_core::vault::TokenVault;
    use tower::ServiceExt;

    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn sync_updates_available_webhook_syncs_that_item(pool: sqlx::PgPool) {
        let sim = Simulator::new(SimConfig {
            seed: 2,
            transactions: 120,
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

        // Each request goes through the router as the server would route it.
        let app = router(app);
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
        assert_eq!(started["status"], "sync_started");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n = rows().await;
            if n == 120 && dir.path().join("finq.duckdb").exists() {
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
    }
}

//! The Link page `finq serve` hosts, and its API, for the owner only.
//!
//! `GET /link?token=SECRET[&item=ITEM]` asks finq for a link token (`POST /link/api/token`),
//! loads Plaid Link (Plaid's own script, or the simulator's stand-in at the same path),
//! and on `onSuccess` sends the public token to `POST /link/api/exchange`: finq exchanges it,
//! stores the item with its token sealed, queues the first sync, and the page follows it
//! (`GET /link/api/items/ITEM`) until the transactions have arrived. With `item`, the page
//! runs Link's update mode to repair that item's login.
//!
//! Every request here carries the server's random secret (the `token` of the URL `finq
//! serve` prints, sent back by the page in `X-Finq-Token`), compared in constant time;
//! state-changing requests must come from the page's own origin; when finq listens on
//! loopback, the `Host` must be a loopback name (a DNS-rebinding page cannot pose as it).
//! The secret never reaches a log: request spans carry the path, not the query.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::{SYNC_JOB, SYNC_SPACING, ServerState};
use finq_connectors::plaid::connect::{ConnectError, link_script};
use finq_connectors::plaid::items::{self, ItemError};
use finq_connectors::plaid::link::{LinkError, exchange_and_store};
use finq_core::jobs;

const PAGE: &str = include_str!("link.html");
/// The header the page sends the secret in.
const SECRET_HEADER: &str = "x-finq-token";

/// The per-server secret of the Link page's URL.
pub struct OwnerSecret(SecretString);

impl OwnerSecret {
    /// 32 random bytes from the operating system, as hex.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        OwnerSecret(SecretString::from(hex))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    fn matches(&self, given: &str) -> bool {
        self.expose().as_bytes().ct_eq(given.as_bytes()).into()
    }
}

impl std::fmt::Debug for OwnerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerSecret([REDACTED])")
    }
}

pub(super) fn routes(state: Arc<ServerState>) -> Router<Arc<ServerState>> {
    Router::new()
        .route("/link", get(page))
        .route("/link/api/token", post(link_token))
        .route("/link/api/exchange", post(exchange))
        .route("/link/api/items/{item_id}", get(item_status))
        // Matched routes only: other paths (a browser's /favicon.ico) are a plain 404.
        .route_layer(axum::middleware::from_fn_with_state(state, owner_only))
}

/// Why a request was refused (said to the client; logged without the secret).
fn refuse(status: StatusCode, why: &'static str) -> Response {
    tracing::warn!(reason = why, "link page request refused");
    (status, Json(json!({ "error": why }))).into_response()
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // "[::1]:8080", "127.0.0.1:8080", "localhost:8080"
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The owner check: secret, `Host` (on loopback) and, for state changes, `Origin`.
async fn owner_only(State(state): State<Arc<ServerState>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if state.loopback_only && !is_loopback_host(host) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this page answers on loopback addresses only (open the URL `finq serve` printed)",
        );
    }
    // The page itself takes the secret from its URL; its API calls send it in a header.
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            (req.uri().path() == "/link")
                .then(|| query_param(req.uri().query().unwrap_or(""), "token"))
                .flatten()
        });
    if !given.is_some_and(|g| state.secret.matches(&g)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this page needs the secret of the URL `finq serve` printed",
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let same = origin.is_some_and(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        });
        if !same {
            return refuse(
                StatusCode::FORBIDDEN,
                "changes are taken from finq's own Link page only (Origin)",
            );
        }
    }
    next.run(req).await
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The URL carries the secret: never send it on to Plaid's CDN as a Referer.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    )
        .into_response()
}

/// An error of the page's API, in words for the page.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{0}")]
    Item(#[from] ItemError),
    #[error("{0}")]
    Plaid(#[from] finq_connectors::plaid::PlaidApiError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Item(ItemError::Unknown(_)) => StatusCode::NOT_FOUND,
            ApiError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        tracing::warn!(error = %self, "link page request failed");
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default)]
    item: Option<String>,
}

/// A link token: for a new item (the configured products and webhook), or in update mode
/// for `item`; with the Link script the page must load.
async fn link_token(
    State(state): State<Arc<ServerState>>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<Value>, ApiError> {
    let app = &state.app;
    let mut conns = state.links.lock().await;
    match req.item {
        Some(item_id) => {
            let item = items::get(&app.pool, &item_id).await?;
            let client = conns.client_for(&item).await?;
            let token = items::open_token(&app.pool, &app.vault, &item_id).await?;
            let link = client.link_token_update(&token).await?;
            tracing::info!(%item_id, "update-mode link token created");
            Ok(Json(json!({
                "link_token": link.link_token,
                "expiration": link.expiration,
                "script": link_script(&client),
                "institution": item.institution,
            })))
        }
        None => {
            let new = conns.new_items(&app.pool, None).await?;
            let link = new
                .client
                .link_token_create(app.settings.webhook_url.clone())
                .await?;
            tracing::info!(environment = new.environment.as_str(), "link token created");
            Ok(Json(json!({
                "link_token": link.link_token,
                "expiration": link.expiration,
                "script": link_script(&new.client),
            })))
        }
    }
}

#[derive(Deserialize)]
struct ExchangeRequest {
    public_token: String,
    /// Update mode: the item whose login was repaired (its public token needs no exchange).
    #[serde(default)]
    item: Option<String>,
}

/// Link succeeded: store the new item (or clear the repaired one's error) and queue its sync.
async fn exchange(
    State(state): State<Arc<ServerState>>,
    Json(req): Json<ExchangeRequest>,
) -> Result<Json<Value>, ApiError> {
    let app = &state.app;
    let item_id = match req.item {
        Some(item_id) => {
            items::get(&app.pool, &item_id).await?;
            items::relinked(&app.pool, &item_id).await?;
            tracing::info!(%item_id, "login repaired through Link");
            item_id
        }
        None => {
            let mut conns = state.links.lock().await;
            let new = conns.new_items(&app.pool, None).await?;
            let linked = exchange_and_store(
                &app.pool,
                &new.client,
                &app.vault,
                &req.public_token,
                new.environment.as_str(),
                |item_id| new.sim_spec(item_id, None),
            )
            .await?;
            linked.item_id
        }
    };
    let mut tx = app.pool.begin().await?;
    jobs::enqueue_spaced(&mut tx, SYNC_JOB, &item_id, SYNC_SPACING).await?;
    tx.commit().await?;
    state.wake.notify_one();
    status(app, &item_id).await.map(Json)
}

async fn item_status(
    State(state): State<Arc<ServerState>>,
    Path(item_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    status(&state.app, &item_id).await.map(Json)
}

/// What the page shows of an item: institution, accounts, transactions, and whether the
/// sync it queued has finished.
async fn status(app: &crate::app::App, item_id: &str) -> Result<Value, ApiError> {
    let Some(s) = items::statuses(&app.pool, Some(item_id))
        .await?
        .into_iter()
        .next()
    else {
        return Err(ItemError::Unknown(item_id.to_string()).into());
    };
    let pending = jobs::pending(&app.pool, SYNC_JOB, item_id).await?;
    Ok(json!({
        "item_id": s.item_id,
        "institution": s.institution,
        "accounts": items::account_labels(&app.pool, item_id).await?,
        "transactions": s.transactions,
        "synced": !pending && s.last_synced_at.is_some(),
        "error": if pending { s.last_error } else { None },
        "status": s.error_code,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:80",
            "LOCALHOST",
            "127.9.9.9",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "10.0.0.1:8080",
            "",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn secrets_are_random_and_compared_whole() {
        let (a, b) = (OwnerSecret::random(), OwnerSecret::random());
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
        assert!(a.matches(a.expose()));
        assert!(!a.matches(&a.expose()[..63]));
        assert!(!a.matches(b.expose()));
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    /// The page and its API through the router, as the server routes them: only for the
    /// owner (secret, loopback Host, same Origin for changes), then a link token, a new
    /// item exchanged and queued, and update mode clearing a login error and a notice.
    #[sqlx::test(migrator = "finq_core::MIGRATOR")]
    async fn the_link_api_serves_its_owner_only_and_links_an_item(pool: sqlx::PgPool) {
        use tower::ServiceExt;
        let s = crate::server::tests::setup(&pool, 6, 40).await;
        let secret = OwnerSecret::random();
        let token = secret.expose().to_string();
        let (router, worker) = crate::server::router(
            s.app.clone(),
            crate::server::ServeOptions {
                secret,
                loopback_only: true,
            },
        );
        let host = "127.0.0.1:4321";
        let call = |method: &str,
                    path: &str,
                    headers: Vec<(&'static str, String)>,
                    body: Option<Value>| {
            let router = router.clone();
            let mut request = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", host);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let body = match body {
                Some(b) => {
                    request = request.header("content-type", "application/json");
                    axum::body::Body::from(b.to_string())
                }
                None => axum::body::Body::empty(),
            };
            async move {
                let response = router.oneshot(request.body(body).unwrap()).await.unwrap();
                let status = response.status().as_u16();
                let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, String::from_utf8_lossy(&bytes).to_string())
            }
        };
        let owner = || {
            vec![
                (SECRET_HEADER, token.clone()),
                ("origin", format!("http://{host}")),
            ]
        };

        // The page: only with the secret, only on a loopback Host.
        assert_eq!(call("GET", "/link", vec![], None).await.0, 403);
        assert_eq!(call("GET", "/link?token=wrong", vec![], None).await.0, 403);
        let (status, page) = call("GET", &format!("/link?token={token}"), vec![], None).await;
        assert_eq!(status, 200);
        assert!(page.contains("<html"), "{page}");
        let elsewhere = axum::http::Request::get(format!("/link?token={token}"))
            .header("host", "finq.evil.example")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            router.clone().oneshot(elsewhere).await.unwrap().status(),
            403
        );

        // The API: the secret, and for changes the page's own Origin.
        let none = Some(json!({}));
        assert_eq!(
            call("POST", "/link/api/token", vec![], none.clone())
                .await
                .0,
            403
        );
        let no_origin = vec![(SECRET_HEADER, token.clone())];
        assert_eq!(
            call("POST", "/link/api/token", no_origin, none.clone())
                .await
                .0,
            403
        );
        let other_origin = vec![
            (SECRET_HEADER, token.clone()),
            ("origin", "http://evil.example".to_string()),
        ];
        assert_eq!(
            call("POST", "/link/api/token", other_origin, none.clone())
                .await
                .0,
            403
        );
        let (status, body) = call("POST", "/link/api/token", owner(), none).await;
        assert_eq!(status, 200, "{body}");
        let link: Value = serde_json::from_str(&body).unwrap();
        assert!(
            link["link_token"].as_str().unwrap().starts_with("link-"),
            "{link}"
        );

        // Link's onSuccess: the public token is exchanged, the item stored and queued.
        let plaid = finq_connectors::plaid::PlaidClient::new(
            &s.sim_server.base_url,
            "id",
            "secret".to_string().into(),
        );
        let public = plaid
            .sandbox_public_token_create("ins_109512", None)
            .await
            .unwrap()
            .public_token;
        let (status, body) = call(
            "POST",
            "/link/api/exchange",
            owner(),
            Some(json!({ "public_token": public })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let linked: Value = serde_json::from_str(&body).unwrap();
        let new_item = linked["item_id"].as_str().unwrap().to_string();
        assert_ne!(new_item, s.item);
        assert!(
            !linked["accounts"].as_array().unwrap().is_empty(),
            "{linked}"
        );
        assert_eq!(items::list(&pool).await.unwrap().len(), 2);
        assert!(jobs::pending(&pool, SYNC_JOB, &new_item).await.unwrap());

        // Update mode for an item whose bank wants a new login and whose consent ends.
        items::set_error(&pool, &s.item, "ITEM_LOGIN_REQUIRED", None)
            .await
            .unwrap();
        items::set_notice(&pool, &s.item, "PENDING_EXPIRATION")
            .await
            .unwrap();
        let (status, body) = call(
            "POST",
            "/link/api/token",
            owner(),
            Some(json!({ "item": s.item })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(
            "POST",
            "/link/api/exchange",
            owner(),
            Some(json!({ "public_token": "public-sandbox-unused", "item": s.item })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let after = items::statuses(&pool, Some(&s.item)).await.unwrap();
        assert_eq!(
            (
                after[0].error_code.as_deref(),
                after[0].notice_code.as_deref()
            ),
            (None, None)
        );

        // An item finq does not know.
        let (status, _) = call(
            "GET",
            "/link/api/items/no-such-item",
            vec![(SECRET_HEADER, token.clone())],
            None,
        )
        .await;
        assert_eq!(status, 404);
        worker.shutdown().await;
    }

    #[test]
    fn the_secret_is_read_from_the_query() {
        assert_eq!(
            query_param("token=abc&item=x", "token").as_deref(),
            Some("abc")
        );
        assert_eq!(query_param("item=x&token=", "token").as_deref(), Some(""));
        assert_eq!(query_param("tokens=abc", "token"), None);
    }
}

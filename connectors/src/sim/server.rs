//! The simulator's HTTP face: Plaid's endpoints (POST + JSON, credentials in the body or
//! the `PLAID-CLIENT-ID` / `PLAID-SECRET` headers, `request_id` on every success, a
//! `PlaidError` body with Plaid's status on every failure), plus `/sim/*` controls.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{Duration, Utc};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{CursorError, Faults, Simulator, data, webhook_payload, with_pfc_version};
use crate::plaid::types::*;

/// A running simulator server; dropping it stops the server.
pub struct SimServer {
    pub base_url: String,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimServer {
    /// Stop serving and wait for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Simulator {
    /// Serve on `addr` (port 0 picks a free port). Returns once the socket is bound.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SimServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(self.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(SimServer {
            base_url: format!("http://{addr}"),
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

pub fn router(sim: Simulator) -> Router {
    let plaid = Router::new()
        .route("/link/token/create", post(link_token_create))
        .route(
            "/sandbox/public_token/create",
            post(sandbox_public_token_create),
        )
        .route("/item/public_token/exchange", post(public_token_exchange))
        .route("/accounts/get", post(accounts_get))
        .route("/accounts/balance/get", post(accounts_get))
        .route("/item/get", post(item_get))
        .route("/item/remove", post(item_remove))
        .route("/item/webhook/update", post(item_webhook_update))
        .route("/institutions/get_by_id", post(institutions_get_by_id))
        .route("/transactions/sync", post(transactions_sync))
        .route("/transactions/refresh", post(transactions_refresh))
        .route("/sandbox/item/fire_webhook", post(fire_webhook))
        .route("/sandbox/item/reset_login", post(reset_login))
        .route("/webhook_verification_key/get", post(verification_key_get))
        .route_layer(middleware::from_fn_with_state(sim.clone(), inject_faults));
    Router::new()
        .merge(plaid)
        .merge(super::link::router())
        .route("/sim/advance", post(sim_advance))
        .route("/sim/faults", get(sim_faults_get).post(sim_faults_set))
        .route("/sim/webhook_key/rotate", post(sim_rotate_key))
        .route("/sim/webhooks", get(sim_deliveries))
        .route("/sim/webhooks/sign", post(sim_sign))
        .route("/sim/items/{item_id}/transactions", get(sim_ground_truth))
        .route("/sim/items/{item_id}/repair", post(sim_repair))
        .route("/sim/items/{item_id}/churn", post(sim_churn))
        .fallback(not_found)
        .with_state(sim)
}

enum Injected {
    None,
    Drop,
    ServerError,
    RateLimit,
}

/// Latency, dropped connections, 500s and 429s, as configured.
async fn inject_faults(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let (latency, injected) = {
        let mut s = sim.lock();
        let f = s.config.faults.clone();
        let rng = &mut s.fault_rng;
        let injected = if f.drop > 0.0 && rng.gen_bool(f.drop) {
            Injected::Drop
        } else if f.server_error > 0.0 && rng.gen_bool(f.server_error) {
            Injected::ServerError
        } else if req.uri().path() == "/transactions/sync"
            && f.rate_limit > 0.0
            && rng.gen_bool(f.rate_limit)
        {
            Injected::RateLimit
        } else {
            Injected::None
        };
        (f.latency_ms, injected)
    };
    if latency > 0 {
        tokio::time::sleep(StdDuration::from_millis(latency)).await;
    }
    match injected {
        Injected::None => next.run(req).await,
        Injected::Drop => {
            // Headers go out, then the connection dies before the body.
            let body = Body::from_stream(futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other(
                    "connection dropped by fault injection",
                ))
            }));
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)
                .expect("valid response")
        }
        Injected::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "API_ERROR",
            "INTERNAL_SERVER_ERROR",
            "an unexpected error occurred",
        )
        .into_response(),
        Injected::RateLimit => sync_limit().into_response(),
    }
}

/// `/sim/*` controls asked about an item the simulator does not have.
fn unknown_item() -> PlaidErr {
    error(
        StatusCode::NOT_FOUND,
        "ITEM_ERROR",
        "ITEM_NOT_FOUND",
        "The Item you requested cannot be found.",
    )
}

fn sync_limit() -> PlaidErr {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMIT_EXCEEDED",
        "TRANSACTIONS_SYNC_LIMIT",
        "rate limit exceeded for attempts to access this item. please try again later",
    )
}

/// Count a call in a one-minute window; false when `limit` calls were already made.
fn within_limit(calls: &mut std::collections::VecDeque<Instant>, limit: u32) -> bool {
    let now = Instant::now();
    while calls
        .front()
        .is_some_and(|t| now.duration_since(*t) > StdDuration::from_secs(60))
    {
        calls.pop_front();
    }
    if limit > 0 && calls.len() >= limit as usize {
        return false;
    }
    calls.push_back(now);
    true
}

struct PlaidErr(Box<Response>);

impl IntoResponse for PlaidErr {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn request_id() -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..15).map(|_| B62[rng.gen_range(0..62)] as char).collect()
}

fn error(status: StatusCode, error_type: &str, code: &str, message: &str) -> PlaidErr {
    let body = PlaidError {
        error_type: error_type.to_string(),
        error_code: code.to_string(),
        error_message: message.to_string(),
        display_message: None,
        request_id: Some(request_id()),
        status: None,
    };
    PlaidErr(Box::new((status, axum::Json(body)).into_response()))
}

fn invalid_input(code: &str, message: &str) -> PlaidErr {
    error(StatusCode::BAD_REQUEST, "INVALID_INPUT", code, message)
}

fn invalid_request(code: &str, message: &str) -> PlaidErr {
    error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", code, message)
}

/// Add `request_id` to a success body.
fn ok(mut body: Value) -> Response {
    body["request_id"] = Value::String(request_id());
    axum::Json(body).into_response()
}

/// Check credentials (body or headers) and decode the request.
fn parse<T: DeserializeOwned>(
    sim: &Simulator,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, PlaidErr> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid_request(
            "INVALID_BODY",
            &format!("body could not be parsed as JSON: {e}"),
        )
    })?;
    let field = |name: &str, header: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                headers
                    .get(header)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .filter(|s| !s.is_empty())
    };
    let (id, secret) = (
        field("client_id", "plaid-client-id"),
        field("secret", "plaid-secret"),
    );
    let cfg = &sim.lock().config;
    let good = match (&id, &secret) {
        (Some(i), Some(s)) => {
            cfg.client_id.as_ref().is_none_or(|c| c == i)
                && cfg.secret.as_ref().is_none_or(|c| c == s)
        }
        _ => false,
    };
    if !good {
        return Err(invalid_input(
            "INVALID_API_KEYS",
            "invalid client_id or secret provided",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("missing field `") {
            Some(rest) => invalid_request(
                "MISSING_FIELDS",
                &format!(
                    "the following required fields are missing: {}",
                    rest.split('`').next().unwrap_or("")
                ),
            ),
            None => invalid_request("INVALID_FIELD", &text),
        }
    })
}

fn item_for_token(sim: &Simulator, token: &str) -> Result<String, PlaidErr> {
    let s = sim.lock();
    if s.removed_tokens.contains(token) {
        // A removed item's token: Plaid's docs allow ITEM_NOT_FOUND or INVALID_ACCESS_TOKEN;
        // the simulator answers ITEM_NOT_FOUND.
        return Err(error(
            StatusCode::BAD_REQUEST,
            "ITEM_ERROR",
            "ITEM_NOT_FOUND",
            "The Item you requested cannot be found. This Item does not exist, has been previously removed via /item/remove, or has had access removed by the user.",
        ));
    }
    s.tokens.get(token).cloned().ok_or_else(|| {
        invalid_input(
            "INVALID_ACCESS_TOKEN",
            "could not find matching access token",
        )
    })
}

/// The item behind a token, for endpoints that need a working login.
fn usable_item(sim: &Simulator, token: &str) -> Result<String, PlaidErr> {
    let item_id = item_for_token(sim, token)?;
    if sim
        .lock()
        .items
        .get(&item_id)
        .is_some_and(|i| i.login_required)
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "ITEM_ERROR",
            "ITEM_LOGIN_REQUIRED",
            super::LOGIN_REQUIRED_MESSAGE,
        ));
    }
    Ok(item_id)
}

async fn not_found() -> PlaidErr {
    invalid_request("NOT_FOUND", "not found")
}

async fn link_token_create(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: LinkTokenCreateRequest = parse(&sim, &headers, &body)?;
    if req.country_codes.is_empty() {
        return Err(invalid_request(
            "INVALID_FIELD",
            "country_codes must contain at least one country",
        ));
    }
    if req.user.is_none() && req.user_id.is_none() {
        return Err(invalid_request(
            "MISSING_FIELDS",
            "the following required fields are missing: user",
        ));
    }
    let update_mode = req.access_token.is_some();
    if let Some(t) = &req.access_token {
        item_for_token(&sim, t)?;
    } else if req.products.as_ref().is_none_or(|p| p.is_empty()) {
        return Err(invalid_request(
            "INVALID_FIELD",
            "at least one product is required",
        ));
    }
    let lifetime = if update_mode {
        Duration::minutes(30)
    } else {
        Duration::hours(4)
    };
    let link_token = format!("link-sandbox-{}", data::random_uuid());
    let expires = Utc::now() + lifetime;
    let item_id = match &req.access_token {
        Some(t) => Some(item_for_token(&sim, t)?),
        None => None,
    };
    sim.lock().link_tokens.insert(
        link_token.clone(),
        super::link::LinkSession {
            webhook: req.webhook.clone(),
            item_id,
            expires,
        },
    );
    Ok(ok(json!({
        "link_token": link_token,
        "expiration": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })))
}

async fn sandbox_public_token_create(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: SandboxPublicTokenCreateRequest = parse(&sim, &headers, &body)?;
    if data::institution(&req.institution_id).is_none() {
        return Err(invalid_input(
            "INVALID_INSTITUTION",
            "invalid institution_id provided",
        ));
    }
    if req.initial_products.is_empty() {
        return Err(invalid_request(
            "INVALID_FIELD",
            "initial_products must contain at least one product",
        ));
    }
    let webhook = req.options.and_then(|o| o.webhook);
    let item_id = sim.create_item(&req.institution_id, webhook);
    let token = format!("public-sandbox-{}", data::random_uuid());
    sim.lock().public_tokens.insert(token.clone(), item_id);
    Ok(ok(json!({ "public_token": token })))
}

async fn public_token_exchange(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: PublicTokenExchangeRequest = parse(&sim, &headers, &body)?;
    let mut s = sim.lock();
    let item_id = s.public_tokens.remove(&req.public_token).ok_or_else(|| {
        invalid_input(
            "INVALID_PUBLIC_TOKEN",
            "could not find matching public token",
        )
    })?;
    let token = s.items[&item_id].access_token.clone();
    Ok(ok(json!({ "access_token": token, "item_id": item_id })))
}

fn item_json(sim: &Simulator, item_id: &str) -> Value {
    let s = sim.lock();
    let item = &s.items[item_id];
    let inst = data::institution(&item.institution_id);
    serde_json::to_value(Item {
        item_id: item.item_id.clone(),
        institution_id: Some(item.institution_id.clone()),
        institution_name: inst.map(|i| i.name.to_string()),
        webhook: item.webhook.clone(),
        error: item.login_required.then(|| PlaidError {
            error_type: "ITEM_ERROR".into(),
            error_code: "ITEM_LOGIN_REQUIRED".into(),
            error_message: super::LOGIN_REQUIRED_MESSAGE.into(),
            display_message: None,
            request_id: None,
            status: None,
        }),
        available_products: vec!["balance".into(), "identity".into(), "investments".into()],
        billed_products: vec!["transactions".into()],
        consent_expiration_time: None,
        update_type: "background".into(),
    })
    .expect("items serialize")
}

async fn accounts_get(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: AccessTokenRequest = parse(&sim, &headers, &body)?;
    let item_id = usable_item(&sim, &req.access_token)?;
    let accounts = sim.accounts(&item_id).unwrap_or_default();
    Ok(ok(
        json!({ "accounts": accounts, "item": item_json(&sim, &item_id) }),
    ))
}

async fn item_get(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: AccessTokenRequest = parse(&sim, &headers, &body)?;
    let item_id = item_for_token(&sim, &req.access_token)?;
    Ok(ok(json!({ "item": item_json(&sim, &item_id) })))
}

/// `/item/webhook/update`: the item's new webhook URL (or none), then
/// `WEBHOOK_UPDATE_ACKNOWLEDGED` sent to the new URL.
async fn item_webhook_update(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    #[derive(serde::Deserialize)]
    struct Request {
        access_token: String,
        #[serde(default)]
        webhook: Option<String>,
    }
    let req: Request = parse(&sim, &headers, &body)?;
    let item_id = item_for_token(&sim, &req.access_token)?;
    if let Some(url) = &req.webhook
        && reqwest::Url::parse(url).is_err()
    {
        return Err(invalid_request(
            "INVALID_FIELD",
            "webhook must be a valid URL",
        ));
    }
    if let Some(item) = sim.lock().items.get_mut(&item_id) {
        item.webhook = req.webhook.clone();
    }
    if let Some(url) = req.webhook {
        let mut payload = webhook_payload("WEBHOOK_UPDATE_ACKNOWLEDGED", &item_id, 0);
        payload["new_webhook_url"] = serde_json::Value::String(url.clone());
        sim.send_webhook(url, payload);
    }
    Ok(ok(json!({ "item": item_json(&sim, &item_id) })))
}

async fn institutions_get_by_id(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: InstitutionsGetByIdRequest = parse(&sim, &headers, &body)?;
    let inst = data::institution(&req.institution_id)
        .ok_or_else(|| invalid_input("INVALID_INSTITUTION", "invalid institution_id provided"))?;
    Ok(ok(json!({ "institution": Institution {
        institution_id: inst.id.to_string(),
        name: inst.name.to_string(),
        products: vec!["assets".into(), "auth".into(), "balance".into(), "transactions".into(), "identity".into()],
        country_codes: vec!["US".into()],
        routing_numbers: vec![inst.routing.to_string()],
        oauth: false,
        connection_availability: Some("SUPPORTED".into()),
    }})))
}

async fn transactions_sync(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: TransactionsSyncRequest = parse(&sim, &headers, &body)?;
    let item_id = usable_item(&sim, &req.access_token)?;
    {
        let mut s = sim.lock();
        let limit = s.config.faults.per_item_limit;
        let item = s.items.get_mut(&item_id).expect("token maps to an item");
        if !within_limit(&mut item.sync_calls, limit) {
            return Err(sync_limit());
        }
    }
    let count = req.count.unwrap_or(100);
    if !(1..=500).contains(&count) {
        return Err(invalid_request(
            "INVALID_FIELD",
            "count must be between 1 and 500",
        ));
    }
    let v2 = match req
        .options
        .as_ref()
        .and_then(|o| o.personal_finance_category_version.as_deref())
    {
        None | Some("v1") => false,
        Some("v2") => true,
        Some(other) => {
            return Err(invalid_request(
                "INVALID_FIELD",
                &format!("options.personal_finance_category_version must be v1 or v2, not {other}"),
            ));
        }
    };
    let mutation_fault = {
        let mut s = sim.lock();
        let p = s.config.faults.mutation;
        let continuing = req
            .cursor
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c != "now");
        continuing && p > 0.0 && s.fault_rng.gen_bool(p)
    };
    let page = if mutation_fault {
        Err(CursorError::Mutation)
    } else {
        sim.sync_page(&item_id, req.cursor.as_deref(), count as usize, v2)
    };
    let page = page.map_err(|e| match e {
        CursorError::Invalid => invalid_request("INVALID_FIELD", "cursor not valid"),
        CursorError::Mutation => error(
            StatusCode::BAD_REQUEST,
            "TRANSACTIONS_ERROR",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
            "Underlying transaction data changed since last page was fetched. Please restart pagination from last update.",
        ),
    })?;
    let accounts = sim.accounts(&item_id).unwrap_or_default();
    // Typed, not a JSON tree, and written once into a buffer of about the right size:
    // pages are large and this is the hot path.
    #[derive(Serialize)]
    struct Body<'a> {
        transactions_update_status: &'a str,
        accounts: Vec<crate::plaid::types::AccountBase>,
        added: Vec<&'a Transaction>,
        modified: Vec<&'a Transaction>,
        removed: &'a [crate::plaid::types::RemovedTransaction],
        next_cursor: &'a str,
        has_more: bool,
        request_id: String,
    }
    let body = Body {
        transactions_update_status: page.status,
        accounts,
        added: page.added.iter().map(|t| &**t).collect(),
        modified: page.modified.iter().map(|t| &**t).collect(),
        removed: &page.removed,
        next_cursor: &page.next_cursor,
        has_more: page.has_more,
        request_id: request_id(),
    };
    let mut out = Vec::with_capacity(4096 + (body.added.len() + body.modified.len()) * 1200);
    serde_json::to_writer(&mut out, &body).expect("serialising to memory cannot fail");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

#[derive(Deserialize)]
struct AdvanceRequest {
    days: u32,
}

async fn sim_advance(State(sim): State<Simulator>, body: Bytes) -> Result<Response, PlaidErr> {
    let req: AdvanceRequest = serde_json::from_slice(&body)
        .map_err(|e| invalid_request("INVALID_BODY", &format!("expected {{\"days\": N}}: {e}")))?;
    if req.days > 3650 {
        return Err(invalid_request(
            "INVALID_FIELD",
            "days must be at most 3650",
        ));
    }
    let items = sim.advance(req.days);
    Ok(axum::Json(json!({ "today": sim.today(), "items": items })).into_response())
}

async fn item_remove(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: AccessTokenRequest = parse(&sim, &headers, &body)?;
    let item_id = item_for_token(&sim, &req.access_token)?;
    let mut s = sim.lock();
    s.items.remove(&item_id);
    s.tokens.remove(&req.access_token);
    s.removed_tokens.insert(req.access_token);
    Ok(ok(json!({})))
}

/// New activity now (like Plaid's `user_transactions_dynamic`): pending posts, new pending
/// arrive, a transaction is corrected; then the webhooks fire.
async fn transactions_refresh(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: AccessTokenRequest = parse(&sim, &headers, &body)?;
    let item_id = usable_item(&sim, &req.access_token)?;
    let changed = {
        let mut s = sim.lock();
        let today = s.today;
        let item = s.items.get_mut(&item_id).expect("token maps to an item");
        if !within_limit(&mut item.refresh_calls, 2) {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "TRANSACTIONS_REFRESH_LIMIT",
                "rate limit exceeded for attempts to access this item. please try again later",
            ));
        }
        item.advance_day(today) != super::AdvanceCounts::default()
    };
    if changed {
        sim.notify_changed(std::slice::from_ref(&item_id));
    }
    Ok(ok(json!({})))
}

#[derive(Deserialize)]
struct FireWebhookRequest {
    access_token: String,
    webhook_code: String,
    #[serde(default)]
    webhook_type: Option<String>,
}

async fn fire_webhook(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: FireWebhookRequest = parse(&sim, &headers, &body)?;
    let item_id = item_for_token(&sim, &req.access_token)?;
    // Plaid's list of codes this endpoint fires (PLAID-API.md §2.4).
    const CODES: &[&str] = &[
        "DEFAULT_UPDATE",
        "NEW_ACCOUNTS_AVAILABLE",
        "USER_PERMISSION_REVOKED",
        "USER_ACCOUNT_REVOKED",
        "PENDING_DISCONNECT",
        "LOGIN_REPAIRED",
        "SYNC_UPDATES_AVAILABLE",
        "ERROR",
    ];
    // Codes of products the simulator's items do not have.
    const OTHER_PRODUCTS: &[&str] = &[
        "SMS_MICRODEPOSITS_VERIFICATION",
        "AUTHORIZATION_GRANTED",
        "RECURRING_TRANSACTIONS_UPDATE",
        "PRODUCT_READY",
    ];
    if OTHER_PRODUCTS.contains(&req.webhook_code.as_str()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "SANDBOX_ERROR",
            "SANDBOX_PRODUCT_NOT_ENABLED",
            &format!(
                "the Item does not have the product that sends {}",
                req.webhook_code
            ),
        ));
    }
    if !CODES.contains(&req.webhook_code.as_str()) {
        return Err(invalid_request(
            "INVALID_FIELD",
            &format!(
                "webhook_code {} is not supported by the simulator",
                req.webhook_code
            ),
        ));
    }
    if let Some(t) = &req.webhook_type {
        let expected = if matches!(
            req.webhook_code.as_str(),
            "DEFAULT_UPDATE" | "SYNC_UPDATES_AVAILABLE"
        ) {
            "TRANSACTIONS"
        } else {
            "ITEM"
        };
        if t != expected {
            return Err(invalid_request(
                "INVALID_FIELD",
                &format!(
                    "webhook_code {} belongs to webhook_type {expected}",
                    req.webhook_code
                ),
            ));
        }
    }
    let url = sim
        .lock()
        .items
        .get(&item_id)
        .and_then(|i| i.webhook.clone());
    let Some(url) = url else {
        return Err(invalid_request(
            "INVALID_FIELD",
            "the Item has no webhook URL; set options.webhook in /sandbox/public_token/create",
        ));
    };
    sim.send_webhook(url, webhook_payload(&req.webhook_code, &item_id, 0));
    Ok(ok(json!({ "webhook_fired": true })))
}

async fn reset_login(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: AccessTokenRequest = parse(&sim, &headers, &body)?;
    let item_id = item_for_token(&sim, &req.access_token)?;
    sim.reset_login(&item_id);
    Ok(ok(json!({ "reset_login": true })))
}

#[derive(Deserialize)]
struct KeyRequest {
    key_id: String,
}

async fn verification_key_get(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: KeyRequest = parse(&sim, &headers, &body)?;
    let s = sim.lock();
    if let Some(retired) = s.retired_keys.get(&req.key_id) {
        let key = retired.clone();
        drop(s);
        return Ok(ok(json!({ "key": key })));
    }
    if req.key_id != s.signer.kid {
        return Err(invalid_input(
            "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
            "invalid key_id provided. note that key_ids are specific to Plaid environments, and verification requests must be made to the same environment that the webhook was sent from",
        ));
    }
    let key = s.signer.jwk().clone();
    drop(s);
    Ok(ok(json!({ "key": key })))
}

/// Rotate the webhook signing key (the old one is served with `expired_at`).
async fn sim_rotate_key(State(sim): State<Simulator>) -> axum::Json<Value> {
    axum::Json(json!({ "kid": sim.rotate_webhook_key() }))
}

/// A payload signed as the simulator signs webhooks: `{"body", "jwt"}` (for load tests that
/// send them themselves).
async fn sim_sign(State(sim): State<Simulator>, body: Bytes) -> Result<Response, PlaidErr> {
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|e| invalid_request("INVALID_BODY", &format!("expected a JSON payload: {e}")))?;
    let (body, jwt) = sim.sign_webhook(&payload);
    Ok(axum::Json(json!({ "body": body, "jwt": jwt })).into_response())
}

/// Every webhook delivery attempt so far.
async fn sim_deliveries(State(sim): State<Simulator>) -> axum::Json<Value> {
    axum::Json(json!({ "deliveries": sim.deliveries() }))
}

async fn sim_faults_get(State(sim): State<Simulator>) -> axum::Json<Faults> {
    axum::Json(sim.faults())
}

async fn sim_faults_set(State(sim): State<Simulator>, body: Bytes) -> Result<Response, PlaidErr> {
    let faults: Faults = serde_json::from_slice(&body)
        .map_err(|e| invalid_request("INVALID_BODY", &e.to_string()))?;
    faults
        .validate()
        .map_err(|e| invalid_request("INVALID_FIELD", &e))?;
    sim.set_faults(faults.clone());
    Ok(axum::Json(faults).into_response())
}

#[derive(Deserialize)]
struct ChurnRequest {
    changes: usize,
}

/// Exactly `changes` updates for one item now (new pending, postings, corrections, removals).
async fn sim_churn(
    State(sim): State<Simulator>,
    Path(item_id): Path<String>,
    body: Bytes,
) -> Result<Response, PlaidErr> {
    let req: ChurnRequest = serde_json::from_slice(&body).map_err(|e| {
        invalid_request("INVALID_BODY", &format!("expected {{\"changes\": N}}: {e}"))
    })?;
    let counts = sim.churn(&item_id, req.changes).ok_or_else(unknown_item)?;
    sim.notify_changed(std::slice::from_ref(&item_id));
    Ok(axum::Json(counts).into_response())
}

async fn sim_repair(
    State(sim): State<Simulator>,
    Path(item_id): Path<String>,
) -> Result<Response, PlaidErr> {
    if !sim.repair_login(&item_id) {
        return Err(unknown_item());
    }
    Ok(axum::Json(json!({ "repaired": true })).into_response())
}

#[derive(Deserialize)]
struct TruthQuery {
    pfc: Option<String>,
}

async fn sim_ground_truth(
    State(sim): State<Simulator>,
    Path(item_id): Path<String>,
    Query(q): Query<TruthQuery>,
) -> Result<Response, PlaidErr> {
    let v2 = q.pfc.as_deref() != Some("v1");
    let txns = sim.ground_truth(&item_id).ok_or_else(unknown_item)?;
    let txns: Vec<Arc<Transaction>> = txns
        .into_iter()
        .map(|t| with_pfc_version(&Arc::new(t), v2))
        .collect();
    Ok(axum::Json(json!({ "item_id": item_id, "transactions": txns })).into_response())
}

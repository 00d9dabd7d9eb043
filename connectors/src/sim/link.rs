//! The simulator's Plaid Link stand-in, for pages that open Link in a browser.
//!
//! `GET /link/v2/stable/link-initialize.js` is the stand-in for Plaid's script of the same
//! path (`Plaid.create`, `open`, `onSuccess`, `onExit`, `onEvent`); it opens `GET /link/ui`
//! in an iframe: choose an institution, log in (`user_good` / `pass_good`, as in Plaid's
//! Sandbox), and the page receives a public token and Plaid's `onSuccess` metadata. A link
//! token from `/link/token/create` opens one session; in update mode (a token made with an
//! `access_token`) the login repairs that item.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Simulator, data};

const SCRIPT: &str = include_str!("link/link-initialize.js");
const PAGE: &str = include_str!("link/ui.html");

/// Plaid Sandbox's credentials that log in.
pub const GOOD_USERNAME: &str = "user_good";
pub const GOOD_PASSWORD: &str = "pass_good";

/// What a link token opens.
#[derive(Debug, Clone)]
pub(crate) struct LinkSession {
    pub webhook: Option<String>,
    /// Update mode: the item whose login is repaired.
    pub item_id: Option<String>,
    pub expires: DateTime<Utc>,
}

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/link/v2/stable/link-initialize.js", get(script))
        .route("/link/ui", get(page))
        .route("/link/ui/login", post(login))
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

fn institution_json(id: &str) -> Value {
    match data::institution(id) {
        Some(i) => json!({ "institution_id": i.id, "name": i.name }),
        None => Value::Null,
    }
}

/// Plaid's error for a link token it does not know or that expired.
fn token_error(expired: bool) -> Value {
    if expired {
        json!({ "error_type": "INVALID_INPUT", "error_code": "INVALID_LINK_TOKEN",
                "error_message": "link token has expired",
                "display_message": "This link has expired: start again from the page that opened it." })
    } else {
        json!({ "error_type": "INVALID_INPUT", "error_code": "INVALID_LINK_TOKEN",
                "error_message": "provided link token is in an invalid format or is not valid",
                "display_message": "This link is not valid: start again from the page that opened it." })
    }
}

impl Simulator {
    /// The session a link token opens, or Plaid's error for it.
    fn link_session(&self, token: &str) -> Result<LinkSession, Value> {
        let s = self.lock();
        match s.link_tokens.get(token) {
            None => Err(token_error(false)),
            Some(session) if session.expires <= Utc::now() => Err(token_error(true)),
            Some(session) => Ok(session.clone()),
        }
    }
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    token: String,
}

async fn page(State(sim): State<Simulator>, Query(q): Query<PageQuery>) -> Response {
    let link_session_id = data::random_uuid();
    let session = match sim.link_session(&q.token) {
        Ok(session) => {
            let institution = session
                .item_id
                .as_ref()
                .and_then(|item| {
                    sim.lock()
                        .items
                        .get(item)
                        .map(|i| i.spec.institution_id.clone())
                })
                .map(|id| institution_json(&id))
                .unwrap_or(Value::Null);
            let institutions: Vec<Value> = data::INSTITUTIONS
                .iter()
                .map(|i| institution_json(i.id))
                .collect();
            json!({ "link_token": q.token, "link_session_id": link_session_id,
                    "institution": institution, "institutions": institutions })
        }
        Err(error) => json!({ "link_session_id": link_session_id, "error": error,
                              "institution": null, "institutions": [] }),
    };
    // JSON inside <script>: "</" would end the element.
    let embedded = serde_json::to_string(&session)
        .expect("json")
        .replace("</", "<\\/");
    let html = PAGE.replace(
        "<!--SESSION-->",
        &format!(r#"<script id="session" type="application/json">{embedded}</script>"#),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Login {
    link_token: String,
    #[serde(default)]
    link_session_id: String,
    institution_id: String,
    username: String,
    password: String,
}

async fn login(State(sim): State<Simulator>, body: Bytes) -> Response {
    let fail = |status: StatusCode, error: Value| (status, axum::Json(error)).into_response();
    let Ok(req) = serde_json::from_slice::<Login>(&body) else {
        return fail(
            StatusCode::BAD_REQUEST,
            json!({ "error_type": "INVALID_REQUEST", "error_code": "INVALID_BODY",
                    "error_message": "the request body is not the login form" }),
        );
    };
    let session = match sim.link_session(&req.link_token) {
        Ok(s) => s,
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
    };
    if data::institution(&req.institution_id).is_none() {
        return fail(
            StatusCode::BAD_REQUEST,
            json!({ "error_type": "INVALID_INPUT", "error_code": "INVALID_INSTITUTION",
                    "error_message": "invalid institution_id provided",
                    "display_message": "Choose an institution from the list." }),
        );
    }
    if req.username != GOOD_USERNAME || req.password != GOOD_PASSWORD {
        return fail(
            StatusCode::BAD_REQUEST,
            json!({ "error_type": "ITEM_ERROR", "error_code": "INVALID_CREDENTIALS",
                    "error_message": "the provided credentials were not correct",
                    "display_message": "The credentials you provided were incorrect. Check that your credentials are the same that you use for this institution." }),
        );
    }
    let item_id = match &session.item_id {
        // Update mode: the same item, its login working again.
        Some(item) => {
            sim.repair_login(item);
            item.clone()
        }
        None => sim.create_item(&req.institution_id, session.webhook.clone()),
    };
    let public_token = format!("public-sandbox-{}", data::random_uuid());
    let accounts: Vec<Value> = sim
        .accounts(&item_id)
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            json!({ "id": a.account_id, "name": a.name, "mask": a.mask, "type": a.account_type,
                    "subtype": a.subtype, "verification_status": null, "class_type": null })
        })
        .collect();
    let mut s = sim.lock();
    s.public_tokens.insert(public_token.clone(), item_id);
    // A link token opens one session.
    s.link_tokens.remove(&req.link_token);
    let metadata = json!({
        "institution": institution_json(&req.institution_id),
        "accounts": accounts,
        "link_session_id": req.link_session_id,
        "transfer_status": null,
        "public_token": public_token,
    });
    axum::Json(json!({ "public_token": public_token, "metadata": metadata })).into_response()
}

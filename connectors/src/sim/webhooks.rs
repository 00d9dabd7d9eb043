//! Webhooks as Plaid sends them: a 2-space-indented JSON body, signed with an ES256 JWT in
//! the `Plaid-Verification` header whose payload carries `iat` and the body's SHA-256 (lower
//! hex). The public key is served as a JWK by `/webhook_verification_key/get`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};

pub struct WebhookSigner {
    pub kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl WebhookSigner {
    pub fn new(rng: &mut ChaCha8Rng) -> Self {
        let signing = SigningKey::random(rng);
        let der = signing
            .to_pkcs8_der()
            .expect("a fresh P-256 key encodes as PKCS#8");
        let point = signing.verifying_key().to_encoded_point(false);
        let kid = super::data::uuid_like(rng);
        let jwk = json!({
            "alg": "ES256",
            "created_at": chrono::Utc::now().timestamp(),
            "crv": "P-256",
            "expired_at": null,
            "kid": kid,
            "kty": "EC",
            "use": "sig",
            "x": B64URL.encode(point.x().expect("uncompressed point has x")),
            "y": B64URL.encode(point.y().expect("uncompressed point has y")),
        });
        WebhookSigner {
            key: EncodingKey::from_ec_der(der.as_bytes()),
            kid,
            jwk,
        }
    }

    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The exact body bytes and the `Plaid-Verification` header value for a payload.
    pub fn sign(&self, payload: &Value) -> (String, String) {
        self.sign_at(payload, chrono::Utc::now().timestamp())
    }

    /// [`Self::sign`] with a given `iat` (Unix seconds).
    pub fn sign_at(&self, payload: &Value, iat: i64) -> (String, String) {
        let body = pretty_2_spaces(payload);
        let jwt = self.sign_body_at(&body, iat);
        (body, jwt)
    }

    /// The `Plaid-Verification` header value for these exact body bytes.
    pub fn sign_body_at(&self, body: &str, iat: i64) -> String {
        let hex = crate::plaid::webhook::body_sha256(body.as_bytes());
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        #[derive(Serialize)]
        struct Claims {
            iat: i64,
            request_body_sha256: String,
        }
        let claims = Claims {
            iat,
            request_body_sha256: hex,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).expect("ES256 signing works")
    }
}

/// Plaid's webhook bodies are pretty-printed with two-space indentation.
pub fn pretty_2_spaces(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialize")
}

/// How many times Plaid retries a webhook the receiver did not take: after 30 s, 2 min,
/// 8 min, 32 min, 2 h 8 min and 8 h 32 min (the next, 34 h later, would pass 24 hours).
pub const DELIVERY_RETRIES: u32 = 6;

/// One attempt to deliver a webhook, as the simulator recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub url: String,
    pub webhook_code: String,
    pub item_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's HTTP status; `None` when it did not answer within 10 s.
    pub status: Option<u16>,
    /// When the attempt was sent (signed, the request on its way).
    pub sent_at: chrono::DateTime<chrono::Utc>,
    /// When it ended: the answer, or the give-up.
    pub at: chrono::DateTime<chrono::Utc>,
}

impl WebhookSigner {
    /// This key as `/webhook_verification_key/get` serves it once rotated out: with
    /// `expired_at`.
    pub fn expired_jwk(&self, at: i64) -> Value {
        let mut jwk = self.jwk.clone();
        jwk["expired_at"] = json!(at);
        jwk
    }
}

impl super::Simulator {
    /// Send a webhook (in the background) as Plaid does: signed afresh at each attempt,
    /// retried on any answer but 200 or none within 10 s, after the first retry delay (30 s, or the test's
    /// `SimConfig::webhook_retry`) times 4 for each further attempt, [`DELIVERY_RETRIES`]
    /// times at most. Every attempt is recorded ([`super::Simulator::deliveries`]).
    pub fn send_webhook(&self, url: String, payload: Value) {
        let sim = self.clone();
        tokio::spawn(async move {
            let first_delay = sim.lock().config.webhook_retry;
            let code = payload["webhook_code"].as_str().unwrap_or("").to_string();
            let item_id = payload["item_id"].as_str().unwrap_or("").to_string();
            let client = reqwest::Client::new();
            for attempt in 1..=DELIVERY_RETRIES + 1 {
                let (body, jwt) = sim.sign_webhook(&payload);
                let sent_at = chrono::Utc::now();
                let result = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("Plaid-Verification", jwt)
                    .body(body)
                    .timeout(std::time::Duration::from_secs(10))
                    .send()
                    .await;
                let status = result.as_ref().ok().map(|r| r.status().as_u16());
                sim.lock().deliveries.push(Delivery {
                    url: url.clone(),
                    webhook_code: code.clone(),
                    item_id: item_id.clone(),
                    attempt,
                    status,
                    sent_at,
                    at: chrono::Utc::now(),
                });
                match result {
                    // Plaid retries on anything but 200 (PLAID-API.md §5).
                    Ok(r) if r.status() == reqwest::StatusCode::OK => return,
                    Ok(r) => {
                        tracing::warn!(%url, status = %r.status(), attempt, "webhook receiver refused the webhook")
                    }
                    Err(e) => tracing::warn!(%url, error = %e, attempt, "webhook delivery failed"),
                }
                if attempt <= DELIVERY_RETRIES {
                    tokio::time::sleep(first_delay * 4u32.pow(attempt - 1)).await;
                }
            }
        });
    }
}

/// Plaid's `error_message` for `ITEM_LOGIN_REQUIRED`.
pub const LOGIN_REQUIRED_MESSAGE: &str = "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information. use Link's update mode to restore the item to a good state";

/// Plaid's webhook payloads for the codes the simulator sends.
pub fn webhook_payload(code: &str, item_id: &str, new_transactions: u64) -> serde_json::Value {
    use serde_json::json;
    let error = |code: &str, message: &str| {
        json!({ "error_type": "ITEM_ERROR", "error_code": code, "error_message": message,
                "display_message": null, "status": 400 })
    };
    match code {
        "SYNC_UPDATES_AVAILABLE" => json!({
            "webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": item_id,
            "initial_update_complete": true, "historical_update_complete": true, "environment": "sandbox"
        }),
        "DEFAULT_UPDATE" => json!({
            "webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": item_id,
            "new_transactions": new_transactions, "error": null, "environment": "sandbox"
        }),
        "ERROR" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "error": error("ITEM_LOGIN_REQUIRED", LOGIN_REQUIRED_MESSAGE),
            "environment": "sandbox"
        }),
        "USER_PERMISSION_REVOKED" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "error": error("USER_PERMISSION_REVOKED", "the holder of this account has revoked their permission for your application to access it"),
            "environment": "sandbox"
        }),
        "PENDING_DISCONNECT" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "reason": "INSTITUTION_MIGRATION", "environment": "sandbox"
        }),
        "PENDING_EXPIRATION" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "consent_expiration_time": (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "environment": "sandbox"
        }),
        other => json!({
            "webhook_type": "ITEM", "webhook_code": other, "item_id": item_id, "error": null, "environment": "sandbox"
        }),
    }
}

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
        let body = pretty_2_spaces(payload);
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
            iat: chrono::Utc::now().timestamp(),
            request_body_sha256: hex,
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).expect("ES256 signing works");
        (body, jwt)
    }
}

/// Plaid's webhook bodies are pretty-printed with two-space indentation.
pub fn pretty_2_spaces(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialize")
}

/// POST a signed webhook; failures are logged, not retried.
pub fn deliver(url: String, body: String, jwt: String) {
    tokio::spawn(async move {
        let result = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("Plaid-Verification", jwt)
            .body(body)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(%url, status = %r.status(), "webhook receiver refused the webhook")
            }
            Err(e) => tracing::warn!(%url, error = %e, "webhook delivery failed"),
        }
    });
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

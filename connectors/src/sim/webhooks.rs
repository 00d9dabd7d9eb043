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
use sha2::{Digest, Sha256};

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
        let digest = Sha256::digest(body.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
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

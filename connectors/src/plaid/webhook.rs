//! Verifying a Plaid webhook, exactly as Plaid prescribes (`PLAID-API.md` §6):
//!
//! 1. The `Plaid-Verification` header is a compact JWT whose header must say
//!    `alg: ES256`; anything else is refused before any key is looked at. Keys named in the
//!    token (`jwk`, `jku`, `x5u`) are never used: only `kid`.
//! 2. The key comes from `/webhook_verification_key/get` by `kid`, is cached, and is
//!    fetched for an unknown `kid`: one lookup at a time, a `kid` Plaid does not know at
//!    most once a minute, and at most ten unknown `kid`s a minute in all, so a flood of
//!    forged tokens cannot turn into a flood of calls to Plaid (webhooks whose key is
//!    cached never wait for a lookup). A key is not used past its `expired_at`. When a new
//!    `kid` appears (Plaid rotating its key), the cached keys without an `expired_at` are
//!    fetched again so that the old key's expiry is seen at once; any cached key is also
//!    refreshed after an hour.
//! 3. The signature is checked (ECDSA P-256, SHA-256), then `iat`: no older than five
//!    minutes (and not from the future, beyond a minute of clock skew).
//! 4. The SHA-256 of the exact body bytes, in lowercase hex, is compared in constant time
//!    with the token's `request_body_sha256`.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::client::{PlaidApiError, PlaidClient};

/// The oldest webhook accepted, by its `iat`.
pub const MAX_AGE_SECS: i64 = 5 * 60;
/// How far in the future an `iat` may be (clock skew).
const MAX_SKEW_SECS: i64 = 60;
/// How often a `kid` Plaid does not know may be looked up again.
const LOOKUP_EVERY: Duration = Duration::from_secs(60);
/// How many `kid`s not in the cache may be looked up per [`LOOKUP_EVERY`], in all.
const LOOKUPS_PER_MINUTE: usize = 10;
/// How long a fetched key is used before it is fetched again.
const REFRESH_AFTER: Duration = Duration::from_secs(3600);

/// Plaid's webhook verification key (a JWK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub alg: String,
    pub crv: String,
    pub kid: String,
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub x: String,
    pub y: String,
    pub created_at: i64,
    pub expired_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the request has no Plaid-Verification header")]
    MissingHeader,
    #[error("the Plaid-Verification header is not a JWT: {0}")]
    Malformed(String),
    #[error("the webhook's token is signed with {0:?}, not ES256")]
    Algorithm(String),
    #[error("Plaid does not know the webhook's verification key {0}")]
    UnknownKey(String),
    #[error("the verification key {0} was looked up less than a minute ago and not found")]
    Throttled(String),
    #[error(
        "the verification key {0} is not cached and {LOOKUPS_PER_MINUTE} unknown keys were looked up in the last minute"
    )]
    TooManyLookups(String),
    #[error("fetching the verification key {kid} from Plaid failed: {message}")]
    KeyFetch { kid: String, message: String },
    #[error("the verification key {0} is not a P-256 ES256 signing key")]
    BadKey(String),
    #[error("the verification key {0} has expired")]
    KeyExpired(String),
    #[error("the webhook's signature does not match Plaid's key")]
    Signature,
    #[error("the webhook was signed {0} s ago, more than five minutes")]
    Stale(i64),
    #[error("the webhook claims to be signed {0} s in the future")]
    FromTheFuture(i64),
    #[error("the body's SHA-256 is not the one Plaid signed")]
    BodyMismatch,
}

impl VerifyError {
    /// Failures of finq's own (fetching the key), not of the webhook: worth a retry by
    /// Plaid rather than a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            VerifyError::KeyFetch { .. } | VerifyError::TooManyLookups(_)
        )
    }
}

/// Where verification keys come from: `/webhook_verification_key/get` of a Plaid
/// environment. `Ok(None)` when the environment does not know the `kid`.
pub trait KeySource: Send + Sync {
    fn fetch(&self, kid: &str) -> impl Future<Output = Result<Option<Jwk>, String>> + Send;
}

impl KeySource for PlaidClient {
    async fn fetch(&self, kid: &str) -> Result<Option<Jwk>, String> {
        #[derive(Serialize)]
        struct Request<'a> {
            key_id: &'a str,
        }
        #[derive(Deserialize)]
        struct Response {
            key: Jwk,
        }
        let r: Result<Response, PlaidApiError> = self
            .call("/webhook_verification_key/get", &Request { key_id: kid })
            .await;
        match r {
            Ok(r) => Ok(Some(r.key)),
            Err(e) if e.code() == Some("INVALID_WEBHOOK_VERIFICATION_KEY_ID") => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Several environments (keys are per environment): the first that knows the `kid`.
impl<S: KeySource> KeySource for Vec<S> {
    async fn fetch(&self, kid: &str) -> Result<Option<Jwk>, String> {
        let mut first_error = None;
        for source in self {
            match source.fetch(kid).await {
                Ok(Some(key)) => return Ok(Some(key)),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}

/// The verification keys of the Plaid environments finq's items live in (keys are per
/// environment): each environment is asked through the client of one of its items.
pub struct ItemEnvironments {
    pool: sqlx::PgPool,
    connections: tokio::sync::Mutex<super::connect::Connections>,
}

impl ItemEnvironments {
    pub fn new(pool: sqlx::PgPool, settings: &finq_core::config::Settings) -> Self {
        ItemEnvironments {
            pool,
            connections: tokio::sync::Mutex::new(super::connect::Connections::new(settings)),
        }
    }

    /// Stop the in-process simulator, if a key lookup started one.
    pub async fn stop(self) {
        self.connections.into_inner().stop().await
    }
}

impl KeySource for ItemEnvironments {
    async fn fetch(&self, kid: &str) -> Result<Option<Jwk>, String> {
        let items = super::items::list(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let mut seen = std::collections::HashSet::new();
        let mut clients = Vec::new();
        let mut connections = self.connections.lock().await;
        for item in items.iter().filter(|i| seen.insert(i.environment.clone())) {
            clients.push(
                connections
                    .client_for(item)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        clients.fetch(kid).await
    }
}

struct Cached {
    key: Key,
    fetched: Instant,
}

/// A verification key ready for use: when it expires, and its public point (SEC1,
/// uncompressed: 0x04 ‖ x ‖ y).
#[derive(Clone)]
struct Key {
    expired_at: Option<i64>,
    point: Vec<u8>,
}

impl Key {
    fn from_jwk(jwk: &Jwk) -> Option<Key> {
        let (x, y) = (B64URL.decode(&jwk.x).ok()?, B64URL.decode(&jwk.y).ok()?);
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Some(Key {
            expired_at: jwk.expired_at,
            point,
        })
    }
}

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    request_body_sha256: String,
}

/// Verifies webhooks against the keys of `S`, caching them.
pub struct WebhookVerifier<S> {
    source: S,
    /// Held only to read or write the map, never across a lookup.
    keys: std::sync::Mutex<HashMap<String, Cached>>,
    /// Lookups at Plaid, one at a time.
    lookups: tokio::sync::Mutex<Lookups>,
}

#[derive(Default)]
struct Lookups {
    /// When each `kid` Plaid did not know was looked up (the last minute's only).
    missing: HashMap<String, Instant>,
    /// When the last minute's lookups of `kid`s not in the cache happened.
    recent: std::collections::VecDeque<Instant>,
}

impl<S: KeySource> WebhookVerifier<S> {
    pub fn new(source: S) -> Self {
        WebhookVerifier {
            source,
            keys: std::sync::Mutex::new(HashMap::new()),
            lookups: tokio::sync::Mutex::new(Lookups::default()),
        }
    }

    /// Verify a webhook: its `Plaid-Verification` header and its exact body bytes.
    pub async fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), VerifyError> {
        self.verify_at(header, body, chrono::Utc::now().timestamp())
            .await
    }

    /// [`WebhookVerifier::verify`] with the current time given (Unix seconds).
    pub async fn verify_at(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let token = header.ok_or(VerifyError::MissingHeader)?.trim();
        let kid = key_id(token)?;
        let key = self.key(&kid).await?;
        if key.expired_at.is_some_and(|t| t <= now) {
            return Err(VerifyError::KeyExpired(kid));
        }
        // The signature (ES256: P-256 ECDSA over SHA-256, r ‖ s) over "header.payload",
        // checked with ring before anything in the payload is read.
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| VerifyError::Malformed("not three dot-separated parts".into()))?;
        let signature = B64URL
            .decode(signature)
            .map_err(|_| VerifyError::Malformed("the signature is not base64url".into()))?;
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &key.point,
        )
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| VerifyError::Signature)?;
        let payload = signed.split_once('.').map(|(_, p)| p).unwrap_or("");
        let claims: Claims = B64URL
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                VerifyError::Malformed("the payload is not the claims Plaid signs".into())
            })?;
        let age = now - claims.iat;
        if age > MAX_AGE_SECS {
            return Err(VerifyError::Stale(age));
        }
        if age < -MAX_SKEW_SECS {
            return Err(VerifyError::FromTheFuture(-age));
        }
        let hex = body_sha256(body);
        if !bool::from(hex.as_bytes().ct_eq(claims.request_body_sha256.as_bytes())) {
            return Err(VerifyError::BodyMismatch);
        }
        Ok(())
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cache a key just fetched.
    fn remember(&self, kid: String, key: Key) {
        self.cached().insert(
            kid,
            Cached {
                key,
                fetched: Instant::now(),
            },
        );
    }

    /// The cached key for `kid`, if it is not due for a refresh.
    fn fresh(&self, kid: &str) -> Option<Key> {
        self.cached()
            .get(kid)
            .filter(|c| c.fetched.elapsed() < REFRESH_AFTER)
            .map(|c| c.key.clone())
    }

    /// The key for `kid`: cached, or fetched (and checked to be an ES256 P-256 key).
    async fn key(&self, kid: &str) -> Result<Key, VerifyError> {
        if let Some(key) = self.fresh(kid) {
            return Ok(key);
        }
        let mut lookups = self.lookups.lock().await;
        // Fetched while this one waited its turn?
        if let Some(key) = self.fresh(kid) {
            return Ok(key);
        }
        let stale = self.cached().get(kid).map(|c| c.key.clone());
        if stale.is_none() {
            lookups.missing.retain(|_, t| t.elapsed() < LOOKUP_EVERY);
            if lookups.missing.contains_key(kid) {
                return Err(VerifyError::Throttled(kid.to_string()));
            }
            while lookups
                .recent
                .front()
                .is_some_and(|t| t.elapsed() >= LOOKUP_EVERY)
            {
                lookups.recent.pop_front();
            }
            if lookups.recent.len() >= LOOKUPS_PER_MINUTE {
                return Err(VerifyError::TooManyLookups(kid.to_string()));
            }
            lookups.recent.push_back(Instant::now());
        }
        let fetched = match self.source.fetch(kid).await {
            Ok(k) => k,
            // A refresh that fails leaves the cached key in use.
            Err(message) => {
                return stale.ok_or_else(|| VerifyError::KeyFetch {
                    kid: kid.to_string(),
                    message,
                });
            }
        };
        let Some(jwk) = fetched else {
            self.cached().remove(kid);
            lookups.missing.insert(kid.to_string(), Instant::now());
            return Err(VerifyError::UnknownKey(kid.to_string()));
        };
        let key = usable(kid, &jwk)?;
        self.remember(kid.to_string(), key.clone());
        if stale.is_none() {
            self.refresh_unexpired(kid).await;
        }
        Ok(key)
    }

    /// A new `kid` may mean Plaid rotated its key: fetch the other cached keys that had no
    /// `expired_at`, so that an old key's expiry is seen now rather than at its hourly
    /// refresh. A key Plaid no longer knows is dropped; one it cannot be asked about now is
    /// kept.
    async fn refresh_unexpired(&self, new_kid: &str) {
        let kids: Vec<String> = self
            .cached()
            .iter()
            .filter(|(k, c)| k.as_str() != new_kid && c.key.expired_at.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        for kid in kids {
            match self.source.fetch(&kid).await {
                Ok(Some(jwk)) => match usable(&kid, &jwk) {
                    Ok(key) => self.remember(kid, key),
                    Err(_) => {
                        self.cached().remove(&kid);
                    }
                },
                Ok(None) => {
                    self.cached().remove(&kid);
                }
                Err(e) => tracing::warn!(%kid, error = %e, "could not refresh a verification key"),
            }
        }
    }
}

/// A fetched JWK as a key, if it is the P-256 ES256 key asked for.
fn usable(kid: &str, jwk: &Jwk) -> Result<Key, VerifyError> {
    if jwk.kid != kid || jwk.kty != "EC" || jwk.crv != "P-256" || jwk.alg != "ES256" {
        return Err(VerifyError::BadKey(kid.to_string()));
    }
    Key::from_jwk(jwk).ok_or_else(|| VerifyError::BadKey(kid.to_string()))
}

/// The SHA-256 of a webhook's exact body bytes in lowercase hex, as Plaid signs it
/// (`request_body_sha256`).
pub fn body_sha256(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(body) {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

/// The `kid` of a token whose header says `alg: ES256`; the header is read without
/// trusting anything else in it.
fn key_id(token: &str) -> Result<String, VerifyError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed(
            "not three dot-separated parts".into(),
        ));
    };
    let bytes = B64URL
        .decode(header)
        .map_err(|_| VerifyError::Malformed("the header is not base64url".into()))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| VerifyError::Malformed("the header is not JSON".into()))?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("ES256") => {}
        Some(other) => return Err(VerifyError::Algorithm(other.to_string())),
        None => return Err(VerifyError::Algorithm(String::new())),
    }
    header
        .get("kid")
        .and_then(|k| k.as_str())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| VerifyError::Malformed("the header has no kid".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePrivateKey;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NOW: i64 = 1_800_000_000;
    const BODY: &[u8] = b"{\n  \"webhook_code\": \"SYNC_UPDATES_AVAILABLE\"\n}";

    struct Key {
        encoding: EncodingKey,
        jwk: Jwk,
    }

    fn key(seed: u64, kid: &str) -> Key {
        let signing = SigningKey::random(&mut ChaCha8Rng::seed_from_u64(seed));
        let der = signing.to_pkcs8_der().unwrap();
        let point = signing.verifying_key().to_encoded_point(false);
        Key {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: Jwk {
                alg: "ES256".into(),
                crv: "P-256".into(),
                kid: kid.into(),
                kty: "EC".into(),
                use_: "sig".into(),
                x: B64URL.encode(point.x().unwrap()),
                y: B64URL.encode(point.y().unwrap()),
                created_at: NOW - 1000,
                expired_at: None,
            },
        }
    }

    fn token(key: &Key, iat: i64, body: &[u8]) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.jwk.kid.clone());
        let claims = serde_json::json!({ "iat": iat, "request_body_sha256": body_sha256(body) });
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    }

    /// Keys by kid, counting lookups; a lookup of `held` waits for `release`.
    #[derive(Default)]
    struct Keys {
        keys: std::sync::Mutex<Vec<Jwk>>,
        lookups: AtomicUsize,
        down: bool,
        held: Option<String>,
        release: tokio::sync::Notify,
    }

    impl KeySource for Keys {
        async fn fetch(&self, kid: &str) -> Result<Option<Jwk>, String> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            if self.held.as_deref() == Some(kid) {
                self.release.notified().await;
            }
            if self.down {
                return Err("connection refused".into());
            }
            Ok(self
                .keys
                .lock()
                .unwrap()
                .iter()
                .find(|k| k.kid == kid)
                .cloned())
        }
    }

    fn verifier(keys: Vec<Jwk>) -> WebhookVerifier<Keys> {
        WebhookVerifier::new(Keys {
            keys: std::sync::Mutex::new(keys),
            ..Default::default()
        })
    }

    #[test]
    fn body_digests_are_lowercase_hex_sha256() {
        assert_eq!(
            body_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(body_sha256(b"").len(), 64);
    }

    #[tokio::test]
    async fn a_webhook_signed_by_plaid_passes_and_its_key_is_cached() {
        let k = key(1, "kid-1");
        let v = verifier(vec![k.jwk.clone()]);
        for _ in 0..3 {
            v.verify_at(Some(&token(&k, NOW - 10, BODY)), BODY, NOW)
                .await
                .unwrap();
        }
        assert_eq!(v.source.lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn other_algorithms_are_refused_before_any_key_is_looked_at() {
        let k = key(1, "kid-1");
        let v = verifier(vec![k.jwk.clone()]);
        let claims = serde_json::json!({ "iat": NOW, "request_body_sha256": body_sha256(BODY) });
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("kid-1".into());
        let hs256 =
            jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(b"guess")).unwrap();
        let none = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none","kid":"kid-1"}"#),
            B64URL.encode(claims.to_string())
        );
        // A key carried in the token itself is not used either.
        let embedded = format!(
            "{}.{}.sig",
            B64URL.encode(
                serde_json::json!({"alg": "RS256", "kid": "kid-1", "jwk": k.jwk}).to_string()
            ),
            B64URL.encode(claims.to_string())
        );
        for t in [hs256, none, embedded] {
            let e = v.verify_at(Some(&t), BODY, NOW).await.unwrap_err();
            assert!(matches!(e, VerifyError::Algorithm(_)), "{e}");
        }
        assert_eq!(v.source.lookups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn forged_stale_and_altered_webhooks_are_refused() {
        let k = key(1, "kid-1");
        let v = verifier(vec![k.jwk.clone()]);
        // Signed by someone else under Plaid's kid.
        let forger = key(2, "kid-1");
        let e = v
            .verify_at(Some(&token(&forger, NOW, BODY)), BODY, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::Signature), "{e}");
        // Too old, and from the future.
        let e = v
            .verify_at(Some(&token(&k, NOW - 301, BODY)), BODY, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::Stale(301)), "{e}");
        v.verify_at(Some(&token(&k, NOW - 300, BODY)), BODY, NOW)
            .await
            .unwrap();
        let e = v
            .verify_at(Some(&token(&k, NOW + 120, BODY)), BODY, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::FromTheFuture(120)), "{e}");
        // The body changed, even by whitespace (Plaid hashes the exact bytes).
        let reindented = b"{\n    \"webhook_code\": \"SYNC_UPDATES_AVAILABLE\"\n}";
        let e = v
            .verify_at(Some(&token(&k, NOW, BODY)), reindented, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::BodyMismatch), "{e}");
        // No header, or not a token.
        let e = v.verify_at(None, BODY, NOW).await.unwrap_err();
        assert!(matches!(e, VerifyError::MissingHeader));
        for junk in ["", "abc", "a.b", "a.b.c.d", "!!.x.y"] {
            let e = v.verify_at(Some(junk), BODY, NOW).await.unwrap_err();
            assert!(matches!(e, VerifyError::Malformed(_)), "{junk}: {e}");
        }
    }

    #[tokio::test]
    async fn unknown_keys_are_looked_up_at_most_once_a_minute() {
        let k = key(1, "kid-1");
        let stranger = key(3, "kid-unknown");
        let v = verifier(vec![k.jwk.clone()]);
        let t = token(&stranger, NOW, BODY);
        let e = v.verify_at(Some(&t), BODY, NOW).await.unwrap_err();
        assert!(matches!(e, VerifyError::UnknownKey(_)), "{e}");
        for _ in 0..5 {
            let e = v.verify_at(Some(&t), BODY, NOW).await.unwrap_err();
            assert!(matches!(e, VerifyError::Throttled(_)), "{e}");
        }
        assert_eq!(v.source.lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_keys_are_looked_up_ten_a_minute_in_all() {
        let k = key(1, "kid-1");
        let v = verifier(vec![k.jwk.clone()]);
        v.verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
        // The first lookup (kid-1's) counts too.
        for i in 1..LOOKUPS_PER_MINUTE {
            let t = token(&key(10 + i as u64, &format!("kid-random-{i}")), NOW, BODY);
            let e = v.verify_at(Some(&t), BODY, NOW).await.unwrap_err();
            assert!(matches!(e, VerifyError::UnknownKey(_)), "{e}");
        }
        let t = token(&key(99, "kid-one-too-many"), NOW, BODY);
        let e = v.verify_at(Some(&t), BODY, NOW).await.unwrap_err();
        assert!(matches!(e, VerifyError::TooManyLookups(_)), "{e}");
        assert!(
            e.is_transient(),
            "Plaid retries a webhook refused for this: {e}"
        );
        assert_eq!(v.source.lookups.load(Ordering::SeqCst), LOOKUPS_PER_MINUTE);
        // Only a minute's worth of unknown kids is remembered.
        assert!(v.lookups.lock().await.missing.len() <= LOOKUPS_PER_MINUTE);
        // The cached key still works.
        v.verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lookup_under_way_holds_up_no_webhook_whose_key_is_cached() {
        let k = key(1, "kid-1");
        let slow = key(2, "kid-slow");
        let v = std::sync::Arc::new(WebhookVerifier::new(Keys {
            keys: std::sync::Mutex::new(vec![k.jwk.clone(), slow.jwk.clone()]),
            held: Some("kid-slow".into()),
            ..Default::default()
        }));
        v.verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
        let waiting = {
            let (v, t) = (v.clone(), token(&slow, NOW, BODY));
            tokio::spawn(async move { v.verify_at(Some(&t), BODY, NOW).await })
        };
        while v.source.lookups.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::timeout(
            Duration::from_secs(5),
            v.verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW),
        )
        .await
        .expect("a cached key is used while another key is being looked up")
        .unwrap();
        v.source.release.notify_one();
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_rotated_key_is_refused_past_its_expiry_by_the_same_verifier() {
        let old = key(1, "kid-old");
        let new = key(2, "kid-new");
        let v = verifier(vec![old.jwk.clone()]);
        v.verify_at(Some(&token(&old, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
        // Plaid rotates: a new key, and the old one served with an expiry.
        {
            let mut keys = v.source.keys.lock().unwrap();
            keys[0].expired_at = Some(NOW + 60);
            keys.push(new.jwk.clone());
        }
        v.verify_at(Some(&token(&new, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
        // The old key was fetched again along with the new one: good until its expiry,
        // refused after it, with no further lookup.
        let lookups = v.source.lookups.load(Ordering::SeqCst);
        v.verify_at(Some(&token(&old, NOW + 30, BODY)), BODY, NOW + 30)
            .await
            .unwrap();
        let e = v
            .verify_at(Some(&token(&old, NOW + 61, BODY)), BODY, NOW + 61)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::KeyExpired(_)), "{e}");
        assert_eq!(v.source.lookups.load(Ordering::SeqCst), lookups);
    }

    #[tokio::test]
    async fn expired_keys_and_unreachable_plaid() {
        let mut k = key(1, "kid-1");
        k.jwk.expired_at = Some(NOW - 1);
        let v = verifier(vec![k.jwk.clone()]);
        let e = v
            .verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::KeyExpired(_)), "{e}");
        // A key that expires later is good until then.
        k.jwk.expired_at = Some(NOW + 60);
        let v = verifier(vec![k.jwk.clone()]);
        v.verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
        // Plaid unreachable: a transient failure, not a refusal.
        let down = WebhookVerifier::new(Keys {
            down: true,
            ..Default::default()
        });
        let e = down
            .verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
        // A key that is not ES256 on P-256 is not used.
        let mut odd = key(4, "kid-odd");
        odd.jwk.crv = "P-384".into();
        let v = verifier(vec![odd.jwk.clone()]);
        let e = v
            .verify_at(Some(&token(&odd, NOW, BODY)), BODY, NOW)
            .await
            .unwrap_err();
        assert!(matches!(e, VerifyError::BadKey(_)), "{e}");
    }

    #[tokio::test]
    async fn several_environments_are_asked_in_turn() {
        let k = key(1, "kid-2");
        let both = vec![
            Keys::default(),
            Keys {
                keys: std::sync::Mutex::new(vec![k.jwk.clone()]),
                ..Default::default()
            },
        ];
        let v = WebhookVerifier::new(both);
        v.verify_at(Some(&token(&k, NOW, BODY)), BODY, NOW)
            .await
            .unwrap();
    }
}

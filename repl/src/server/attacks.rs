//! The webhook endpoint under attack: forged, altered, replayed and oversized webhooks sent
//! through the router as the server routes them. Each forgery gets a 4xx and changes
//! nothing: no event stored, no job queued, no sync, no item touched. Replays of a genuine
//! webhook coalesce into one waiting sync.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use finq_connectors::sim::webhook_payload;
use finq_connectors::sim::webhooks::WebhookSigner;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{MAX_WEBHOOK_BYTES, OwnerSecret, ServeOptions, router};

/// An ES256 key that is not Plaid's (the simulator's).
fn other_key() -> (EncodingKey, Value) {
    use p256::pkcs8::EncodePrivateKey;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let key = p256::ecdsa::SigningKey::random(&mut rng);
    let point = key.verifying_key().to_encoded_point(false);
    let jwk = json!({ "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                      "x": B64URL.encode(point.x().unwrap()), "y": B64URL.encode(point.y().unwrap()) });
    (
        EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        jwk,
    )
}

fn claims(body: &str, iat: i64) -> Value {
    json!({ "iat": iat, "request_body_sha256": finq_connectors::plaid::webhook::body_sha256(body.as_bytes()) })
}

/// A JWT with any header and signature bytes, as an attacker writes one by hand.
fn raw_jwt(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string()),
        B64URL.encode(signature)
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn forged_webhooks_are_refused_and_change_nothing(pool: sqlx::PgPool) {
    let setup = super::tests::setup(&pool, 4, 50).await;
    let (sim, app, item) = (setup.sim.clone(), setup.app.clone(), setup.item.clone());
    let (router, worker) = router(
        app,
        ServeOptions {
            secret: OwnerSecret::random(),
            loopback_only: true,
        },
    );
    let post = |body: String, token: Option<String>| {
        let router = router.clone();
        async move {
            let mut request = axum::http::Request::post("/plaid/webhook");
            if let Some(t) = token {
                request = request.header("Plaid-Verification", t);
            }
            router
                .oneshot(request.body(axum::body::Body::from(body)).unwrap())
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    // The item needs its user: a forged LOGIN_REPAIRED must not clear that.
    finq_connectors::plaid::items::set_error(
        &pool,
        &item,
        "ITEM_LOGIN_REQUIRED",
        Some(finq_connectors::sim::webhooks::LOGIN_REQUIRED_MESSAGE),
    )
    .await
    .unwrap();
    let item_row = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Value>("SELECT to_jsonb(i) FROM plaid_items i")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let item_before = item_row().await;

    let kid = sim.webhook_key_id();
    let repaired = webhook_payload("LOGIN_REPAIRED", &item, 0);
    let repaired_body = sim.sign_webhook(&repaired).0;
    let sync = webhook_payload("SYNC_UPDATES_AVAILABLE", &item, 0);
    let (body, genuine) = sim.sign_webhook(&sync);
    let error = webhook_payload("ERROR", &item, 0);
    let (error_body, error_token) = sim.sign_webhook(&error);
    let (other, other_jwk) = other_key();
    let es256 = |kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.to_string());
        h
    };
    let parts: Vec<&str> = genuine.split('.').collect();
    let public_key_bytes = sim.webhook_jwk().to_string().into_bytes();
    let mut another = WebhookSigner::new(&mut {
        use rand::SeedableRng;
        rand_chacha::ChaCha8Rng::seed_from_u64(7)
    });
    another.kid = kid.clone();

    let cases: Vec<(&str, String, Option<String>)> = vec![
        ("no Plaid-Verification header", body.clone(), None),
        ("an empty header", body.clone(), Some(String::new())),
        (
            "a header that is not a JWT",
            body.clone(),
            Some("not-a-jwt".into()),
        ),
        ("a JWT of garbage", body.clone(), Some("e30.!!!.@@@".into())),
        (
            "alg none",
            body.clone(),
            Some(raw_jwt(
                json!({ "alg": "none", "kid": kid }),
                &claims(&body, now()),
                b"",
            )),
        ),
        (
            "alg None",
            body.clone(),
            Some(raw_jwt(
                json!({ "alg": "None", "kid": kid }),
                &claims(&body, now()),
                b"",
            )),
        ),
        (
            "alg NONE",
            body.clone(),
            Some(raw_jwt(
                json!({ "alg": "NONE", "kid": kid }),
                &claims(&body, now()),
                b"",
            )),
        ),
        (
            "HS256 keyed with Plaid's public key",
            body.clone(),
            Some({
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some(kid.clone());
                jsonwebtoken::encode(
                    &h,
                    &claims(&body, now()),
                    &EncodingKey::from_secret(&public_key_bytes),
                )
                .unwrap()
            }),
        ),
        (
            "ES256 by another key with Plaid's kid",
            body.clone(),
            Some(another.sign(&sync).1),
        ),
        (
            "ES256 by another key with an unknown kid",
            body.clone(),
            Some(
                jsonwebtoken::encode(&es256("attacker-kid"), &claims(&body, now()), &other)
                    .unwrap(),
            ),
        ),
        (
            "an embedded jwk of the attacker's key",
            body.clone(),
            Some({
                let mut h = es256(&kid);
                h.jwk = Some(serde_json::from_value(other_jwk.clone()).unwrap());
                jsonwebtoken::encode(&h, &claims(&body, now()), &other).unwrap()
            }),
        ),
        (
            "a jku header pointing at the attacker",
            body.clone(),
            Some({
                let mut h = es256("attacker-kid");
                h.jku = Some("http://127.0.0.1:9/keys.json".into());
                jsonwebtoken::encode(&h, &claims(&body, now()), &other).unwrap()
            }),
        ),
        (
            "an x5u header pointing at the attacker",
            body.clone(),
            Some({
                let mut h = es256("attacker-kid");
                h.x5u = Some("http://127.0.0.1:9/cert.pem".into());
                jsonwebtoken::encode(&h, &claims(&body, now()), &other).unwrap()
            }),
        ),
        (
            "RS256",
            body.clone(),
            Some(raw_jwt(
                json!({ "alg": "RS256", "kid": kid }),
                &claims(&body, now()),
                &[1; 256],
            )),
        ),
        (
            "ES384",
            body.clone(),
            Some(raw_jwt(
                json!({ "alg": "ES384", "kid": kid }),
                &claims(&body, now()),
                &[1; 96],
            )),
        ),
        (
            "PS256",
            body.clone(),
            Some(raw_jwt(
                json!({ "alg": "PS256", "kid": kid }),
                &claims(&body, now()),
                &[1; 256],
            )),
        ),
        (
            "a genuine JWT with its signature stripped",
            body.clone(),
            Some(format!("{}.{}.", parts[0], parts[1])),
        ),
        (
            "a genuine JWT with another webhook's signature",
            body.clone(),
            Some(format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                error_token.split('.').nth(2).unwrap()
            )),
        ),
        (
            "a genuine JWT on a tampered body",
            body.replace(&item, "someone-else"),
            Some(genuine.clone()),
        ),
        (
            "a genuine JWT on a re-indented body",
            serde_json::to_string(&sync).unwrap(),
            Some(genuine.clone()),
        ),
        (
            "a genuine JWT on an extended body",
            format!("{body}\n"),
            Some(genuine.clone()),
        ),
        (
            "a genuine JWT on a forged ERROR body",
            error_body.clone(),
            Some(genuine.clone()),
        ),
        (
            "a genuine JWT on a forged LOGIN_REPAIRED body",
            repaired_body.clone(),
            Some(genuine.clone()),
        ),
        (
            "LOGIN_REPAIRED signed by another key under Plaid's kid",
            repaired_body.clone(),
            Some(another.sign(&repaired).1),
        ),
        (
            "LOGIN_REPAIRED with alg none",
            repaired_body.clone(),
            Some(raw_jwt(
                json!({ "alg": "none", "kid": kid }),
                &claims(&repaired_body, now()),
                b"",
            )),
        ),
        (
            "a genuine LOGIN_REPAIRED six minutes old",
            repaired_body.clone(),
            Some(sim.sign_webhook_at(&repaired, now() - 360).1),
        ),
        (
            "iat six minutes old",
            body.clone(),
            Some(sim.sign_webhook_at(&sync, now() - 360).1),
        ),
        (
            "iat five minutes in the future",
            body.clone(),
            Some(sim.sign_webhook_at(&sync, now() + 300).1),
        ),
        (
            "a genuinely signed body that is not JSON",
            "not json".into(),
            Some(sim.sign_webhook_body("not json")),
        ),
    ];
    assert!(cases.len() >= 15);
    for (name, body, token) in cases {
        let status = post(body, token).await;
        assert!((400..500).contains(&status), "{name}: answered {status}");
    }
    let oversized = format!("{body}{}", " ".repeat(MAX_WEBHOOK_BYTES));
    assert_eq!(
        post(oversized, Some(genuine.clone())).await,
        413,
        "oversized"
    );

    // Nothing happened.
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM webhook_events").await, 0);
    assert_eq!(count("SELECT count(*) FROM jobs").await, 0);
    assert_eq!(count("SELECT count(*) FROM sync_log").await, 0);
    assert_eq!(count("SELECT count(*) FROM plaid_transactions").await, 0);
    assert_eq!(item_row().await, item_before, "the item was touched");
    assert_eq!(
        finq_e2e::error_code(&pool, &item).await.as_deref(),
        Some("ITEM_LOGIN_REQUIRED")
    );

    // A genuine webhook replayed ten times at once: every copy is stored, and they make at
    // most one waiting sync (two if the worker took the first meanwhile).
    let mut replays = tokio::task::JoinSet::new();
    for _ in 0..10 {
        replays.spawn(post(body.clone(), Some(genuine.clone())));
    }
    for status in replays.join_all().await {
        assert_eq!(status, 200);
    }
    assert_eq!(count("SELECT count(*) FROM webhook_events").await, 10);
    let jobs = count("SELECT count(*) FROM jobs").await;
    assert!((1..=2).contains(&jobs), "{jobs} jobs for one item");
    worker.shutdown().await;
    setup.sim_server.stop().await;
}

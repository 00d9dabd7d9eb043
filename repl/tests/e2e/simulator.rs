//! The simulator behaves as Plaid documents: credentials, NOT_READY, item health, removal,
//! refresh, rate limits, faults, and webhooks signed the way Plaid signs them.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use finq_connectors::plaid::PlaidClient;
use finq_connectors::plaid::sync::{SyncError, SyncSettings, sync_item};
use finq_connectors::plaid::webhook::{VerifyError, WebhookVerifier};
use finq_connectors::sim::{Faults, SimConfig, Simulator};
use finq_e2e::{SimBank, plaid_post as post, sandbox_item};
use serde_json::{Value, json};
use sha2::Digest;
use sqlx::PgPool;

/// A Plaid call whose body is just the access token.
async fn with_token(base: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    post(&format!("{base}{path}"), json!({ "access_token": token })).await
}

/// A webhook receiver that keeps what it gets.
async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    flaky_receiver(0).await
}

async fn wait_for(got: &Arc<Mutex<Vec<(HeaderMap, Bytes)>>>, n: usize) {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("expected {n} webhooks, got {}", got.lock().unwrap().len());
}

#[tokio::test]
async fn plaid_shapes_credentials_not_ready_and_item_lifecycle() {
    let bank = SimBank::start(1, 120).await;
    let base = &bank.server.base_url;

    // Credentials: body or headers; missing ones are INVALID_API_KEYS with Plaid's error body.
    let resp = reqwest::Client::new()
        .post(format!("{base}/sandbox/public_token/create"))
        .json(&json!({ "institution_id": "ins_109508", "initial_products": ["transactions"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error_code"], "INVALID_API_KEYS");
    assert_eq!(err["error_type"], "INVALID_INPUT");
    assert!(err["display_message"].is_null() && err["request_id"].is_string());

    let (status, body) = post(&format!("{base}/sandbox/public_token/create"), json!({
        "client_id": "in-body", "secret": "too", "institution_id": "ins_109508", "initial_products": ["transactions"]
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    let public = body["public_token"].as_str().unwrap().to_string();
    assert!(public.starts_with("public-sandbox-"));
    let (_, ex) = post(
        &format!("{base}/item/public_token/exchange"),
        json!({ "public_token": public }),
    )
    .await;
    let token = ex["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("access-sandbox-"));
    let (status, again) = post(
        &format!("{base}/item/public_token/exchange"),
        json!({ "public_token": public }),
    )
    .await;
    assert_eq!(
        (status, again["error_code"].as_str()),
        (400, Some("INVALID_PUBLIC_TOKEN"))
    );

    // A fresh item's first sync: NOT_READY, nothing, empty cursor. Then data.
    let (_, first) = with_token(base, "/transactions/sync", &token).await;
    assert_eq!(first["transactions_update_status"], "NOT_READY");
    assert_eq!(first["next_cursor"], "");
    assert_eq!(first["added"], json!([]));
    let (_, second) = post(
        &format!("{base}/transactions/sync"),
        json!({ "access_token": token, "count": 500 }),
    )
    .await;
    assert_eq!(
        second["transactions_update_status"],
        "HISTORICAL_UPDATE_COMPLETE"
    );
    assert_eq!(second["added"].as_array().unwrap().len(), 120);
    let t = &second["added"][0];
    for key in [
        "account_owner",
        "pending_transaction_id",
        "authorized_datetime",
        "datetime",
        "transaction_code",
        "merchant_name",
    ] {
        assert!(
            t.get(key).is_some(),
            "always-present key {key} missing: {t}"
        );
    }
    assert_eq!(t["location"].as_object().unwrap().len(), 8);
    assert_eq!(t["payment_meta"].as_object().unwrap().len(), 8);
    let types: Vec<&str> = second["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    for ty in ["depository", "credit", "loan"] {
        assert!(types.contains(&ty), "{types:?}");
    }
    let (status, bad) = post(
        &format!("{base}/transactions/sync"),
        json!({ "access_token": token, "count": 501 }),
    )
    .await;
    assert_eq!(
        (status, bad["error_code"].as_str()),
        (400, Some("INVALID_FIELD"))
    );
    let (_, v2) = post(
        &format!("{base}/transactions/sync"),
        json!({ "access_token": token, "options": { "personal_finance_category_version": "v2" } }),
    )
    .await;
    assert_eq!(v2["added"][0]["personal_finance_category"]["version"], "v2");

    // Login required: data endpoints fail, /item/get shows it.
    let (_, r) = with_token(base, "/sandbox/item/reset_login", &token).await;
    assert_eq!(r["reset_login"], true);
    let (status, e) = with_token(base, "/accounts/get", &token).await;
    assert_eq!(
        (status, e["error_code"].as_str()),
        (400, Some("ITEM_LOGIN_REQUIRED"))
    );
    let (status, item) = with_token(base, "/item/get", &token).await;
    assert_eq!(status, 200);
    assert_eq!(item["item"]["error"]["error_code"], "ITEM_LOGIN_REQUIRED");
    let item_id = ex["item_id"].as_str().unwrap();
    assert!(bank.sim.repair_login(item_id));
    let (status, _) = with_token(base, "/accounts/get", &token).await;
    assert_eq!(status, 200);

    // Refresh makes changes; its limit is two a minute.
    for _ in 0..2 {
        let (status, r) = with_token(base, "/transactions/refresh", &token).await;
        assert_eq!(status, 200, "{r}");
    }
    let (status, r) = with_token(base, "/transactions/refresh", &token).await;
    assert_eq!(
        (status, r["error_code"].as_str()),
        (429, Some("TRANSACTIONS_REFRESH_LIMIT"))
    );

    // Removal: the token is dead afterwards.
    let (status, _) = with_token(base, "/item/remove", &token).await;
    assert_eq!(status, 200);
    let (status, gone) = with_token(base, "/transactions/sync", &token).await;
    assert_eq!(
        (status, gone["error_code"].as_str()),
        (400, Some("ITEM_NOT_FOUND"))
    );
}

#[tokio::test]
async fn faults_and_the_per_item_limit() {
    let sim = Simulator::new(SimConfig {
        seed: 3,
        transactions: 50,
        ..Default::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = server.base_url.clone();
    let (_, token) = sandbox_item(&base, "ins_109508", None).await;
    let token = token.as_str();

    let resp = reqwest::Client::new()
        .post(format!("{base}/sim/faults"))
        .json(&json!({ "per_item_limit": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..3 {
        assert_eq!(with_token(&base, "/transactions/sync", token).await.0, 200);
    }
    let (status, e) = with_token(&base, "/transactions/sync", token).await;
    assert_eq!(
        (status, e["error_code"].as_str(), e["error_type"].as_str()),
        (
            429,
            Some("TRANSACTIONS_SYNC_LIMIT"),
            Some("RATE_LIMIT_EXCEEDED")
        )
    );

    sim.set_faults(Faults {
        server_error: 1.0,
        ..Default::default()
    });
    let (status, e) = with_token(&base, "/accounts/get", token).await;
    assert_eq!(
        (status, e["error_code"].as_str()),
        (500, Some("INTERNAL_SERVER_ERROR"))
    );

    sim.set_faults(Faults {
        drop: 1.0,
        ..Default::default()
    });
    let dropped = reqwest::Client::new()
        .post(format!("{base}/accounts/get"))
        .json(&json!({ "client_id": "a", "secret": "b", "access_token": token }))
        .send()
        .await;
    let failed = match dropped {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(failed, "a dropped connection is a transport error");

    let resp = reqwest::Client::new()
        .post(format!("{base}/sim/faults"))
        .json(&json!({ "rate_limit": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        "rate_limit=0.1,server_error=0.05,mutation=0.1,latency_ms=20,drop=0.02"
            .parse::<Faults>()
            .unwrap()
            .latency_ms,
        20
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn the_connector_retries_through_faults_and_reports_login_required(pool: PgPool) {
    let bank = SimBank::start(12, 1500).await;
    let item = bank.link(&pool).await;
    bank.sim.set_faults(
        "rate_limit=0.2,server_error=0.1,mutation=0.2,drop=0.05"
            .parse()
            .unwrap(),
    );
    let client = PlaidClient::new(
        &bank.server.base_url,
        "id",
        secrecy::SecretString::from("s"),
    )
    .with_retries(12, std::time::Duration::from_millis(5));
    let settings = SyncSettings {
        page_size: 100,
        max_restarts: 50,
        ..Default::default()
    };
    let outcome = sync_item(&pool, &client, &bank.vault, &item, settings, &|_| {})
        .await
        .unwrap();
    assert_eq!(outcome.added, 1500);
    assert!(
        outcome.restarts > 0,
        "mutation faults force restarts from the first cursor"
    );
    let n: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT plaid_transaction_id) FROM plaid_transactions")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 1500);

    bank.sim.set_faults(Faults::default());
    bank.sim.reset_login(&item);
    let err = sync_item(
        &pool,
        &client,
        &bank.vault,
        &item,
        SyncSettings::default(),
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SyncError::Plaid(e) if e.code() == Some("ITEM_LOGIN_REQUIRED")),
        "{err}"
    );
    assert!(err.to_string().contains("finq link --update"), "{err}");
    let (code, since): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT error_code, error_since FROM plaid_items WHERE item_id = $1")
            .bind(&item)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(code.as_deref(), Some("ITEM_LOGIN_REQUIRED"));
    assert!(since.is_some());
    bank.sim.repair_login(&item);
    sync_item(
        &pool,
        &client,
        &bank.vault,
        &item,
        SyncSettings::default(),
        &|_| {},
    )
    .await
    .unwrap();
    let code = finq_e2e::error_code(&pool, &item).await;
    assert_eq!(code, None, "repair clears the item's error");
    let snapshots: i64 = sqlx::query_scalar("SELECT count(*) FROM balance_snapshots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(snapshots, 4, "one balance snapshot per account and day");
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn relinking_the_same_institution_does_not_duplicate(pool: PgPool) {
    let bank = SimBank::start(14, 600).await;
    let first = bank.link(&pool).await;
    bank.sync(&pool, &first).await;
    // The user files a transaction under Travel with a note.
    let (edited, date, amount): (String, chrono::NaiveDate, rust_decimal::Decimal) = sqlx::query_as(
        "SELECT plaid_transaction_id, date, amount FROM plaid_transactions WHERE NOT pending ORDER BY date, plaid_transaction_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE plaid_transactions SET notes = 'reimbursable', category_override_id = (SELECT id FROM categories WHERE name = 'Travel') WHERE plaid_transaction_id = $1")
        .bind(&edited)
        .execute(&pool)
        .await
        .unwrap();

    let linked = finq_connectors::plaid::link::link_sandbox_institution(
        &pool,
        &bank.client,
        &bank.vault,
        "ins_109508",
        "sim",
        None,
        |_| None,
    )
    .await
    .unwrap();
    assert_eq!(linked.replaced, vec![first.clone()]);
    assert!(
        bank.sim.ground_truth(&first).is_none(),
        "the old item is removed at Plaid too"
    );
    bank.sync(&pool, &linked.item_id).await;

    let (items, rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM plaid_items), (SELECT count(*) FROM plaid_transactions)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((items, rows), (1, 600));
    let carried: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT t.notes, c.name FROM plaid_transactions t LEFT JOIN categories c ON c.id = t.category_override_id
         WHERE t.date = $1 AND t.amount = $2 AND t.notes IS NOT NULL",
    )
    .bind(date)
    .bind(amount)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        carried,
        (Some("reimbursable".into()), Some("Travel".into()))
    );
}

#[tokio::test]
async fn webhooks_are_signed_as_plaid_signs_them() {
    let (hook, got) = receiver().await;
    let sim = Simulator::new(SimConfig {
        seed: 5,
        transactions: 80,
        ..Default::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = server.base_url.clone();
    let (item_id, token) = sandbox_item(&base, "ins_109508", Some(&hook)).await;
    let token = token.as_str();

    // Nothing fires before the first /transactions/sync call.
    sim.advance(1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(got.lock().unwrap().len(), 0);
    with_token(&base, "/transactions/sync", token).await;
    sim.advance(1);
    wait_for(&got, 1).await;
    let (_, fired) = post(
        &format!("{base}/sandbox/item/fire_webhook"),
        json!({ "access_token": token, "webhook_code": "DEFAULT_UPDATE" }),
    )
    .await;
    assert_eq!(fired["webhook_fired"], true);
    wait_for(&got, 2).await;

    let received = got.lock().unwrap().clone();
    for (headers, body) in received {
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with("{\n  \""), "2-space indented: {text}");
        let jwt = headers["plaid-verification"].to_str().unwrap().to_string();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        let kid = header.kid.unwrap();
        let (status, key) = post(
            &format!("{base}/webhook_verification_key/get"),
            json!({ "key_id": kid }),
        )
        .await;
        assert_eq!(status, 200);
        let jwk = &key["key"];
        assert_eq!(
            (
                jwk["kty"].as_str(),
                jwk["crv"].as_str(),
                jwk["alg"].as_str()
            ),
            (Some("EC"), Some("P-256"), Some("ES256"))
        );
        assert!(jwk["expired_at"].is_null());
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap(),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<Value>(&jwt, &decoding, &validation)
            .unwrap()
            .claims;
        let digest: String = sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(claims["request_body_sha256"], digest);
        assert!((chrono::Utc::now().timestamp() - claims["iat"].as_i64().unwrap()).abs() < 300);
        let payload: Value = serde_json::from_str(text).unwrap();
        assert_eq!(payload["item_id"], item_id);
    }
    let (status, e) = post(
        &format!("{base}/webhook_verification_key/get"),
        json!({ "key_id": "nope" }),
    )
    .await;
    assert_eq!(
        (status, e["error_code"].as_str()),
        (400, Some("INVALID_WEBHOOK_VERIFICATION_KEY_ID"))
    );

    // finq's verifier accepts them, fetching the key from the simulator's endpoint, and
    // refuses them altered.
    let verifier = WebhookVerifier::new(PlaidClient::new(
        &base,
        "finq",
        secrecy::SecretString::from("sim-secret"),
    ));
    let received = got.lock().unwrap().clone();
    for (headers, body) in &received {
        let jwt = headers["plaid-verification"].to_str().unwrap();
        verifier.verify(Some(jwt), body).await.unwrap();
        let mut altered = body.to_vec();
        altered.extend_from_slice(b" ");
        let e = verifier.verify(Some(jwt), &altered).await.unwrap_err();
        assert!(matches!(e, VerifyError::BodyMismatch), "{e}");
    }
    // A token under a kid the simulator never issued.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (headers, body) = &received[0];
    let jwt = headers["plaid-verification"].to_str().unwrap();
    let rest = jwt.split_once('.').unwrap().1;
    let forged = format!("{}.{rest}", b64.encode(r#"{"alg":"ES256","kid":"nope"}"#));
    let e = verifier.verify(Some(&forged), body).await.unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey(_)), "{e}");
    server.stop().await;
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn webhook_url_given_at_link_time_and_moved_later(pool: PgPool) {
    let (first, _) = receiver().await;
    let (second, got) = receiver().await;
    let bank = SimBank::start(8, 50).await;
    let linked = finq_connectors::plaid::link::link_sandbox_institution(
        &pool,
        &bank.client,
        &bank.vault,
        "ins_109508",
        "sim",
        Some(first.clone()),
        |_| None,
    )
    .await
    .unwrap();
    let token = finq_connectors::plaid::items::open_token(&pool, &bank.vault, &linked.item_id)
        .await
        .unwrap();
    let webhook_of = || async {
        let item: Value = bank
            .client
            .call(
                "/item/get",
                &json!({ "access_token": secrecy::ExposeSecret::expose_secret(&token) }),
            )
            .await
            .unwrap();
        item["item"]["webhook"].as_str().map(str::to_string)
    };
    assert_eq!(webhook_of().await, Some(first));

    // Moved: Plaid acknowledges at the new URL, signed like every webhook.
    bank.client
        .item_webhook_update(&token, Some(&second))
        .await
        .unwrap();
    assert_eq!(webhook_of().await, Some(second.clone()));
    wait_for(&got, 1).await;
    let (headers, body) = got.lock().unwrap()[0].clone();
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["webhook_code"], "WEBHOOK_UPDATE_ACKNOWLEDGED");
    assert_eq!(payload["item_id"], linked.item_id);
    assert_eq!(payload["new_webhook_url"], second);
    let verifier = WebhookVerifier::new(bank.client.clone());
    verifier
        .verify(headers["plaid-verification"].to_str().ok(), &body)
        .await
        .unwrap();
    // Not a URL: refused as Plaid refuses it.
    let e = bank
        .client
        .item_webhook_update(&token, Some("not a url"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("INVALID_FIELD"));
}

/// A receiver that answers 500 to its first `failures` requests, then 200; what it got.
async fn flaky_receiver(failures: usize) -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            async move {
                let mut got = store.lock().unwrap();
                got.push((headers, body));
                if got.len() <= failures {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test]
async fn webhooks_are_retried_as_plaid_retries_them_and_signing_keys_rotate() {
    let first_retry = std::time::Duration::from_millis(40);
    let sim = Simulator::new(SimConfig {
        seed: 8,
        transactions: 20,
        webhook_retry: first_retry,
        ..Default::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = PlaidClient::new(&server.base_url, "id", "secret".to_string().into());
    let verifier = WebhookVerifier::new(client.clone());

    // Refused twice, taken the third time: retried after 40 ms, then 160 ms, each attempt
    // signed afresh over the same body.
    let (hook, got) = flaky_receiver(2).await;
    let payload = finq_connectors::sim::webhook_payload("DEFAULT_UPDATE", "item-1", 3);
    sim.send_webhook(hook.clone(), payload.clone());
    wait_for(&got, 3).await;
    // The simulator records an attempt once its answer is in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim.deliveries().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            sim.deliveries()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let deliveries = sim.deliveries();
    let attempts: Vec<(u32, Option<u16>)> =
        deliveries.iter().map(|d| (d.attempt, d.status)).collect();
    assert_eq!(attempts, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    let gap = |i: usize| (deliveries[i].at - deliveries[i - 1].at).to_std().unwrap();
    assert!(gap(1) >= first_retry, "{:?}", gap(1));
    assert!(gap(2) >= first_retry * 4, "{:?}", gap(2));
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "no attempt after the one taken");
    for (headers, body) in &got {
        assert_eq!(body, &got[0].1);
        let jwt = headers["plaid-verification"].to_str().unwrap();
        verifier.verify(Some(jwt), body).await.unwrap();
    }

    // Key rotation: new webhooks carry a new kid and verify; the old key is still served,
    // with expired_at, so what it signed is refused by a verifier that fetches it now.
    let old_kid = sim.webhook_key_id();
    let (old_body, old_token) = sim.sign_webhook(&payload);
    let (status, rotated) = post(
        &format!("{}/sim/webhook_key/rotate", server.base_url),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    assert_eq!(sim.webhook_key_id(), new_kid);
    let (body, token) = sim.sign_webhook(&payload);
    verifier
        .verify(Some(&token), body.as_bytes())
        .await
        .unwrap();
    let (status, old_key) = post(
        &format!("{}/webhook_verification_key/get", server.base_url),
        json!({ "client_id": "id", "secret": "secret", "key_id": old_kid }),
    )
    .await;
    assert_eq!(status, 200);
    assert!(old_key["key"]["expired_at"].as_i64().is_some(), "{old_key}");
    let fresh = WebhookVerifier::new(client);
    assert!(matches!(
        fresh.verify(Some(&old_token), old_body.as_bytes()).await,
        Err(VerifyError::KeyExpired(_))
    ));

    // A receiver that never takes it: the first attempt and six retries, then no more.
    let sim = Simulator::new(SimConfig {
        seed: 8,
        transactions: 20,
        webhook_retry: std::time::Duration::from_millis(2),
        ..Default::default()
    });
    let (hook, got) = flaky_receiver(usize::MAX).await;
    sim.send_webhook(hook, payload);
    wait_for(&got, 7).await;
    // The last delay was 2 ms × 4⁵ ≈ 2 s; another attempt would come 8 s later.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(got.lock().unwrap().len(), 7);
    assert_eq!(sim.deliveries().last().unwrap().attempt, 7);
    server.stop().await;
}

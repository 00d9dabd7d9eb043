//! Simulator → connector → PostgreSQL: the synced rows equal the simulator's ground truth,
//! through a first sync, a no-op sync, and changes (new, posted, modified, removed).

use finq_connectors::plaid::sync::{SyncError, SyncSettings, sync_item};
use finq_core::vault::{TokenVault, VaultError};
use finq_e2e::{SimBank, TxState, db_fingerprint, state_of, stored_state};
use rust_decimal::Decimal;
use sqlx::PgPool;

fn quiet(_: finq_connectors::plaid::sync::SyncProgress) {}

async fn stored(pool: &PgPool, item: &str) -> TxState {
    stored_state(&mut pool.acquire().await.unwrap(), item).await
}

fn truth(bank: &SimBank, item: &str) -> TxState {
    state_of(bank.sim.ground_truth(item).unwrap())
}

async fn sync(
    bank: &SimBank,
    pool: &PgPool,
    item: &str,
    page_size: i64,
) -> finq_connectors::plaid::sync::SyncOutcome {
    let settings = SyncSettings {
        page_size,
        ..Default::default()
    };
    sync_item(pool, &bank.client, &bank.vault, item, settings, &quiet)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn first_sync_equals_the_simulator_then_nothing_then_changes(pool: PgPool) {
    let bank = SimBank::start(11, 700).await;
    let item = bank.link(&pool).await;

    let first = sync(&bank, &pool, &item, 97).await;
    assert_eq!(first.added, 700);
    assert!(first.pages >= 8, "paged: {} pages", first.pages);
    let expected = truth(&bank, &item);
    assert_eq!(stored(&pool, &item).await, expected);
    let sums: (i64, Decimal) =
        sqlx::query_as("SELECT count(*), sum(amount) FROM plaid_transactions")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sums.0, 700);
    assert_eq!(sums.1, expected.values().map(|v| v.0).sum::<Decimal>());

    // Nothing new: nothing changes.
    let before = db_fingerprint(&pool).await;
    let again = sync(&bank, &pool, &item, 500).await;
    assert_eq!((again.added, again.modified, again.removed), (0, 0, 0));
    assert_eq!(db_fingerprint(&pool).await, before);

    // New pending, postings (new ids), corrections and removals.
    let report = bank.sim.advance(6);
    let c = report[0].counts;
    assert!(c.added > 0 && c.posted > 0 && c.modified > 0, "{c:?}");
    let third = sync(&bank, &pool, &item, 50).await;
    assert!(third.added > 0 && third.removed > 0);
    assert_eq!(stored(&pool, &item).await, truth(&bank, &item));

    // Balances follow the simulator too.
    let accounts = bank.sim.accounts(&item).unwrap();
    for a in accounts {
        let current: Option<Decimal> =
            sqlx::query_scalar("SELECT current_balance FROM plaid_accounts WHERE account_id = $1")
                .bind(&a.account_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(current, a.balances.current.map(|d| d.round_dp(2)));
    }

    // Cursor and log.
    let log: Vec<(String, i32)> =
        sqlx::query_as("SELECT outcome, added FROM sync_log WHERE item_id = $1 ORDER BY id")
            .bind(&item)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|(o, _)| o == "ok"));
    assert_eq!(log[0].1, 700);
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn posted_transaction_keeps_the_users_edit_on_the_pending_one(pool: PgPool) {
    let bank = SimBank::start(5, 400).await;
    let item = bank.link(&pool).await;
    sync(&bank, &pool, &item, 500).await;
    let pending: String = sqlx::query_scalar(
        "SELECT plaid_transaction_id FROM plaid_transactions WHERE pending ORDER BY plaid_transaction_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .expect("the simulator makes recent transactions pending");
    let travel: i64 = sqlx::query_scalar("SELECT id FROM categories WHERE name = 'Travel'")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE plaid_transactions SET category_override_id = $2, notes = 'work trip' WHERE plaid_transaction_id = $1")
        .bind(&pending)
        .bind(travel)
        .execute(&pool)
        .await
        .unwrap();

    bank.sim.advance(3);
    sync(&bank, &pool, &item, 500).await;

    let rows: Vec<(String, bool, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT plaid_transaction_id, pending, category_override_id, notes FROM plaid_transactions
         WHERE plaid_transaction_id = $1 OR pending_transaction_id = $1",
    )
    .bind(&pending)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "one row for one purchase: {rows:?}");
    let (id, is_pending, override_id, notes) = &rows[0];
    assert_ne!(id, &pending);
    assert!(!is_pending);
    assert_eq!(*override_id, Some(travel));
    assert_eq!(notes.as_deref(), Some("work trip"));
    assert_eq!(stored(&pool, &item).await, truth(&bank, &item));
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn two_syncs_at_once_end_like_one(pool: PgPool) {
    let bank = SimBank::start(9, 900).await;
    let item = bank.link(&pool).await;
    let (a, b) = tokio::join!(
        sync(&bank, &pool, &item, 100),
        sync(&bank, &pool, &item, 100)
    );
    // The advisory lock serialises them: one pulls everything, the other finds nothing new.
    assert_eq!(a.added + b.added, 900);
    let dupes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT plaid_transaction_id FROM plaid_transactions GROUP BY 1 HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dupes, 0);
    assert_eq!(stored(&pool, &item).await, truth(&bank, &item));
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn access_tokens_are_never_stored_in_plaintext(pool: PgPool) {
    let bank = SimBank::start(3, 50).await;
    let item = bank.link(&pool).await;
    sync(&bank, &pool, &item, 500).await;
    let spec_token =
        finq_connectors::sim::data::generate(&bank.sim.spec_of(&item).unwrap()).access_token;
    assert!(spec_token.starts_with("access-sandbox-"));

    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT access_token_enc FROM plaid_items WHERE item_id = $1")
            .bind(&item)
            .fetch_one(&pool)
            .await
            .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        bank.vault.open(&item, &sealed).unwrap().expose_secret(),
        spec_token
    );

    // Search every row of every table, as text, for the token and for its bytes in hex.
    let hex: String = spec_token.bytes().map(|b| format!("{b:02x}")).collect();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.len() >= 10);
    for table in tables {
        let sql = format!(
            "SELECT count(*) FROM \"{table}\" t WHERE t::text LIKE '%' || $1 || '%' OR t::text LIKE '%' || $2 || '%'"
        );
        let hits: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&spec_token)
            .bind(&hex)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(hits, 0, "access token found in table {table}");
    }

    // A wrong key is a clear error, and the failure is recorded on the item.
    let other = TokenVault::from_key(&[1u8; 32]);
    let err = sync_item(
        &pool,
        &bank.client,
        &other,
        &item,
        SyncSettings::default(),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SyncError::Vault(VaultError::WrongKey { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("FINQ_ENCRYPTION_KEY"));
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn plaid_errors_are_kept_on_the_item_and_cleared_on_success(pool: PgPool) {
    let bank = SimBank::start(4, 30).await;
    let item = bank.link(&pool).await;
    // Wrong credentials for this simulator → INVALID_API_KEYS.
    let strict = finq_connectors::sim::Simulator::new(finq_connectors::sim::SimConfig {
        client_id: Some("only-me".into()),
        secret: Some("s".into()),
        ..Default::default()
    });
    let server = strict.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let bad = finq_connectors::plaid::PlaidClient::new(
        &server.base_url,
        "someone",
        secrecy::SecretString::from("else"),
    );
    let err = sync_item(
        &pool,
        &bad,
        &bank.vault,
        &item,
        SyncSettings::default(),
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("INVALID_API_KEYS"), "{err}");
    let code = finq_e2e::error_code(&pool, &item).await;
    assert_eq!(code.as_deref(), Some("INVALID_API_KEYS"));
    sync(&bank, &pool, &item, 500).await;
    let code = finq_e2e::error_code(&pool, &item).await;
    assert_eq!(code, None);
}

/// A minimal Plaid that answers `/transactions/sync` from the given pages: page 0 for no
/// cursor, page N for cursor `cN`.
async fn scripted_plaid(pages: Vec<serde_json::Value>) -> String {
    let pages = std::sync::Arc::new(pages);
    let app = axum::Router::new().route(
        "/transactions/sync",
        axum::routing::post(move |axum::Json(req): axum::Json<serde_json::Value>| {
            let pages = pages.clone();
            async move {
                let n = req["cursor"]
                    .as_str()
                    .map_or(0, |c| c.trim_start_matches('c').parse::<usize>().unwrap());
                axum::Json(pages[n].clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn scripted_page(added: serde_json::Value, cursor: &str, has_more: bool) -> serde_json::Value {
    serde_json::json!({
        "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE",
        "accounts": [], "added": added, "modified": [], "removed": [],
        "next_cursor": cursor, "has_more": has_more, "request_id": "r"
    })
}

fn scripted_txn(id: &str, amount: f64, name: &str) -> serde_json::Value {
    serde_json::json!({
        "transaction_id": id, "account_id": "acc", "amount": amount,
        "iso_currency_code": "USD", "unofficial_currency_code": null,
        "date": "2026-11-02", "authorized_date": null, "authorized_datetime": null,
        "datetime": "2026-11-02T10:15:00Z", "name": name, "merchant_name": null,
        "payment_channel": "in store", "pending": false, "pending_transaction_id": null,
        "account_owner": null, "transaction_code": null,
        "location": { "city": null }, "counterparties": [],
        "personal_finance_category": { "primary": "FOOD_AND_DRINK", "detailed": "FOOD_AND_DRINK_COFFEE", "confidence_level": "HIGH" }
    })
}

/// An item row for a scripted Plaid (the sync reads the sealed token from it).
async fn scripted_item(pool: &PgPool, vault: &TokenVault, item: &str) {
    let sealed = vault.seal(item, &secrecy::SecretString::from("access-scripted"));
    sqlx::query(
        "INSERT INTO plaid_items (item_id, user_id, institution_id, institution_name, access_token_enc, environment)
         VALUES ($1, 1, 'ins_scripted', 'Scripted Bank', $2, 'sandbox')",
    )
    .bind(item)
    .bind(sealed)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_transaction_sent_twice_in_a_first_update_is_stored_once_in_its_latest_version(
    pool: PgPool,
) {
    // Plaid collapses an update, but should a transaction still come twice (here on two
    // pages of the item's first update, which is bulk-loaded), the latest version wins.
    let url = scripted_plaid(vec![
        scripted_page(
            serde_json::json!([
                scripted_txn("tx-a", 1.0, "Café\tTab"),
                scripted_txn("tx-b", 2.0, "B")
            ]),
            "c1",
            true,
        ),
        scripted_page(
            serde_json::json!([scripted_txn("tx-a", 3.25, "Café\tTab, corrected")]),
            "c2",
            false,
        ),
    ])
    .await;
    let client =
        finq_connectors::plaid::PlaidClient::new(&url, "id", secrecy::SecretString::from("secret"));
    let vault = TokenVault::from_key(&[7u8; 32]);
    scripted_item(&pool, &vault, "item-scripted").await;
    let outcome = sync_item(
        &pool,
        &client,
        &vault,
        "item-scripted",
        SyncSettings::default(),
        &quiet,
    )
    .await
    .unwrap();
    assert_eq!(outcome.added, 3);
    let rows: Vec<(String, Decimal, String)> = sqlx::query_as(
        "SELECT plaid_transaction_id, amount, name FROM plaid_transactions ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "tx-a".to_string(),
                Decimal::new(325, 2),
                "Café\tTab, corrected".to_string()
            ),
            ("tx-b".to_string(), Decimal::new(200, 2), "B".to_string()),
        ]
    );
    let cursor: String = sqlx::query_scalar("SELECT cursor FROM sync_cursors")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cursor, "c2");
}

/// How many items have their partition of `plaid_transactions`.
async fn partition_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'plaid_transactions'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn removing_an_item_drops_its_transactions_and_nothing_else(pool: PgPool) {
    let bank = SimBank::start(3, 300).await;
    let kept = bank.link(&pool).await;
    sync(&bank, &pool, &kept, 500).await;
    let removed = {
        // A second institution, so two items have partitions.
        let item = finq_e2e::link_institution(&pool, &bank.client, &bank.vault, "ins_109512").await;
        sync(&bank, &pool, &item, 500).await;
        item
    };
    let partitions = || partition_count(&pool);
    assert_eq!(partitions().await, 2);
    let kept_rows = stored(&pool, &kept).await;
    assert_eq!(kept_rows.len(), 300);

    let mut conn = pool.acquire().await.unwrap();
    finq_connectors::plaid::items::delete(&mut conn, &removed)
        .await
        .unwrap();
    assert_eq!(partitions().await, 1);
    assert!(stored(&pool, &removed).await.is_empty());
    assert_eq!(stored(&pool, &kept).await, kept_rows);

    // A plain DELETE of the item (as a cascade from its user would) drops its rows too.
    sqlx::query("DELETE FROM plaid_items WHERE item_id = $1")
        .bind(&kept)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(partitions().await, 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM plaid_transactions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrations = false)]
async fn partitioning_keeps_the_transactions_stored_before_it(pool: PgPool) {
    // The schema before plaid_transactions was partitioned by item, with rows of two items.
    let all = &finq_core::MIGRATOR;
    let before = sqlx::migrate::Migrator::with_migrations(
        all.iter()
            .take_while(|m| !m.description.contains("partitioned by item"))
            .cloned()
            .collect(),
    );
    assert!(before.iter().count() < all.iter().count());
    before.run(&pool).await.unwrap();
    for item in ["item-1", "item-'2"] {
        sqlx::query(
            "INSERT INTO plaid_items (item_id, user_id, institution_id, access_token_enc, environment)
             VALUES ($1, 1, 'ins', '\\x00', 'sim')",
        )
        .bind(item)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO plaid_transactions (plaid_transaction_id, item_id, account_id, amount, date, name, pending, notes)
         SELECT 'tx' || g, CASE WHEN g % 3 = 0 THEN 'item-1' ELSE 'item-''2' END, 'acc', g, '2026-01-01', 'n', false,
                CASE WHEN g = 7 THEN 'a note' END
         FROM generate_series(1, 90) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let fingerprint = "SELECT md5(string_agg(t::text, '|' ORDER BY plaid_transaction_id)) FROM (
        SELECT plaid_transaction_id, item_id, account_id, amount, date, name, pending, notes, created_at
        FROM plaid_transactions) t";
    let old: String = sqlx::query_scalar(fingerprint)
        .fetch_one(&pool)
        .await
        .unwrap();

    all.run(&pool).await.unwrap();
    let new: String = sqlx::query_scalar(fingerprint)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(new, old);
    assert_eq!(partition_count(&pool).await, 2);
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_churn_of_n_changes_is_one_update_of_n_changes(pool: PgPool) {
    let bank = SimBank::start(9, 400).await;
    let item = bank.link(&pool).await;
    sync(&bank, &pool, &item, 500).await;
    for n in [1, 2, 37, 150] {
        let counts = bank.sim.churn(&item, n).unwrap();
        let outcome = sync(&bank, &pool, &item, 500).await;
        assert_eq!(
            (outcome.added + outcome.modified + outcome.removed) as usize,
            n,
            "{counts:?}"
        );
        assert_eq!(stored(&pool, &item).await, truth(&bank, &item));
    }
}

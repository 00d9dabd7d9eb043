//! Simulator → connector → PostgreSQL: the synced rows equal the simulator's ground truth,
//! through a first sync, a no-op sync, and changes (new, posted, modified, removed).

use std::collections::BTreeMap;

use finq_connectors::plaid::sync::{SyncError, SyncSettings, sync_item};
use finq_core::vault::{TokenVault, VaultError};
use finq_e2e::{SimBank, db_fingerprint};
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

fn quiet(_: finq_connectors::plaid::sync::SyncProgress) {}

/// (amount, pending, date, name, pending_transaction_id) per transaction id.
type Rows = BTreeMap<String, (Decimal, bool, String, String, Option<String>)>;

async fn stored(pool: &PgPool, item: &str) -> Rows {
    sqlx::query(
        "SELECT plaid_transaction_id, amount, pending, date::text, name, pending_transaction_id
         FROM plaid_transactions WHERE item_id = $1",
    )
    .bind(item)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))))
    .collect()
}

fn truth(bank: &SimBank, item: &str) -> Rows {
    bank.sim
        .ground_truth(item)
        .unwrap()
        .into_iter()
        .map(|t| {
            (
                t.transaction_id,
                (
                    t.amount,
                    t.pending,
                    t.date.to_string(),
                    t.name.unwrap(),
                    t.pending_transaction_id,
                ),
            )
        })
        .collect()
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
    let code: Option<String> =
        sqlx::query_scalar("SELECT error_code FROM plaid_items WHERE item_id = $1")
            .bind(&item)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(code.as_deref(), Some("INVALID_API_KEYS"));
    sync(&bank, &pool, &item, 500).await;
    let code: Option<String> =
        sqlx::query_scalar("SELECT error_code FROM plaid_items WHERE item_id = $1")
            .bind(&item)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(code, None);
}

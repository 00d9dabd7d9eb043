//! PostgreSQL → transforms → DuckDB: the mirror's counts and sums equal Postgres's, with
//! the statement sign; every Plaid category has a home; and the incremental pipeline always
//! ends where a full rebuild would.

use std::str::FromStr;

use finq_analytics::query::{QueryEngine, Trust};
use finq_e2e::{
    SimBank, derive_and_mirror, mirror_snapshot, transaction_origins, unified_snapshot,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rust_decimal::Decimal;
use sqlx::PgPool;

/// The manual account the first test keeps cash in.
const WALLET: &str = "(SELECT id FROM manual_accounts WHERE name = 'Wallet')";

/// A simulated bank linked and synced, and a manual account `Wallet` holding `rows`
/// (`(user_id, account_id, date, description, amount)` tuples).
async fn synced_bank_and_wallet(
    pool: &PgPool,
    seed: u64,
    transactions: usize,
    rows: &str,
) -> SimBank {
    let bank = SimBank::start(seed, transactions).await;
    let item = bank.link(pool).await;
    bank.sync(pool, &item).await;
    sqlx::query("INSERT INTO manual_accounts (user_id, name, type) VALUES (1, 'Wallet', 'cash')")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO transactions (user_id, account_id, date, description, amount) VALUES {rows}"
    )))
    .execute(pool)
    .await
    .unwrap();
    bank
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn mirror_matches_postgres(pool: PgPool) {
    let _bank = synced_bank_and_wallet(
        &pool,
        21,
        1500,
        &format!("(1, {WALLET}, '2026-11-02', 'Farmers market (cash)', -23.50), (1, {WALLET}, '2026-11-03', 'Sold a bike', 120.00)"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("finq.duckdb");
    let report = derive_and_mirror(&pool, &path).await;
    let union = &report.steps[0];
    assert_eq!(union.counts["upserted"], 1502, "{report:?}");
    let sink = &report.steps[2];
    assert_eq!(
        sink.counts["rebuilt"], 1,
        "the first write builds the mirror"
    );
    assert_eq!(sink.counts["rows"], 1502);
    // The columns the mirror fills in (source, account and bank names) are those derived.
    let (mirrored, unified) = transaction_origins(&pool, &path).await;
    assert_eq!(mirrored.len(), 1502);
    assert_eq!(mirrored, unified);
    // Nothing changed: nothing to do.
    let again = derive_and_mirror(&pool, &path).await;
    assert_eq!(again.steps[0].counts["upserted"], 0);
    assert_eq!(again.steps[2].counts["rows"], 0);

    let (pg_count, pg_plaid_sum, pg_manual_sum): (i64, Decimal, Decimal) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM plaid_transactions) + (SELECT count(*) FROM transactions),
                (SELECT sum(amount) FROM plaid_transactions), (SELECT sum(amount) FROM transactions)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut engine = QueryEngine::open(&path, Trust::User).unwrap();
    let r = engine
        .run(
            "SELECT count(*), sum(amount), sum(amount) FILTER (WHERE source = 'plaid'), sum(amount) FILTER (WHERE source = 'manual'),
                    count(*) FILTER (WHERE category IS NULL), count(DISTINCT account_id)
             FROM transactions",
        )
        .unwrap();
    let row = &r.rows()[0];
    let dec = |i: usize| Decimal::from_str(row[i].as_deref().unwrap()).unwrap();
    assert_eq!(row[0].as_deref(), Some(pg_count.to_string().as_str()));
    // Statement sign: Plaid's outflows (positive) become negative.
    assert_eq!(dec(2), -pg_plaid_sum);
    assert_eq!(dec(3), pg_manual_sum);
    assert_eq!(dec(1), -pg_plaid_sum + pg_manual_sum);
    assert_eq!(
        row[4].as_deref(),
        Some("0"),
        "every transaction has a category"
    );
    assert_eq!(row[5].as_deref(), Some("5"), "four at the bank, the wallet");
    // Ids, one per row, are stored as they are; the other text columns compressed.
    let storage = engine
        .run(
            "SELECT column_name, string_agg(DISTINCT compression, ',') FROM pragma_storage_info('transactions')
             WHERE column_name IN ('id', 'category') AND segment_type = 'VARCHAR' GROUP BY 1 ORDER BY 1",
        )
        .unwrap();
    assert_eq!(storage.rows()[0][0].as_deref(), Some("category"));
    assert_ne!(storage.rows()[0][1].as_deref(), Some("Uncompressed"));
    assert_eq!(
        storage.rows()[1],
        ["id", "Uncompressed"].map(|s| Some(s.to_string())).to_vec()
    );

    let accounts = engine
        .run("SELECT count(*), sum(current_balance) FROM accounts")
        .unwrap();
    let pg_accounts: (i64, Decimal) =
        sqlx::query_as("SELECT count(*), sum(current_balance) FROM plaid_accounts")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(accounts.rows()[0][0].as_deref(), Some("5"));
    assert_eq!(
        Decimal::from_str(accounts.rows()[0][1].as_deref().unwrap()).unwrap(),
        pg_accounts.1
    );
    // The other mirrored tables.
    let other = engine
        .run(
            "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM sync_log WHERE outcome = 'ok'),
                    (SELECT count(*) FROM balance_snapshots), (SELECT count(*) FROM categories)",
        )
        .unwrap();
    assert_eq!(
        other.rows()[0],
        ["1", "1", "4", "19"].map(|s| Some(s.to_string())).to_vec()
    );

    // Salary lands in Income with a positive amount; groceries are spending.
    let income = engine.run("SELECT min(amount) > 0 FROM transactions WHERE plaid_detailed_category = 'INCOME_SALARY' AND category = 'Income'").unwrap();
    assert_eq!(income.rows()[0][0].as_deref(), Some("true"));
    let groceries = engine
        .run("SELECT count(*) > 0, max(amount) < 0 FROM transactions WHERE category = 'Groceries'")
        .unwrap();
    assert_eq!(
        groceries.rows()[0],
        vec![Some("true".into()), Some("true".into())]
    );

    // A change made with plain SQL reaches the mirror incrementally; the open engine is
    // closed first (DuckDB has one writer or many readers).
    drop(engine);
    sqlx::query("DELETE FROM transactions WHERE description = 'Sold a bike'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE categories SET name = 'Food & Drink' WHERE name = 'Dining'")
        .execute(&pool)
        .await
        .unwrap();
    let report = derive_and_mirror(&pool, &path).await;
    assert_eq!(report.steps[2].counts["rebuilt"], 0, "{report:?}");
    assert_eq!(report.steps[2].counts["deletions"], 1);
    let mut engine = QueryEngine::open(&path, Trust::User).unwrap();
    let n = engine
        .run("SELECT count(*), count(*) FILTER (WHERE category = 'Dining'), count(*) FILTER (WHERE category = 'Food & Drink') > 0 FROM transactions")
        .unwrap();
    assert_eq!(
        n.rows()[0],
        ["1501", "0", "true"].map(|s| Some(s.to_string())).to_vec()
    );
    let cats = engine
        .run("SELECT count(*) FROM categories WHERE name = 'Food & Drink'")
        .unwrap();
    assert_eq!(cats.rows()[0][0].as_deref(), Some("1"));

    // A reader holding the file open does not block a write: the mirror is rebuilt beside
    // it and swapped in; the reader keeps its consistent old copy until it reopens.
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO transactions (user_id, account_id, date, description, amount) VALUES (1, {WALLET}, '2026-11-04', 'Lemonade', 3.00)")))
        .execute(&pool)
        .await
        .unwrap();
    let report = derive_and_mirror(&pool, &path).await;
    assert_eq!(report.steps[2].counts["rebuilt"], 1, "{report:?}");
    let n = engine.run("SELECT count(*) FROM transactions").unwrap();
    assert_eq!(
        n.rows()[0][0].as_deref(),
        Some("1502"),
        "the engine follows the new file"
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn every_pfc_primary_has_a_category(pool: PgPool) {
    let mapped: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pfc_primary FROM category_mappings WHERE pfc_detailed = ''",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let taxonomy = finq_connectors::pfc::v2_primaries()
        .into_iter()
        .chain(finq_connectors::pfc::v1_primaries());
    for primary in taxonomy {
        assert!(
            mapped.iter().any(|m| m == primary),
            "{primary} has no default category"
        );
    }
}

/// A table emptied with plain SQL (`TRUNCATE` fires no row trigger) is emptied in the
/// mirror too.
#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_truncated_table_is_emptied_in_the_mirror(pool: PgPool) {
    let _bank = synced_bank_and_wallet(
        &pool,
        3,
        40,
        &format!("(1, {WALLET}, '2026-11-02', 'Farmers market (cash)', -23.50)"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("finq.duckdb");
    derive_and_mirror(&pool, &path).await;
    let manual = |path: &std::path::Path| {
        QueryEngine::open(path, Trust::User)
            .unwrap()
            .run("SELECT count(*) FROM transactions WHERE source = 'manual'")
            .unwrap()
            .rows()[0][0]
            .clone()
    };
    assert_eq!(manual(&path).as_deref(), Some("1"));
    sqlx::query("TRUNCATE transactions")
        .execute(&pool)
        .await
        .unwrap();
    derive_and_mirror(&pool, &path).await;
    assert_eq!(manual(&path).as_deref(), Some("0"));
    let unified: i64 =
        sqlx::query_scalar("SELECT count(*) FROM unified_transactions WHERE source = 'manual'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unified, 0);
    assert_eq!(
        mirror_snapshot(&path)
            .iter()
            .find(|(t, _)| t == "transactions")
            .unwrap()
            .1
            .len() as i64,
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM plaid_transactions")
            .fetch_one(&pool)
            .await
            .unwrap()
    );
}

/// One change to the data, as a person, a bank or finq makes it.
#[derive(Debug, Clone)]
enum Op {
    /// Days pass at the bank (new transactions, pending ones post), then a sync.
    Advance(u32),
    /// N changes at the bank to existing transactions, then a sync.
    Churn(usize),
    /// Link another item and sync it.
    LinkItem,
    /// Remove the n-th item.
    RemoveItem(usize),
    /// Set the category override of the n-th transaction to the m-th category (SQL).
    Override(usize, usize),
    /// Rename the m-th category (SQL).
    RenameCategory(usize),
    /// Delete the m-th category (SQL; overrides and mappings let go of it).
    DeleteCategory(usize),
    /// Map a detailed PFC code to the m-th category (SQL).
    Map(usize),
    /// Rename the n-th account (SQL).
    RenameAccount(usize),
    /// Insert a manual transaction (SQL).
    ManualInsert(i64),
    /// A rule: the merchant of the n-th transaction into the m-th category.
    AddRule(usize, usize),
    /// Apply the rules to every transaction.
    ApplyRules,
    /// Delete the n-th rule.
    DeleteRule(usize),
    /// Merge the m-th category into the n-th.
    MergeCategory(usize, usize),
    /// Unmark the n-th transfer.
    UnmarkTransfer(usize),
    /// Rename the n-th manual account (SQL).
    RenameManualAccount(usize),
    /// State the n-th manual account's balance on a day (SQL).
    ManualBalance(usize, u32, i64),
    /// Change the amount of the n-th manual transaction (SQL).
    ManualUpdate(usize, i64),
    /// Delete the n-th manual transaction (SQL).
    ManualDelete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u32..15).prop_map(Op::Advance),
        (1usize..40).prop_map(Op::Churn),
        Just(Op::LinkItem),
        (0usize..3).prop_map(Op::RemoveItem),
        (0usize..500, 0usize..20).prop_map(|(n, m)| Op::Override(n, m)),
        (0usize..20).prop_map(Op::RenameCategory),
        (0usize..20).prop_map(Op::DeleteCategory),
        (0usize..20).prop_map(Op::Map),
        (0usize..8).prop_map(Op::RenameAccount),
        (-50_000i64..50_000).prop_map(Op::ManualInsert),
        (0usize..2).prop_map(Op::RenameManualAccount),
        (0usize..500, 0usize..20).prop_map(|(n, m)| Op::AddRule(n, m)),
        Just(Op::ApplyRules),
        (0usize..20).prop_map(Op::UnmarkTransfer),
        (0usize..4).prop_map(Op::DeleteRule),
        (0usize..20, 0usize..20).prop_map(|(m, n)| Op::MergeCategory(m, n)),
        (0usize..2, 0u32..30, 0i64..10_000_000).prop_map(|(n, d, c)| Op::ManualBalance(n, d, c)),
        (0usize..10, -50_000i64..50_000).prop_map(|(n, a)| Op::ManualUpdate(n, a)),
        (0usize..10).prop_map(Op::ManualDelete),
    ]
}

async fn nth_id(pool: &PgPool, sql: &str, n: usize) -> Option<String> {
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pool)
        .await
        .unwrap();
    (!ids.is_empty()).then(|| ids[n % ids.len()].clone())
}

async fn apply(pool: &PgPool, bank: &SimBank, op: &Op, step: usize) {
    let exec = |sql: String| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    };
    let items: Vec<String> =
        sqlx::query_scalar("SELECT item_id FROM plaid_items ORDER BY created_at, item_id")
            .fetch_all(pool)
            .await
            .unwrap();
    let category = |m: usize| {
        format!(
            "(SELECT id FROM categories ORDER BY id OFFSET {} LIMIT 1)",
            m % 15
        )
    };
    let manual_account = |n: usize| {
        format!(
            "(SELECT id FROM manual_accounts ORDER BY id OFFSET {} LIMIT 1)",
            n % 2
        )
    };
    match op {
        Op::Advance(days) => {
            bank.sim.advance(*days);
            for item in &items {
                bank.sync(pool, item).await;
            }
        }
        Op::Churn(n) => {
            for item in &items {
                bank.sim.churn(item, *n);
                bank.sync(pool, item).await;
            }
        }
        Op::LinkItem => {
            let item = bank.link(pool).await;
            bank.sync(pool, &item).await;
        }
        Op::RemoveItem(n) => {
            if !items.is_empty() {
                let mut conn = pool.acquire().await.unwrap();
                finq_connectors::plaid::items::delete(&mut conn, &items[n % items.len()])
                    .await
                    .unwrap();
            }
        }
        Op::Override(n, m) => {
            if let Some(id) = nth_id(pool, "SELECT plaid_transaction_id FROM plaid_transactions ORDER BY 1", *n).await {
                exec(format!(
                    "UPDATE plaid_transactions SET category_override_id = {} WHERE plaid_transaction_id = '{id}'",
                    category(*m)
                ))
                .await;
            }
        }
        Op::RenameCategory(m) => {
            exec(format!(
                "UPDATE categories SET name = name || ' {step}' WHERE id = {}",
                category(*m)
            ))
            .await
        }
        Op::DeleteCategory(m) => exec(format!("DELETE FROM categories WHERE id = {}", category(*m))).await,
        Op::Map(m) => {
            exec(format!(
                "INSERT INTO category_mappings (user_id, pfc_primary, pfc_detailed, category_id)
                 SELECT 1, 'FOOD_AND_DRINK', 'FOOD_AND_DRINK_COFFEE', id FROM categories
                 ORDER BY id OFFSET {} LIMIT 1
                 ON CONFLICT (user_id, pfc_primary, pfc_detailed) DO UPDATE SET category_id = EXCLUDED.category_id",
                m % 15
            ))
            .await
        }
        Op::RenameAccount(n) => {
            if let Some(id) = nth_id(pool, "SELECT account_id FROM plaid_accounts ORDER BY 1", *n).await {
                exec(format!("UPDATE plaid_accounts SET name = name || ' {step}' WHERE account_id = '{id}'")).await;
            }
        }
        Op::ManualInsert(cents) => {
            exec(format!(
                "INSERT INTO transactions (user_id, account_id, date, description, amount, category_id)
                 VALUES (1, {}, DATE '2026-11-01' + {}, 'SQ *MANUAL {step} #12', {cents} / 100.0, {})",
                manual_account(step),
                step % 30,
                category(step)
            ))
            .await
        }
        Op::AddRule(n, m) => {
            let merchant = nth_id(
                pool,
                "SELECT DISTINCT merchant FROM unified_transactions WHERE merchant IS NOT NULL ORDER BY 1",
                *n,
            )
            .await;
            let category: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM categories WHERE id = {}",
                category(*m)
            )))
            .fetch_optional(pool)
            .await
            .unwrap();
            if let (Some(merchant), Some(category_id)) = (merchant, category) {
                finq_transforms::rules::add(
                    pool,
                    &finq_transforms::rules::NewRule {
                        category_id,
                        priority: (step % 3) as i32,
                        merchant: Some(merchant.to_lowercase()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            }
        }
        Op::UnmarkTransfer(n) => {
            if let Some(id) = nth_id(pool, "SELECT out_id FROM transfer_pairs ORDER BY 1", *n).await {
                finq_transforms::transfers::unmark(pool, &id).await.unwrap();
            }
        }
        Op::ApplyRules => {
            finq_transforms::rules::apply_all(pool).await.unwrap();
        }
        Op::DeleteRule(n) => {
            if let Some(id) = nth_id(pool, "SELECT id::text FROM category_rules ORDER BY id", *n).await {
                finq_transforms::rules::delete(pool, id.parse().unwrap()).await.unwrap();
            }
        }
        Op::MergeCategory(m, n) => {
            let names: Vec<String> =
                sqlx::query_scalar("SELECT name FROM categories WHERE name <> 'Uncategorized' ORDER BY id")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            if names.len() >= 2 && m % names.len() != n % names.len() {
                finq_transforms::categories::merge(pool, &names[m % names.len()], &names[n % names.len()])
                    .await
                    .unwrap();
            }
        }
        Op::RenameManualAccount(n) => {
            exec(format!(
                "UPDATE manual_accounts SET name = name || ' {step}' WHERE id = {}",
                manual_account(*n)
            ))
            .await
        }
        Op::ManualBalance(n, day, cents) => {
            exec(format!(
                "INSERT INTO manual_balances (account_id, as_of, balance)
                 VALUES ({}, DATE '2026-11-01' + {day}, {cents} / 100.0)
                 ON CONFLICT (account_id, as_of) DO UPDATE SET balance = EXCLUDED.balance",
                manual_account(*n)
            ))
            .await
        }
        Op::ManualUpdate(n, cents) => {
            if let Some(id) = nth_id(pool, "SELECT id::text FROM transactions ORDER BY id", *n).await {
                exec(format!("UPDATE transactions SET amount = {cents} / 100.0 WHERE id = {id}")).await;
            }
        }
        Op::ManualDelete(n) => {
            if let Some(id) = nth_id(pool, "SELECT id::text FROM transactions ORDER BY id", *n).await {
                exec(format!("DELETE FROM transactions WHERE id = {id}")).await;
            }
        }
    }
}

/// After any sequence of syncs, churn, removals, SQL edits and manual changes, each
/// incremental run leaves exactly what deriving everything and rebuilding the mirror
/// leaves: `unified_transactions` row for row, and every mirrored table row for row.
///
/// The incremental state is never reset: every case's operations pile up on the same
/// database and mirror. The reference is computed in a copy of the database taken after
/// each run (`CREATE DATABASE … TEMPLATE`), where everything is derived again and a mirror
/// is built from scratch, so checking does not disturb what is checked.
#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn incremental_pipeline_equals_a_full_rebuild(pool: PgPool) {
    let bank = SimBank::start(5, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let incremental = dir.path().join("incremental.duckdb");
    let reference = dir.path().join("reference.duckdb");
    let item = bank.link(&pool).await;
    bank.sync(&pool, &item).await;
    sqlx::query(
        "INSERT INTO manual_accounts (user_id, name, type) VALUES (1, 'Wallet', 'cash'), (1, 'House', 'property')",
    )
    .execute(&pool)
    .await
    .unwrap();
    derive_and_mirror(&pool, &incremental).await;

    let options = (*pool.connect_options()).clone();
    let name = options.get_database().expect("a database name").to_string();
    // PostgreSQL cuts names at 63 bytes, as long as the test's own: a shorter one.
    let copy_name = format!("finq_ref_{}", &name[name.len().saturating_sub(50)..]);
    assert!(copy_name.len() < 63 && copy_name != name);
    let admin = PgPool::connect_with(options.clone().database("postgres"))
        .await
        .unwrap();
    let mut pool = pool;

    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    let sequences = proptest::collection::vec(op(), 1..6);
    let mut step = 0;
    for case in 0..runner.config().cases {
        let ops = sequences
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        for op in &ops {
            step += 1;
            apply(&pool, &bank, op, step).await;
            let report = derive_and_mirror(&pool, &incremental).await;
            let sink = report.steps.last().unwrap();
            // Incremental all along: the mirror was updated, not built again.
            assert_eq!(
                sink.counts.get("rebuilt"),
                Some(&0),
                "case {case}, after {op:?}: the mirror was rebuilt ({sink:?})"
            );
            let got_unified = unified_snapshot(&pool).await;
            let got_mirror = mirror_snapshot(&incremental);
            let (mirrored, unified) = transaction_origins(&pool, &incremental).await;
            assert_eq!(
                mirrored, unified,
                "case {case}, after {op:?}: the mirror's filled-in columns differ from unified_transactions"
            );

            // The reference, in a copy of the database (a template may have no other
            // session, so the pool closes while it is copied).
            pool.close().await;
            for sql in [
                format!("DROP DATABASE IF EXISTS \"{copy_name}\""),
                format!("CREATE DATABASE \"{copy_name}\" TEMPLATE \"{name}\""),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&admin)
                    .await
                    .unwrap();
            }
            pool = PgPool::connect_with(options.clone()).await.unwrap();
            let copy = PgPool::connect_with(options.clone().database(&copy_name))
                .await
                .unwrap();
            sqlx::query("INSERT INTO change_log (entity, key) VALUES ('all', '')")
                .execute(&copy)
                .await
                .unwrap();
            let _ = std::fs::remove_file(&reference);
            derive_and_mirror(&copy, &reference).await;
            assert_eq!(
                got_unified,
                unified_snapshot(&copy).await,
                "case {case}, after {op:?} (of {ops:?}): unified_transactions differs from a full derive"
            );
            assert_eq!(
                got_mirror,
                mirror_snapshot(&reference),
                "case {case}, after {op:?} (of {ops:?}), mirror step {sink:?}: the incremental mirror differs from a rebuild"
            );
            copy.close().await;
        }
    }
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{copy_name}\""
    )))
    .execute(&admin)
    .await
    .unwrap();
}

//! PostgreSQL → transforms → DuckDB: the mirror's counts and sums equal Postgres's, with
//! the statement sign, and every Plaid category has a home.

use finq_analytics::mirror::DuckMirror;
use finq_analytics::query::{self, Trust};
use finq_core::plugin::Transform;
use finq_e2e::SimBank;
use finq_transforms::{CategoryMapping, UnionTransactions};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::str::FromStr;

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn mirror_matches_postgres(pool: PgPool) {
    let bank = SimBank::start(21, 1500).await;
    let item = bank.link(&pool).await;
    bank.sync(&pool, &item).await;
    sqlx::query("INSERT INTO transactions (user_id, date, description, amount) VALUES (1, '2026-11-02', 'Farmers market (cash)', -23.50), (1, '2026-11-03', 'Sold a bike', 120.00)")
        .execute(&pool)
        .await
        .unwrap();
    CategoryMapping.run(&pool).await.unwrap();
    let counts = UnionTransactions.run(&pool).await.unwrap();
    assert_eq!(counts, vec![("plaid", 1500), ("manual", 2)]);
    // Idempotent.
    assert_eq!(UnionTransactions.run(&pool).await.unwrap(), counts);

    let dir = tempfile::tempdir().unwrap();
    let mirror = DuckMirror::new(dir.path().join("finq.duckdb"));
    let written = mirror.refresh(&pool).await.unwrap();
    assert_eq!(written[0], ("transactions", 1502));

    let (pg_count, pg_plaid_sum, pg_manual_sum): (i64, Decimal, Decimal) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM plaid_transactions) + (SELECT count(*) FROM transactions),
                (SELECT sum(amount) FROM plaid_transactions), (SELECT sum(amount) FROM transactions)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let conn = query::open(mirror.path(), Trust::User).unwrap();
    let r = query::run(
        &conn,
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
    assert_eq!(row[5].as_deref(), Some("4"));

    let accounts =
        query::run(&conn, "SELECT count(*), sum(current_balance) FROM accounts").unwrap();
    let pg_accounts: (i64, Decimal) =
        sqlx::query_as("SELECT count(*), sum(current_balance) FROM plaid_accounts")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(accounts.rows()[0][0].as_deref(), Some("4"));
    assert_eq!(
        Decimal::from_str(accounts.rows()[0][1].as_deref().unwrap()).unwrap(),
        pg_accounts.1
    );

    // Salary lands in Income with a positive amount; groceries are spending.
    let income = query::run(&conn, "SELECT min(amount) > 0 FROM transactions WHERE plaid_detailed_category = 'INCOME_SALARY' AND category = 'Income'").unwrap();
    assert_eq!(income.rows()[0][0].as_deref(), Some("true"));
    let groceries = query::run(
        &conn,
        "SELECT count(*) > 0, max(amount) < 0 FROM transactions WHERE category = 'Groceries'",
    )
    .unwrap();
    assert_eq!(
        groceries.rows()[0],
        vec![Some("true".into()), Some("true".into())]
    );

    // A refresh after a change replaces the file atomically with the new data.
    sqlx::query("DELETE FROM transactions WHERE description = 'Sold a bike'")
        .execute(&pool)
        .await
        .unwrap();
    UnionTransactions.run(&pool).await.unwrap();
    drop(conn);
    mirror.refresh(&pool).await.unwrap();
    let conn = query::open(mirror.path(), Trust::User).unwrap();
    let n = query::run(&conn, "SELECT count(*) FROM transactions").unwrap();
    assert_eq!(n.rows()[0][0].as_deref(), Some("1501"));
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

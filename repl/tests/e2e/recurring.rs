//! Recurring payments: the simulated bank's monthly bills and subscriptions are found with
//! their cadence and amounts, transfers and irregular shopping are not, and a price change
//! and a missed payment are flagged.

use finq_e2e::{SimBank, derive_and_mirror, mirror_rows};
use sqlx::PgPool;

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn the_banks_bills_and_subscriptions_are_found(pool: PgPool) {
    let bank = SimBank::start(9, 600).await;
    let item = bank.link(&pool).await;
    bank.sync(&pool, &item).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("finq.duckdb");
    derive_and_mirror(&pool, &mirror).await;
    let found = |sql: &str| mirror_rows(&mirror, sql);
    let s = |v: &str| Some(v.to_string());
    // The simulator's monthly outflows (the loan payment and the move to savings are
    // transfers between the person's own accounts, so not bills).
    assert_eq!(
        found(
            "SELECT merchant, cadence, typical_amount, monthly_cost, price_changed
             FROM recurring ORDER BY merchant"
        ),
        vec![
            vec![
                s("Austin Energy"),
                s("monthly"),
                s("98.00"),
                s("98.00"),
                s("false")
            ],
            vec![
                s("Austin Property Management"),
                s("monthly"),
                s("1850.00"),
                s("1850.00"),
                s("false")
            ],
            vec![
                s("GEICO"),
                s("monthly"),
                s("118.00"),
                s("118.00"),
                s("false")
            ],
            vec![
                s("Google Fiber"),
                s("monthly"),
                s("70.00"),
                s("70.00"),
                s("false")
            ],
            vec![
                s("Netflix"),
                s("monthly"),
                s("15.49"),
                s("15.49"),
                s("false")
            ],
            vec![
                s("Planet Fitness"),
                s("monthly"),
                s("24.99"),
                s("24.99"),
                s("false")
            ],
            vec![
                s("Spotify"),
                s("monthly"),
                s("11.99"),
                s("11.99"),
                s("false")
            ],
        ]
    );
    // The next payment is a month after the last.
    let next = found(
        "SELECT count(*) FROM recurring WHERE next_expected <> CAST(last_date + INTERVAL 1 MONTH AS DATE)",
    );
    assert_eq!(next[0][0], s("0"));

    // Netflix raises its price: flagged.
    sqlx::query(
        "UPDATE plaid_transactions SET amount = 17.99
         WHERE plaid_transaction_id = (SELECT plaid_transaction_id FROM plaid_transactions
                                       WHERE merchant_name = 'Netflix' AND NOT pending
                                       ORDER BY date DESC LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert_eq!(
        found(
            "SELECT last_amount, previous_amount, typical_amount FROM recurring WHERE price_changed"
        ),
        vec![vec![s("17.99"), s("15.49"), s("15.49")]]
    );
    // Google Fiber's November payment (the 15th) never came: due then, missed a week later.
    sqlx::query(
        "DELETE FROM plaid_transactions
         WHERE merchant_name = 'Google Fiber' AND date = DATE '2026-11-15'",
    )
    .execute(&pool)
    .await
    .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    let today = chrono::Local::now().date_naive();
    let week_late = chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    assert_eq!(
        found(
            "SELECT last_date, next_expected, missed FROM recurring WHERE merchant = 'Google Fiber'"
        ),
        vec![vec![
            s("2026-10-15"),
            s("2026-11-15"),
            s(&(today > week_late).to_string())
        ]]
    );
}

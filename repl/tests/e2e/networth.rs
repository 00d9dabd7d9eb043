//! Balance history and net worth: balances between snapshots derived from the
//! transactions, liabilities counted as owed, and periods the transactions do not explain
//! flagged.

use chrono::NaiveDate;
use finq_connectors::manual::{self, AccountType, NewTransaction};
use finq_e2e::{derive_and_mirror, mirror_rows};
use rust_decimal::Decimal;
use sqlx::PgPool;

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn balances_are_filled_in_and_net_worth_adds_up(pool: PgPool) {
    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let money = |cents| Decimal::new(cents, 2);
    let checking = manual::create(&pool, "Checking", AccountType::Depository, "USD")
        .await
        .unwrap();
    let loan = manual::create(&pool, "Car Loan", AccountType::Loan, "USD")
        .await
        .unwrap();
    let house = manual::create(&pool, "House", AccountType::Property, "USD")
        .await
        .unwrap();
    let add = |account, date, cents, what: &str| {
        let tx = NewTransaction {
            date,
            amount: money(cents),
            description: what.into(),
            category_id: None,
            notes: None,
        };
        let pool = pool.clone();
        async move { manual::add_transaction(&pool, account, &tx).await.unwrap() }
    };
    add(&checking, day(5), -10000, "GROCERIES").await;
    add(&checking, day(8), 5000, "REFUND").await;
    add(&loan, day(7), 20000, "LOAN PAYMENT").await;
    manual::set_balance(&pool, &checking, day(10), money(100000))
        .await
        .unwrap();
    // Nothing explains this drop of 100.00.
    manual::set_balance(&pool, &checking, day(12), money(90000))
        .await
        .unwrap();
    manual::set_balance(&pool, &loan, day(10), money(500000))
        .await
        .unwrap();
    manual::set_balance(&pool, &house, day(1), money(45000000))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("finq.duckdb");
    derive_and_mirror(&pool, &mirror).await;

    let s = |v: &str| Some(v.to_string());
    let history = mirror_rows(
        &mirror,
        "SELECT account_name, strftime(date, '%d'), balance, from_snapshot, agrees
         FROM balance_history
         WHERE account_name <> 'House' AND date <= DATE '2026-11-13' ORDER BY 1, 2",
    );
    let row = |a: &str, d: &str, b: &str, snap: bool, agrees: bool| {
        vec![
            s(a),
            s(d),
            s(b),
            s(&snap.to_string()),
            s(&agrees.to_string()),
        ]
    };
    assert_eq!(
        history,
        vec![
            row("Car Loan", "07", "5000.00", false, true),
            row("Car Loan", "08", "5000.00", false, true),
            row("Car Loan", "09", "5000.00", false, true),
            row("Car Loan", "10", "5000.00", true, true),
            row("Car Loan", "11", "5000.00", false, true),
            row("Car Loan", "12", "5000.00", false, true),
            row("Car Loan", "13", "5000.00", false, true),
            row("Checking", "05", "950.00", false, true),
            row("Checking", "06", "950.00", false, true),
            row("Checking", "07", "950.00", false, true),
            row("Checking", "08", "1000.00", false, true),
            row("Checking", "09", "1000.00", false, true),
            row("Checking", "10", "1000.00", true, true),
            row("Checking", "11", "900.00", false, false),
            row("Checking", "12", "900.00", true, true),
            row("Checking", "13", "900.00", false, true),
        ]
    );
    let worth = mirror_rows(
        &mirror,
        "SELECT strftime(date, '%d'), assets, liabilities, net_worth, accounts, agrees
         FROM net_worth WHERE date IN (DATE '2026-11-01', DATE '2026-11-06', DATE '2026-11-07', DATE '2026-11-11')
         ORDER BY 1",
    );
    assert_eq!(
        worth,
        vec![
            vec![
                s("01"),
                s("450000.00"),
                s("0.00"),
                s("450000.00"),
                s("1"),
                s("true")
            ],
            vec![
                s("06"),
                s("450950.00"),
                s("0.00"),
                s("450950.00"),
                s("2"),
                s("true")
            ],
            vec![
                s("07"),
                s("450950.00"),
                s("5000.00"),
                s("445950.00"),
                s("3"),
                s("true")
            ],
            vec![
                s("11"),
                s("450900.00"),
                s("5000.00"),
                s("445900.00"),
                s("3"),
                s("false")
            ],
        ]
    );
    // Every account's history runs to today.
    let today = chrono::Local::now().date_naive().to_string();
    assert_eq!(
        mirror_rows(
            &mirror,
            "SELECT DISTINCT strftime(max(date) OVER (PARTITION BY account_id), '%Y-%m-%d') FROM balance_history"
        ),
        vec![vec![s(&today)]]
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn reports_from_the_command_line(pool: PgPool) {
    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let checking = manual::create(&pool, "Checking", AccountType::Depository, "USD")
        .await
        .unwrap();
    for (d, cents, what) in [
        (5, -10000, "GROCERIES"),
        (6, -2500, "BOOKS"),
        (8, 5000, "REFUND"),
    ] {
        let tx = NewTransaction {
            date: day(d),
            amount: Decimal::new(cents, 2),
            description: what.into(),
            category_id: None,
            notes: None,
        };
        manual::add_transaction(&pool, &checking, &tx)
            .await
            .unwrap();
    }
    manual::set_balance(&pool, &checking, day(10), Decimal::new(100000, 2))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    derive_and_mirror(&pool, &dir.path().join("finq.duckdb")).await;
    let db = finq_e2e::database_url(&pool);
    let report = |args: &[&str]| {
        let mut all = vec!["report"];
        all.extend(args);
        finq_e2e::succeeded(&finq_e2e::finq(
            env!("CARGO_BIN_EXE_finq"),
            &db,
            dir.path(),
            &all,
        ))
    };
    // Months back to November 2026, whatever today is.
    let today = chrono::Local::now().date_naive();
    use chrono::Datelike;
    let months = ((today.year() * 12 + today.month() as i32) - (2026 * 12 + 11) + 1).to_string();

    let cashflow = report(&["cashflow", "--months", &months, "--format", "csv"]);
    assert!(
        cashflow.starts_with("month,money_in,money_out,net\n2026-11,50.00,125.00,-75.00\n"),
        "{cashflow}"
    );
    let spending = report(&["spending", "--months", &months, "--format", "csv"]);
    let total = spending.lines().find(|l| l.starts_with("Total,")).unwrap();
    assert!(total.ends_with(",125.00"), "{spending}");
    let networth = report(&["networth", "--months", &months, "--format", "csv"]);
    assert!(
        networth.contains("\n2026-11,1000.00,0.00,1000.00,\n"),
        "{networth}"
    );
    // As a table: the numbers, then bars.
    let table = report(&["spending", "--months", &months]);
    assert!(table.starts_with("Spending by category"), "{table}");
    assert!(table.contains("█"), "{table}");
}

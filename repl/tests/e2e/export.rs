//! Exports read by the tools they are for: hledger reads the journal with every account's
//! total equal to DuckDB's, beancount's bean-check accepts its file, DuckDB reads the
//! Parquet back. (`scripts/test` installs hledger and beancount.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use finq_connectors::manual::{self, AccountType, NewTransaction};
use finq_e2e::{SimBank, database_url, derive_and_mirror, mirror_rows, succeeded};
use rust_decimal::Decimal;
use sqlx::PgPool;

fn finq(db: &str, data: &Path, args: &[&str]) -> String {
    succeeded(&finq_e2e::finq(env!("CARGO_BIN_EXE_finq"), db, data, args))
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (scripts/test installs hledger and beancount)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hledger balance` as account → total.
fn hledger_totals(journal: &Path) -> BTreeMap<String, Decimal> {
    let csv = tool(
        "hledger",
        &[
            "-f",
            journal.to_str().unwrap(),
            "balance",
            "--flat",
            "-N",
            "-O",
            "csv",
        ],
    );
    csv.lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<String> = l
                .split("\",\"")
                .map(|c| c.trim_matches('"').to_string())
                .collect();
            let amount = cells[1].trim_end_matches(" USD").replace(',', "");
            (
                cells[0].clone(),
                amount.parse().unwrap_or_else(|_| panic!("{l}")),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn exports_are_read_by_hledger_beancount_and_duckdb(pool: PgPool) {
    let bank = SimBank::start(11, 800).await;
    let item = bank.link(&pool).await;
    bank.sync(&pool, &item).await;
    // A hand-kept card too, with a category of income and an awkward name.
    let card = manual::create(&pool, "Store Card: Gold", AccountType::Credit, "USD")
        .await
        .unwrap();
    for (cents, what) in [(-1999, "CAFÉ \"LE BON\"; TABLE 4"), (500, "REFUND")] {
        let tx = NewTransaction {
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(),
            amount: Decimal::new(cents, 2),
            description: what.into(),
            category_id: None,
            notes: None,
        };
        manual::add_transaction(&pool, &card, &tx).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mirror = data.join("finq.duckdb");
    derive_and_mirror(&pool, &mirror).await;
    let db = database_url(&pool);

    // hledger: every account's total is DuckDB's.
    let journal = data.join("finq.journal");
    finq(
        &db,
        data,
        &[
            "export",
            "--format",
            "hledger",
            "--output",
            journal.to_str().unwrap(),
        ],
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&journal).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "only its owner reads an export");
    let want: BTreeMap<String, Decimal> = mirror_rows(
        &mirror,
        "WITH t AS (SELECT t.*, a.type IN ('credit', 'loan') AS owed, c.is_income
                    FROM transactions t JOIN accounts a USING (account_id)
                    LEFT JOIN categories c ON c.name = t.category)
         SELECT CASE WHEN owed THEN 'liabilities:' ELSE 'assets:' END
                || replace(replace(account_name, ':', '-'), ';', '-'), sum(amount) FROM t GROUP BY 1
         UNION ALL
         SELECT CASE WHEN is_transfer THEN 'equity:Transfers'
                     WHEN is_income THEN 'income:' || category ELSE 'expenses:' || category END,
                -sum(amount) FROM t GROUP BY 1",
    )
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].as_deref().unwrap().parse().unwrap(),
        )
    })
    .filter(|(_, v): &(String, Decimal)| !v.is_zero())
    .collect();
    let got = hledger_totals(&journal);
    assert_eq!(got, want);
    assert!(got.contains_key("liabilities:Store Card- Gold"), "{got:?}");
    // Pending transactions are flagged.
    let pending = tool(
        "hledger",
        &["-f", journal.to_str().unwrap(), "print", "--pending"],
    );
    let flagged = pending.lines().filter(|l| l.starts_with("20")).count();
    let in_duckdb = mirror_rows(&mirror, "SELECT count(*) FROM transactions WHERE pending");
    assert_eq!(flagged.to_string(), in_duckdb[0][0].clone().unwrap());
    assert!(flagged > 0);

    // beancount: bean-check accepts the file, with and without opening balances.
    let bean_check = std::env::var("FINQ_BEAN_CHECK").unwrap_or_else(|_| "bean-check".into());
    for extra in [&[][..], &["--opening-balances"][..]] {
        let file = data.join("finq.beancount");
        let mut args = vec![
            "export",
            "--format",
            "beancount",
            "--output",
            file.to_str().unwrap(),
        ];
        args.extend(extra);
        finq(&db, data, &args);
        tool(&bean_check, &[file.to_str().unwrap()]);
    }
    // hledger with opening balances: each bank account's total is its balance today.
    let opened = data.join("opened.journal");
    finq(
        &db,
        data,
        &[
            "export",
            "--format",
            "hledger",
            "--opening-balances",
            "--output",
            opened.to_str().unwrap(),
        ],
    );
    let totals = hledger_totals(&opened);
    assert!(totals.contains_key("equity:opening balances"), "{totals:?}");

    // Parquet and CSV: DuckDB reads back what it wrote.
    let parquet = data.join("t.parquet");
    finq(
        &db,
        data,
        &[
            "export",
            "--format",
            "parquet",
            "--output",
            parquet.to_str().unwrap(),
        ],
    );
    let back = mirror_rows(
        &mirror,
        &format!(
            "SELECT count(*), sum(amount) FROM read_parquet('{}')",
            parquet.display()
        ),
    );
    assert_eq!(
        back,
        mirror_rows(&mirror, "SELECT count(*), sum(amount) FROM transactions")
    );
    let csv = finq(
        &db,
        data,
        &["export", "--format", "csv", "--since", "2026-11-01"],
    );
    let n = mirror_rows(
        &mirror,
        "SELECT count(*) FROM transactions WHERE date >= DATE '2026-11-01'",
    );
    assert_eq!(
        (csv.lines().count() - 1).to_string(),
        n[0][0].clone().unwrap()
    );
}

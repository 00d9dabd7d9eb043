//! Categories the person controls: their edits beat rules, rules beat Plaid's mapping;
//! rules apply to what arrives and, when asked, to the whole history; renames, merges and
//! deletions carry everything along; all of it in DuckDB.

use std::path::Path;

use finq_connectors::manual::{self, AccountType, NewTransaction};
use finq_e2e::{SimBank, derive_and_mirror, mirror_rows, succeeded as ok};
use finq_transforms::categories;
use finq_transforms::rules::{self, NewRule};
use rust_decimal::Decimal;
use sqlx::PgPool;

/// The categories of the rent payments, oldest first.
fn rent(mirror: &Path) -> Vec<String> {
    mirror_rows(
        mirror,
        "SELECT category FROM transactions WHERE description LIKE '%PROPERTY MGMT%' ORDER BY date, id",
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn edits_beat_rules_beat_the_mapping(pool: PgPool) {
    let bank = SimBank::start(7, 400).await;
    let item = bank.link(&pool).await;
    bank.sync(&pool, &item).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("finq.duckdb");
    derive_and_mirror(&pool, &mirror).await;
    let before = rent(&mirror);
    assert!(before.len() >= 2, "{before:?}");
    assert!(
        before.iter().all(|c| c == "Housing & Utilities"),
        "{before:?}"
    );

    // A rule applies to what arrives, not to the months already there.
    let housing = categories::add(&pool, "Rent", None, false).await.unwrap();
    let rule = rules::add(
        &pool,
        &NewRule {
            category_id: housing,
            description: Some("property mgmt".into()),
            min_amount: Some(Decimal::new(1000, 0)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        rules::count_matches(&pool, rule).await.unwrap(),
        before.len() as i64
    );
    derive_and_mirror(&pool, &mirror).await;
    assert_eq!(rent(&mirror), before, "a new rule leaves history alone");
    // Next month's rent arrives (as a sync writes it).
    sqlx::query(
        "INSERT INTO plaid_transactions (plaid_transaction_id, item_id, account_id, amount,
             iso_currency_code, date, name, merchant_name, pending, plaid_category,
             plaid_detailed_category)
         SELECT 'rent-next-month', item_id, account_id, amount, iso_currency_code, date + 30,
                name, merchant_name, false, plaid_category, plaid_detailed_category
         FROM plaid_transactions WHERE name LIKE '%PROPERTY MGMT%' ORDER BY date DESC LIMIT 1",
    )
    .execute(&pool)
    .await
    .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    let after = rent(&mirror);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(
        after[before.len()..].iter().all(|c| c == "Rent"),
        "what arrived met the rule: {after:?}"
    );

    // Applied to the history, when asked.
    assert_eq!(
        rules::apply_all(&pool).await.unwrap(),
        before.len() as u64,
        "exactly the old rent payments change"
    );
    derive_and_mirror(&pool, &mirror).await;
    assert!(rent(&mirror).iter().all(|c| c == "Rent"));

    // The person's edit beats the rule, also when the rules are applied again.
    let first: String = mirror_rows(
        &mirror,
        "SELECT id FROM transactions WHERE description LIKE '%PROPERTY MGMT%' ORDER BY date, id LIMIT 1",
    )[0][0]
        .clone()
        .unwrap();
    let (groceries, _) = categories::get(&pool, "groceries").await.unwrap();
    assert_eq!(
        categories::categorize(&pool, std::slice::from_ref(&first), Some(groceries))
            .await
            .unwrap(),
        1
    );
    rules::apply_all(&pool).await.unwrap();
    derive_and_mirror(&pool, &mirror).await;
    let edited = rent(&mirror);
    assert_eq!(edited[0], "Groceries");
    assert!(edited[1..].iter().all(|c| c == "Rent"), "{edited:?}");

    // An unknown id changes nothing.
    let err = categories::categorize(
        &pool,
        &[first.clone(), "plaid:nope".into()],
        Some(groceries),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("no transaction plaid:nope"),
        "{err}"
    );

    // A higher-priority rule wins over the first one (once applied).
    let (home, _) = categories::get(&pool, "Home").await.unwrap();
    let higher = rules::add(
        &pool,
        &NewRule {
            category_id: home,
            priority: 5,
            merchant: Some("^austin property".into()),
            regex: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    rules::apply_all(&pool).await.unwrap();
    derive_and_mirror(&pool, &mirror).await;
    let ranked = rent(&mirror);
    assert_eq!(ranked[0], "Groceries");
    assert!(ranked[1..].iter().all(|c| c == "Home"), "{ranked:?}");
    // Deleting it gives the rows back to... the mapping, until the rules are applied.
    rules::delete(&pool, higher).await.unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert!(
        rent(&mirror)[1..]
            .iter()
            .all(|c| c == "Housing & Utilities"),
        "{:?}",
        rent(&mirror)
    );
    rules::apply_all(&pool).await.unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert!(rent(&mirror)[1..].iter().all(|c| c == "Rent"));

    // Rename and merge carry edits, rules and rows along.
    categories::rename(&pool, "Rent", "Housing").await.unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert!(rent(&mirror)[1..].iter().all(|c| c == "Housing"));
    let (from, into) = categories::merge(&pool, "groceries", "Dining")
        .await
        .unwrap();
    assert_eq!((from.as_str(), into.as_str()), ("Groceries", "Dining"));
    derive_and_mirror(&pool, &mirror).await;
    assert_eq!(rent(&mirror)[0], "Dining", "the edit moved along");
    assert_eq!(
        mirror_rows(
            &mirror,
            "SELECT count(*) FILTER (WHERE category = 'Groceries'), count(*) FILTER (WHERE plaid_detailed_category = 'FOOD_AND_DRINK_GROCERIES' AND category <> 'Dining') FROM transactions"
        ),
        vec![vec![Some("0".into()), Some("0".into())]],
        "the mapping of groceries moved along"
    );
    assert!(matches!(
        categories::merge(&pool, "Uncategorized", "Dining").await,
        Err(categories::CategoryError::Fallback)
    ));

    // Manual transactions meet the rules too.
    let wallet = manual::create(&pool, "Wallet", AccountType::Cash, "USD")
        .await
        .unwrap();
    manual::add_transaction(
        &pool,
        &wallet,
        &NewTransaction {
            date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            amount: Decimal::new(-185000, 2),
            description: "Cash rent, Austin Property Mgmt".into(),
            category_id: None,
            notes: None,
        },
    )
    .await
    .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert_eq!(
        mirror_rows(
            &mirror,
            "SELECT category FROM transactions WHERE source = 'manual'"
        ),
        vec![vec![Some("Housing".into())]]
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn rules_refuse_what_cannot_work(pool: PgPool) {
    let (dining, _) = categories::get(&pool, "Dining").await.unwrap();
    let err = rules::add(
        &pool,
        &NewRule {
            category_id: dining,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("needs something to match"),
        "{err}"
    );
    let err = rules::add(
        &pool,
        &NewRule {
            category_id: dining,
            merchant: Some("(unclosed".into()),
            regex: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--merchant \"(unclosed\" is not a valid regular expression"),
        "{err}"
    );
    let err = rules::add(
        &pool,
        &NewRule {
            category_id: dining,
            min_amount: Some(Decimal::new(20, 0)),
            max_amount: Some(Decimal::new(10, 0)),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("more than --max"), "{err}");
    let err = categories::get(&pool, "Dinning").await.unwrap_err();
    assert!(
        err.to_string().contains("no category \"Dinning\"") && err.to_string().contains("Dining"),
        "{err}"
    );
    // Names are one whatever their case.
    let err = categories::add(&pool, "dining", None, false)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "there is already a category \"Dining\"");
    let err = categories::rename(&pool, "Groceries", "DINING")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "there is already a category \"Dining\"");
    // A change of case alone is a rename.
    categories::rename(&pool, "Groceries", "groceries")
        .await
        .unwrap();
}

fn finq(db: &str, data: &Path, args: &[&str]) -> std::process::Output {
    finq_e2e::finq(env!("CARGO_BIN_EXE_finq"), db, data, args)
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn categories_and_rules_from_the_command_line(pool: PgPool) {
    let db = finq_e2e::database_url(&pool);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let run = |args: &[&str]| finq(&db, data, args);
    let sql = |q: &str| ok(&run(&["sql", q, "--format", "csv"]));

    for (amount, what) in [
        ("-4.50", "SQ *BLUE BOTTLE COFFEE"),
        ("-5.25", "BLUE BOTTLE #12 OAKLAND CA"),
        ("-60", "CITY WATER"),
    ] {
        ok(&run(&[
            "add",
            "--amount",
            amount,
            "--description",
            what,
            "--date",
            "2026-11-02",
        ]));
    }
    ok(&run(&["categories", "add", "Coffee", "--parent", "Dining"]));
    let out = ok(&run(&[
        "rules",
        "add",
        "Coffee",
        "--merchant",
        "blue bottle",
    ]));
    assert!(
        out.contains("matches 2 transactions you already have") && out.contains("finq rules apply"),
        "{out}"
    );
    let out = ok(&run(&["rules", "apply"]));
    assert!(out.contains("2 changed"), "{out}");
    assert_eq!(
        sql("SELECT merchant, category FROM transactions ORDER BY amount"),
        "merchant,category\nCity Water,Uncategorized\nBlue Bottle,Coffee\nBlue Bottle Coffee,Coffee\n"
    );
    let out = ok(&run(&["rules"]));
    assert!(
        out.contains("merchant contains \"blue bottle\"") && out.contains("Coffee"),
        "{out}"
    );

    // The person's edit, on a query's result.
    let out = ok(&run(&[
        "categorize",
        "--query",
        "SELECT id FROM transactions WHERE merchant = 'City Water'",
        "housing & utilities",
    ]));
    assert!(
        out.starts_with("1 transaction now in \"Housing & Utilities\""),
        "{out}"
    );
    ok(&run(&["categories", "rename", "Coffee", "Café"]));
    ok(&run(&[
        "categories",
        "delete",
        "Housing & Utilities",
        "--into",
        "Home",
    ]));
    assert_eq!(
        sql("SELECT category, count(*) AS n FROM transactions GROUP BY 1 ORDER BY 1"),
        "category,n\nCafé,2\nHome,1\n"
    );
    let listed = ok(&run(&["categories", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let cafe = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Café")
        .unwrap();
    assert_eq!(cafe["parent"], "Dining");
    assert_eq!(cafe["transactions"], 2);

    // Mistakes are named, with what to do.
    let err = run(&["categorize", "manual:999", "Home"]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("no transaction manual:999"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let err = run(&["rules", "add", "Café", "--account", "Nowhere"]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("no account \"Nowhere\"; there are: Cash"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let err = run(&["rules", "delete", "42"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("no rule 42"));

    // An edit taken back: the rules and the mapping decide again.
    let out = ok(&run(&[
        "categorize",
        "--undo",
        "--query",
        "SELECT id FROM transactions WHERE category = 'Home'",
    ]));
    assert!(out.starts_with("1 transaction back to"), "{out}");
    assert_eq!(
        sql("SELECT merchant, category FROM transactions ORDER BY amount"),
        "merchant,category\nCity Water,Uncategorized\nBlue Bottle,Café\nBlue Bottle Coffee,Café\n"
    );
    let err = run(&["categorize", "--undo", "manual:1", "Home"]);
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("\"Home\" is not a transaction id"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

//! Money Plaid does not see: bank and card exports imported through the pipeline (exact,
//! idempotent, all or nothing), transactions typed in, manual accounts with balances; all
//! of it in DuckDB.

use std::path::Path;

use finq_connectors::import::ImportSource;
use finq_connectors::manual::{self, AccountType};
use finq_core::pipeline::{Context, PipelineReport, Plan, Stages};
use finq_e2e::{failed, mirror_rows, succeeded as ok};
use sqlx::PgPool;

/// A Chase card export: two identical coffees on one day, charges negative.
const CHASE: &str = "Transaction Date,Post Date,Description,Category,Type,Amount,Memo
11/02/2026,11/03/2026,SQ *BLUE BOTTLE COFFEE,Food & Drink,Sale,-4.50,
11/02/2026,11/03/2026,SQ *BLUE BOTTLE COFFEE,Food & Drink,Sale,-4.50,
11/03/2026,11/04/2026,STARBUCKS #1234 SEATTLE WA,Food & Drink,Sale,-6.25,
11/05/2026,11/05/2026,AUTOMATIC PAYMENT - THANK,,Payment,500.00,
";

/// The next export overlaps it: 11/03 and 11/05 again, a third coffee on 11/02 that posted
/// late, and two new days.
const CHASE_LATER: &str = "Transaction Date,Post Date,Description,Category,Type,Amount,Memo
11/02/2026,11/03/2026,SQ *BLUE BOTTLE COFFEE,Food & Drink,Sale,-4.50,
11/02/2026,11/03/2026,SQ *BLUE BOTTLE COFFEE,Food & Drink,Sale,-4.50,
11/02/2026,11/06/2026,SQ *BLUE BOTTLE COFFEE,Food & Drink,Sale,-4.50,
11/03/2026,11/04/2026,STARBUCKS #1234 SEATTLE WA,Food & Drink,Sale,-6.25,
11/05/2026,11/05/2026,AUTOMATIC PAYMENT - THANK,,Payment,500.00,
11/06/2026,11/07/2026,TST* SHAKE SHACK 0162,Food & Drink,Sale,-18.40,
11/07/2026,11/08/2026,AMAZON MKTPL*2K4LL1,Shopping,Sale,\"-1,020.00\",
";

async fn import(pool: &PgPool, mirror: &Path, source: ImportSource) -> PipelineReport {
    let plan = Plan {
        sources: vec![finq_connectors::SourcePlugin::Import(source)],
        transforms: vec![
            finq_transforms::TransformConfig::Union.build(),
            finq_transforms::TransformConfig::Transfers.build(),
        ],
        sinks: vec![finq_analytics::SinkPlugin::Duckdb(
            finq_analytics::mirror::DuckMirror::new(mirror),
        )],
    };
    finq_core::pipeline::run(&Context::new(pool.clone()), &plan, Stages::All).await
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> ImportSource {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    ImportSource {
        path,
        account: "Visa".into(),
        format: None,
        columns: None,
        date_format: None,
    }
}

fn counts(report: &PipelineReport) -> (u64, u64) {
    let step = &report.steps[0];
    assert!(step.ok, "{:#?}", report.steps);
    (step.counts["read"], step.counts["added"])
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn imports_are_exact_idempotent_and_all_or_nothing(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("finq.duckdb");
    manual::create(&pool, "Visa", AccountType::Credit, "USD")
        .await
        .unwrap();

    // The first export: every row, the two coffees as two transactions.
    let first = file(dir.path(), "visa.csv", CHASE.as_bytes());
    assert_eq!(counts(&import(&pool, &mirror, first.clone()).await), (4, 4));
    let by_merchant = "SELECT merchant, count(*), sum(amount) FROM transactions
                       WHERE account_name = 'Visa' GROUP BY 1 ORDER BY 1";
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        mirror_rows(&mirror, by_merchant),
        vec![
            vec![s("Automatic Payment - Thank"), s("1"), s("500.00")],
            vec![s("Blue Bottle Coffee"), s("2"), s("-9.00")],
            vec![s("Starbucks"), s("1"), s("-6.25")],
        ]
    );

    // The same file again: nothing new.
    assert_eq!(counts(&import(&pool, &mirror, first).await), (4, 0));
    // The overlapping later export: only the third coffee and the two new days.
    let later = file(dir.path(), "visa-later.csv", CHASE_LATER.as_bytes());
    assert_eq!(counts(&import(&pool, &mirror, later).await), (7, 3));
    let total = "SELECT count(*), sum(amount) FROM transactions WHERE account_name = 'Visa'";
    assert_eq!(
        mirror_rows(&mirror, total),
        vec![vec![s("7"), s("-558.15")]]
    );
    assert_eq!(
        mirror_rows(
            &mirror,
            "SELECT merchant FROM transactions WHERE amount < -10 ORDER BY 1"
        ),
        vec![vec![s("Amazon Mktpl")], vec![s("Shake Shack")]]
    );

    // A file with one unreadable row: refused, named, and nothing of it stored.
    let bad = file(
        dir.path(),
        "bad.csv",
        b"Date,Description,Amount\n2026-11-09,NEW ROW,-1.00\n2026-11-10,ANOTHER,-2.00\n2026-11-11,BROKEN,twelve\n",
    );
    let report = import(&pool, &mirror, bad.clone()).await;
    let step = &report.steps[0];
    assert!(!step.ok);
    let error = step.error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!(
            "{}: line 4, column Amount: expected",
            bad.path.display()
        )) && error.ends_with("nothing of it was imported"),
        "{error}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 7);
    assert_eq!(
        mirror_rows(&mirror, total),
        vec![vec![s("7"), s("-558.15")]]
    );

    // An account that does not exist: refused with the command that makes one.
    let mut elsewhere = file(dir.path(), "again.csv", CHASE.as_bytes());
    elsewhere.account = "Amex".into();
    let report = import(&pool, &mirror, elsewhere).await;
    let error = report.steps[0].error.as_deref().unwrap();
    assert!(
        error.contains("no manual account \"Amex\" (there are: Visa)")
            && error.contains("finq accounts add"),
        "{error}"
    );

    // OFX (the bank's FITIDs) and Latin-1 CSV into a checking account.
    manual::create(&pool, "Checking", AccountType::Depository, "USD")
        .await
        .unwrap();
    let ofx = "OFXHEADER:100\nDATA:OFXSGML\n\n<OFX><BANKMSGSRSV1><STMTTRNRS><STMTRS><BANKTRANLIST>
<STMTTRN><TRNTYPE>DEBIT<DTPOSTED>20261104<TRNAMT>-60.00<FITID>F1<NAME>CITY WATER</STMTTRN>
<STMTTRN><TRNTYPE>CREDIT<DTPOSTED>20261105<TRNAMT>2500.00<FITID>F2<NAME>PAYROLL</STMTTRN>
</BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>";
    let mut statement = file(dir.path(), "checking.qfx", ofx.as_bytes());
    statement.account = "checking".into(); // case is forgiven
    assert_eq!(
        counts(&import(&pool, &mirror, statement.clone()).await),
        (2, 2)
    );
    assert_eq!(counts(&import(&pool, &mirror, statement).await), (2, 0));
    let mut latin1 = file(
        dir.path(),
        "old.csv",
        b"Date,Description,Amount\n2026-11-06,CAF\xc9 DE FLORE,-7.80\n",
    );
    latin1.account = "Checking".into();
    assert_eq!(counts(&import(&pool, &mirror, latin1).await), (1, 1));
    assert_eq!(
        mirror_rows(
            &mirror,
            "SELECT description, account_id LIKE 'manual:%' FROM transactions
             WHERE account_name = 'Checking' ORDER BY date"
        ),
        vec![
            vec![s("CITY WATER"), s("true")],
            vec![s("PAYROLL"), s("true")],
            vec![s("CAFÉ DE FLORE"), s("true")],
        ]
    );
    // Each file is on record.
    let imports: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT file_name, rows_read, rows_added FROM imports ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        imports,
        [
            ("visa.csv".to_string(), 4, 4),
            ("visa.csv".to_string(), 4, 0),
            ("visa-later.csv".to_string(), 7, 3),
            ("checking.qfx".to_string(), 2, 2),
            ("checking.qfx".to_string(), 2, 0),
            ("old.csv".to_string(), 1, 1),
        ]
    );
}

fn finq(db: &str, data: &Path, args: &[&str]) -> std::process::Output {
    finq_e2e::finq(env!("CARGO_BIN_EXE_finq"), db, data, args)
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn accounts_imports_and_additions_from_the_command_line(pool: PgPool) {
    let db = finq_e2e::database_url(&pool);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv = dir.path().join("visa.csv");
    std::fs::write(&csv, CHASE).unwrap();
    let csv = csv.to_str().unwrap();

    // No account yet: refused before the file is read, saying what to do.
    let err = failed(&finq(&db, &data, &["import", csv, "--account", "Visa"]));
    assert!(
        err.contains("no manual account \"Visa\"") && err.contains("finq accounts add"),
        "{err}"
    );
    ok(&finq(
        &db,
        &data,
        &[
            "accounts",
            "add",
            "Visa",
            "--type",
            "card",
            "--balance",
            "512.30",
        ],
    ));
    let out = ok(&finq(&db, &data, &["import", csv, "--account", "Visa"]));
    assert!(
        out.contains("import visa.csv") && out.contains("added 4"),
        "{out}"
    );
    let out = ok(&finq(&db, &data, &["import", csv, "--account", "Visa"]));
    assert!(
        out.contains("added 0") && out.contains("already_there 4"),
        "{out}"
    );

    // By hand: into Cash (made on first use), with a category; a wrong category is named.
    let out = ok(&finq(
        &db,
        &data,
        &[
            "add",
            "--amount",
            "-23.50",
            "--description",
            "Farmers market",
            "--category",
            "groceries",
            "--date",
            "11/02/2026",
        ],
    ));
    assert!(
        out.starts_with("added manual:")
            && out.contains("2026-11-02 Cash -23.50 Farmers market (Groceries)"),
        "{out}"
    );
    let err = failed(&finq(
        &db,
        &data,
        &[
            "add",
            "--amount",
            "5",
            "--description",
            "x",
            "--category",
            "Nope",
        ],
    ));
    assert!(
        err.contains("no category \"Nope\"") && err.contains("Groceries"),
        "{err}"
    );
    let err = failed(&finq(
        &db,
        &data,
        &["add", "--amount", "5.001", "--description", "x"],
    ));
    assert!(err.contains("more than two decimal places"), "{err}");

    // A house and a loan, with balances; stated again later.
    ok(&finq(
        &db,
        &data,
        &[
            "accounts",
            "add",
            "House",
            "--type",
            "property",
            "--balance",
            "450000",
            "--as-of",
            "2026-10-01",
        ],
    ));
    ok(&finq(
        &db,
        &data,
        &[
            "accounts",
            "balance",
            "house",
            "465,000",
            "--as-of",
            "2026-11-01",
        ],
    ));
    let err = failed(&finq(
        &db,
        &data,
        &["accounts", "add", "House", "--type", "boat"],
    ));
    assert!(err.contains("unknown account type \"boat\""), "{err}");
    let err = failed(&finq(
        &db,
        &data,
        &["accounts", "add", "house", "--type", "cash"],
    ));
    assert!(err.contains("already an account \"House\""), "{err}");

    let sql = |q: &str| ok(&finq(&db, &data, &["sql", q, "--format", "csv"]));
    assert_eq!(
        sql("SELECT name, source, type, current_balance FROM accounts ORDER BY name"),
        "name,source,type,current_balance\nCash,manual,cash,\nHouse,manual,property,465000.00\nVisa,manual,credit,512.30\n"
    );
    assert_eq!(
        sql(
            "SELECT account_name, count(*) AS n, sum(amount) AS total FROM transactions GROUP BY 1 ORDER BY 1"
        ),
        "account_name,n,total\nCash,1,-23.50\nVisa,4,484.75\n"
    );
    assert_eq!(
        sql(
            "SELECT a.name, b.date, b.current_balance FROM balance_snapshots b JOIN accounts a USING (account_id) ORDER BY 2, 1"
        ),
        "name,date,current_balance\nHouse,2026-10-01,450000.00\nHouse,2026-11-01,465000.00\nVisa,"
            .to_string()
            + &format!("{},512.30\n", chrono::Local::now().date_naive())
    );
    let listed = ok(&finq(&db, &data, &["accounts", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!(listed[2]["name"], "Visa");
    assert_eq!(listed[2]["transactions"], 4);

    // Renamed: the account and its transactions carry the new name in the mirror.
    let said = ok(&finq(
        &db,
        &data,
        &["accounts", "rename", "visa", "Visa (old)"],
    ));
    assert!(
        said.contains("now \"Visa (old)\" (4 transactions)"),
        "{said}"
    );
    let err = failed(&finq(&db, &data, &["accounts", "rename", "House", "cash"]));
    assert!(err.contains("already an account \"Cash\""), "{err}");
    let err = failed(&finq(&db, &data, &["accounts", "rename", "Boat", "Yacht"]));
    assert!(
        err.contains("no manual account \"Boat\"") && err.contains("finq items"),
        "{err}"
    );
    assert_eq!(
        sql("SELECT account_name, count(*) AS n FROM transactions GROUP BY 1 ORDER BY 1"),
        "account_name,n\nCash,1\nVisa (old),4\n"
    );
    // Deleted: with transactions only when asked to; its rows leave the mirror.
    let err = failed(&finq(&db, &data, &["accounts", "delete", "Visa (old)"]));
    assert!(
        err.contains("has 4 transactions") && err.contains("--yes"),
        "{err}"
    );
    ok(&finq(&db, &data, &["accounts", "delete", "House"]));
    let said = ok(&finq(
        &db,
        &data,
        &["accounts", "delete", "Visa (old)", "--yes"],
    ));
    assert!(said.contains("4 transactions"), "{said}");
    assert_eq!(
        sql(
            "SELECT (SELECT string_agg(name, ',' ORDER BY name) FROM accounts) AS accounts,
                    (SELECT count(*) FROM transactions) AS transactions,
                    (SELECT count(*) FROM balance_snapshots) AS balances"
        ),
        "accounts,transactions,balances\nCash,1,0\n"
    );
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM transactions) + (SELECT count(*) FROM imports)
                + (SELECT count(*) FROM manual_balances)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 1, "only the cash transaction is left in PostgreSQL");
}

//! `finq doctor`: every check passes on a healthy set-up (exit 0); each thing broken on
//! purpose fails its own check with what to do, and the exit status says so.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use finq_connectors::manual::{self, AccountType, NewTransaction};
use finq_e2e::{FakeOllama, bank_mirror, database_url, derive_only};
use sqlx::PgPool;

async fn doctor(data: &Path, envs: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_finq"))
        .arg("doctor")
        .env("FINQ_DATA_DIR", data)
        .env("PLAID_ENV", "sim")
        .env_remove("PLAID_BASE_URL")
        .env_remove("PLAID_CLIENT_ID")
        .env_remove("PLAID_SECRET")
        .env_remove("FINQ_WEBHOOK_URL")
        .env_remove("FINQ_ENCRYPTION_KEY")
        .envs(envs.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout)
}

/// The line of check `name`.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no {name} line in:\n{report}"))
}

/// The `→` line following check `name`.
fn fix<'a>(report: &'a str, name: &str) -> &'a str {
    let mut lines = report
        .lines()
        .skip_while(|l| !l.get(6..).is_some_and(|r| r.starts_with(name)));
    lines.next();
    lines
        .next()
        .filter(|l| l.contains('→'))
        .unwrap_or_else(|| panic!("no advice after {name} in:\n{report}"))
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn doctor_passes_a_healthy_set_up_and_names_each_fault(pool: PgPool) {
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    bank_mirror(&pool, data.path(), 3, 200).await;
    // As finq writes them (this test wrote the mirror itself).
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    let db = database_url(&pool);
    // A Plaid (the simulator) that checks credentials, as Plaid does.
    let plaid = finq_connectors::sim::Simulator::new(finq_connectors::sim::SimConfig {
        client_id: Some("test-client".into()),
        secret: Some("test-secret".into()),
        ..Default::default()
    });
    let plaid = plaid.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let sim = plaid.base_url.clone();
    // Any HTTP answer means the URL is reachable (the simulator answers 404 here).
    let webhook = format!("{sim}/finq-webhook");
    let healthy: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db),
        ("OLLAMA_HOST", &ollama.url),
        ("FINQ_MODEL", "llama3.2"),
        ("PLAID_ENV", "sandbox"),
        ("PLAID_BASE_URL", &sim),
        ("PLAID_CLIENT_ID", "test-client"),
        ("PLAID_SECRET", "test-secret"),
        ("FINQ_WEBHOOK_URL", &webhook),
    ];
    let (ok, report) = doctor(data.path(), &healthy).await;
    assert!(ok, "{report}");
    for name in [
        "data directory",
        "PostgreSQL",
        "migrations",
        "mirror",
        "Ollama",
        "Plaid",
        "webhook URL",
    ] {
        assert!(line(&report, name).starts_with("ok "), "{name}:\n{report}");
    }
    assert!(line(&report, "key file").starts_with("skip"), "{report}");
    assert!(line(&report, "mirror").contains("up to date"), "{report}");
    assert!(
        report.ends_with("Everything finq needs is in order.\n"),
        "{report}"
    );

    // Now break things, each in its own way.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = data.path().join("vault.key");
    std::fs::write(&key, "x").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A transaction added after the mirror was built: derived, not mirrored.
    let cash = manual::create(&pool, "Cash", AccountType::Cash, "USD")
        .await
        .unwrap();
    manual::add_transaction(
        &pool,
        &cash,
        &NewTransaction {
            date: chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            amount: rust_decimal::Decimal::new(-500, 2),
            description: "COFFEE".into(),
            category_id: None,
            notes: None,
        },
    )
    .await
    .unwrap();
    derive_only(&pool).await;
    let closed = "http://127.0.0.1:9"; // nothing listens on the discard port
    let broken: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &db),
        ("OLLAMA_HOST", closed),
        ("FINQ_MODEL", "llama3.2"),
        ("PLAID_ENV", "sandbox"),
        ("PLAID_BASE_URL", &sim),
        ("PLAID_CLIENT_ID", "test-client"),
        ("PLAID_SECRET", "not-the-secret"),
        ("FINQ_WEBHOOK_URL", "http://127.0.0.1:9/webhook"),
    ];
    let (ok, report) = doctor(data.path(), &broken).await;
    assert!(!ok, "{report}");
    let want = [
        ("data directory", "0755", "chmod 700"),
        ("key file", "0644", "chmod 600"),
        ("mirror", "behind PostgreSQL", "finq run"),
        ("Ollama", "127.0.0.1:9", "SQL and reports work without"),
        ("Plaid", "INVALID_API_KEYS", "PLAID_SECRET"),
        ("webhook URL", "cannot be reached", "finq serve"),
    ];
    for (name, what, todo) in want {
        let l = line(&report, name);
        assert!(
            l.starts_with("FAIL") && l.contains(what),
            "{name}: {l}\n{report}"
        );
        assert!(fix(&report, name).contains(todo), "{name}:\n{report}");
    }
    assert!(line(&report, "PostgreSQL").starts_with("ok "), "{report}");
    assert!(report.ends_with("6 checks failed.\n"), "{report}");
    // The doctor reports; it does not change the permissions it found.
    assert_eq!(
        std::fs::metadata(data.path()).unwrap().permissions().mode() & 0o777,
        0o755
    );

    // No database reachable: PostgreSQL fails, the checks needing it are skipped.
    let (ok, report) = doctor(
        data.path(),
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")],
    )
    .await;
    assert!(!ok);
    assert!(line(&report, "PostgreSQL").starts_with("FAIL"), "{report}");
    assert!(
        fix(&report, "PostgreSQL").contains("DATABASE_URL"),
        "{report}"
    );
    assert!(line(&report, "migrations").starts_with("skip"), "{report}");
    // With the simulator, Plaid and the webhook need nothing.
    assert!(line(&report, "Plaid").starts_with("skip"), "{report}");
    assert!(line(&report, "webhook URL").starts_with("skip"), "{report}");
}

//! `finq demo` as a user runs it: a process, a fresh data directory, no DATABASE_URL (so
//! finq creates and starts its own PostgreSQL cluster), no Plaid account.

use std::path::Path;
use std::process::{Command, Output};

fn finq(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_finq"))
        .args(args)
        .env("FINQ_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("PLAID_ENV")
        .env_remove("PLAID_BASE_URL")
        .env_remove("FINQ_ENCRYPTION_KEY")
        .env("OLLAMA_HOST", "127.0.0.1:9") // nothing listens there
        .output()
        .expect("the finq binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stops the private cluster even when an assertion fails.
struct StopCluster<'a>(&'a Path);
impl Drop for StopCluster<'_> {
    fn drop(&mut self) {
        let _ = finq(self.0, &["db", "stop"]);
    }
}

#[test]
fn demo_runs_from_nothing_and_again() {
    if finq_core::local_pg::find_bin_dir().is_none() {
        panic!(
            "this test needs the PostgreSQL server binaries (Debian: apt-get install postgresql)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("finq-data");
    let _stop = StopCluster(&data);

    let out = finq(&data, &["demo", "--transactions", "400", "--seed", "3"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Accounts"), "{stdout}");
    assert!(
        stdout.contains("Plaid Checking") && stdout.contains("Plaid Credit Card"),
        "{stdout}"
    );
    assert!(stdout.contains("Spending by category"), "{stdout}");
    assert!(
        stdout.contains("Groceries") && stdout.contains("Total"),
        "{stdout}"
    );
    assert!(stdout.contains("finq repl"), "{stdout}");
    assert!(data.join("finq.duckdb").exists());
    assert!(
        data.join("postgres/data/PG_VERSION").exists(),
        "the private cluster lives in the data directory"
    );

    // Again: safe, reuses the connection, same data.
    let again = finq(&data, &["demo", "--transactions", "400", "--seed", "3"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("reusing"),
        "{}",
        text(&again.stderr)
    );

    let count = finq(
        &data,
        &[
            "sql",
            "SELECT count(*) AS n FROM transactions",
            "--format",
            "csv",
        ],
    );
    assert!(count.status.success(), "{}", text(&count.stderr));
    assert_eq!(text(&count.stdout).trim(), "n\n400");

    // The batch pipeline works after the demo with no configuration, and reports JSON.
    let run = finq(&data, &["run", "--json"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["steps"][0]["counts"]["added"], 0);

    // A question without Ollama fails clearly; SQL keeps working.
    let ask = finq(&data, &["ask", "what did I spend on groceries?"]);
    assert!(!ask.status.success());
    assert!(
        text(&ask.stderr).contains("cannot reach Ollama"),
        "{}",
        text(&ask.stderr)
    );

    let status = finq(&data, &["db", "status"]);
    assert!(
        text(&status.stdout).contains("running"),
        "{}",
        text(&status.stdout)
    );
    let stop = finq(&data, &["db", "stop"]);
    assert!(
        text(&stop.stdout).contains("Stopped"),
        "{}",
        text(&stop.stdout)
    );
    let status = finq(&data, &["db", "status"]);
    assert!(
        text(&status.stdout).contains("stopped"),
        "{}",
        text(&status.stdout)
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = finq(dir.path(), &["sql", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no DuckDB mirror"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_finq"))
        .args(["link"])
        .env("FINQ_DATA_DIR", dir.path())
        .env("PLAID_ENV", "prod")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PLAID_ENV"),
        "{}",
        text(&out.stderr)
    );
}

//! `finq demo` as a user runs it: a process, a fresh data directory, no DATABASE_URL (so
//! finq creates and starts its own PostgreSQL cluster), no Plaid account.

use std::path::Path;
use std::process::{Command, Output};

fn finq(data_dir: &Path, args: &[&str]) -> Output {
    finq_with(data_dir, args, &[])
}

fn finq_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_finq"));
    command
        .args(args)
        .env("FINQ_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("PLAID_ENV")
        .env_remove("PLAID_BASE_URL")
        .env_remove("FINQ_ENCRYPTION_KEY")
        .env("OLLAMA_HOST", "127.0.0.1:9") // nothing listens there
        .env_remove("FINQ_MODEL");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the finq binary runs")
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

    // Owner-only: the data directory 0700 (0701 when the private PostgreSQL runs as another
    // user, as it does under root: it must pass through), the mirror (every transaction)
    // 0600; an install made looser is tightened by the next command.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mirror = data.join("finq.duckdb");
    let owner_only = |m: u32| m == 0o700 || m == 0o701;
    assert!(owner_only(mode(&data)), "{:o}", mode(&data));
    assert_eq!(mode(&mirror), 0o600);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&mirror, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = finq(&data, &["sql", "SELECT 1 AS one"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(owner_only(mode(&data)), "{:o}", mode(&data));
    assert_eq!(mode(&mirror), 0o600);

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

    questions_and_conversations(&data);

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

/// `finq ask` and `finq chats` as processes, against a fake Ollama.
fn questions_and_conversations(data: &Path) {
    use finq_e2e::FakeOllama;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ollama = rt.block_on(FakeOllama::start(&["llama3.2:latest"], ""));
    ollama.respond_with(|req| {
        if FakeOllama::wants_plan(req) {
            serde_json::json!({ "sql": "SELECT count(*) AS n FROM transactions", "explanation": "how many" })
                .to_string()
        } else {
            serde_json::json!({ "answer": "You have 400 transactions." }).to_string()
        }
    });
    let env = [
        ("OLLAMA_HOST", ollama.url.as_str()),
        ("FINQ_MODEL", "llama3.2"),
    ];
    let out = finq_with(
        data,
        &["ask", "how many transactions do I have?", "--json"],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["question"], "how many transactions do I have?");
    assert_eq!(v["sql"], "SELECT count(*) AS n FROM transactions");
    assert_eq!(v["columns"], serde_json::json!(["n"]));
    assert_eq!(v["rows"], serde_json::json!([["400"]]));
    assert_eq!(v["answer"], "You have 400 transactions.");
    assert_eq!(v["verification"], "verified");
    assert_eq!(
        v["numbers"],
        serde_json::json!([{ "text": "400", "value": 400.0, "verified": true, "source": "row 1, n" }])
    );
    assert_eq!(v["attempts"], 2);
    assert_eq!(v["model"], "llama3.2");
    assert!(v["timings"]["total_ms"].is_u64(), "{v}");
    let id = v["conversation_id"].as_i64().expect("a conversation id");

    // A follow-up in the same conversation carries the first question.
    let id_text = id.to_string();
    let out = finq_with(
        data,
        &[
            "ask",
            "and pending ones?",
            "--conversation",
            &id_text,
            "--json",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["conversation_id"], id);
    let requests = ollama.chat_requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        requests[2]["messages"][1]["content"],
        "how many transactions do I have?"
    );

    // Words for people: the answer, then the rows.
    let out = finq_with(data, &["ask", "how many?", "--sql"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("You have 400 transactions.\n"), "{shown}");
    assert!(
        shown.contains("400") && shown.contains("SELECT count(*)"),
        "{shown}"
    );

    let list = finq(data, &["chats"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert!(
        listed.contains("2 questions") && listed.contains("how many transactions do I have?"),
        "{listed}"
    );
    let show = finq(data, &["chats", "show", &id_text]);
    let shown = text(&show.stdout);
    assert!(
        shown.contains("1. how many transactions do I have?")
            && shown.contains("2. and pending ones?"),
        "{shown}"
    );
    assert!(text(&finq(data, &["chats", "delete", &id_text]).stdout).contains("deleted"));
    let gone = finq(data, &["chats", "show", &id_text]);
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("no conversation"),
        "{}",
        text(&gone.stderr)
    );
    let missing = finq_with(data, &["ask", "x", "--conversation", "999999"], &env);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("there is no conversation 999999"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn completions_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_finq()"),
        ("zsh", "#compdef finq"),
        ("fish", "complete -c finq"),
    ] {
        let out = finq(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["import", "categorize", "export", "report"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
}

#[test]
fn every_command_explains_itself_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let help = text(&finq(dir.path(), &["--help"]).stdout);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 20, "{help}");
    for command in commands {
        let out = finq(dir.path(), &[&command, "--help"]);
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        // Examples at the end, one a line.
        let shown = text(&out.stdout);
        assert!(
            shown.contains("\nExamples:\n  ")
                && shown
                    .trim_end()
                    .lines()
                    .last()
                    .is_some_and(|l| l.starts_with("  ")),
            "`finq {command} --help` shows no examples, one a line:\n{shown}"
        );
    }
}

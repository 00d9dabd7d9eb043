//! `finq repl` driven as a person drives it, through a pseudo-terminal: Tab completion
//! (SQL words and names in quotes), multi-line input, Ctrl-C during a long query and at the
//! prompt, output formats, charts, `\o`, `\timing`, history and hints across sessions,
//! highlighting, `\q` and Ctrl-D; Ctrl-C during a question. Also `finq sql --chart` and
//! `--format markdown`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use expectrl::{ControlCode, Eof, Expect, Session};
use finq_e2e::{FakeOllama, bank_mirror, database_url, mirror_rows};
use sqlx::PgPool;

type Pty = expectrl::session::OsSession;

/// `finq repl` on the data directory `data`, with a terminal (`TERM`) but not yet started.
fn repl_command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_finq"));
    cmd.arg("repl")
        .env("FINQ_DATA_DIR", data)
        .env("TERM", "xterm");
    cmd
}

/// Start `cmd` in a pty; each wait on it gives up after 30 s.
fn spawn(cmd: Command) -> Pty {
    let mut p = Session::spawn(cmd).expect("finq repl starts in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    p
}

fn repl(data: &Path, colour: bool) -> Pty {
    let mut cmd = repl_command(data);
    cmd.env("PLAID_ENV", "sim").env_remove("DATABASE_URL");
    if colour {
        cmd.env_remove("NO_COLOR");
    } else {
        cmd.env("NO_COLOR", "1");
    }
    spawn(cmd)
}

/// The REPL on the database `db`, asking the model at `ollama` (llama3.2).
fn repl_asking(data: &Path, db: &str, ollama: &str) -> Pty {
    let mut cmd = repl_command(data);
    cmd.env("NO_COLOR", "1")
        .env("DATABASE_URL", db)
        .env("OLLAMA_HOST", ollama)
        .env("FINQ_MODEL", "llama3.2");
    spawn(cmd)
}

/// Wait until the line editor reads the terminal (it switches bracketed paste on as it
/// starts a line): keys typed earlier would reach the terminal in its cooked mode.
fn ready(p: &mut Pty) {
    wait_for(p, "\x1b[?2004h");
}

/// Type a line at a fresh prompt (Enter is `\r` on a terminal).
fn entry(p: &mut Pty, text: &str) {
    ready(p);
    line(p, text);
}

/// Send a line, e.g. the next line of a multi-line entry.
fn line(p: &mut Pty, text: &str) {
    p.send(format!("{text}\r")).unwrap();
}

/// Wait for `text` in the output; on failure say what was being waited for.
fn wait_for(p: &mut Pty, text: &str) -> String {
    match p.expect(text) {
        Ok(found) => String::from_utf8_lossy(found.before()).into_owned(),
        Err(e) => panic!("waiting for {text:?}: {e}"),
    }
}

/// The end of the session: exit status 0.
fn ended(p: &mut Pty) {
    p.expect(Eof).expect("the REPL ends");
    let status = p.get_process().wait().unwrap();
    assert!(
        matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

/// A category name whose first five letters no other name (category or account) shares.
fn unique_prefix(mirror: &Path) -> (String, String) {
    let names: Vec<String> = mirror_rows(
        mirror,
        "SELECT name FROM categories UNION ALL SELECT name FROM accounts",
    )
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect();
    let categories: Vec<String> = mirror_rows(mirror, "SELECT name FROM categories ORDER BY name")
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    categories
        .into_iter()
        .filter(|c| c.len() > 6 && c.is_ascii())
        .find_map(|c| {
            let prefix = c[..5].to_lowercase();
            let sharing = names
                .iter()
                .filter(|n| n.to_lowercase().starts_with(&prefix))
                .count();
            (sharing == 1).then_some((prefix, c))
        })
        .expect("a category with a prefix of its own")
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn the_repl_as_a_person_uses_it(pool: PgPool) {
    let data = tempfile::tempdir().unwrap();
    let mirror = bank_mirror(&pool, data.path(), 5, 300).await;
    let (prefix, category) = unique_prefix(&mirror);
    let dir = data.path().to_path_buf();
    tokio::task::spawn_blocking(move || drive(&dir, &prefix, &category))
        .await
        .unwrap();
}

fn drive(data: &Path, prefix: &str, category: &str) {
    let mut p = repl(data, false);

    // Tab completes a column: if it did not, DuckDB would refuse `merch`.
    ready(&mut p);
    p.send("SELECT merch\t").unwrap();
    wait_for(&mut p, "merchant");
    line(
        &mut p,
        " || '<-completed' AS m FROM transactions WHERE merchant IS NOT NULL LIMIT 1;",
    );
    wait_for(&mut p, "<-completed │");
    wait_for(&mut p, "(1 row)");

    // A category's name inside quotes, completed with its closing quote.
    ready(&mut p);
    p.send(format!(
        "SELECT 'found-' || count(*) AS r FROM categories WHERE name = '{prefix}\t"
    ))
    .unwrap();
    wait_for(&mut p, &category[5..]);
    line(&mut p, ";");
    wait_for(&mut p, "found-1");

    // Multi-line: the statement runs at its `;`.
    entry(&mut p, "SELECT 'multi-' ||");
    line(&mut p, "  'line' AS r;");
    wait_for(&mut p, "multi-line");

    // Ctrl-C during a query that would run for minutes: it stops, the REPL stays.
    entry(
        &mut p,
        "SELECT count(*) FROM range(100000) a, range(100000) b WHERE (a.range * b.range) % 7 = 3;",
    );
    // Once the query has run a moment the REPL says how to stop it (Ctrl-C is listened
    // for from then on).
    wait_for(&mut p, "Ctrl-C stops it");
    p.send(ControlCode::EndOfText).unwrap();
    wait_for(&mut p, "cancelled (Ctrl-C)");
    entry(&mut p, "SELECT 'still-' || 'here' AS r;");
    wait_for(&mut p, "still-here");

    // Ctrl-C at the prompt drops the line being typed.
    ready(&mut p);
    p.send("SELECT no_such_column_anywhere").unwrap();
    p.send(ControlCode::EndOfText).unwrap();
    entry(&mut p, "SELECT 'clean-' || 'line' AS r;");
    let before = wait_for(&mut p, "clean-line");
    assert!(!before.contains("not found"), "{before}");
    assert!(!before.contains("error"), "{before}");

    // Output formats, timing, charts.
    entry(&mut p, "\\format markdown");
    wait_for(&mut p, "format: markdown");
    entry(&mut p, "SELECT 'md-' || 'cell' AS r;");
    wait_for(&mut p, "| md-cell |");
    entry(&mut p, "\\timing on");
    entry(&mut p, "SELECT 1 AS one;");
    wait_for(&mut p, "time: ");
    entry(
        &mut p,
        "\\chart SELECT 'bar-' || 'a' AS label, 3 AS v UNION ALL SELECT 'bar-' || 'b', 6",
    );
    let drawn = wait_for(&mut p, "6.00");
    assert!(drawn.contains("bar-a") && drawn.contains('█'), "{drawn}");
    entry(&mut p, "\\chart SELECT 1, 2, 3");
    wait_for(&mut p, "a chart needs two columns");

    // \o: results to a file, whole and owner-only; \o alone brings them back.
    let out = data.join("out.csv");
    entry(&mut p, "\\format csv");
    entry(&mut p, &format!("\\o {}", out.display()));
    wait_for(&mut p, "results go to");
    entry(&mut p, "SELECT i FROM range(100) t(i);");
    wait_for(&mut p, "(100 rows written to");
    entry(&mut p, "\\o");
    wait_for(&mut p, "results come here again");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 101, "{written}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Long results are cut for people.
    entry(&mut p, "\\format table");
    entry(&mut p, "\\maxrows 5");
    entry(&mut p, "SELECT i FROM range(1000) t(i);");
    wait_for(&mut p, "… 995 more rows (1,000 in all)");

    entry(&mut p, "SELECT 'remember-' || 'me' AS r;");
    wait_for(&mut p, "remember-me");
    entry(&mut p, "\\q");
    ended(&mut p);

    // A new session: the history is there (Up past `\\q`, Enter), and hints come from it.
    let mut p = repl(data, false);
    ready(&mut p);
    p.send("\x1b[A").unwrap();
    p.send("\x1b[A").unwrap();
    line(&mut p, "");
    wait_for(&mut p, "remember-me");
    ready(&mut p);
    p.send("SELECT 'rem").unwrap();
    wait_for(&mut p, "ember-' || 'me' AS r;");
    p.send(ControlCode::EndOfText).unwrap();
    // Ctrl-D at an empty prompt ends it.
    ready(&mut p);
    p.send(ControlCode::EndOfTransmission).unwrap();
    ended(&mut p);

    // In colour: keywords are highlighted as they are typed.
    let mut p = repl(data, true);
    ready(&mut p);
    p.send("select 1").unwrap();
    wait_for(&mut p, "\x1b[1;34mselect\x1b[0m");
    p.send(ControlCode::EndOfText).unwrap();
    entry(&mut p, "\\q");
    ended(&mut p);
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn ctrl_c_cancels_a_question_waiting_for_the_model(pool: PgPool) {
    let data = tempfile::tempdir().unwrap();
    bank_mirror(&pool, data.path(), 6, 100).await;
    // A model that takes a minute to answer.
    let ollama = FakeOllama::start(&["llama3.2:latest"], "{}").await;
    ollama.set_delay(Duration::from_secs(60));
    let (db, url, dir) = (
        database_url(&pool),
        ollama.url.clone(),
        data.path().to_path_buf(),
    );
    // The model's answer would take 60 s; each wait below gives up after 30 s.
    let asked = ollama.chat_counter();
    tokio::task::spawn_blocking(move || {
        let mut p = repl_asking(&dir, &db, &url);
        entry(&mut p, "? how much did I spend on coffee");
        // The question is waiting for the model (Ctrl-C is listened for from its start).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while asked() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the model was never asked"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p.send(ControlCode::EndOfText).unwrap();
        wait_for(&mut p, "cancelled (Ctrl-C)");
        entry(&mut p, "SELECT 'after-' || 'the-question' AS r;");
        wait_for(&mut p, "after-the-question");
        entry(&mut p, "\\q");
        ended(&mut p);
    })
    .await
    .unwrap();
    assert_eq!(ollama.chat_requests().len(), 1, "the model was asked once");
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn ctrl_c_stops_the_query_a_question_runs(pool: PgPool) {
    let data = tempfile::tempdir().unwrap();
    bank_mirror(&pool, data.path(), 6, 100).await;
    // The model answers at once, with a query that would run for minutes.
    let ollama = FakeOllama::start(&["llama3.2:latest"], "{}").await;
    ollama.respond_with(|_| {
        serde_json::json!({
            "sql": "SELECT sum(r.range) FROM range(100000000000) r",
            "explanation": "counts"
        })
        .to_string()
    });
    let (db, url, dir) = (
        database_url(&pool),
        ollama.url.clone(),
        data.path().to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        let mut p = repl_asking(&dir, &db, &url);
        entry(&mut p, "? count to a hundred billion");
        wait_for(&mut p, "running the query");
        p.send(ControlCode::EndOfText).unwrap();
        wait_for(&mut p, "cancelled (Ctrl-C)");
        entry(&mut p, "SELECT 'after-' || 'the-query' AS r;");
        wait_for(&mut p, "after-the-query");
        entry(&mut p, "\\q");
        ended(&mut p);
    })
    .await
    .unwrap();
    assert_eq!(
        ollama.chat_requests().len(),
        1,
        "the stopped query went back to no one"
    );
}

/// `finq sql` on a mirror file of constant rows: the same text every time.
fn sql(data: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_finq"))
        .arg("sql")
        .args(args)
        .env("FINQ_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    finq_e2e::succeeded(&out)
}

#[test]
fn sql_draws_charts_and_writes_markdown() {
    let data = tempfile::tempdir().unwrap();
    duckdb::Connection::open(data.path().join("finq.duckdb"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE spending AS SELECT * FROM (VALUES
                ('Food and Drink', 412.50), ('Rent', 1800.00), ('Travel', 96.20), ('Refunds', -40.00)
             ) t(category, spent);
             CREATE TABLE balance AS
               SELECT DATE '2026-01-01' + INTERVAL (i) DAY AS day,
                      1000 + 300 * sin(i / 9.0) + i * 4 AS balance
               FROM range(90) t(i);",
        )
        .unwrap();
    let bars = sql(
        data.path(),
        &[
            "SELECT category, spent FROM spending ORDER BY spent DESC",
            "--chart",
        ],
    );
    insta::assert_snapshot!("sql_chart_bars", bars);
    let line = sql(
        data.path(),
        &[
            "SELECT day::DATE, round(balance, 2) FROM balance ORDER BY 1",
            "--chart",
        ],
    );
    insta::assert_snapshot!("sql_chart_line", line);
    let markdown = sql(
        data.path(),
        &[
            "SELECT * FROM spending ORDER BY category",
            "--format",
            "markdown",
        ],
    );
    insta::assert_snapshot!("sql_markdown", markdown);
    // Output cut short by its reader (`| head -1`) ends finq quietly.
    let mut child = Command::new(env!("CARGO_BIN_EXE_finq"))
        .args([
            "sql",
            "SELECT i FROM range(1000000) t(i)",
            "--format",
            "csv",
        ])
        .env("FINQ_DATA_DIR", data.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "i\n");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    // The REPL reading a script from a pipe: entries may span lines there too.
    let mut child = Command::new(env!("CARGO_BIN_EXE_finq"))
        .arg("repl")
        .env("FINQ_DATA_DIR", data.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"SELECT count(*)\n  AS categories\n  FROM spending;\n\\format csv\nSELECT 'a;b' AS x;\n",
    )
    .unwrap();
    let out = finq_e2e::succeeded(&child.wait_with_output().unwrap());
    assert!(out.contains("│          4 │"), "{out}");
    assert!(out.ends_with("x\na;b\n"), "{out}");
    // A result that cannot be drawn says why.
    let out = Command::new(env!("CARGO_BIN_EXE_finq"))
        .args(["sql", "SELECT category FROM spending", "--chart"])
        .env("FINQ_DATA_DIR", data.path())
        .output()
        .unwrap();
    let err = finq_e2e::failed(&out);
    assert!(err.contains("a chart needs two columns"), "{err}");
}

//! The question path against a fake Ollama server speaking Ollama's HTTP API.

use finq_analytics::nl::{
    Answer, NlEngine, NlError, Stage, UNVERIFIED_MARK, Verification, chats, eval,
};
use finq_analytics::query::{QueryEngine, Trust};
use finq_e2e::FakeOllama;
use sqlx::PgPool;

async fn mirror(pool: &PgPool, dir: &std::path::Path) -> std::path::PathBuf {
    finq_e2e::bank_mirror(pool, dir, 8, 300).await
}

fn plan(sql: &str) -> String {
    serde_json::json!({ "sql": sql, "explanation": "what the query computes" }).to_string()
}

fn words(text: &str) -> String {
    serde_json::json!({ "answer": text }).to_string()
}

/// `1234.5` → `$1,234.50`.
fn dollars(value: &str) -> String {
    let v: f64 = value.parse().unwrap();
    let cents = format!("{:.2}", v.abs());
    let (whole, frac) = cents.split_once('.').unwrap();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{frac}")
}

fn one(path: &std::path::Path, sql: &str) -> String {
    let mut conn = QueryEngine::open(path, Trust::User).unwrap();
    conn.run(sql).unwrap().rows()[0][0].clone().unwrap()
}

const BY_CATEGORY: &str = "SELECT category, round(-sum(amount), 2) AS spent FROM transactions WHERE amount < 0 GROUP BY category ORDER BY spent DESC LIMIT 50";
const GROCERIES: &str =
    "SELECT round(-sum(amount), 2) FROM transactions WHERE amount < 0 AND category = 'Groceries'";

async fn ask(engine: &NlEngine, path: &std::path::Path, q: &str) -> Result<Answer, NlError> {
    engine.ask(path, q, &[], &mut |_| {}).await
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_question_becomes_a_checked_answer(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let groceries = one(&path, GROCERIES);
    let said = format!("You spent {} on groceries.", dollars(&groceries));
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    let reply = said.clone();
    ollama.respond_with(move |req| {
        if FakeOllama::wants_plan(req) {
            plan(BY_CATEGORY)
        } else {
            words(&reply)
        }
    });
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let mut stages = Vec::new();
    let answer = engine
        .ask(&path, "where does my money go?", &[], &mut |p| {
            if stages.last() != Some(&p.stage) {
                stages.push(p.stage)
            }
        })
        .await
        .unwrap();
    assert_eq!(
        stages,
        vec![
            Stage::Context,
            Stage::Plan,
            Stage::Run,
            Stage::Answer,
            Stage::Check
        ]
    );
    assert_eq!(answer.text.as_deref(), Some(said.as_str()));
    assert_eq!(answer.verification(), Verification::Verified);
    assert_eq!(answer.numbers.len(), 1);
    assert_eq!(
        answer.numbers[0].source.as_deref(),
        Some("Groceries, spent")
    );
    assert_eq!(answer.attempts, 2);
    assert_eq!(answer.result.columns, vec!["category", "spent"]);
    // The numbers are DuckDB's.
    let row = answer
        .result
        .rows()
        .into_iter()
        .find(|r| r[0].as_deref() == Some("Groceries"))
        .unwrap();
    assert_eq!(row[1].as_deref(), Some(groceries.as_str()));

    // What finq sent: the model, deterministic options, the schema as `format`, the real
    // tables, the person's names for things and the summaries.
    let requests = ollama.chat_requests();
    assert_eq!(requests.len(), 2);
    let req = &requests[0];
    assert_eq!(req["model"], "llama3.2");
    assert_eq!(req["stream"], true);
    assert_eq!(req["options"]["temperature"], 0.0);
    assert_eq!(req["options"]["seed"], 42);
    assert!(req["options"]["num_ctx"].as_u64().unwrap() >= 2048, "{req}");
    let format = &req["format"];
    assert_eq!(format["type"], "object");
    assert_eq!(format["properties"]["sql"]["type"], "string", "{format}");
    let required: Vec<&str> = format["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"sql") && required.contains(&"explanation"));
    let messages = req["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    for needle in [
        "plaid_detailed_category",
        "money in is positive",
        "Accounts: ",
        "Plaid Checking",
        "Categories: ",
        "Groceries",
        "Balances:",
        "Spending by category, last 30 days:",
        "Money in and out by month, last 6 months:",
        "Latest transactions:",
    ] {
        assert!(system.contains(needle), "{needle} missing from:\n{system}");
    }
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[1]["content"], "where does my money go?");
    // The answer is written from the rows.
    let answer_req = &requests[1];
    assert_eq!(
        answer_req["format"]["properties"]["answer"]["type"],
        "string"
    );
    let system = answer_req["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains(BY_CATEGORY), "{system}");
    assert!(
        system.contains(&format!("Groceries | {groceries}")),
        "{system}"
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn sql_duckdb_refuses_goes_back_with_the_error(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(
        &["llama3.2:latest"],
        &words("Here is your spending by category."),
    )
    .await;
    ollama.queue(&[&plan("SELECT nope FROM transactions"), &plan(BY_CATEGORY)]);
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let answer = ask(&engine, &path, "where does my money go?")
        .await
        .unwrap();
    assert_eq!(answer.plan.sql, BY_CATEGORY);
    assert_eq!(answer.attempts, 3);
    let requests = ollama.chat_requests();
    let repair = &requests[1];
    let messages = repair["messages"].as_array().unwrap();
    assert_eq!(messages[messages.len() - 2]["role"], "assistant");
    assert!(
        messages[messages.len() - 2]["content"]
            .as_str()
            .unwrap()
            .contains("SELECT nope")
    );
    let told = FakeOllama::last_user_message(repair);
    assert!(
        told.contains("DuckDB refused") && told.contains("nope"),
        "{told}"
    );
}

/// A question's DuckDB query stops when interrupted (the REPL's Ctrl-C does this from
/// another task) and is not sent back to the model as a failed plan.
#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn an_interrupted_query_stops_the_question(pool: PgPool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    let planned = Arc::new(AtomicBool::new(false));
    let seen = planned.clone();
    ollama.respond_with(move |req| {
        if FakeOllama::wants_plan(req) {
            seen.store(true, Ordering::SeqCst);
            // Minutes of work for DuckDB.
            plan("SELECT sum(r.range) FROM range(100000000000) r")
        } else {
            words("never asked")
        }
    });
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let stop = engine.interrupter();
    let done = Arc::new(AtomicBool::new(false));
    // From the plan's arrival until the question ends, interrupt whatever it runs (the
    // question's task is busy in DuckDB meanwhile).
    let stopper = std::thread::spawn({
        let (planned, done) = (planned.clone(), done.clone());
        move || {
            while !done.load(Ordering::SeqCst) {
                if planned.load(Ordering::SeqCst) {
                    stop.interrupt();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    let outcome = ask(&engine, &path, "count to a hundred billion").await;
    done.store(true, Ordering::SeqCst);
    stopper.join().unwrap();
    assert!(matches!(outcome, Err(NlError::Interrupted)), "{outcome:?}");
    assert!(planned.load(Ordering::SeqCst));
    assert_eq!(
        ollama.chat_requests().len(),
        1,
        "the interrupted query did not go back to the model"
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn writing_plans_are_refused_and_nothing_changes(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    for writing in [
        "DROP TABLE transactions",
        "DELETE FROM transactions",
        "SELECT 1; DROP TABLE transactions",
        "COPY transactions TO '/tmp/finq-leak.csv'",
    ] {
        ollama.set_reply(&plan(writing));
        let err = ask(&engine, &path, "delete everything").await.unwrap_err();
        match &err {
            NlError::NoPlan { attempts, last } => {
                assert_eq!(*attempts, 3);
                assert!(last.contains("refused"), "{writing}: {last}");
            }
            other => panic!("{writing}: {other}"),
        }
    }
    // A read that touches files is stopped by the locked-down connection.
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "password\nhunter2\n").unwrap();
    ollama.set_reply(&plan(&format!(
        "SELECT * FROM read_csv('{}')",
        secret.display()
    )));
    let err = ask(&engine, &path, "read my files").await.unwrap_err();
    assert!(matches!(err, NlError::NoPlan { .. }), "{err}");
    assert!(!std::path::Path::new("/tmp/finq-leak.csv").exists());
    assert_eq!(one(&path, "SELECT count(*) FROM transactions"), "300");
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn broken_replies_are_repaired(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    ollama.queue(&[
        "",
        r#"{"sql": "SELECT count(*) AS n FROM tra"#,
        "Sure:\n```json\n{\"sql\": \"SELECT count(*) AS n FROM transactions\", \"explanation\": \"how many\", \"confidence\": 0.9}\n```",
        "You have many transactions!",
        &words("You have 300 transactions."),
    ]);
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let answer = ask(&engine, &path, "how many transactions do I have?")
        .await
        .unwrap();
    assert_eq!(answer.attempts, 5);
    assert_eq!(answer.text.as_deref(), Some("You have 300 transactions."));
    assert_eq!(answer.verification(), Verification::Verified);
    let requests = ollama.chat_requests();
    let told: Vec<String> = requests.iter().map(FakeOllama::last_user_message).collect();
    assert!(told[1].contains("the reply was empty"), "{}", told[1]);
    assert!(told[2].contains("cut short"), "{}", told[2]);
    assert!(
        told[4].contains("not a JSON object with \"answer\""),
        "{}",
        told[4]
    );

    // Three broken plans in a row: an error that says what happened.
    ollama.queue(&["", "", "{}"]);
    let err = ask(&engine, &path, "how many?").await.unwrap_err();
    assert!(matches!(err, NlError::NoPlan { attempts: 3, .. }), "{err}");
    assert!(err.to_string().contains("rephrasing"));
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_made_up_number_is_caught(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    ollama.respond_with(|req| {
        if FakeOllama::wants_plan(req) {
            plan(BY_CATEGORY)
        } else {
            words("You spent $12,345.67 on groceries.")
        }
    });
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let answer = ask(&engine, &path, "groceries?").await.unwrap();
    assert_eq!(answer.verification(), Verification::Unverified);
    assert_eq!(
        answer.shown_text().unwrap(),
        format!("You spent $12,345.67{UNVERIFIED_MARK} on groceries.")
    );
    assert!(!answer.numbers[0].verified());
    // It went back once, with the number named.
    let requests = ollama.chat_requests();
    assert_eq!(requests.len(), 3);
    let told = FakeOllama::last_user_message(&requests[2]);
    assert!(told.contains("$12,345.67"), "{told}");

    // Told, the model corrects itself: verified.
    let groceries = one(&path, GROCERIES);
    ollama.queue(&[
        &plan(BY_CATEGORY),
        &words("You spent $99,999.00 on groceries."),
        &words(&format!("You spent {} on groceries.", dollars(&groceries))),
    ]);
    let answer = ask(&engine, &path, "groceries?").await.unwrap();
    assert_eq!(answer.verification(), Verification::Verified);
    assert_eq!(answer.attempts, 3);
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn true_and_derived_numbers_are_verified(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let two_months = "SELECT strftime(date_trunc('month', date), '%Y-%m') AS month, round(-sum(amount), 2) AS spent FROM transactions WHERE amount < 0 GROUP BY 1 ORDER BY 1 DESC LIMIT 2";
    let mut conn = QueryEngine::open(&path, Trust::User).unwrap();
    let rows = conn.run(two_months).unwrap().rows();
    let (a, b) = (rows[0][1].clone().unwrap(), rows[1][1].clone().unwrap());
    let (fa, fb): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
    let diff = format!("{:.2}", (fa - fb).abs());
    let pct = format!("{:.1}%", (fa - fb).abs() * 100.0 / fb.abs());
    let said = format!(
        "You spent {} this month and {} the month before: {} ({pct}) {}.",
        dollars(&a),
        dollars(&b),
        dollars(&diff),
        if fa > fb { "more" } else { "less" }
    );
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    ollama.queue(&[&plan(two_months), &words(&said)]);
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let answer = ask(&engine, &path, "this month against the one before?")
        .await
        .unwrap();
    assert_eq!(
        answer.verification(),
        Verification::Verified,
        "{said}: {:?}",
        answer.numbers
    );
    let sources: Vec<String> = answer
        .numbers
        .iter()
        .map(|n| n.source.clone().unwrap())
        .collect();
    assert_eq!(sources.len(), 4, "{sources:?}");
    assert!(sources[2].starts_with("the difference of"), "{sources:?}");
    assert!(sources[3].contains("in per cent"), "{sources:?}");
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn follow_ups_carry_the_conversation(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;
    let first_sql = "SELECT round(-sum(amount), 2) AS spent FROM transactions WHERE amount < 0 AND date >= date_trunc('month', current_date) - INTERVAL 1 MONTH AND date < date_trunc('month', current_date)";
    ollama.queue(&[
        &plan(first_sql),
        &words("That is what you spent last month."),
    ]);
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let q1 = "how much did I spend last month?";
    let first = ask(&engine, &path, q1).await.unwrap();
    let id = chats::start(&pool, q1).await.unwrap();
    chats::record(&pool, id, &first).await.unwrap();

    let history = chats::history(&pool, id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].sql.as_deref(), Some(first_sql));
    ollama.queue(&[&plan(BY_CATEGORY), &words("Here it is by category.")]);
    let q2 = "and the month before?";
    let second = engine.ask(&path, q2, &history, &mut |_| {}).await.unwrap();
    chats::record(&pool, id, &second).await.unwrap();
    // The plan request carried the first turn before the follow-up.
    let requests = ollama.chat_requests();
    let messages = requests[2]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["system", "user", "assistant", "user"]);
    assert_eq!(messages[1]["content"], q1);
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .contains("INTERVAL 1 MONTH")
    );
    assert_eq!(messages[3]["content"], q2);

    let turns = chats::turns(&pool, id).await.unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[1].question, q2);
    assert_eq!(turns[1].verification.as_deref(), Some("verified"));
    assert_eq!(turns[1].model.as_deref(), Some("llama3.2"));
    assert!(
        turns[1]
            .row_summary
            .as_deref()
            .unwrap()
            .contains("category | spent")
    );
    let list = chats::list(&pool).await.unwrap();
    assert_eq!((list.len(), list[0].questions), (1, 2));
    assert!(chats::delete(&pool, id).await.unwrap());
    assert!(chats::list(&pool).await.unwrap().is_empty());
    assert!(!chats::delete(&pool, id).await.unwrap());
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_slow_model_times_out_with_a_clear_message(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], &plan(BY_CATEGORY)).await;
    ollama.set_delay(std::time::Duration::from_secs(3));
    let settings = finq_core::config::AnswerSettings {
        timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let engine = NlEngine::with_settings(&ollama.url, "llama3.2", settings).unwrap();
    let started = std::time::Instant::now();
    let err = ask(&engine, &path, "where does my money go?")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{err}"
    );
    assert!(matches!(err, NlError::Timeout { seconds: 1, .. }), "{err}");
    assert!(err.to_string().contains("timeout_secs"), "{err}");
}

#[tokio::test]
async fn ollama_down_or_model_missing_says_how_to_fix_it() {
    let ollama = FakeOllama::start(&["qwen2.5:7b"], "{}").await;
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let err = engine.check().await.unwrap_err();
    assert!(matches!(err, NlError::ModelMissing { .. }));
    let text = err.to_string();
    assert!(
        text.contains("ollama pull llama3.2") && text.contains("qwen2.5:7b"),
        "{text}"
    );

    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let engine = NlEngine::new(&format!("http://127.0.0.1:{port}"), "llama3.2").unwrap();
    let err = engine.check().await.unwrap_err();
    assert!(matches!(err, NlError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("OLLAMA_HOST"));
}

#[tokio::test]
async fn fake_ollama_streams_like_ollama() {
    // The fake's streaming mode (Ollama's default) returns NDJSON whose pieces add up.
    let ollama = FakeOllama::start(
        &["llama3.2:latest"],
        r#"{"sql":"SELECT 1","explanation":"one"}"#,
    )
    .await;
    let body = serde_json::json!({ "model": "llama3.2", "messages": [{ "role": "user", "content": "hi" }] });
    let resp = reqwest::Client::new()
        .post(format!("{}/api/chat", ollama.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let mut content = String::new();
    let mut done = false;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        content.push_str(v["message"]["content"].as_str().unwrap());
        done = v["done"].as_bool().unwrap();
    }
    assert!(done);
    assert_eq!(
        finq_analytics::nl::parse_plan(&content).unwrap().sql,
        "SELECT 1"
    );
}

/// The first number of the answer prompt's result rows, as an honest model would quote it.
fn first_number_of_rows(request: &serde_json::Value) -> Option<String> {
    let system = request["messages"][0]["content"].as_str()?;
    let mut lines = system.lines().skip_while(|l| !l.starts_with("Result ("));
    lines.next()?;
    lines.next()?; // the header
    lines
        .take_while(|l| !l.is_empty())
        .flat_map(|l| l.split(" | ").map(str::to_string).collect::<Vec<_>>())
        .find(|cell| cell.parse::<f64>().is_ok())
}

async fn eval_with(ollama: &FakeOllama, data: &std::path::Path) -> (serde_json::Value, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_finq"))
        .arg("eval")
        .env("FINQ_DATA_DIR", data)
        .env("OLLAMA_HOST", &ollama.url)
        .env("FINQ_MODEL", "llama3.2")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    (serde_json::from_str(last).unwrap(), stdout)
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn eval_scores_an_honest_model_fully_and_catches_lies(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    mirror(&pool, dir.path()).await;
    let questions = eval::parse(eval::BUNDLED).unwrap();
    let truth: std::collections::HashMap<String, String> = questions
        .iter()
        .map(|q| (q.text.clone(), q.sql.clone()))
        .collect();
    let ollama = FakeOllama::start(&["llama3.2:latest"], "").await;

    // Answering from the reference SQL and quoting the rows: every answer right.
    let sql_of = truth.clone();
    ollama.respond_with(move |req| {
        if FakeOllama::wants_plan(req) {
            plan(&sql_of[&FakeOllama::last_user_message(req)])
        } else {
            match first_number_of_rows(req) {
                Some(n) => words(&format!("The answer is {n}.")),
                None => words("Here is what I found."),
            }
        }
    });
    let (summary, table) = eval_with(&ollama, dir.path()).await;
    assert_eq!(summary["questions"], questions.len(), "{table}");
    assert_eq!(summary["rows_match"], 1.0, "{table}");
    assert_eq!(summary["verified"], 1.0, "{table}");
    assert_eq!(summary["errors"], 0, "{table}");
    assert_eq!(summary["mean_attempts"], 2.0, "{table}");
    // Follow-ups were asked with the question before them.
    let requests = ollama.chat_requests();
    let follow_up = requests
        .iter()
        .find(|r| FakeOllama::last_user_message(r) == "And the month before?")
        .unwrap();
    let said: Vec<&str> = follow_up["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(said.contains(&"How much did I spend on dining last month?"));

    // Made-up numbers: the rows are right, no answer verifies.
    let sql_of = truth.clone();
    ollama.respond_with(move |req| {
        if FakeOllama::wants_plan(req) {
            plan(&sql_of[&FakeOllama::last_user_message(req)])
        } else {
            words("It comes to $987,654.32.")
        }
    });
    let (summary, table) = eval_with(&ollama, dir.path()).await;
    assert_eq!(summary["rows_match"], 1.0, "{table}");
    assert_eq!(summary["verified"], 0.0, "{table}");

    // Wrong SQL: no rows match.
    ollama.respond_with(|req| {
        if FakeOllama::wants_plan(req) {
            plan("SELECT 424242 AS n")
        } else {
            words("It comes to 424242.")
        }
    });
    let (summary, table) = eval_with(&ollama, dir.path()).await;
    assert_eq!(summary["rows_match"], 0.0, "{table}");
}

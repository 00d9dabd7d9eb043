//! The question path against a fake Ollama server speaking Ollama's HTTP API.

use finq_analytics::nl::{NlEngine, NlError};
use finq_analytics::query::{QueryEngine, QueryError, Trust};
use finq_e2e::{FakeOllama, SimBank, derive_and_mirror};
use sqlx::PgPool;

async fn mirror(pool: &PgPool, dir: &std::path::Path) -> std::path::PathBuf {
    let bank = SimBank::start(8, 300).await;
    let item = bank.link(pool).await;
    bank.sync(pool, &item).await;
    let path = dir.join("finq.duckdb");
    derive_and_mirror(pool, &path).await;
    path
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_question_becomes_a_plan_that_runs(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let plan = r#"{"sql": "SELECT category, round(-sum(amount), 2) AS spent FROM transactions WHERE amount < 0 GROUP BY category ORDER BY spent DESC LIMIT 50", "explanation": "Spending per category."}"#;
    let ollama = FakeOllama::start(&["llama3.2:latest"], plan).await;
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();
    let answer = engine.ask(&path, "where does my money go?").await.unwrap();
    assert_eq!(answer.plan.explanation, "Spending per category.");
    assert!(answer.result.row_count() > 3);
    assert_eq!(answer.result.columns, vec!["category", "spent"]);

    // The numbers are DuckDB's.
    let mut conn = QueryEngine::open(&path, Trust::User).unwrap();
    let direct = conn.run("SELECT round(-sum(amount), 2) FROM transactions WHERE amount < 0 AND category = 'Groceries'").unwrap();
    let groceries = answer
        .result
        .rows()
        .into_iter()
        .find(|r| r[0].as_deref() == Some("Groceries"))
        .unwrap();
    assert_eq!(groceries[1], direct.rows()[0][0]);

    // What finq sent: the model, the question, the schema as `format`, the real tables.
    let requests = ollama.chat_requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req["model"], "llama3.2");
    assert_eq!(req["stream"], false);
    let format = &req["format"];
    assert_eq!(format["type"], "object");
    assert!(format["properties"]["sql"].is_object(), "{format}");
    assert!(format["properties"]["explanation"].is_object());
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
    assert!(
        system.contains("plaid_detailed_category") && system.contains("money in is positive"),
        "{system}"
    );
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[1]["content"], "where does my money go?");
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn bad_replies_and_writing_plans_are_refused(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let path = mirror(&pool, dir.path()).await;
    let ollama = FakeOllama::start(&["llama3.2:latest"], "Sure! Here is your SQL: SELECT 1").await;
    let engine = NlEngine::new(&ollama.url, "llama3.2").unwrap();

    let err = engine.ask(&path, "anything").await.unwrap_err();
    assert!(matches!(err, NlError::BadPlan { .. }), "{err}");
    assert!(err.to_string().contains("not a valid query plan"));

    ollama.set_reply(r#"{"sql": 42, "explanation": "wrong type"}"#);
    assert!(matches!(
        engine.ask(&path, "anything").await,
        Err(NlError::BadPlan { .. })
    ));

    for writing in [
        "DROP TABLE transactions",
        "DELETE FROM transactions",
        "SELECT 1; DROP TABLE transactions",
        "COPY transactions TO '/tmp/finq-leak.csv'",
    ] {
        ollama.set_reply(&serde_json::json!({ "sql": writing, "explanation": "x" }).to_string());
        let err = engine.ask(&path, "delete everything").await.unwrap_err();
        assert!(
            matches!(err, NlError::Query(QueryError::NotReadOnly(_))),
            "{writing}: {err}"
        );
    }
    // A read that touches files is stopped by the locked-down connection.
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "password\nhunter2\n").unwrap();
    ollama.set_reply(&serde_json::json!({ "sql": format!("SELECT * FROM read_csv('{}')", secret.display()), "explanation": "x" }).to_string());
    let err = engine.ask(&path, "read my files").await.unwrap_err();
    assert!(matches!(err, NlError::Query(QueryError::Sql(_))), "{err}");
    assert!(!std::path::Path::new("/tmp/finq-leak.csv").exists());

    let mut conn = QueryEngine::open(&path, Trust::User).unwrap();
    assert_eq!(
        conn.run("SELECT count(*) FROM transactions")
            .unwrap()
            .rows()[0][0]
            .as_deref(),
        Some("300")
    );
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

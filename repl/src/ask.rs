//! Questions from the command line and the REPL: progress while the model works, the
//! checked answer, the rows, and the conversation kept in PostgreSQL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use finq_analytics::nl::{Answer, NlEngine, Progress, UNVERIFIED_MARK, Verification, chats, eval};
use finq_analytics::query::{self, OutputFormat};
use finq_core::config::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::PgPool;

/// One conversation's asking: the model, the mirror and where turns are kept.
pub struct Asker {
    engine: NlEngine,
    pool: PgPool,
    mirror: PathBuf,
    /// The conversation questions continue; `None` until the first question starts one.
    pub conversation: Option<i64>,
}

impl Asker {
    pub fn new(settings: &Settings, pool: PgPool) -> Result<Asker> {
        let engine = NlEngine::with_settings(
            &settings.ollama_host,
            &settings.model,
            settings.answers.clone(),
        )?;
        Ok(Asker {
            engine,
            pool,
            mirror: finq_analytics::mirror_path(settings)?,
            conversation: None,
        })
    }

    /// Continue conversation `id` (it must exist).
    pub async fn resume(&mut self, id: i64) -> Result<()> {
        if !chats::exists(&self.pool, id).await? {
            return Err(no_conversation(id));
        }
        self.conversation = Some(id);
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What stops the DuckDB query of the question being asked (from a Ctrl-C handler).
    pub fn interrupter(&self) -> finq_analytics::nl::Interrupter {
        self.engine.interrupter()
    }

    /// Ask, showing progress on stderr when it is a terminal, and keep the turn.
    pub async fn ask(&mut self, question: &str, show_progress: bool) -> Result<Answer> {
        let history = match self.conversation {
            Some(id) => chats::history(&self.pool, id).await?,
            None => Vec::new(),
        };
        let bar = if show_progress {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        // Cleared however the question ends, a Ctrl-C (the future dropped) included.
        struct Clear(ProgressBar);
        impl Drop for Clear {
            fn drop(&mut self) {
                self.0.finish_and_clear();
            }
        }
        let bar = Clear(bar);
        let mut progress = |p: Progress| bar.0.set_message(progress_line(&p));
        let outcome = self
            .engine
            .ask(&self.mirror, question, &history, &mut progress)
            .await;
        drop(bar);
        let answer = outcome?;
        let id = match self.conversation {
            Some(id) => id,
            None => chats::start(&self.pool, question).await?,
        };
        chats::record(&self.pool, id, &answer)
            .await
            .context("could not keep the conversation in PostgreSQL")?;
        self.conversation = Some(id);
        Ok(answer)
    }

    /// Start a new conversation at the next question.
    pub fn new_conversation(&mut self) {
        self.conversation = None;
    }
}

/// The error for a conversation id that does not exist.
pub fn no_conversation(id: i64) -> anyhow::Error {
    anyhow::anyhow!("there is no conversation {id}: `finq chats` lists them")
}

/// `writing the query · 3.1 s · 42 tokens`.
pub fn progress_line(p: &Progress) -> String {
    let mut line = format!("{} · {:.1} s", p.stage, p.elapsed.as_secs_f64());
    if p.attempt > 1 {
        line.push_str(&format!(" · attempt {}", p.attempt));
    }
    if p.tokens > 0 {
        line.push_str(&format!(" · {} tokens", p.tokens));
    }
    line
}

/// The answer for people: the checked words, a note on what could not be checked, the
/// rows, and the SQL when asked for.
pub fn render(answer: &Answer, format: OutputFormat, show_sql: bool) -> String {
    let mut out = String::new();
    match (answer.shown_text(), answer.verification()) {
        (Some(text), Verification::Verified) => out.push_str(&format!("{text}\n")),
        (Some(text), _) => {
            let wrong: Vec<&str> = answer
                .numbers
                .iter()
                .filter(|n| !n.verified())
                .map(|n| n.written.text.as_str())
                .collect();
            out.push_str(&format!(
                "{text}\n(marked{UNVERIFIED_MARK}: {} not found in the rows below; trust the rows)\n",
                wrong.join(", ")
            ));
        }
        (None, _) => out.push_str(
            "(the model gave no answer in words that could be read; the rows are DuckDB's)\n",
        ),
    }
    out.push('\n');
    out.push_str(query::render(&answer.result, format).trim_end());
    out.push('\n');
    if show_sql {
        out.push_str(&format!("\n{}\n", answer.plan.sql.trim()));
    }
    out
}

/// `finq ask --json`: one object.
pub fn to_json(answer: &Answer, conversation_id: Option<i64>) -> serde_json::Value {
    let rows: Vec<Vec<Option<String>>> = answer.result.rows();
    serde_json::json!({
        "question": answer.question,
        "sql": answer.plan.sql,
        "explanation": answer.plan.explanation,
        "columns": answer.result.columns,
        "rows": rows,
        "answer": answer.text,
        "verification": answer.verification(),
        "numbers": answer.numbers_json(),
        "conversation_id": conversation_id,
        "attempts": answer.attempts,
        "model": answer.model,
        "timings": answer.timings,
    })
}

/// `finq chats` / `\history`: a conversation's turns.
pub fn render_turns(turns: &[chats::StoredTurn]) -> String {
    let mut out = String::new();
    for (i, t) in turns.iter().enumerate() {
        out.push_str(&format!(
            "{}. {} ({})\n",
            i + 1,
            t.question,
            t.asked_at.format("%Y-%m-%d %H:%M")
        ));
        match t.answer.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => {
                let mark = match t.verification.as_deref() {
                    Some("verified") => "",
                    _ => " (not every number verified)",
                };
                out.push_str(&format!("   {a}{mark}\n"));
            }
            None => out.push_str("   (rows only)\n"),
        }
        if let Some(sql) = &t.sql {
            out.push_str(&format!(
                "   SQL: {}\n",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    out
}

/// `finq chats`: every conversation.
pub fn render_conversations(list: &[chats::Conversation]) -> String {
    if list.is_empty() {
        return "No conversations yet: `finq ask \"…\"` or `? …` in `finq repl` starts one.\n"
            .into();
    }
    let mut out = String::new();
    for c in list {
        out.push_str(&format!(
            "{:>5}  {}  {:>3} question{}  {}\n",
            c.id,
            c.updated_at.format("%Y-%m-%d %H:%M"),
            c.questions,
            if c.questions == 1 { " " } else { "s" },
            c.title.as_deref().unwrap_or("")
        ));
    }
    out
}

/// `finq eval`: each question's outcome as it comes, then the summary and a JSON line.
pub async fn eval(
    settings: &Settings,
    model: &str,
    questions: &[eval::Question],
) -> Result<std::process::ExitCode> {
    let engine = NlEngine::with_settings(&settings.ollama_host, model, settings.answers.clone())?;
    engine.check().await?;
    eprintln!("{} questions for {model}", questions.len());
    println!(
        "{:<36} {:>5} {:>10} {:>8} {:>9}",
        "question", "rows", "numbers", "attempts", "ms"
    );
    let outcomes = eval::run(
        &engine,
        &finq_analytics::mirror_path(settings)?,
        questions,
        &mut |o| {
            let numbers = match (o.verification, &o.error) {
                (_, Some(_)) => "error",
                (Some(v), None) => v.as_str(),
                (None, None) => "-",
            };
            println!(
                "{:<36} {:>5} {:>10} {:>8} {:>9}",
                o.id,
                if o.rows_match { "ok" } else { "wrong" },
                numbers,
                o.attempts,
                o.latency_ms
            );
        },
    )
    .await?;
    let summary = eval::summarize(model, &outcomes);
    println!(
        "\n{}: rows match the truth in {:.1} % of {} questions; every number verified in {:.1} %; {} without an answer; {:.2} model calls and {} ms (median) a question",
        summary.model,
        summary.rows_match * 100.0,
        summary.questions,
        summary.verified * 100.0,
        summary.errors,
        summary.mean_attempts,
        summary.median_latency_ms
    );
    println!("{}", serde_json::to_string(&summary)?);
    Ok(std::process::ExitCode::SUCCESS)
}

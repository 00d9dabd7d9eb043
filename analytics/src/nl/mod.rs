//! Plain-English questions: the model writes the plan, DuckDB computes the numbers, and
//! every number of the answer is checked before it is shown.
//!
//! A question goes through four stages ([`NlEngine::ask`]):
//! 1. **Context** ([`context`]): the mirror's schema, the person's names for things and
//!    summaries computed in DuckDB, rendered from `prompts/query_plan.jinja` within the
//!    model's window.
//! 2. **Plan**: a structured call (a schemars JSON schema as Ollama's `format`) returning a
//!    [`QueryPlan`]; its SQL must pass [`query::check_read_only`] and runs on the
//!    locked-down connection ([`query::Trust::Model`]). A reply that does not fit the schema
//!    or SQL that DuckDB refuses goes back to the model with the error, up to `repairs` more
//!    times.
//! 3. **Answer**: the model writes a short answer from the question and the result rows
//!    (`prompts/answer.jinja`).
//! 4. **Check** ([`verify`]): every number of the answer is matched against the rows, the
//!    context and the question, or computed from them. An answer with a number that does
//!    not check out is sent back once with the number named; what still fails is marked
//!    unverified, never shown as fact.
//!
//! Earlier turns of a conversation ([`Turn`]) go with a follow-up, trimmed to the budget.
//! Calls are streamed for progress ([`ollama`]); conversations are stored by [`chats`].

pub mod chats;
pub mod context;
pub mod eval;
pub mod ollama;
pub mod verify;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use minijinja::{Environment, context};
use ollama_rs::generation::chat::ChatMessage;
use ollama_rs::generation::parameters::{FormatType, JsonStructure};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use finq_core::config::AnswerSettings;

use crate::query::{self, QueryEngine, QueryError, QueryResult, Trust};
use context::Context;
use ollama::OllamaChat;
use verify::{Checked, Fact};

pub const PLAN_TEMPLATE: &str = include_str!("../../../prompts/query_plan.jinja");
pub const ANSWER_TEMPLATE: &str = include_str!("../../../prompts/answer.jinja");

/// What the model must return for a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QueryPlan {
    /// One read-only DuckDB SQL query (SELECT or WITH … SELECT) that answers the question.
    pub sql: String,
    /// One sentence saying what the query computes.
    pub explanation: String,
}

/// What the model must return for the answer in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AnswerText {
    /// The answer to the question in one to three sentences, using only numbers from the
    /// result rows.
    pub answer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error(
        "cannot reach Ollama at {host}: {detail}. Start it (`ollama serve`) or point OLLAMA_HOST at it; SQL still works"
    )]
    Unreachable { host: String, detail: String },
    #[error(
        "the model `{model}` is not available in Ollama at {host}: run `ollama pull {model}`, or set FINQ_MODEL to one of: {available}"
    )]
    ModelMissing {
        model: String,
        host: String,
        available: String,
    },
    #[error("Ollama answered with an error: {0}")]
    Ollama(String),
    #[error(
        "the model `{model}` took more than {seconds} s to reply: try again, a smaller model (FINQ_MODEL), or a longer `timeout_secs` under [ollama] in finq.toml"
    )]
    Timeout { model: String, seconds: u64 },
    #[error(
        "the model gave no query that runs after {attempts} attempts (last problem: {last}); try rephrasing the question, or a larger model (FINQ_MODEL)"
    )]
    NoPlan { attempts: u32, last: String },
    #[error("the reference SQL of question {id} fails: {message}; fix the questions file")]
    BadQuestion { id: String, message: String },
    #[error("the prompt template is broken: {0}")]
    Template(#[from] minijinja::Error),
    #[error("the question was stopped while its query ran")]
    Interrupted,
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// A stage of answering, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Context,
    Plan,
    Run,
    Answer,
    Check,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Context => "reading your data",
            Stage::Plan => "writing the query",
            Stage::Run => "running the query",
            Stage::Answer => "writing the answer",
            Stage::Check => "checking the numbers",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    /// Model calls so far, this one included.
    pub attempt: u32,
    /// Pieces streamed by this call.
    pub tokens: u64,
    /// Since the question was asked.
    pub elapsed: Duration,
}

/// An earlier question and answer of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Turn {
    pub question: String,
    pub sql: Option<String>,
    pub answer: Option<String>,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    pub context_ms: u64,
    pub plan_ms: u64,
    pub run_ms: u64,
    pub answer_ms: u64,
    pub total_ms: u64,
}

/// A question answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub question: String,
    pub plan: QueryPlan,
    pub result: QueryResult,
    /// The answer in words; `None` when the model gave none that could be read (the rows
    /// are shown alone).
    pub text: Option<String>,
    /// Every number of `text`, checked.
    pub numbers: Vec<Checked>,
    /// Model calls made.
    pub attempts: u32,
    pub model: String,
    pub timings: Timings,
}

/// How an answer's numbers fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Every number checked out (or there were none).
    Verified,
    /// At least one number did not; it is marked.
    Unverified,
    /// No answer in words.
    NoAnswer,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Verified => "verified",
            Verification::Unverified => "unverified",
            Verification::NoAnswer => "no_answer",
        }
    }
}

/// How an unverified number is marked in the text shown.
pub const UNVERIFIED_MARK: &str = " [unverified]";

impl Answer {
    pub fn verification(&self) -> Verification {
        match &self.text {
            None => Verification::NoAnswer,
            Some(_) if self.numbers.iter().all(Checked::verified) => Verification::Verified,
            Some(_) => Verification::Unverified,
        }
    }

    /// The answer as it may be shown: each unverified number followed by
    /// [`UNVERIFIED_MARK`].
    pub fn shown_text(&self) -> Option<String> {
        let text = self.text.as_ref()?;
        let mut out = String::with_capacity(text.len() + 32);
        let mut at = 0;
        for n in self.numbers.iter().filter(|n| !n.verified()) {
            out.push_str(&text[at..n.written.span.end]);
            out.push_str(UNVERIFIED_MARK);
            at = n.written.span.end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// Every number of the answer: `{text, value, verified, source}`.
    pub fn numbers_json(&self) -> serde_json::Value {
        use rust_decimal::prelude::ToPrimitive;
        serde_json::Value::Array(
            self.numbers
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "text": n.written.text,
                        "value": n.written.value().to_f64(),
                        "verified": n.verified(),
                        "source": n.source,
                    })
                })
                .collect(),
        )
    }

    /// A few lines that stand for the rows in the conversation's memory.
    pub fn row_summary(&self) -> String {
        summarize_rows(&self.result, 10)
    }
}

/// The first `n` rows as `a | b` lines under a header, with the count.
pub fn summarize_rows(result: &QueryResult, n: usize) -> String {
    let rows = result.rows();
    let mut out = format!(
        "{} row{}: {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        result.columns.join(" | ")
    );
    for row in rows.iter().take(n) {
        out.push('\n');
        let cells: Vec<&str> = row.iter().map(|c| c.as_deref().unwrap_or("NULL")).collect();
        out.push_str(&cells.join(" | "));
    }
    if rows.len() > n {
        out.push_str(&format!("\n… {} more", rows.len() - n));
    }
    out
}

/// Rows shown to the model when it writes the answer.
const ANSWER_ROWS: usize = 50;
/// Characters of the window given to the earlier turns of a conversation.
const HISTORY_SHARE: usize = 4;

pub struct NlEngine {
    chat: OllamaChat,
    /// Times a failed plan goes back to the model.
    repairs: u32,
    max_context: u32,
    running: Interrupter,
}

/// Stops the DuckDB query a question is running, from another task or thread (a Ctrl-C
/// handler): the question then ends with [`NlError::Interrupted`]. DuckDB forgets an
/// interrupt that comes before a query's transaction has begun, so a caller stopping a
/// question interrupts until the question has ended.
#[derive(Clone, Default)]
pub struct Interrupter {
    handle: Arc<std::sync::Mutex<Option<Arc<duckdb::InterruptHandle>>>>,
    /// Set by an interrupt while a question runs: its failed query is not sent back to
    /// the model for repair.
    interrupted: Arc<AtomicBool>,
}

impl Interrupter {
    pub fn interrupt(&self) {
        if let Some(handle) = self
            .handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            self.interrupted.store(true, Ordering::SeqCst);
            handle.interrupt();
        }
    }

    fn set(&self, handle: Option<Arc<duckdb::InterruptHandle>>) {
        self.interrupted.store(false, Ordering::SeqCst);
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = handle;
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

impl NlEngine {
    /// An engine with the default settings (deterministic, two repairs).
    pub fn new(host: &str, model: &str) -> Result<Self, NlError> {
        Self::with_settings(host, model, AnswerSettings::default())
    }

    pub fn with_settings(
        host: &str,
        model: &str,
        settings: AnswerSettings,
    ) -> Result<Self, NlError> {
        Ok(NlEngine {
            repairs: settings.repairs,
            max_context: settings.max_context,
            chat: OllamaChat::new(host, model, settings)?,
            running: Interrupter::default(),
        })
    }

    /// What stops this engine's running query.
    pub fn interrupter(&self) -> Interrupter {
        self.running.clone()
    }

    pub fn model(&self) -> &str {
        self.chat.model()
    }

    /// Ollama is up and has the model (checked once per engine).
    pub async fn check(&self) -> Result<(), NlError> {
        self.chat.check().await
    }

    /// The system prompt for planning.
    pub fn render_plan_prompt(ctx: &Context, today: chrono::NaiveDate) -> Result<String, NlError> {
        let tables: Vec<_> = ctx
            .tables
            .iter()
            .map(|t| {
                let columns: Vec<_> = t
                    .columns
                    .iter()
                    .zip(&t.column_comments)
                    .map(|((name, ty), comment)| context! { name, ty, comment })
                    .collect();
                context! { name => t.name, columns => columns, note => t.comment }
            })
            .collect();
        let summaries: Vec<_> = ctx
            .summaries
            .iter()
            .map(|s| context! { title => s.title, columns => s.columns, rows => s.rows })
            .collect();
        Ok(Environment::new().render_str(
            PLAN_TEMPLATE,
            context! {
                tables => tables,
                today => today.to_string(),
                accounts => ctx.accounts,
                categories => ctx.categories,
                merchants => ctx.merchants,
                summaries => summaries,
            },
        )?)
    }

    fn render_answer_prompt(
        plan: &QueryPlan,
        result: &QueryResult,
        today: chrono::NaiveDate,
    ) -> Result<String, NlError> {
        let rows: Vec<Vec<String>> = result
            .rows()
            .into_iter()
            .take(ANSWER_ROWS)
            .map(|r| {
                r.into_iter()
                    .map(|c| c.unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect();
        Ok(Environment::new().render_str(
            ANSWER_TEMPLATE,
            context! {
                today => today.to_string(),
                sql => plan.sql,
                explanation => plan.explanation,
                columns => result.columns,
                row_count => result.row_count(),
                shown => rows.len(),
                rows => rows,
            },
        )?)
    }

    /// Characters the prompt may take in all.
    fn budget(&self) -> usize {
        let tokens = self.max_context.saturating_sub(1024).max(1024) as f64;
        (tokens * ollama::CHARS_PER_TOKEN) as usize
    }

    /// Answer `question` from the mirror, continuing the conversation `history` (oldest
    /// first).
    pub async fn ask(
        &self,
        mirror: &Path,
        question: &str,
        history: &[Turn],
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Answer, NlError> {
        match self.ask_inner(mirror, question, history, progress).await {
            Err(_) if self.running.interrupted() => Err(NlError::Interrupted),
            outcome => outcome,
        }
    }

    async fn ask_inner(
        &self,
        mirror: &Path,
        question: &str,
        history: &[Turn],
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Answer, NlError> {
        let started = Instant::now();
        let mut timings = Timings::default();
        let mut attempts = 0u32;
        let report = |stage: Stage, attempt: u32, tokens: u64| Progress {
            stage,
            attempt,
            tokens,
            elapsed: started.elapsed(),
        };
        progress(report(Stage::Context, 0, 0));
        self.chat.check().await?;
        let today = chrono::Local::now().date_naive();
        let mut engine = QueryEngine::open(mirror, Trust::Model)?;
        // Reachable by `interrupter()` while this question runs (queries run on this
        // thread; a Ctrl-C handler runs elsewhere).
        struct Running<'a>(&'a Interrupter);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.set(None);
            }
        }
        self.running.set(Some(engine.interrupt_handle()?));
        let _running = Running(&self.running);
        let mut ctx = Context::gather(&mut engine)?;
        let turns = trim_history(history, self.budget() / HISTORY_SHARE);
        let turns_chars: usize = turns.iter().map(|m| m.content.len()).sum();
        let budget = self
            .budget()
            .saturating_sub(turns_chars + question.len())
            .max(2000);
        let system = ctx.fit(budget, |c| Self::render_plan_prompt(c, today))?;
        timings.context_ms = started.elapsed().as_millis() as u64;

        // Plan, run, repair.
        let t = Instant::now();
        let mut messages = vec![ChatMessage::system(system)];
        messages.extend(turns);
        messages.push(ChatMessage::user(question.to_string()));
        let mut run_time = Duration::ZERO;
        let (plan, result) = loop {
            attempts += 1;
            let attempt = attempts;
            let reply = self
                .chat
                .chat(messages.clone(), Some(format_of::<QueryPlan>()), &mut |s| {
                    progress(report(Stage::Plan, attempt, s.tokens))
                })
                .await?;
            // What went wrong, and what the model is told to do about it.
            let (problem, fix) = match parse_reply::<QueryPlan>(&reply.content) {
                Err(reason) => (
                    format!(
                        "the reply is not a JSON object with \"sql\" and \"explanation\" ({reason})"
                    ),
                    "Reply with only that object.",
                ),
                Ok(plan) if plan.sql.trim().is_empty() => (
                    "the plan has no SQL".to_string(),
                    "Reply with the query in \"sql\".",
                ),
                Ok(plan) => {
                    progress(report(Stage::Run, attempt, 0));
                    let r = Instant::now();
                    let outcome =
                        query::check_read_only(&plan.sql).and_then(|()| engine.run(&plan.sql));
                    run_time += r.elapsed();
                    match outcome {
                        Ok(result) => break (plan, result),
                        Err(_) if self.running.interrupted() => {
                            return Err(NlError::Interrupted);
                        }
                        Err(e) => (
                            format!("DuckDB refused the query: {e}"),
                            "Write a corrected query (one read-only SELECT over the tables above).",
                        ),
                    }
                }
            };
            tracing::debug!(attempt, problem, "the plan goes back to the model");
            if attempts > self.repairs {
                return Err(NlError::NoPlan {
                    attempts,
                    last: problem,
                });
            }
            messages.push(ChatMessage::assistant(reply.content));
            messages.push(ChatMessage::user(format!("Problem: {problem}. {fix}")));
        };
        timings.run_ms = run_time.as_millis() as u64;
        timings.plan_ms = (t.elapsed() - run_time).as_millis() as u64;

        // The answer in words, checked.
        let t = Instant::now();
        let rows = context::result_facts(&result);
        let mut others: Vec<Fact> = verify::numbers(question)
            .into_iter()
            .map(|w| Fact::new(w.value(), "your question"))
            .collect();
        others.extend(ctx.facts());
        let mut messages = vec![
            ChatMessage::system(Self::render_answer_prompt(&plan, &result, today)?),
            ChatMessage::user(question.to_string()),
        ];
        let mut text: Option<String> = None;
        let mut numbers = Vec::new();
        for round in 0..2 {
            attempts += 1;
            let attempt = attempts;
            let reply = self
                .chat
                .chat(
                    messages.clone(),
                    Some(format_of::<AnswerText>()),
                    &mut |s| progress(report(Stage::Answer, attempt, s.tokens)),
                )
                .await?;
            progress(report(Stage::Check, attempt, 0));
            let problem = match parse_reply::<AnswerText>(&reply.content) {
                Ok(a) if !a.answer.trim().is_empty() => {
                    let answer = a.answer.trim().to_string();
                    numbers = verify::check(&answer, &rows, &others);
                    text = Some(answer);
                    let wrong: Vec<&str> = numbers
                        .iter()
                        .filter(|n| !n.verified())
                        .map(|n| n.written.text.as_str())
                        .collect();
                    if wrong.is_empty() {
                        break;
                    }
                    format!(
                        "These numbers of your answer are not in the result rows and cannot be computed from them: {}. Rewrite the answer using only numbers from the rows.",
                        wrong.join(", ")
                    )
                }
                Ok(_) => "That answer is empty. Answer the question in words.".to_string(),
                Err(reason) => format!(
                    "That reply is not a JSON object with \"answer\" ({reason}). Reply with only that object."
                ),
            };
            if round == 0 {
                tracing::debug!(problem, "the answer goes back to the model");
                messages.push(ChatMessage::assistant(reply.content));
                messages.push(ChatMessage::user(problem));
            }
        }
        timings.answer_ms = t.elapsed().as_millis() as u64;
        timings.total_ms = started.elapsed().as_millis() as u64;
        Ok(Answer {
            question: question.to_string(),
            plan,
            result,
            text,
            numbers,
            attempts,
            model: self.chat.model().to_string(),
            timings,
        })
    }
}

fn format_of<T: JsonSchema>() -> FormatType {
    FormatType::StructuredJson(Box::new(JsonStructure::new::<T>()))
}

/// The latest turns that fit `budget` characters, as chat messages (oldest first).
fn trim_history(history: &[Turn], budget: usize) -> Vec<ChatMessage> {
    let mut kept: Vec<[ChatMessage; 2]> = Vec::new();
    let mut used = 0;
    for turn in history.iter().rev() {
        let plan = serde_json::json!({
            "sql": turn.sql.clone().unwrap_or_default(),
            "explanation": turn.answer.clone().unwrap_or_default(),
        })
        .to_string();
        let size = turn.question.len() + plan.len();
        if used + size > budget {
            break;
        }
        used += size;
        kept.push([
            ChatMessage::user(turn.question.clone()),
            ChatMessage::assistant(plan),
        ]);
    }
    kept.into_iter().rev().flatten().collect()
}

/// Read a structured reply leniently: surrounding prose or a Markdown fence is dropped,
/// extra keys are ignored; what is missing, mistyped or cut short is an error, in words
/// the model can act on.
pub fn parse_reply<T: DeserializeOwned>(reply: &str) -> Result<T, String> {
    let text = reply.trim();
    if text.is_empty() {
        return Err("the reply was empty".into());
    }
    let inner = match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) if a < b => &text[a..=b],
        (Some(a), _) => &text[a..],
        _ => return Err("the reply holds no JSON object".into()),
    };
    serde_json::from_str(inner).map_err(|e| {
        if e.is_eof() {
            "the reply was cut short".to_string()
        } else {
            e.to_string()
        }
    })
}

/// Parse a query plan (see [`parse_reply`]).
pub fn parse_plan(reply: &str) -> Result<QueryPlan, String> {
    let plan: QueryPlan = parse_reply(reply)?;
    if plan.sql.trim().is_empty() {
        return Err("the plan has no SQL".into());
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_leniently_and_refused_with_reasons() {
        let p = parse_plan(r#"{"sql":"SELECT 1","explanation":"one"}"#).unwrap();
        assert_eq!(p.sql, "SELECT 1");
        // Fenced, with prose around it, with extra keys: read.
        let fenced = "Here you go:\n```json\n{\"sql\": \"SELECT 2\", \"explanation\": \"two\", \"confidence\": 0.9}\n```";
        assert_eq!(parse_plan(fenced).unwrap().sql, "SELECT 2");
        // Empty, cut short, mistyped, missing a key, no SQL: refused, saying why.
        assert_eq!(parse_plan("  ").unwrap_err(), "the reply was empty");
        assert_eq!(
            parse_plan(r#"{"sql": "SELECT 1", "expl"#).unwrap_err(),
            "the reply was cut short"
        );
        assert!(parse_plan(r#"{"sql": 42, "explanation": "x"}"#).is_err());
        assert!(
            parse_plan(r#"{"sql": "SELECT 1"}"#)
                .unwrap_err()
                .contains("explanation")
        );
        assert_eq!(
            parse_plan(r#"{"sql": " ", "explanation": "x"}"#).unwrap_err(),
            "the plan has no SQL"
        );
        assert_eq!(
            parse_plan("SELECT 1").unwrap_err(),
            "the reply holds no JSON object"
        );
    }

    #[test]
    fn the_schema_sent_is_strict() {
        let FormatType::StructuredJson(s) = format_of::<QueryPlan>() else {
            panic!("not a schema");
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["additionalProperties"], false, "{v}");
        assert_eq!(v["properties"]["sql"]["type"], "string");
    }

    #[test]
    fn history_keeps_the_latest_turns_that_fit() {
        let turn = |q: &str| Turn {
            question: q.into(),
            sql: Some("SELECT 1".into()),
            answer: Some("One.".into()),
        };
        let history = vec![turn("first?"), turn("second?"), turn("third?")];
        let all = trim_history(&history, 10_000);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0].content, "first?");
        let one = trim_history(&history, 60);
        assert_eq!(one.len(), 2);
        assert_eq!(one[0].content, "third?");
        assert!(trim_history(&history, 5).is_empty());
    }

    #[test]
    fn plan_prompt_has_schema_vocabulary_and_summaries() {
        let ctx = Context {
            tables: vec![query::TableInfo {
                name: "transactions".into(),
                comment: "every transaction".into(),
                columns: vec![("amount".into(), "DECIMAL(14,2)".into())],
                column_comments: vec![String::new()],
            }],
            accounts: vec!["Plaid Checking".into()],
            categories: vec!["Groceries".into(), "Eating out".into()],
            merchants: vec!["Starbucks".into()],
            summaries: vec![context::Summary {
                title: "Balances",
                columns: vec!["account".into(), "current_balance".into()],
                numeric: vec![false, true],
                rows: vec![vec!["Plaid Checking".into(), "110.00".into()]],
            }],
        };
        let p = NlEngine::render_plan_prompt(
            &ctx,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        )
        .unwrap();
        for needle in [
            "- amount DECIMAL(14,2)",
            "money in is positive",
            "2026-11-24",
            "Accounts: Plaid Checking",
            "Categories: Groceries, Eating out",
            "Frequent merchants: Starbucks",
            "Balances:\naccount | current_balance\nPlaid Checking | 110.00",
        ] {
            assert!(p.contains(needle), "{needle} missing from:\n{p}");
        }
        assert_eq!(
            ctx.facts()[0].source,
            "Balances: Plaid Checking, current_balance"
        );
    }

    #[test]
    fn unverified_numbers_are_marked_in_the_text_shown() {
        let text = "You spent $120.50, 20% more than $75.";
        let facts = vec![Fact::new("-120.50".parse().unwrap(), "row 1, spent")];
        let answer = Answer {
            question: "q".into(),
            plan: QueryPlan {
                sql: "SELECT 1".into(),
                explanation: String::new(),
            },
            result: QueryResult {
                columns: vec![],
                types: vec![],
                batches: vec![],
            },
            text: Some(text.into()),
            numbers: verify::check(text, &facts, &[]),
            attempts: 2,
            model: "m".into(),
            timings: Timings::default(),
        };
        assert_eq!(answer.verification(), Verification::Unverified);
        assert_eq!(
            answer.shown_text().unwrap(),
            "You spent $120.50, 20% [unverified] more than $75 [unverified]."
        );
    }
}

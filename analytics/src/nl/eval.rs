//! `finq eval`: how well a model answers, measured on questions whose true result is known.
//!
//! Each question (bundled: `eval/questions.toml`) carries the SQL whose result is the
//! truth. The question is asked as a person would ask it (a follow-up continues the
//! conversation of the question before it); the answer's rows are compared with the
//! truth's (in any order, numbers to the cent), and its words' verification is recorded.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{NlEngine, NlError, Turn, Verification};
use crate::query::{QueryEngine, QueryResult, Trust};

pub const BUNDLED: &str = include_str!("../../../eval/questions.toml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub id: String,
    pub text: String,
    /// The SQL whose result is the truth.
    pub sql: String,
    /// Continues the conversation of the question before it.
    #[serde(default)]
    pub follow_up: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionFile {
    question: Vec<Question>,
}

/// Read a questions file (TOML: `[[question]]` tables with `id`, `text`, `sql`, and
/// optionally `follow_up = true`).
pub fn parse(text: &str) -> Result<Vec<Question>, String> {
    let file: QuestionFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let questions = file.question;
    if questions.is_empty() {
        return Err("the file has no [[question]]".into());
    }
    if questions[0].follow_up {
        return Err(format!(
            "the first question ({}) cannot be a follow-up",
            questions[0].id
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for q in &questions {
        if !seen.insert(q.id.as_str()) {
            return Err(format!("the id {} is used twice", q.id));
        }
    }
    Ok(questions)
}

/// How one question went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub id: String,
    pub question: String,
    /// The answer's rows are the truth's.
    pub rows_match: bool,
    pub verification: Option<Verification>,
    pub attempts: u32,
    pub latency_ms: u64,
    /// Why there was no answer.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub model: String,
    pub questions: usize,
    /// Share of questions whose rows matched the truth.
    pub rows_match: f64,
    /// Share of questions whose answer's numbers all verified.
    pub verified: f64,
    pub errors: usize,
    pub mean_attempts: f64,
    pub median_latency_ms: u64,
}

pub fn summarize(model: &str, outcomes: &[Outcome]) -> Summary {
    let n = outcomes.len().max(1) as f64;
    let share = |f: &dyn Fn(&Outcome) -> bool| {
        (outcomes.iter().filter(|o| f(o)).count() as f64 / n * 1000.0).round() / 1000.0
    };
    let mut latencies: Vec<u64> = outcomes.iter().map(|o| o.latency_ms).collect();
    latencies.sort_unstable();
    Summary {
        model: model.to_string(),
        questions: outcomes.len(),
        rows_match: share(&|o| o.rows_match),
        verified: share(&|o| o.verification == Some(Verification::Verified)),
        errors: outcomes.iter().filter(|o| o.error.is_some()).count(),
        mean_attempts: (outcomes.iter().map(|o| o.attempts as f64).sum::<f64>() / n * 100.0)
            .round()
            / 100.0,
        median_latency_ms: latencies.get(latencies.len() / 2).copied().unwrap_or(0),
    }
}

/// Ask every question; `each` hears of every outcome as it comes.
pub async fn run(
    engine: &NlEngine,
    mirror: &Path,
    questions: &[Question],
    each: &mut (dyn FnMut(&Outcome) + Send),
) -> Result<Vec<Outcome>, NlError> {
    let mut reference = QueryEngine::open(mirror, Trust::User)?;
    let mut history: Vec<Turn> = Vec::new();
    let mut outcomes = Vec::new();
    for q in questions {
        let truth = reference.run(&q.sql).map_err(|e| NlError::BadQuestion {
            id: q.id.clone(),
            message: e.to_string(),
        })?;
        if !q.follow_up {
            history.clear();
        }
        let started = Instant::now();
        let asked = engine.ask(mirror, &q.text, &history, &mut |_| {}).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let outcome = match asked {
            Ok(answer) => {
                history.push(Turn {
                    question: q.text.clone(),
                    sql: Some(answer.plan.sql.clone()),
                    answer: answer.text.clone(),
                });
                Outcome {
                    id: q.id.clone(),
                    question: q.text.clone(),
                    rows_match: same_rows(&answer.result, &truth),
                    verification: Some(answer.verification()),
                    attempts: answer.attempts,
                    latency_ms,
                    error: None,
                }
            }
            // The model's failures are what is measured; Ollama's are not.
            Err(e @ (NlError::NoPlan { .. } | NlError::Timeout { .. })) => {
                let attempts = match &e {
                    NlError::NoPlan { attempts, .. } => *attempts,
                    _ => 0,
                };
                history.push(Turn {
                    question: q.text.clone(),
                    sql: None,
                    answer: None,
                });
                Outcome {
                    id: q.id.clone(),
                    question: q.text.clone(),
                    rows_match: false,
                    verification: None,
                    attempts,
                    latency_ms,
                    error: Some(e.to_string()),
                }
            }
            Err(e) => return Err(e),
        };
        each(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The same rows in any order, numbers compared to the cent, column names ignored.
pub fn same_rows(a: &QueryResult, b: &QueryResult) -> bool {
    if a.columns.len() != b.columns.len() {
        return false;
    }
    let normal = |r: &QueryResult| {
        let mut rows: Vec<Vec<String>> = r
            .rows()
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|cell| match cell {
                        None => "NULL".to_string(),
                        Some(text) => match super::context::parse_number(&text) {
                            Some(n) => n.round_dp(2).normalize().to_string(),
                            None => text,
                        },
                    })
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    };
    normal(a) == normal(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_questions_parse() {
        let questions = parse(BUNDLED).unwrap();
        assert!(questions.len() >= 40, "{}", questions.len());
        assert!(questions.iter().filter(|q| q.follow_up).count() >= 2);
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(parse("").unwrap_err().contains("question"));
        let twice = "[[question]]\nid='a'\ntext='x'\nsql='SELECT 1'\n[[question]]\nid='a'\ntext='y'\nsql='SELECT 2'\n";
        assert_eq!(parse(twice).unwrap_err(), "the id a is used twice");
        let follow = "[[question]]\nid='a'\ntext='x'\nsql='SELECT 1'\nfollow_up=true\n";
        assert!(parse(follow).unwrap_err().contains("cannot be a follow-up"));
    }
}

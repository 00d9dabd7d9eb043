//! Plain-English questions: the model writes a query plan, DuckDB supplies the numbers.
//!
//! The prompt is rendered from `prompts/query_plan.jinja` with the mirror's real schema;
//! the request carries a schemars-generated JSON schema as Ollama's `format`, so the reply
//! is a [`QueryPlan`]. Its SQL must pass [`query::check_read_only`] and then runs on a
//! read-only, locked-down connection ([`query::Trust::Model`]).

use std::path::Path;

use minijinja::{Environment, context};
use ollama_rs::Ollama;
use ollama_rs::error::OllamaError;
use ollama_rs::generation::chat::ChatMessage;
use ollama_rs::generation::chat::request::ChatMessageRequest;
use ollama_rs::generation::parameters::{FormatType, JsonStructure};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::query::{self, QueryEngine, QueryError, QueryResult, Trust};

pub const PROMPT_TEMPLATE: &str = include_str!("../../prompts/query_plan.jinja");

/// What the model must return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryPlan {
    /// One read-only DuckDB SQL query (SELECT or WITH … SELECT) that answers the question.
    pub sql: String,
    /// One sentence saying what the query computes.
    pub explanation: String,
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
        "the model's reply is not a valid query plan ({reason}); try rephrasing the question, or a larger model (FINQ_MODEL). Reply was: {reply}"
    )]
    BadPlan { reason: String, reply: String },
    #[error("the prompt template is broken: {0}")]
    Template(#[from] minijinja::Error),
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// A question answered: the model's plan and the rows DuckDB returned for it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub plan: QueryPlan,
    pub result: QueryResult,
}

pub struct NlEngine {
    ollama: Ollama,
    host: String,
    model: String,
}

impl NlEngine {
    pub fn new(host: &str, model: &str) -> Result<Self, NlError> {
        let ollama = Ollama::try_new(host).map_err(|e| NlError::Unreachable {
            host: host.to_string(),
            detail: format!("not a valid URL ({e})"),
        })?;
        Ok(NlEngine {
            ollama,
            host: host.to_string(),
            model: model.to_string(),
        })
    }

    fn map_err(&self, e: OllamaError) -> NlError {
        match e {
            OllamaError::ReqwestError(r) if r.is_connect() || r.is_timeout() || r.is_request() => {
                NlError::Unreachable {
                    host: self.host.clone(),
                    detail: r.to_string(),
                }
            }
            OllamaError::Other(text) if text.contains("not found") => NlError::ModelMissing {
                model: self.model.clone(),
                host: self.host.clone(),
                available: "(see `ollama list`)".to_string(),
            },
            other => NlError::Ollama(other.to_string()),
        }
    }

    /// Ollama is up and has the model.
    pub async fn check(&self) -> Result<(), NlError> {
        let models = self
            .ollama
            .list_local_models()
            .await
            .map_err(|e| self.map_err(e))?;
        let wanted = if self.model.contains(':') {
            self.model.clone()
        } else {
            format!("{}:latest", self.model)
        };
        if models
            .iter()
            .any(|m| m.name == self.model || m.name == wanted)
        {
            return Ok(());
        }
        let available: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        Err(NlError::ModelMissing {
            model: self.model.clone(),
            host: self.host.clone(),
            available: if available.is_empty() {
                "(none pulled yet)".to_string()
            } else {
                available.join(", ")
            },
        })
    }

    /// Render the system prompt for the mirror's schema.
    pub fn render_prompt(
        tables: &[query::TableInfo],
        today: chrono::NaiveDate,
    ) -> Result<String, NlError> {
        let mut env = Environment::new();
        env.add_template("query_plan", PROMPT_TEMPLATE)?;
        let tables: Vec<_> = tables
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
        Ok(env
            .get_template("query_plan")?
            .render(context! { tables => tables, today => today.to_string() })?)
    }

    /// Ask the model for a plan.
    pub async fn plan(&self, question: &str, system_prompt: String) -> Result<QueryPlan, NlError> {
        self.check().await?;
        let request = ChatMessageRequest::new(
            self.model.clone(),
            vec![
                ChatMessage::system(system_prompt),
                ChatMessage::user(question.to_string()),
            ],
        )
        .format(FormatType::StructuredJson(Box::new(JsonStructure::new::<
            QueryPlan,
        >())));
        let reply = self
            .ollama
            .send_chat_messages(request)
            .await
            .map_err(|e| self.map_err(e))?;
        parse_plan(&reply.message.content)
    }

    /// Plan, check and run a question against the mirror.
    pub async fn ask(&self, mirror: &Path, question: &str) -> Result<Answer, NlError> {
        let mut engine = QueryEngine::open(mirror, Trust::Model)?;
        let tables = engine.describe()?;
        let prompt = Self::render_prompt(&tables, chrono::Local::now().date_naive())?;
        let plan = self.plan(question, prompt).await?;
        query::check_read_only(&plan.sql)?;
        let result = engine.run(&plan.sql)?;
        Ok(Answer { plan, result })
    }
}

/// Parse and validate the model's reply against the plan's schema.
pub fn parse_plan(reply: &str) -> Result<QueryPlan, NlError> {
    let shorten = |s: &str| s.chars().take(300).collect::<String>();
    let plan: QueryPlan = serde_json::from_str(reply.trim()).map_err(|e| NlError::BadPlan {
        reason: e.to_string(),
        reply: shorten(reply),
    })?;
    if plan.sql.trim().is_empty() {
        return Err(NlError::BadPlan {
            reason: "the plan has no SQL".into(),
            reply: shorten(reply),
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_parsing() {
        let p = parse_plan(r#"{"sql":"SELECT 1","explanation":"one"}"#).unwrap();
        assert_eq!(p.sql, "SELECT 1");
        assert!(matches!(
            parse_plan("SELECT 1"),
            Err(NlError::BadPlan { .. })
        ));
        assert!(matches!(
            parse_plan(r#"{"sql":"SELECT 1"}"#),
            Err(NlError::BadPlan { .. })
        ));
        assert!(matches!(
            parse_plan(r#"{"sql":" ","explanation":"x"}"#),
            Err(NlError::BadPlan { .. })
        ));
    }

    #[test]
    fn prompt_has_schema_and_sign_convention() {
        let tables = vec![query::TableInfo {
            name: "transactions".into(),
            comment: "every transaction".into(),
            columns: vec![("amount".into(), "DECIMAL(14,2)".into())],
            column_comments: vec![String::new()],
        }];
        let p = NlEngine::render_prompt(
            &tables,
            chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        )
        .unwrap();
        assert!(p.contains("- amount DECIMAL(14,2)"), "{p}");
        assert!(p.contains("money in is positive"));
        assert!(p.contains("2026-11-24"));
    }
}

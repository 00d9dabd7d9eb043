//! Conversations, kept in PostgreSQL (`chat_conversations`, `chat_messages`): each turn is
//! a `user` message (the question) and an `assistant` message (the answer with its SQL, a
//! summary of the rows, how its numbers fared, the model, attempts and timings). A
//! follow-up is answered with the earlier turns ([`history`]).

use serde_json::Value;
use sqlx::PgPool;

use super::{Answer, Turn};

/// finq is single-user: everything belongs to user 1.
const USER: i64 = 1;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Conversation {
    pub id: i64,
    pub title: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub questions: i64,
}

/// One question and its answer as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredTurn {
    pub question: String,
    pub asked_at: chrono::DateTime<chrono::Utc>,
    pub answer: Option<String>,
    pub sql: Option<String>,
    pub row_summary: Option<String>,
    pub verification: Option<String>,
    pub numbers: Option<Value>,
    pub model: Option<String>,
    pub attempts: Option<i32>,
    pub timings: Option<Value>,
}

/// A new conversation, titled by its first question.
pub async fn start(pool: &PgPool, first_question: &str) -> Result<i64, sqlx::Error> {
    let title: String = first_question.chars().take(80).collect();
    sqlx::query_scalar(
        "INSERT INTO chat_conversations (user_id, title) VALUES ($1, $2) RETURNING id",
    )
    .bind(USER)
    .bind(title)
    .fetch_one(pool)
    .await
}

pub async fn exists(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chat_conversations WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// The conversation's turns, oldest first.
pub async fn turns(pool: &PgPool, id: i64) -> Result<Vec<StoredTurn>, sqlx::Error> {
    sqlx::query_as(
        "SELECT q.content AS question, q.created_at AS asked_at, a.content AS answer, a.sql,
                a.row_summary, a.verification, a.numbers, a.model, a.attempts, a.timings
         FROM chat_messages q
         LEFT JOIN LATERAL (
             SELECT * FROM chat_messages a
             WHERE a.conversation_id = q.conversation_id AND a.id > q.id AND a.role = 'assistant'
             ORDER BY a.id LIMIT 1
         ) a ON true
         WHERE q.conversation_id = $1 AND q.role = 'user'
         ORDER BY q.id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// The earlier turns as the model is told them.
pub async fn history(pool: &PgPool, id: i64) -> Result<Vec<Turn>, sqlx::Error> {
    Ok(turns(pool, id)
        .await?
        .into_iter()
        .map(|t| Turn {
            question: t.question,
            sql: t.sql,
            answer: t.answer.filter(|a| !a.is_empty()),
        })
        .collect())
}

/// Store a question and its answer as the conversation's next turn.
pub async fn record(pool: &PgPool, id: i64, answer: &Answer) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, role, content) VALUES ($1, 'user', $2)",
    )
    .bind(id)
    .bind(&answer.question)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, role, content, sql, row_summary,
                                    verification, numbers, model, attempts, timings)
         VALUES ($1, 'assistant', $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(answer.text.clone().unwrap_or_default())
    .bind(&answer.plan.sql)
    .bind(answer.row_summary())
    .bind(answer.verification().as_str())
    .bind(answer.numbers_json())
    .bind(&answer.model)
    .bind(answer.attempts as i32)
    .bind(serde_json::to_value(&answer.timings).unwrap_or(Value::Null))
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE chat_conversations SET updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Every conversation, the latest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Conversation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.title, c.created_at, c.updated_at,
                (SELECT count(*) FROM chat_messages m
                 WHERE m.conversation_id = c.id AND m.role = 'user') AS questions
         FROM chat_conversations c WHERE c.user_id = $1
         ORDER BY c.updated_at DESC, c.id DESC",
    )
    .bind(USER)
    .fetch_all(pool)
    .await
}

/// Delete a conversation and its messages; whether it existed.
pub async fn delete(pool: &PgPool, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM chat_conversations WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

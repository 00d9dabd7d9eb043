//! The plugin model: sources pull deltas into PostgreSQL, transforms derive data from what
//! sources wrote, sinks write derived data elsewhere (the DuckDB mirror is the first).
//!
//! The registry of concrete plugins is a closed enum in the binary, so the compiler checks
//! every plugin is handled; these traits are what each one implements.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Counts a step reports, e.g. `[("added", 120), ("removed", 3)]`.
pub type Counts = Vec<(&'static str, u64)>;

pub trait Source {
    /// What a person calls this connection (e.g. "First Platypus Bank (item abc…)").
    fn name(&self) -> String;
    /// Pull what changed and apply it, with the new cursor, in one Postgres transaction.
    fn sync(&self, pool: &PgPool) -> impl Future<Output = Result<Counts, BoxError>> + Send;
}

pub trait Transform {
    fn name(&self) -> &'static str;
    /// Idempotent: running it twice leaves the same state as once.
    fn run(&self, pool: &PgPool) -> impl Future<Output = Result<Counts, BoxError>> + Send;
}

pub trait Sink {
    fn name(&self) -> &'static str;
    fn write(&self, pool: &PgPool) -> impl Future<Output = Result<Counts, BoxError>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Source,
    Transform,
    Sink,
}

/// One step of a pipeline run.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub kind: StepKind,
    pub name: String,
    pub ok: bool,
    pub counts: std::collections::BTreeMap<String, u64>,
    pub millis: u128,
    pub error: Option<String>,
}

/// A whole run: sources → transforms → sinks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipelineReport {
    pub steps: Vec<StepReport>,
}

impl PipelineReport {
    pub fn failed(&self) -> impl Iterator<Item = &StepReport> {
        self.steps.iter().filter(|s| !s.ok)
    }
    pub fn ok(&self) -> bool {
        self.failed().next().is_none()
    }

    /// Run one step, timing and logging it, and record its outcome.
    pub async fn record<F>(&mut self, kind: StepKind, name: String, step: F) -> bool
    where
        F: Future<Output = Result<Counts, BoxError>>,
    {
        let start = Instant::now();
        let result = step.await;
        let elapsed: Duration = start.elapsed();
        let (ok, counts, error) = match result {
            Ok(c) => {
                tracing::info!(?kind, %name, ms = elapsed.as_millis() as u64, counts = ?c, "step done");
                (true, c, None)
            }
            Err(e) => {
                tracing::error!(?kind, %name, error = %e, "step failed");
                (false, Vec::new(), Some(e.to_string()))
            }
        };
        self.steps.push(StepReport {
            kind,
            name,
            ok,
            counts: counts
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            millis: elapsed.as_millis(),
            error,
        });
        ok
    }
}

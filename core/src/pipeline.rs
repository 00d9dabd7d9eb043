//! The one pipeline runner: sources → transforms → sinks.
//!
//! - A [`Source`] pulls what changed at one kind of connection (every linked Plaid item, a
//!   CSV import) into PostgreSQL, recording one step per connection, so a failing connection
//!   does not stop the others.
//! - The transforms run together in one PostgreSQL transaction, the *derive* step: it takes
//!   the advisory lock `finq.derive`, consumes the entries of `change_log` (written by
//!   triggers in the same transactions as the changes), hands them to each [`Transform`] as a
//!   [`ChangeSet`], forwards what the sinks asked for to `mirror_changes`, and commits. A
//!   failure rolls it all back: the entries stay for the next run.
//! - A [`Sink`] applies what the derive step recorded after the position it last reached.
//!
//! Every step runs in a `tracing` span, is timed, and lands in the [`PipelineReport`].
//! `finq run`, `finq sync`, the demo, the webhook worker and the tests all call [`run`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Counts a step reports, e.g. `[("added", 120), ("removed", 3)]`.
pub type Counts = Vec<(&'static str, u64)>;

/// Progress of long steps, for whoever shows it (a spinner in a terminal, nothing in cron).
pub trait Progress: Send + Sync {
    /// A step starts (or says what it is doing now).
    fn update(&self, step: &str, message: &str);
    /// The step is over.
    fn finish(&self, step: &str);
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _: &str, _: &str) {}
    fn finish(&self, _: &str) {}
}

/// What every step gets.
#[derive(Clone)]
pub struct Context {
    pub pool: PgPool,
    pub progress: Arc<dyn Progress>,
    /// Limit the sources to one connection (e.g. the Plaid item a webhook named).
    pub only: Option<String>,
}

impl Context {
    pub fn new(pool: PgPool) -> Self {
        Context {
            pool,
            progress: Arc::new(NoProgress),
            only: None,
        }
    }

    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn only(mut self, connection: Option<String>) -> Self {
        self.only = connection;
        self
    }
}

pub trait Source: Send + Sync {
    fn name(&self) -> String;
    /// Pull what changed for each connection (in scope, see [`Context::only`]) and apply it,
    /// recording each connection as a step of `report`. An error here means the source
    /// could not even find its connections.
    fn pull(
        &self,
        ctx: &Context,
        report: &mut PipelineReport,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

pub trait Transform: Send + Sync {
    fn name(&self) -> &'static str;
    /// Apply `changes` inside the derive transaction. Idempotent: applying the same changes
    /// twice leaves the same state as once.
    fn apply(
        &self,
        conn: &mut PgConnection,
        changes: &ChangeSet,
    ) -> impl Future<Output = Result<Counts, BoxError>> + Send;
}

pub trait Sink: Send + Sync {
    fn name(&self) -> &'static str;
    /// The `change_log` entities this sink needs besides derived transactions; the derive
    /// step copies their entries to `mirror_changes` (kind = entity). [`ENTITY_ALL`] is
    /// always copied: a sink that sees it starts over.
    fn feeds(&self) -> &'static [&'static str];
    /// Apply what changed since this sink's last position.
    fn write(&self, ctx: &Context) -> impl Future<Output = Result<Counts, BoxError>> + Send;
}

/// The `change_log` entries one derive step consumed, by entity.
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    by_entity: BTreeMap<String, BTreeSet<String>>,
}

impl ChangeSet {
    pub fn insert(&mut self, entity: impl Into<String>, key: impl Into<String>) {
        self.by_entity
            .entry(entity.into())
            .or_default()
            .insert(key.into());
    }

    /// The changed keys of one entity, sorted.
    pub fn keys(&self, entity: &str) -> Vec<String> {
        self.by_entity
            .get(entity)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn contains(&self, entity: &str) -> bool {
        self.by_entity.contains_key(entity)
    }

    /// Everything is to be derived again (a migration or a repair asked for it).
    pub fn everything(&self) -> bool {
        self.contains(ENTITY_ALL)
    }

    pub fn is_empty(&self) -> bool {
        self.by_entity.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_entity.values().map(BTreeSet::len).sum()
    }
}

/// The entity that asks every transform and sink to start over.
pub const ENTITY_ALL: &str = "all";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Source,
    Transform,
    Sink,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Source => "source",
            StepKind::Transform => "transform",
            StepKind::Sink => "sink",
        }
    }
}

/// One step of a pipeline run.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub kind: StepKind,
    pub name: String,
    pub ok: bool,
    pub counts: BTreeMap<String, u64>,
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

    /// Run one step in its span, timing it, and record its outcome. Returns whether it
    /// succeeded.
    pub async fn record<F>(&mut self, kind: StepKind, name: String, step: F) -> bool
    where
        F: Future<Output = Result<Counts, BoxError>>,
    {
        let span = tracing::info_span!("step", kind = kind.as_str(), name = %name);
        let start = Instant::now();
        let result = step.instrument(span.clone()).await;
        let elapsed = start.elapsed();
        let _entered = span.enter();
        let (ok, counts, error) = match result {
            Ok(c) => {
                tracing::info!(ms = elapsed.as_millis() as u64, counts = ?c, "step done");
                (true, c, None)
            }
            Err(e) => {
                tracing::error!(error = %e, "step failed");
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

/// The plugins of a pipeline, built from configuration by their crates.
pub struct Plan<S, T, K> {
    pub sources: Vec<S>,
    pub transforms: Vec<T>,
    pub sinks: Vec<K>,
}

/// Which parts of the pipeline a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    /// Sources only (`finq sync`): what they changed waits in `change_log` for the next run.
    Sources,
    /// Transforms and sinks only (after a local change, e.g. an item removed).
    Derive,
    All,
}

/// Run the pipeline. Never stops at the first failure: each connection, the derive step and
/// each sink are tried and recorded.
pub async fn run<S: Source, T: Transform, K: Sink>(
    ctx: &Context,
    plan: &Plan<S, T, K>,
    stages: Stages,
) -> PipelineReport {
    let mut report = PipelineReport::default();
    if stages != Stages::Derive {
        for source in &plan.sources {
            let name = source.name();
            let span = tracing::info_span!("source", name = %name);
            let steps_before = report.steps.len();
            let pulled = source.pull(ctx, &mut report).instrument(span).await;
            if let Err(e) = pulled {
                report.steps.insert(
                    steps_before,
                    StepReport {
                        kind: StepKind::Source,
                        name,
                        ok: false,
                        counts: BTreeMap::new(),
                        millis: 0,
                        error: Some(e.to_string()),
                    },
                );
            }
        }
    }
    if stages == Stages::Sources {
        return report;
    }
    derive(ctx, plan, &mut report).await;
    for sink in &plan.sinks {
        report
            .record(StepKind::Sink, sink.name().to_string(), sink.write(ctx))
            .await;
        ctx.progress.finish(sink.name());
    }
    report
}

/// The derive step: consume `change_log`, run the transforms, forward the sinks' feeds, in
/// one transaction.
async fn derive<S, T: Transform, K: Sink>(
    ctx: &Context,
    plan: &Plan<S, T, K>,
    report: &mut PipelineReport,
) {
    let result: Result<(), BoxError> = async {
        let mut tx = ctx.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('finq.derive', 0))")
            .execute(&mut *tx)
            .await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("DELETE FROM change_log RETURNING entity, key")
                .fetch_all(&mut *tx)
                .await?;
        let mut changes = ChangeSet::default();
        for (entity, key) in rows {
            changes.insert(entity, key);
        }
        tracing::debug!(entries = changes.len(), "changes to derive");
        let mut all_ok = true;
        for t in &plan.transforms {
            ctx.progress.update(t.name(), "deriving");
            let ok = report
                .record(
                    StepKind::Transform,
                    t.name().to_string(),
                    t.apply(&mut tx, &changes),
                )
                .await;
            ctx.progress.finish(t.name());
            all_ok &= ok;
            if !ok {
                break;
            }
        }
        if !all_ok {
            tx.rollback().await?;
            return Ok(());
        }
        let feeds: BTreeSet<&str> = plan
            .sinks
            .iter()
            .flat_map(|s| s.feeds())
            .copied()
            .chain([ENTITY_ALL])
            .collect();
        for entity in feeds {
            let keys = changes.keys(entity);
            if keys.is_empty() {
                continue;
            }
            sqlx::query("INSERT INTO mirror_changes (kind, key) SELECT $1, unnest($2::text[])")
                .bind(entity)
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .instrument(tracing::info_span!("derive"))
    .await;
    if let Err(e) = result {
        report
            .record(StepKind::Transform, "derive".to_string(), async { Err(e) })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_set_groups_and_sorts_keys() {
        let mut c = ChangeSet::default();
        c.insert("plaid_tx", "b");
        c.insert("plaid_tx", "a");
        c.insert("plaid_tx", "b");
        c.insert("manual_tx", "7");
        assert_eq!(c.keys("plaid_tx"), vec!["a", "b"]);
        assert_eq!(c.len(), 3);
        assert!(c.contains("manual_tx") && !c.everything());
        c.insert(ENTITY_ALL, "");
        assert!(c.everything());
    }

    /// What a write to `plaid_transactions` leaves in `change_log`, however it is made.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn plaid_transaction_writes_are_logged_by_key(pool: sqlx::PgPool) {
        let run = |sql: &'static str| {
            let pool = pool.clone();
            async move { sqlx::raw_sql(sql).execute(&pool).await.unwrap() }
        };
        // Drains the log: the keys logged since the last call, sorted.
        let logged = || {
            let pool = pool.clone();
            async move {
                let mut keys: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM change_log WHERE entity = 'plaid_tx' RETURNING key",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                keys.sort();
                keys
            }
        };
        run("INSERT INTO plaid_items (item_id, user_id, institution_id, access_token_enc, environment)
             VALUES ('item-a', 1, 'ins_1', '\\x00', 'sim'), ('item-b', 1, 'ins_1', '\\x00', 'sim');
             SELECT finq_tx_partition_begin('item-a'), finq_tx_partition_attach('item-a');
             SELECT finq_tx_partition_begin('item-b'), finq_tx_partition_attach('item-b');")
        .await;
        logged().await;
        run("INSERT INTO plaid_transactions (item_id, plaid_transaction_id, account_id, amount, date, name, pending)
             VALUES ('item-a', 't1', 'acc', 1.00, '2026-11-01', 'one', false),
                    ('item-a', 't2', 'acc', 2.00, '2026-11-02', 'two', false),
                    ('item-b', 't3', 'acc', 3.00, '2026-11-03', 'three', false)")
        .await;
        assert_eq!(logged().await, ["t1", "t2", "t3"]);

        // An update logs the rows it changed, not those it left as they were.
        run("UPDATE plaid_transactions SET notes = 'x' WHERE plaid_transaction_id IN ('t1', 't3')")
            .await;
        assert_eq!(logged().await, ["t1", "t3"]);
        run("UPDATE plaid_transactions SET notes = notes").await;
        assert!(logged().await.is_empty());
        // A changed key logs the old one and the new one.
        run("UPDATE plaid_transactions SET plaid_transaction_id = 't9' WHERE plaid_transaction_id = 't2'")
            .await;
        assert_eq!(logged().await, ["t2", "t9"]);

        // Upserts log inserted and changed rows, by the partitioned table or a partition's name.
        run("INSERT INTO plaid_transactions (item_id, plaid_transaction_id, account_id, amount, date, name, pending)
             VALUES ('item-a', 't1', 'acc', 1.50, '2026-11-01', 'one', false),
                    ('item-a', 't4', 'acc', 4.00, '2026-11-04', 'four', false)
             ON CONFLICT (plaid_transaction_id, item_id) DO UPDATE SET amount = EXCLUDED.amount")
        .await;
        assert_eq!(logged().await, ["t1", "t4"]);
        let partition: String = sqlx::query_scalar("SELECT finq_tx_partition_name('item-b')")
            .fetch_one(&pool)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "UPDATE \"{partition}\" SET amount = 30.00; DELETE FROM \"{partition}\""
        )))
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(logged().await, ["t3", "t3"]);
        run("DELETE FROM plaid_transactions WHERE plaid_transaction_id = 't4'").await;
        assert_eq!(logged().await, ["t4"]);
    }

    #[tokio::test]
    async fn a_failing_step_is_recorded_with_its_error() {
        let mut r = PipelineReport::default();
        assert!(
            r.record(StepKind::Sink, "ok".into(), async { Ok(vec![("rows", 2)]) })
                .await
        );
        assert!(
            !r.record(StepKind::Source, "bank".into(), async {
                Err::<Counts, BoxError>("login required".into())
            })
            .await
        );
        assert!(!r.ok());
        let failed: Vec<_> = r.failed().collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].error.as_deref(), Some("login required"));
        assert_eq!(r.steps[0].counts["rows"], 2);
    }
}

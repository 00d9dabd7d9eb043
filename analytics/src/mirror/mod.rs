//! The DuckDB mirror: derived data, fed from PostgreSQL through Arrow record batches, and
//! kept up to date incrementally.
//!
//! The mirror remembers, in its own `_finq_mirror` table, the position in `mirror_seq` it
//! has applied. A write applies what changed after it: transaction rows whose `seq` is
//! newer, deletions and the other tables' changes from `mirror_changes`, and the new
//! position, all in one DuckDB transaction: a crash leaves the previous state, and the next
//! write resumes from it.
//!
//! A full rebuild (into a new file, renamed over the old one) happens when the mirror is
//! missing, its schema version differs, it is further behind than the pruned changes, the
//! derive step asked for everything again, or [`DuckMirror::rebuild`] is called. It also
//! happens when another process has the file open (DuckDB allows one writer or many readers
//! per file): that reader keeps its consistent old copy.
//!
//! PostgreSQL is read in one REPEATABLE READ snapshot, as binary `COPY … TO STDOUT`
//! decoded straight into Arrow ([`decode`]), while a DuckDB thread inserts the previous
//! batches through DuckDB's own Arrow scan (`duck`). Columns that follow from others of the
//! row and from the few accounts and items (a transaction's source, account and bank
//! names) are not sent but filled in ([`fill`]). An incremental write first stages the
//! changed rows and keys in an in-memory database beside the file, then applies them in one
//! DuckDB transaction. Writes of one mirror are serialised by the advisory lock `finq.mirror`.

pub mod decode;
mod duck;
pub mod fill;
pub mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::arrow::array::StringArray;
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::arrow::error::ArrowError;
use duckdb::arrow::record_batch::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use futures_util::{FutureExt, TryStreamExt};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use decode::CopyDecoder;
use duck::{DuckWriter, STAGE, Threads};
use fill::Filler;
use finq_core::pipeline::ENTITY_ALL;
use tables::{FEEDS, Follow, TABLES, TRANSACTIONS, Table, VIEWS, quote};

/// Bump when the mirror's tables change: an older file is then rebuilt.
pub const SCHEMA_VERSION: &str = "5";

/// The mirror's own bookkeeping table (schema version, position).
pub const META_TABLE: &str = "_finq_mirror";

const BATCH_ROWS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("reading PostgreSQL for the mirror failed: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("writing the DuckDB mirror {path} failed: {message}")]
    DuckDb { path: PathBuf, message: String },
    #[error("decoding PostgreSQL's rows of table {table} failed: {message}")]
    Decode {
        table: &'static str,
        message: String,
    },
    #[error("cannot replace the mirror file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a write did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MirrorReport {
    /// `rebuilt`, `updated` or `unchanged`.
    pub mode: &'static str,
    /// Why a rebuild happened.
    pub reason: Option<String>,
    /// The position in `mirror_seq` the mirror now holds.
    pub position: i64,
    /// Transaction rows written (inserted or replaced).
    pub rows: u64,
    /// Deletions applied.
    pub deletions: u64,
}

impl MirrorReport {
    pub fn counts(&self) -> finq_core::pipeline::Counts {
        vec![
            ("rebuilt", u64::from(self.mode == "rebuilt")),
            ("rows", self.rows),
            ("deletions", self.deletions),
            ("position", self.position.max(0) as u64),
        ]
    }
}

/// The newest position in `mirror_seq` PostgreSQL holds, and how far changes were pruned.
async fn positions(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT greatest(coalesce((SELECT max(seq) FROM unified_transactions), 0),
                         coalesce((SELECT max(seq) FROM mirror_changes), 0),
                         p.pruned),
                p.pruned
         FROM (SELECT coalesce((SELECT position FROM pipeline_positions
                                WHERE consumer = 'pruned'), 0) AS pruned) p",
    )
    .fetch_one(conn)
    .await
}

/// The position a mirror must hold to be up to date with PostgreSQL (compare with the
/// `position` in its [`META_TABLE`]).
pub async fn latest_position(pool: &PgPool) -> Result<i64, MirrorError> {
    let mut conn = pool.acquire().await?;
    Ok(positions(&mut conn).await?.0)
}

pub struct DuckMirror {
    path: PathBuf,
}

/// What the file on disk says.
enum OnDisk {
    Missing,
    /// Another process has it open.
    Locked,
    Outdated(String),
    Current(DuckWriter, i64),
}

impl DuckMirror {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DuckMirror { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn duck_err(&self) -> impl Fn(String) -> MirrorError + '_ {
        |message| MirrorError::DuckDb {
            path: self.path.clone(),
            message,
        }
    }

    /// Bring the mirror up to date: incrementally when it can, rebuilt when it must.
    pub async fn write(&self, pool: &PgPool) -> Result<MirrorReport, MirrorError> {
        self.write_inner(pool, false).await
    }

    /// Rebuild the mirror from scratch (`finq mirror --rebuild`).
    pub async fn rebuild(&self, pool: &PgPool) -> Result<MirrorReport, MirrorError> {
        self.write_inner(pool, true).await
    }

    async fn write_inner(&self, pool: &PgPool, force: bool) -> Result<MirrorReport, MirrorError> {
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // The snapshot is taken by this first query, before any wait for the lock: a write
        // that finished meanwhile shows as a mirror ahead of the snapshot, below.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('finq.mirror', 0))")
            .execute(&mut *tx)
            .await?;
        let (target, pruned) = positions(&mut tx).await?;

        let on_disk = if force {
            OnDisk::Outdated("asked for".into())
        } else {
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || inspect(&path))
                .await
                .expect("the DuckDB thread panicked")
                .map_err(self.duck_err())?
        };
        let report = match on_disk {
            OnDisk::Missing => {
                self.full(&mut tx, target, "the mirror did not exist")
                    .await?
            }
            OnDisk::Locked => {
                self.full(&mut tx, target, "a reader has the mirror open")
                    .await?
            }
            OnDisk::Outdated(why) => self.full(&mut tx, target, &why).await?,
            OnDisk::Current(_, position) if position >= target => MirrorReport {
                mode: "unchanged",
                position,
                ..Default::default()
            },
            OnDisk::Current(_, position) if position < pruned => {
                let why = format!(
                    "the mirror (at {position}) is behind the changes kept (from {pruned})"
                );
                self.full(&mut tx, target, &why).await?
            }
            OnDisk::Current(conn, position) => {
                let changes: Vec<(String, String)> = sqlx::query_as(
                    "SELECT kind, key FROM mirror_changes WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                )
                .bind(position)
                .bind(target)
                .fetch_all(&mut *tx)
                .await?;
                if changes.iter().any(|(k, _)| k == ENTITY_ALL) {
                    drop(conn);
                    self.full(&mut tx, target, "everything was derived again")
                        .await?
                } else {
                    self.incremental(&mut tx, conn, position, target, &changes)
                        .await?
                }
            }
        };
        tx.commit().await?;
        if report.mode != "unchanged" {
            record_position(pool, &self.path, report.position).await?;
        }
        Ok(report)
    }

    /// Build a new file from the snapshot and rename it over the mirror.
    async fn full(
        &self,
        pg: &mut PgConnection,
        target: i64,
        reason: &str,
    ) -> Result<MirrorReport, MirrorError> {
        tracing::info!(reason, "rebuilding the DuckDB mirror");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| MirrorError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // Builds of this mirror hold the advisory lock: any other build file is the
        // remains of a process that died mid-build.
        remove_stale_builds(&self.path);
        let tmp = PathBuf::from(format!(
            "{}.tmp-{}",
            self.path.display(),
            std::process::id()
        ));
        remove_db_files(&tmp)?;
        let conn = DuckWriter::open(&tmp, Threads::One).map_err(|message| MirrorError::DuckDb {
            path: tmp.clone(),
            message,
        })?;
        // A statement per table, each its own transaction (the file is only renamed into
        // place once complete): DuckDB writes the inserted row groups straight to the file.
        // The schema is one transaction: as dozens of statements (each column's comment is
        // one) committed one by one, it took a tenth of the build.
        let mut ddl = String::from("BEGIN TRANSACTION;\n");
        for t in TABLES {
            ddl.push_str(&t.create_sql());
        }
        // Views are bound when created: the date functions they use must exist.
        ddl.push_str(&crate::query::date_macros());
        for v in VIEWS {
            ddl.push_str(&v.create_sql());
        }
        ddl.push_str(&format!(
            "CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR);
             COMMENT ON TABLE {META_TABLE} IS 'finq''s bookkeeping for this mirror';
             INSERT INTO {META_TABLE} VALUES ('schema_version', {}), ('position', '{target}');\n",
            quote(SCHEMA_VERSION)
        ));
        ddl.push_str("COMMIT;\n");
        let writer = Writer::spawn(conn, tmp.clone());
        let produced = async {
            writer.sql(ddl).await;
            let mut rows = 0;
            for t in TABLES {
                let into = format!("INSERT INTO {}", t.name);
                let n = stream(pg, t, "true", &into, &writer).await?;
                if t.name == TRANSACTIONS.name {
                    rows = n;
                }
            }
            writer.sql("CHECKPOINT".into()).await;
            Ok::<_, MirrorError>(rows)
        }
        .await;
        let written = writer.finish().await;
        let rows = match (produced, written) {
            (_, Err(e)) | (Err(e), _) => {
                let _ = remove_db_files(&tmp);
                return Err(e);
            }
            (Ok(rows), Ok(())) => rows,
        };
        std::fs::rename(&tmp, &self.path).map_err(|source| MirrorError::Io {
            path: self.path.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(wal_of(&self.path));
        Ok(MirrorReport {
            mode: "rebuilt",
            reason: Some(reason.to_string()),
            position: target,
            rows,
            deletions: 0,
        })
    }

    /// Apply the changes in `(position, target]` to the open mirror, in one transaction.
    async fn incremental(
        &self,
        pg: &mut PgConnection,
        conn: DuckWriter,
        position: i64,
        target: i64,
        changes: &[(String, String)],
    ) -> Result<MirrorReport, MirrorError> {
        let keys_of = |kind: &str| -> Vec<String> {
            changes
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, key)| key.clone())
                .collect()
        };
        let writer = Writer::spawn(conn, self.path.clone());
        let mut report = MirrorReport {
            mode: "updated",
            position: target,
            ..Default::default()
        };
        let produced = async {
            // First the changes are staged in the in-memory database beside the file (PostgreSQL
            // is read meanwhile); then one transaction applies them to the file.
            // Statement by statement (each timed in the debug log), in one transaction.
            let mut apply = vec![String::from("BEGIN TRANSACTION")];
            // Deletions first: a row deleted and then written again comes back below. The
            // rows Plaid removed and the rows about to be written again go in one pass over
            // the ids (each pass reads the whole column).
            let items = keys_of("tx_delete_item");
            if !items.is_empty() {
                report.deletions += items.len() as u64;
                writer.keys("tx_delete_item", items).await;
                apply.push(format!(
                    "DELETE FROM transactions WHERE item_id IN (SELECT key FROM {STAGE}.keys_tx_delete_item)"
                ));
            }
            let mut doomed = Vec::new();
            let removed = keys_of("tx_delete");
            if !removed.is_empty() {
                report.deletions += removed.len() as u64;
                writer.keys("tx_delete", removed).await;
                doomed.push(format!("SELECT key FROM {STAGE}.keys_tx_delete"));
            }
            // Rows written since the position, swapped in by id.
            let filter = format!("u.seq > {position} AND u.seq <= {target}");
            let into = format!("CREATE TABLE {STAGE}.delta AS");
            report.rows = stream(pg, &TRANSACTIONS, &filter, &into, &writer).await?;
            if report.rows > 0 {
                doomed.push(format!("SELECT id FROM {STAGE}.delta"));
            }
            if !doomed.is_empty() {
                apply.push(format!(
                    "DELETE FROM transactions WHERE id IN ({})",
                    doomed.join(" UNION ALL ")
                ));
            }
            if report.rows > 0 {
                apply.push(format!(
                    "INSERT INTO transactions SELECT * FROM {STAGE}.delta"
                ));
            }
            for t in TABLES {
                let into = format!("CREATE TABLE {STAGE}.{} AS", t.name);
                match t.follow {
                    Follow::Transactions => {}
                    Follow::Whole(kinds) => {
                        if changes.iter().any(|(k, _)| kinds.contains(&k.as_str())) {
                            stream(pg, t, "true", &into, &writer).await?;
                            apply.push(format!("DELETE FROM {}", t.name));
                            apply.push(format!(
                                "INSERT INTO {0} SELECT * FROM {STAGE}.{0}",
                                t.name
                            ));
                        }
                    }
                    Follow::Keyed {
                        kind,
                        key_pg,
                        key_duck,
                    } => {
                        let keys = keys_of(kind);
                        if keys.is_empty() {
                            continue;
                        }
                        writer.keys(kind, keys).await;
                        let filter = format!(
                            "{key_pg} IN (SELECT key FROM mirror_changes
                                          WHERE kind = '{kind}' AND seq > {position} AND seq <= {target})"
                        );
                        stream(pg, t, &filter, &into, &writer).await?;
                        apply.push(format!(
                            "DELETE FROM {0} WHERE {key_duck} IN (SELECT key FROM {STAGE}.keys_{kind})",
                            t.name
                        ));
                        apply.push(format!(
                            "INSERT INTO {0} SELECT * FROM {STAGE}.{0}",
                            t.name
                        ));
                    }
                }
            }
            apply.push(format!(
                "UPDATE {META_TABLE} SET value = '{target}' WHERE key = 'position'"
            ));
            apply.push("COMMIT".into());
            for statement in apply {
                writer.sql(statement).await;
            }
            Ok::<_, MirrorError>(())
        }
        .await;
        let written = writer.finish().await;
        match (produced, written) {
            (_, Err(e)) | (Err(e), _) => Err(e),
            (Ok(()), Ok(())) => Ok(report),
        }
    }
}

/// After a write: where this mirror is, and the changes no mirror needs any more pruned.
/// Another mirror (a second `[[sinks]]` entry), or a transform that follows the change
/// numbers too (`transform:…`, e.g. transfers), keeps what it has not seen yet, unless it
/// has not moved for a week (no longer configured); one behind what was pruned starts over.
async fn record_position(pool: &PgPool, path: &Path, position: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH mine AS (
             INSERT INTO pipeline_positions (consumer, position) VALUES ($2, $1)
             ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
         ), floor AS (
             SELECT least($1, min(position)) AS seq FROM pipeline_positions
             WHERE (consumer LIKE 'duckdb:%' AND consumer <> $2 OR consumer LIKE 'transform:%')
               AND updated_at > now() - interval '7 days'
         ), gone AS (
             DELETE FROM mirror_changes
             WHERE seq <= coalesce((SELECT seq FROM floor), $1)
             RETURNING seq
         )
         INSERT INTO pipeline_positions (consumer, position)
         SELECT 'pruned', max(seq) FROM gone HAVING max(seq) IS NOT NULL
         ON CONFLICT (consumer) DO UPDATE
             SET position = greatest(pipeline_positions.position, EXCLUDED.position), updated_at = now()",
    )
    .bind(position)
    .bind(format!("duckdb:{}", path.display()))
    .execute(pool)
    .await?;
    Ok(())
}

/// Stream one table's rows selected by `filter` from PostgreSQL into DuckDB: `into` is
/// `INSERT INTO t` or `CREATE TABLE … AS`; the number of rows.
async fn stream(
    pg: &mut PgConnection,
    table: &Table,
    filter: &str,
    into: &str,
    writer: &Writer,
) -> Result<u64, MirrorError> {
    let decode_err = |message: String| MirrorError::Decode {
        table: table.name,
        message,
    };
    let filler = Filler::load(table, pg).await?;
    let batches = writer.ingest(into, filler.schema()).await;
    let mut copy = pg.copy_out_raw(&table.copy_sql(filter)).await?;
    let sent: Vec<_> = table.sent().map(|c| (c.name, c.kind)).collect();
    let mut decoder = CopyDecoder::new(&sent, BATCH_ROWS);
    let mut ready: Vec<RecordBatch> = Vec::new();
    let mut rows = 0u64;
    // A failed writer is reported by Writer::finish; the stream is still read to its end
    // so the connection stays usable.
    let mut writing = true;
    // Where the time goes: waiting for PostgreSQL, waiting for DuckDB, and decoding (the
    // rest). PostgreSQL sends a message per row; most are already buffered, so the clock is
    // read only when one is not.
    let started = std::time::Instant::now();
    let (mut wait_pg, mut wait_duck) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    loop {
        let next = match copy.try_next().now_or_never() {
            Some(next) => next?,
            None => {
                let t = std::time::Instant::now();
                let next = copy.try_next().await?;
                wait_pg += t.elapsed();
                next
            }
        };
        let Some(chunk) = next else {
            break;
        };
        if !writing {
            continue;
        }
        decoder
            .feed(&chunk, &mut |b| {
                ready.push(filler.fill(b)?);
                Ok(())
            })
            .map_err(decode_err)?;
        if !ready.is_empty() {
            let t = std::time::Instant::now();
            for batch in ready.drain(..) {
                rows += batch.num_rows() as u64;
                writing &= batches.send(batch).await.is_ok();
            }
            wait_duck += t.elapsed();
        }
    }
    decoder
        .finish(&mut |b| {
            ready.push(filler.fill(b)?);
            Ok(())
        })
        .map_err(decode_err)?;
    for batch in ready.drain(..) {
        rows += batch.num_rows() as u64;
        let _ = batches.send(batch).await;
    }
    tracing::debug!(
        table = table.name,
        rows,
        wait_pg_ms = wait_pg.as_millis() as u64,
        decode_ms = (started.elapsed() - wait_pg - wait_duck).as_millis() as u64,
        wait_duckdb_ms = wait_duck.as_millis() as u64,
        "streamed"
    );
    Ok(rows)
}

enum Op {
    Sql(String),
    /// Insert what the reader yields into the table.
    Ingest(String, Box<dyn RecordBatchReader + Send>),
}

/// The DuckDB side of a write: a thread that applies operations in order.
struct Writer {
    ops: tokio::sync::mpsc::Sender<Op>,
    thread: tokio::task::JoinHandle<Result<(), MirrorError>>,
}

impl Writer {
    fn spawn(conn: DuckWriter, path: PathBuf) -> Writer {
        let (ops, mut rx) = tokio::sync::mpsc::channel::<Op>(4);
        let thread = tokio::task::spawn_blocking(move || {
            let err = |message| MirrorError::DuckDb {
                path: path.clone(),
                message,
            };
            while let Some(op) = rx.blocking_recv() {
                let t = std::time::Instant::now();
                let what = match op {
                    Op::Sql(sql) => {
                        conn.execute(&sql).map_err(err)?;
                        sql
                    }
                    Op::Ingest(into, reader) => {
                        conn.ingest(&into, reader).map_err(err)?;
                        into
                    }
                };
                let statement: String = what.trim().chars().take(60).collect();
                tracing::debug!(ms = t.elapsed().as_millis() as u64, statement, "duckdb");
            }
            let t = std::time::Instant::now();
            drop(conn);
            tracing::debug!(ms = t.elapsed().as_millis() as u64, "duckdb closed");
            Ok(())
        });
        Writer { ops, thread }
    }

    /// Queue an operation. A closed queue means the thread stopped on an error, which
    /// [`Writer::finish`] reports.
    async fn send(&self, op: Op) {
        let _ = self.ops.send(op).await;
    }

    async fn sql(&self, sql: String) {
        self.send(Op::Sql(sql)).await
    }

    /// Start `{into} SELECT * FROM <batches>` (see [`DuckWriter::ingest`]) over the batches
    /// sent to the returned queue, until it is dropped. A send fails once the statement
    /// has stopped on an error.
    async fn ingest(
        &self,
        into: &str,
        schema: SchemaRef,
    ) -> tokio::sync::mpsc::Sender<RecordBatch> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let reader = QueueReader { schema, rx };
        self.send(Op::Ingest(into.to_string(), Box::new(reader)))
            .await;
        tx
    }

    /// Stage the keys of a change kind as the one-column (`key`) table `keys_<kind>` of the
    /// staging database.
    async fn keys(&self, kind: &str, keys: Vec<String>) {
        let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(keys))])
            .expect("one string column matches its schema");
        let reader = RecordBatchIterator::new([Ok(batch)], schema);
        self.send(Op::Ingest(
            format!("CREATE TABLE {STAGE}.keys_{kind} AS"),
            Box::new(reader),
        ))
        .await;
    }

    /// Wait for every operation; the DuckDB connection closes (and checkpoints) here.
    async fn finish(self) -> Result<(), MirrorError> {
        drop(self.ops);
        self.thread
            .await
            .expect("the DuckDB writer thread panicked")
    }
}

/// The batches of one insert, as DuckDB pulls them: blocks (on DuckDB's thread) until the
/// next batch is queued; ends when the sender is dropped.
struct QueueReader {
    schema: SchemaRef,
    rx: tokio::sync::mpsc::Receiver<RecordBatch>,
}

impl Iterator for QueueReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.blocking_recv().map(Ok)
    }
}

impl RecordBatchReader for QueueReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

fn inspect(path: &Path) -> Result<OnDisk, String> {
    if !path.exists() {
        return Ok(OnDisk::Missing);
    }
    if crate::query::read_in_this_process(path) {
        return Ok(OnDisk::Locked);
    }
    let conn = match DuckWriter::open(path, Threads::Default) {
        Ok(c) => c,
        Err(e) if e.contains("lock") => return Ok(OnDisk::Locked),
        Err(e) => {
            return Ok(OnDisk::Outdated(format!(
                "the file could not be opened ({e})"
            )));
        }
    };
    let meta: Result<Vec<(String, String)>, duckdb::Error> = conn.reader().and_then(|r| {
        let mut s = r.prepare(&format!("SELECT key, value FROM {META_TABLE}"))?;
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()
    });
    let Ok(meta) = meta else {
        return Ok(OnDisk::Outdated("the file has no finq bookkeeping".into()));
    };
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if get("schema_version").as_deref() != Some(SCHEMA_VERSION) {
        return Ok(OnDisk::Outdated(format!(
            "the mirror's schema version {} is not {SCHEMA_VERSION}",
            get("schema_version").unwrap_or_default()
        )));
    }
    match get("position").and_then(|p| p.parse::<i64>().ok()) {
        Some(p) => Ok(OnDisk::Current(conn, p)),
        None => Ok(OnDisk::Outdated(
            "the mirror's position is unreadable".into(),
        )),
    }
}

fn wal_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// Remove `<mirror>.tmp-*` files (and their WALs) left by interrupted full builds.
fn remove_stale_builds(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn remove_db_files(path: &Path) -> Result<(), MirrorError> {
    for p in [path.to_path_buf(), wal_of(path)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(MirrorError::Io { path: p, source }),
        }
    }
    Ok(())
}

/// The mirrored tables' names, for `\d` and the language model's context.
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}

impl finq_core::pipeline::Sink for DuckMirror {
    fn name(&self) -> &'static str {
        "duckdb_mirror"
    }

    fn feeds(&self) -> &'static [&'static str] {
        FEEDS
    }

    async fn write(
        &self,
        ctx: &finq_core::pipeline::Context,
    ) -> Result<finq_core::pipeline::Counts, finq_core::pipeline::BoxError> {
        ctx.progress
            .update(self.name(), "updating the DuckDB mirror");
        Ok(DuckMirror::write(self, &ctx.pool).await?.counts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_build_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("finq.duckdb");
        let names = [
            "finq.duckdb",
            "finq.duckdb.wal",
            "finq.duckdb.tmp-123",
            "finq.duckdb.tmp-123.wal",
            "other.duckdb.tmp-7",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        remove_stale_builds(&mirror);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["finq.duckdb", "finq.duckdb.wal", "other.duckdb.tmp-7"]
        );
    }
}

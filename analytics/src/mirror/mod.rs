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
//! PostgreSQL is read in one REPEATABLE READ snapshot, as `COPY … TO STDOUT` text decoded
//! straight into Arrow ([`decode`]), while a DuckDB thread appends the previous batches.
//! Writes of one mirror are serialised by the advisory lock `finq.mirror`.

pub mod decode;
pub mod tables;

use std::path::{Path, PathBuf};

use duckdb::Connection;
use duckdb::arrow::record_batch::RecordBatch;
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use decode::CopyDecoder;
use finq_core::pipeline::ENTITY_ALL;
use tables::{FEEDS, Follow, TABLES, TRANSACTIONS, Table, quote};

/// Bump when the mirror's tables change: an older file is then rebuilt.
pub const SCHEMA_VERSION: &str = "2";

/// The mirror's own bookkeeping table (schema version, position).
pub const META_TABLE: &str = "_finq_mirror";

const BATCH_ROWS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("reading PostgreSQL for the mirror failed: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("writing the DuckDB mirror {path} failed: {source}")]
    DuckDb {
        path: PathBuf,
        source: duckdb::Error,
    },
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

pub struct DuckMirror {
    path: PathBuf,
}

/// What the file on disk says.
enum OnDisk {
    Missing,
    /// Another process has it open.
    Locked,
    Outdated(String),
    Current(Connection, i64),
}

impl DuckMirror {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DuckMirror { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn duck_err(&self) -> impl Fn(duckdb::Error) -> MirrorError + '_ {
        |source| MirrorError::DuckDb {
            path: self.path.clone(),
            source,
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
        let (target, pruned): (i64, i64) = sqlx::query_as(
            "SELECT greatest(coalesce((SELECT max(seq) FROM unified_transactions), 0),
                             coalesce((SELECT max(seq) FROM mirror_changes), 0),
                             p.pruned),
                    p.pruned
             FROM (SELECT coalesce((SELECT position FROM pipeline_positions
                                    WHERE consumer = 'pruned'), 0) AS pruned) p",
        )
        .fetch_one(&mut *tx)
        .await?;

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
        let tmp = PathBuf::from(format!(
            "{}.tmp-{}",
            self.path.display(),
            std::process::id()
        ));
        remove_db_files(&tmp)?;
        let conn = open_rw(&tmp).map_err(|source| MirrorError::DuckDb {
            path: tmp.clone(),
            source,
        })?;
        // One transaction: DuckDB writes the appended row groups straight to the file and
        // commits them once (a commit per batch is twice as slow).
        let mut ddl = String::from("BEGIN TRANSACTION;\n");
        for t in TABLES {
            ddl.push_str(&t.create_sql());
        }
        ddl.push_str(&format!(
            "CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR);
             COMMENT ON TABLE {META_TABLE} IS 'finq''s bookkeeping for this mirror';
             INSERT INTO {META_TABLE} VALUES ('schema_version', {}), ('position', '{target}');\n",
            quote(SCHEMA_VERSION)
        ));
        let writer = Writer::spawn(conn, tmp.clone());
        let produced = async {
            writer.sql(ddl).await;
            let mut rows = 0;
            for t in TABLES {
                let n = stream(pg, t, "true", t.name, &writer).await?;
                if t.name == TRANSACTIONS.name {
                    rows = n;
                }
            }
            writer.sql("COMMIT; CHECKPOINT;".into()).await;
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
        conn: Connection,
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
            writer
                .sql("BEGIN TRANSACTION; CREATE TABLE _finq_keys (key VARCHAR);".into())
                .await;
            // Deletions first: a row deleted and then written again comes back below.
            for (kind, column) in [("tx_delete_item", "item_id"), ("tx_delete", "id")] {
                let keys = keys_of(kind);
                if !keys.is_empty() {
                    report.deletions += keys.len() as u64;
                    writer.keys(keys).await;
                    writer
                        .sql(format!(
                            "DELETE FROM transactions WHERE {column} IN (SELECT key FROM _finq_keys)"
                        )).await;
                }
            }
            // Rows written since the position: into a delta table, then swapped in by id.
            writer
                .sql("CREATE TABLE _finq_delta AS SELECT * FROM transactions LIMIT 0".into()).await;
            let filter = format!("u.seq > {position} AND u.seq <= {target}");
            report.rows = stream(pg, &TRANSACTIONS, &filter, "_finq_delta", &writer).await?;
            if report.rows > 0 {
                writer
                    .sql(
                        "DELETE FROM transactions WHERE id IN (SELECT id FROM _finq_delta);
                         INSERT INTO transactions SELECT * FROM _finq_delta;"
                            .into(),
                    )
                    .await;
            }
            writer.sql("DROP TABLE _finq_delta".into()).await;
            for t in TABLES {
                match t.follow {
                    Follow::Transactions => {}
                    Follow::Whole(kinds) => {
                        if changes.iter().any(|(k, _)| kinds.contains(&k.as_str())) {
                            writer.sql(format!("DELETE FROM {}", t.name)).await;
                            stream(pg, t, "true", t.name, &writer).await?;
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
                        writer.keys(keys).await;
                        writer
                            .sql(format!(
                                "DELETE FROM {} WHERE {key_duck} IN (SELECT key FROM _finq_keys)",
                                t.name
                            )).await;
                        let filter = format!(
                            "{key_pg} IN (SELECT key FROM mirror_changes
                                          WHERE kind = '{kind}' AND seq > {position} AND seq <= {target})"
                        );
                        stream(pg, t, &filter, t.name, &writer).await?;
                    }
                }
            }
            writer
                .sql(format!(
                    "DROP TABLE _finq_keys;
                     UPDATE {META_TABLE} SET value = '{target}' WHERE key = 'position';
                     COMMIT;"
                ))
                .await;
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
/// Another mirror (a second `[[sinks]]` entry) keeps what it has not applied yet, unless it
/// has not written for a week (a mirror no longer configured); one behind what was pruned
/// is rebuilt at its next write.
async fn record_position(pool: &PgPool, path: &Path, position: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH mine AS (
             INSERT INTO pipeline_positions (consumer, position) VALUES ($2, $1)
             ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
         ), floor AS (
             SELECT least($1, min(position)) AS seq FROM pipeline_positions
             WHERE consumer LIKE 'duckdb:%' AND consumer <> $2
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

/// Stream one table's rows selected by `filter` from PostgreSQL into DuckDB table `target`.
async fn stream(
    pg: &mut PgConnection,
    table: &Table,
    filter: &str,
    target: &str,
    writer: &Writer,
) -> Result<u64, MirrorError> {
    let decode_err = |message: String| MirrorError::Decode {
        table: table.name,
        message,
    };
    let mut copy = pg.copy_out_raw(&table.copy_sql(filter)).await?;
    let mut decoder = CopyDecoder::new(&table.kinds(), BATCH_ROWS);
    let mut ready: Vec<RecordBatch> = Vec::new();
    let mut rows = 0u64;
    // A failed writer is reported by Writer::finish; the stream is still read to its end
    // so the connection stays usable.
    let mut writing = true;
    // Where the time goes: waiting for PostgreSQL, decoding, waiting for DuckDB.
    let (mut wait_pg, mut decode, mut wait_duck) = (
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    loop {
        let t = std::time::Instant::now();
        let Some(chunk) = copy.try_next().await? else {
            break;
        };
        wait_pg += t.elapsed();
        if !writing {
            continue;
        }
        let t = std::time::Instant::now();
        decoder
            .feed(&chunk, &mut |b| {
                ready.push(b);
                Ok(())
            })
            .map_err(decode_err)?;
        decode += t.elapsed();
        let t = std::time::Instant::now();
        for batch in ready.drain(..) {
            rows += batch.num_rows() as u64;
            writing &= writer.append(target, batch).await;
        }
        wait_duck += t.elapsed();
    }
    tracing::debug!(
        table = table.name,
        rows,
        wait_pg_ms = wait_pg.as_millis() as u64,
        decode_ms = decode.as_millis() as u64,
        wait_duckdb_ms = wait_duck.as_millis() as u64,
        "streamed"
    );
    decoder
        .finish(&mut |b| {
            ready.push(b);
            Ok(())
        })
        .map_err(decode_err)?;
    for batch in ready.drain(..) {
        rows += batch.num_rows() as u64;
        writer.append(target, batch).await;
    }
    Ok(rows)
}

enum Op {
    Sql(String),
    Append(String, RecordBatch),
    /// Replace the contents of `_finq_keys`.
    Keys(Vec<String>),
}

/// The DuckDB side of a write: a thread that applies operations in order.
struct Writer {
    ops: tokio::sync::mpsc::Sender<Op>,
    thread: tokio::task::JoinHandle<Result<(), MirrorError>>,
}

impl Writer {
    fn spawn(conn: Connection, path: PathBuf) -> Writer {
        let (ops, mut rx) = tokio::sync::mpsc::channel::<Op>(4);
        let thread = tokio::task::spawn_blocking(move || {
            let err = |source| MirrorError::DuckDb {
                path: path.clone(),
                source,
            };
            while let Some(op) = rx.blocking_recv() {
                match op {
                    Op::Sql(sql) => conn.execute_batch(&sql).map_err(err)?,
                    Op::Append(table, batch) => {
                        let mut app = conn.appender(&table).map_err(err)?;
                        app.append_record_batch(batch).map_err(err)?;
                        app.flush().map_err(err)?;
                    }
                    Op::Keys(keys) => {
                        conn.execute_batch("DELETE FROM _finq_keys").map_err(err)?;
                        let mut app = conn.appender("_finq_keys").map_err(err)?;
                        for k in &keys {
                            app.append_row([k]).map_err(err)?;
                        }
                        app.flush().map_err(err)?;
                    }
                }
            }
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

    /// Whether the writer is still taking operations.
    async fn append(&self, table: &str, batch: RecordBatch) -> bool {
        self.ops
            .send(Op::Append(table.to_string(), batch))
            .await
            .is_ok()
    }

    async fn keys(&self, keys: Vec<String>) {
        self.send(Op::Keys(keys)).await
    }

    /// Wait for every operation; the DuckDB connection closes (and checkpoints) here.
    async fn finish(self) -> Result<(), MirrorError> {
        drop(self.ops);
        self.thread
            .await
            .expect("the DuckDB writer thread panicked")
    }
}

/// A read-write connection that never reaches for the network. Its memory is bounded: a
/// write streams, and DuckDB writes out what does not fit.
fn open_rw(path: &Path) -> Result<Connection, duckdb::Error> {
    let config = duckdb::Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .max_memory("192MB")?;
    Connection::open_with_flags(path, config)
}

fn inspect(path: &Path) -> Result<OnDisk, duckdb::Error> {
    if !path.exists() {
        return Ok(OnDisk::Missing);
    }
    if crate::query::read_in_this_process(path) {
        return Ok(OnDisk::Locked);
    }
    let conn = match open_rw(path) {
        Ok(c) => c,
        Err(e) if e.to_string().contains("lock") => return Ok(OnDisk::Locked),
        Err(e) => {
            return Ok(OnDisk::Outdated(format!(
                "the file could not be opened ({e})"
            )));
        }
    };
    let meta: Result<Vec<(String, String)>, duckdb::Error> = conn
        .prepare(&format!("SELECT key, value FROM {META_TABLE}"))
        .and_then(|mut s| {
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

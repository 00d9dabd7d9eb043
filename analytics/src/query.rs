//! Running SQL on the DuckDB mirror and rendering the results.

use std::path::{Path, PathBuf};

use duckdb::arrow::array::Array;
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::{AccessMode, Config, Connection};

pub use crate::render::{Expanded, Layout, OutputFormat, render, render_with, thousands};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "there is no DuckDB mirror at {0} yet: run `finq run` (or `finq demo`) to sync and build it"
    )]
    NoMirror(PathBuf),
    #[error("cannot open the DuckDB mirror {path}: {source}")]
    Open {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error(
        "the DuckDB mirror {0} stayed busy (a `finq run` is updating it): try again in a moment"
    )]
    Busy(PathBuf),
    #[error("{0}")]
    Sql(duckdb::Error),
    #[error("refused: {0}")]
    NotReadOnly(String),
    #[error("cannot export: {0}")]
    Export(String),
}

/// Who wrote the SQL decides how much the connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The user: read-only on the mirror, but may read their own files (e.g. a CSV).
    User,
    /// A language model: read-only, no files, no extensions, no other databases, and the
    /// settings locked so the query cannot turn any of that back on.
    Model,
}

/// How long opening waits while a `finq run` holds the mirror for writing.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Open the mirror read-only. DuckDB never reaches for the network: extensions are neither
/// installed nor loaded on demand (ICU-free date functions are provided, see [`prepare`]).
fn open_conn(path: &Path, trust: Trust) -> Result<Connection, QueryError> {
    if !path.exists() {
        return Err(QueryError::NoMirror(path.to_path_buf()));
    }
    let open_err = |source| QueryError::Open {
        path: path.to_path_buf(),
        source,
    };
    let config = || -> Result<Config, duckdb::Error> {
        let mut config = Config::default()
            .access_mode(AccessMode::ReadOnly)?
            .enable_autoload_extension(false)?
            .with("autoinstall_known_extensions", "false")?
            .with("allow_community_extensions", "false")?;
        if trust == Trust::Model {
            config = config.enable_external_access(false)?;
        }
        Ok(config)
    };
    let started = std::time::Instant::now();
    let conn = loop {
        match Connection::open_with_flags(path, config().map_err(open_err)?) {
            Ok(c) => break c,
            // A writer holds the file for a moment (an incremental update): wait for it.
            Err(e) if e.to_string().contains("lock") && started.elapsed() < BUSY_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e.to_string().contains("lock") => {
                return Err(QueryError::Busy(path.to_path_buf()));
            }
            Err(e) => return Err(open_err(e)),
        }
    };
    prepare(&conn).map_err(open_err)?;
    if trust == Trust::Model {
        conn.execute_batch("SET lock_configuration = true")
            .map_err(open_err)?;
    }
    Ok(conn)
}

/// Per-connection set-up: the date functions people (and the model's prompt) use.
///
/// `current_date` and `today()` live in DuckDB's ICU extension, which is not part of finq's
/// offline build; they are provided here as the local date of the machine.
fn prepare(conn: &Connection) -> Result<(), duckdb::Error> {
    conn.execute_batch(&date_macros())
}

/// The machine's local date, as `current_date` gives it.
fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

/// The SQL that defines `current_date` and `today()` on a connection (the mirror's writer
/// needs them too: its views use them).
pub fn date_macros() -> String {
    date_macros_for(today())
}

fn date_macros_for(today: chrono::NaiveDate) -> String {
    format!(
        "CREATE OR REPLACE TEMP MACRO current_date() AS DATE '{today}';
         CREATE OR REPLACE TEMP MACRO today() AS DATE '{today}';\n"
    )
}

/// The identity of the file behind a path: it changes when the mirror is rebuilt (a new
/// file renamed over the old one).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The mirror files this process has open for reading, by file identity. DuckDB's file
/// lock keeps a writer out of a file other processes read, but not out of one this process
/// reads: the mirror's writer asks here too ([`read_in_this_process`]).
static OPEN_HERE: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());

fn note_open(file: Option<(u64, u64)>) {
    if let Some(f) = file {
        OPEN_HERE.lock().expect("registry lock").push(f);
    }
}

fn note_closed(file: Option<(u64, u64)>) {
    let mut open = OPEN_HERE.lock().expect("registry lock");
    if let Some(i) = file.and_then(|f| open.iter().position(|o| *o == f)) {
        open.swap_remove(i);
    }
}

/// Whether a [`QueryEngine`] of this process has the file at `path` open.
pub fn read_in_this_process(path: &Path) -> bool {
    file_id(path).is_some_and(|f| OPEN_HERE.lock().expect("registry lock").contains(&f))
}

/// A read-only connection to the mirror, kept open across queries and reopened when the
/// mirror file is replaced by a rebuild.
pub struct QueryEngine {
    path: PathBuf,
    trust: Trust,
    conn: Connection,
    file: Option<(u64, u64)>,
    /// How many times the connection was reopened on a new file.
    generation: u64,
    /// The date `current_date` gives on the connection: moved on when the local date does
    /// (a REPL left open past midnight).
    date: chrono::NaiveDate,
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        note_closed(self.file);
    }
}

impl QueryEngine {
    pub fn open(path: &Path, trust: Trust) -> Result<Self, QueryError> {
        let file = file_id(path);
        let date = today();
        let conn = open_conn(path, trust)?;
        note_open(file);
        Ok(QueryEngine {
            path: path.to_path_buf(),
            trust,
            conn,
            file,
            generation: 0,
            date,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, reopened first if the mirror file was replaced.
    pub fn connection(&mut self) -> Result<&Connection, QueryError> {
        let now = file_id(&self.path);
        let date = today();
        if now != self.file {
            self.conn = open_conn(&self.path, self.trust)?;
            note_closed(self.file);
            note_open(now);
            self.file = now;
            self.generation += 1;
            self.date = date;
        } else if date != self.date {
            self.set_date(date)?;
        }
        Ok(&self.conn)
    }

    /// Make `current_date` and `today()` give `date` on this connection.
    fn set_date(&mut self, date: chrono::NaiveDate) -> Result<(), QueryError> {
        self.conn
            .execute_batch(&date_macros_for(date))
            .map_err(|source| QueryError::Open {
                path: self.path.clone(),
                source,
            })?;
        self.date = date;
        Ok(())
    }

    /// Changes each time a rebuild replaced the mirror and the connection was reopened
    /// (what was read from the old file, e.g. names for completion, may be stale).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A handle that stops the query running on this connection (from another thread):
    /// the query fails with an "Interrupted" error and the connection stays usable.
    pub fn interrupt_handle(
        &mut self,
    ) -> Result<std::sync::Arc<duckdb::InterruptHandle>, QueryError> {
        Ok(self.connection()?.interrupt_handle())
    }

    /// Run one statement and collect its result.
    pub fn run(&mut self, sql: &str) -> Result<QueryResult, QueryError> {
        run(self.connection()?, sql)
    }

    /// The mirror's tables and columns with their comments.
    pub fn describe(&mut self) -> Result<Vec<TableInfo>, QueryError> {
        describe(self.connection()?)
    }
}

/// Query results as Arrow batches.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub types: Vec<DataType>,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// Whether column `i` holds numbers.
    pub fn is_numeric(&self, i: usize) -> bool {
        self.types.get(i).is_some_and(|t| t.is_numeric())
    }

    /// Whether column `i` holds dates or timestamps.
    pub fn is_date(&self, i: usize) -> bool {
        matches!(
            self.types.get(i),
            Some(DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _))
        )
    }

    /// Column `i`'s type as Arrow names it.
    pub fn type_name(&self, i: usize) -> String {
        self.types.get(i).map(|t| t.to_string()).unwrap_or_default()
    }

    /// Every cell as display text (`None` for NULL), row by row.
    pub fn rows(&self) -> Vec<Vec<Option<String>>> {
        self.rows_upto(usize::MAX)
    }

    /// The first `limit` rows as text (only those are formatted: a person shown 40 rows
    /// of a million waits for 40).
    pub fn rows_upto(&self, limit: usize) -> Vec<Vec<Option<String>>> {
        let mut out = Vec::with_capacity(self.row_count().min(limit));
        for batch in &self.batches {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            let batch = batch.slice(0, batch.num_rows().min(left));
            let columns: Vec<Vec<Option<String>>> =
                batch.columns().iter().map(|c| cells(c.as_ref())).collect();
            for row in 0..batch.num_rows() {
                out.push(columns.iter().map(|c| c[row].clone()).collect());
            }
        }
        out
    }
}

/// One column's cells as text. Arrow formats most types; a type it cannot format (e.g. a
/// timestamp with a zone name it does not know) is cast to text, and failing that shown as
/// its type, never a crash.
fn cells(col: &dyn Array) -> Vec<Option<String>> {
    // Timestamps as DuckDB prints them (a space, not ISO's `T`).
    let opts = FormatOptions::default()
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    if let Ok(f) = ArrayFormatter::try_new(col, &opts) {
        let formatted: Option<Vec<Option<String>>> = (0..col.len())
            .map(|i| {
                if col.is_null(i) {
                    Some(None)
                } else {
                    f.value(i).try_to_string().ok().map(Some)
                }
            })
            .collect();
        if let Some(v) = formatted {
            return v;
        }
    }
    let plain = match col.data_type() {
        // A zoned timestamp Arrow cannot resolve: the instant in UTC.
        DataType::Timestamp(unit, Some(_)) => {
            duckdb::arrow::compute::cast(col, &DataType::Timestamp(*unit, None))
                .ok()
                .map(|c| {
                    cells(c.as_ref())
                        .into_iter()
                        .map(|v| v.map(|s| s + "+00"))
                        .collect()
                })
        }
        _ => duckdb::arrow::compute::cast(col, &DataType::Utf8)
            .ok()
            .map(|c| cells(c.as_ref())),
    };
    plain.unwrap_or_else(|| {
        (0..col.len())
            .map(|i| (!col.is_null(i)).then(|| format!("<{}>", col.data_type())))
            .collect()
    })
}

/// Run one statement and collect its result.
pub fn run(conn: &Connection, sql: &str) -> Result<QueryResult, QueryError> {
    let mut stmt = conn.prepare(sql).map_err(QueryError::Sql)?;
    let arrow = stmt.query_arrow([]).map_err(QueryError::Sql)?;
    let schema = arrow.get_schema();
    let batches: Vec<RecordBatch> = arrow.collect();
    Ok(QueryResult {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        types: schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
        batches,
    })
}

/// The checks model-written SQL must pass before it runs: exactly one statement, and one
/// that reads. (The connection it runs on is read-only and locked down as well.)
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    let body = strip_comments(sql);
    let trimmed = body.trim().trim_end_matches(';').trim();
    if trimmed.is_empty() {
        return Err(QueryError::NotReadOnly("the query is empty".into()));
    }
    if has_unquoted_semicolon(trimmed) {
        return Err(QueryError::NotReadOnly(
            "the plan holds more than one SQL statement; only a single SELECT may run".into(),
        ));
    }
    let first = trimmed
        .split(|c: char| c.is_whitespace() || c == '(')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    const READS: &[&str] = &[
        "SELECT",
        "WITH",
        "FROM",
        "VALUES",
        "TABLE",
        "SUMMARIZE",
        "DESCRIBE",
        "SHOW",
        "PIVOT",
        "UNPIVOT",
    ];
    if !READS.contains(&first.as_str()) {
        return Err(QueryError::NotReadOnly(format!(
            "the plan's SQL is a {first} statement, not a read-only query; nothing was run"
        )));
    }
    Ok(())
}

fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '-' && chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            None if c == '/' && chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            None => out.push(c),
        }
    }
    out
}

fn has_unquoted_semicolon(sql: &str) -> bool {
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ';' => return true,
            None => {}
        }
    }
    false
}

/// A mirrored table, its columns and their comments (for `\\d` and prompts).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableInfo {
    pub name: String,
    pub comment: String,
    /// (name, type)
    pub columns: Vec<(String, String)>,
    pub column_comments: Vec<String>,
}

/// The mirror's tables (not finq's own bookkeeping, whose names start with `_`).
pub fn describe(conn: &Connection) -> Result<Vec<TableInfo>, QueryError> {
    let result = run(
        conn,
        "SELECT c.table_name, coalesce(t.comment, ''), c.column_name, c.data_type,
                coalesce(c.comment, '')
         FROM duckdb_columns() c
         JOIN (SELECT database_name, schema_name, table_name, comment FROM duckdb_tables()
               UNION ALL
               SELECT database_name, schema_name, view_name, comment FROM duckdb_views()
               WHERE NOT internal) t USING (database_name, schema_name, table_name)
         WHERE c.schema_name = 'main' AND c.database_name = current_database()
           AND NOT starts_with(c.table_name, '_')
         ORDER BY c.table_name, c.column_index",
    )?;
    let mut tables: Vec<TableInfo> = Vec::new();
    for row in result.rows() {
        let [t, tc, c, ty, cc] = [0, 1, 2, 3, 4].map(|i| row[i].clone().unwrap_or_default());
        match tables.last_mut() {
            Some(last) if last.name == t => {
                last.columns.push((c, ty));
                last.column_comments.push(cc);
            }
            _ => tables.push(TableInfo {
                name: t,
                comment: tc,
                columns: vec![(c, ty)],
                column_comments: vec![cc],
            }),
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_check() {
        assert!(check_read_only("SELECT 1").is_ok());
        assert!(check_read_only("  with x as (select 1) select * from x;").is_ok());
        assert!(check_read_only("-- total\nSELECT ';' AS semi").is_ok());
        for bad in [
            "DROP TABLE transactions",
            "INSERT INTO transactions VALUES (1)",
            "SELECT 1; DELETE FROM transactions",
            "COPY transactions TO '/tmp/x.csv'",
            "ATTACH '/tmp/other.db'",
            "INSTALL httpfs",
            "/* hi */ UPDATE accounts SET name = 'x'",
            "",
        ] {
            assert!(check_read_only(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_connection_is_locked_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.duckdb");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("CREATE TABLE t (a INTEGER, amount DECIMAL(14,2)); INSERT INTO t VALUES (1, 12.50), (2, -3.25);").unwrap();
        }
        let mut engine = QueryEngine::open(&path, Trust::Model).unwrap();
        let conn = engine.connection().unwrap();
        let r = run(conn, "SELECT sum(amount) AS s FROM t").unwrap();
        assert_eq!(r.rows()[0][0].as_deref(), Some("9.25"));
        assert!(run(conn, "CREATE TABLE x (a INT)").is_err());
        assert!(run(conn, "INSERT INTO t VALUES (3, 1)").is_err());
        let csv = dir.path().join("secret.csv");
        std::fs::write(&csv, "a\n1\n").unwrap();
        assert!(
            run(
                conn,
                &format!("SELECT * FROM read_csv('{}')", csv.display())
            )
            .is_err()
        );
        assert!(run(conn, "SET enable_external_access = true").is_err());
        assert!(
            run(
                conn,
                &format!("ATTACH '{}' AS o", dir.path().join("o.db").display())
            )
            .is_err()
        );
        assert!(run(conn, "LOAD httpfs").is_err());
    }

    /// A DuckDB file holding one empty table, in a directory removed when dropped.
    fn one_table_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.duckdb");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (a INTEGER)")
            .unwrap();
        (dir, path)
    }

    #[test]
    fn works_offline_and_renders_every_type() {
        let (_dir, path) = one_table_file();
        for trust in [Trust::User, Trust::Model] {
            let mut engine = QueryEngine::open(&path, trust).unwrap();
            let r = engine
                .run(
                    "SELECT current_date = today() AS same, current_date - INTERVAL 1 MONTH < current_date AS earlier,
                            now() AS n, {'a': 1} AS s, [1, 2] AS l, INTERVAL 3 DAY AS i,
                            TIMESTAMPTZ '2026-01-02 03:04:05+00' AS tz, TIMESTAMP '2026-01-02 03:04:05' AS ts,
                            1::HUGEINT AS h, 'x'::BLOB AS b, uuid() AS u, TIME '10:00' AS t,
                            DATE '2026-01-02' AS d, 1.5::DOUBLE AS f, json_extract('{\"a\": 7}', '$.a') AS j",
                )
                .unwrap();
            let row = &r.rows()[0];
            let today = today().to_string();
            assert_eq!(row[0].as_deref(), Some("true"));
            assert_eq!(row[1].as_deref(), Some("true"));
            assert!(
                row[6]
                    .as_deref()
                    .is_some_and(|t| t.starts_with("2026-01-02 03:04:05+00")),
                "{:?}",
                row[6]
            );
            assert_eq!(row[7].as_deref(), Some("2026-01-02 03:04:05"));
            assert_eq!(row[14].as_deref(), Some("7"));
            let d = engine.run("SELECT current_date AS d").unwrap();
            assert_eq!(d.rows()[0][0].as_deref(), Some(today.as_str()));
            for format in [OutputFormat::Table, OutputFormat::Csv, OutputFormat::Json] {
                assert!(!render(&r, format).is_empty());
            }
            // Failures are errors, not crashes; nothing is fetched from the network.
            assert!(engine.run("SELECT * FROM no_such_table").is_err());
            assert!(engine.run("SELECT 1 +").is_err());
            assert!(engine.run("INSTALL httpfs").is_err());
        }
    }

    #[test]
    fn current_date_moves_on_with_the_clock_on_a_connection_kept_open() {
        let (_dir, path) = one_table_file();
        for trust in [Trust::User, Trust::Model] {
            let mut engine = QueryEngine::open(&path, trust).unwrap();
            // As if the connection had been opened yesterday.
            let yesterday = today().pred_opt().unwrap();
            engine.set_date(yesterday).unwrap();
            let then = run(&engine.conn, "SELECT current_date, today()").unwrap();
            assert_eq!(then.rows()[0][0], Some(yesterday.to_string()));
            let now = engine.run("SELECT current_date, today()").unwrap();
            assert_eq!(now.rows()[0][0], Some(today().to_string()));
            assert_eq!(now.rows()[0][1], Some(today().to_string()));
        }
    }

    #[test]
    fn renders_csv_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.duckdb");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (n VARCHAR, amount DECIMAL(14,2), ok BOOLEAN); INSERT INTO t VALUES ('a, \"b\"', 1.50, true), (NULL, -2.00, false);").unwrap();
        let mut engine = QueryEngine::open(&path, Trust::User).unwrap();
        let r = engine.run("SELECT * FROM t ORDER BY amount DESC").unwrap();
        assert_eq!(
            render(&r, OutputFormat::Csv),
            "n,amount,ok\n\"a, \"\"b\"\"\",1.50,true\n,-2.00,false\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(json[0]["amount"], serde_json::json!(1.5));
        assert_eq!(json[1]["n"], serde_json::Value::Null);
        assert!(render(&r, OutputFormat::Table).contains("(2 rows)"));
    }
}

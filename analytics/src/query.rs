//! Running SQL on the DuckDB mirror and rendering the results.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use duckdb::arrow::array::Array;
use duckdb::arrow::datatypes::DataType;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use duckdb::{AccessMode, Config, Connection};

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
    #[error("{0}")]
    Sql(duckdb::Error),
    #[error("refused: {0}")]
    NotReadOnly(String),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!("unknown format `{other}`: use table, csv or json")),
        }
    }
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

/// Open the mirror read-only.
pub fn open(path: &Path, trust: Trust) -> Result<Connection, QueryError> {
    if !path.exists() {
        return Err(QueryError::NoMirror(path.to_path_buf()));
    }
    let open_err = |source| QueryError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .map_err(open_err)?;
    if trust == Trust::Model {
        config = config
            .enable_external_access(false)
            .map_err(open_err)?
            .enable_autoload_extension(false)
            .map_err(open_err)?
            .with("autoinstall_known_extensions", "false")
            .map_err(open_err)?
            .with("allow_community_extensions", "false")
            .map_err(open_err)?;
    }
    let conn = Connection::open_with_flags(path, config).map_err(open_err)?;
    if trust == Trust::Model {
        conn.execute_batch("SET lock_configuration = true")
            .map_err(open_err)?;
    }
    Ok(conn)
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

    /// Every cell as display text (`None` for NULL), row by row.
    pub fn rows(&self) -> Vec<Vec<Option<String>>> {
        let opts = FormatOptions::default();
        let mut out = Vec::with_capacity(self.row_count());
        for batch in &self.batches {
            let formatters: Vec<_> = batch
                .columns()
                .iter()
                .map(|c| {
                    ArrayFormatter::try_new(c.as_ref(), &opts)
                        .expect("arrow can format every DuckDB result type")
                })
                .collect();
            for row in 0..batch.num_rows() {
                out.push(
                    batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(col, f)| (!col.is_null(row)).then(|| f.value(row).to_string()))
                        .collect(),
                );
            }
        }
        out
    }
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

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// Render a result for people (table) or programs (CSV, JSON).
pub fn render(result: &QueryResult, format: OutputFormat) -> String {
    let rows = result.rows();
    match format {
        OutputFormat::Table => {
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(&result.columns);
            for (i, t) in result.types.iter().enumerate() {
                if is_numeric(t)
                    && let Some(col) = table.column_mut(i)
                {
                    col.set_cell_alignment(comfy_table::CellAlignment::Right);
                }
            }
            for row in &rows {
                table.add_row(
                    row.iter()
                        .map(|c| c.clone().unwrap_or_else(|| "NULL".into())),
                );
            }
            let n = rows.len();
            format!("{table}\n({n} row{})", if n == 1 { "" } else { "s" })
        }
        OutputFormat::Csv => {
            let mut out = String::new();
            let line = |cells: Vec<String>| cells.join(",") + "\n";
            out.push_str(&line(result.columns.iter().map(|c| csv_field(c)).collect()));
            for row in &rows {
                out.push_str(&line(
                    row.iter()
                        .map(|c| c.as_deref().map(csv_field).unwrap_or_default())
                        .collect(),
                ));
            }
            out
        }
        OutputFormat::Json => {
            let objects: Vec<String> = rows
                .iter()
                .map(|row| {
                    let fields: Vec<String> = row
                        .iter()
                        .enumerate()
                        .map(|(i, cell)| {
                            let key = serde_json::to_string(&result.columns[i]).expect("json");
                            let value = match cell {
                                None => "null".to_string(),
                                Some(v)
                                    if is_numeric(&result.types[i])
                                        && serde_json::from_str::<serde_json::Number>(v)
                                            .is_ok() =>
                                {
                                    v.clone()
                                }
                                Some(v) if result.types[i] == DataType::Boolean => v.clone(),
                                Some(v) => serde_json::to_string(v).expect("json"),
                            };
                            format!("{key}:{value}")
                        })
                        .collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect();
            format!("[{}]\n", objects.join(",\n "))
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A short description of the mirror's tables and columns (for `\d` and prompts).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<(String, String)>,
}

pub fn describe(conn: &Connection) -> Result<Vec<TableInfo>, QueryError> {
    let result = run(
        conn,
        "SELECT table_name, column_name, data_type FROM information_schema.columns
         WHERE table_schema = 'main' ORDER BY table_name, ordinal_position",
    )?;
    let mut tables: Vec<TableInfo> = Vec::new();
    for row in result.rows() {
        let (t, c, ty) = (
            row[0].clone().unwrap_or_default(),
            row[1].clone().unwrap_or_default(),
            row[2].clone().unwrap_or_default(),
        );
        match tables.last_mut() {
            Some(last) if last.name == t => last.columns.push((c, ty)),
            _ => tables.push(TableInfo {
                name: t,
                columns: vec![(c, ty)],
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
        let conn = open(&path, Trust::Model).unwrap();
        let r = run(&conn, "SELECT sum(amount) AS s FROM t").unwrap();
        assert_eq!(r.rows()[0][0].as_deref(), Some("9.25"));
        assert!(run(&conn, "CREATE TABLE x (a INT)").is_err());
        assert!(run(&conn, "INSERT INTO t VALUES (3, 1)").is_err());
        let csv = dir.path().join("secret.csv");
        std::fs::write(&csv, "a\n1\n").unwrap();
        assert!(
            run(
                &conn,
                &format!("SELECT * FROM read_csv('{}')", csv.display())
            )
            .is_err()
        );
        assert!(run(&conn, "SET enable_external_access = true").is_err());
        assert!(
            run(
                &conn,
                &format!("ATTACH '{}' AS o", dir.path().join("o.db").display())
            )
            .is_err()
        );
        assert!(run(&conn, "LOAD httpfs").is_err());
    }

    #[test]
    fn renders_csv_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.duckdb");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (n VARCHAR, amount DECIMAL(14,2), ok BOOLEAN); INSERT INTO t VALUES ('a, \"b\"', 1.50, true), (NULL, -2.00, false);").unwrap();
        let conn = open(&path, Trust::User).unwrap();
        let r = run(&conn, "SELECT * FROM t ORDER BY amount DESC").unwrap();
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

//! The DuckDB mirror: derived data, rebuilt from PostgreSQL through Arrow record batches.
//!
//! The new mirror is written to `<file>.tmp` and renamed over the old one, so a reader (a
//! REPL left open) keeps a consistent old copy, and a failed refresh leaves the old mirror.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, StringBuilder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::arrow::record_batch::RecordBatch;
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

const BATCH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("reading PostgreSQL for the mirror failed: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("writing the DuckDB mirror {path} failed: {source}")]
    DuckDb {
        path: PathBuf,
        source: duckdb::Error,
    },
    #[error("building Arrow data for table {table} failed: {message}")]
    Arrow {
        table: &'static str,
        message: String,
    },
    #[error("cannot replace the mirror file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Date,
    Money, // DECIMAL(14,2)
    Bool,
    Int,
}

impl Kind {
    fn arrow(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Date => DataType::Date32,
            Kind::Money => DataType::Decimal128(14, 2),
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
        }
    }
    fn duck(self) -> &'static str {
        match self {
            Kind::Text => "VARCHAR",
            Kind::Date => "DATE",
            Kind::Money => "DECIMAL(14,2)",
            Kind::Bool => "BOOLEAN",
            Kind::Int => "BIGINT",
        }
    }
}

/// One mirrored table: its columns and the Postgres query that feeds them, in order.
struct TableSpec {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    source_sql: &'static str,
}

const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "transactions",
        columns: &[
            ("id", Kind::Text),
            ("source", Kind::Text),
            ("date", Kind::Date),
            ("amount", Kind::Money),
            ("currency", Kind::Text),
            ("description", Kind::Text),
            ("merchant", Kind::Text),
            ("category", Kind::Text),
            ("account_id", Kind::Text),
            ("account_name", Kind::Text),
            ("institution", Kind::Text),
            ("pending", Kind::Bool),
            ("plaid_category", Kind::Text),
            ("plaid_detailed_category", Kind::Text),
        ],
        source_sql: "SELECT u.id, u.source, u.date, u.amount, u.currency, u.description, u.merchant, u.category,
                            u.account_id, u.account_name, i.institution_name, u.pending, u.plaid_category,
                            u.plaid_detailed_category
                     FROM unified_transactions u LEFT JOIN plaid_items i USING (item_id)
                     ORDER BY u.date, u.id",
    },
    TableSpec {
        name: "accounts",
        columns: &[
            ("account_id", Kind::Text),
            ("item_id", Kind::Text),
            ("institution", Kind::Text),
            ("name", Kind::Text),
            ("official_name", Kind::Text),
            ("mask", Kind::Text),
            ("type", Kind::Text),
            ("subtype", Kind::Text),
            ("current_balance", Kind::Money),
            ("available_balance", Kind::Money),
            ("credit_limit", Kind::Money),
            ("currency", Kind::Text),
        ],
        source_sql: "SELECT a.account_id, a.item_id, i.institution_name, a.name, a.official_name, a.mask, a.type,
                            a.subtype, a.current_balance, a.available_balance, a.credit_limit,
                            coalesce(a.iso_currency_code, a.unofficial_currency_code)
                     FROM plaid_accounts a JOIN plaid_items i USING (item_id)
                     ORDER BY i.institution_name, a.name",
    },
    TableSpec {
        name: "categories",
        columns: &[
            ("id", Kind::Int),
            ("name", Kind::Text),
            ("parent", Kind::Text),
            ("is_income", Kind::Bool),
        ],
        source_sql: "SELECT c.id, c.name, p.name, c.is_income
                     FROM categories c LEFT JOIN categories p ON p.id = c.parent_id
                     ORDER BY c.id",
    },
];

/// Row counts per mirrored table.
pub type MirrorCounts = Vec<(&'static str, u64)>;

pub struct DuckMirror {
    path: PathBuf,
}

impl DuckMirror {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DuckMirror { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rebuild the mirror from PostgreSQL.
    pub async fn refresh(&self, pool: &PgPool) -> Result<MirrorCounts, MirrorError> {
        let tmp = self.path.with_extension("duckdb.tmp");
        remove_db_files(&tmp)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| MirrorError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // DuckDB work is blocking: it runs on its own thread, fed batches over a channel
        // while the next ones are read from Postgres.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, RecordBatch)>(4);
        let writer_path = tmp.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<(), MirrorError> {
            let duck_err = |source| MirrorError::DuckDb {
                path: writer_path.clone(),
                source,
            };
            let conn = duckdb::Connection::open(&writer_path).map_err(duck_err)?;
            conn.execute_batch(&create_tables_sql()).map_err(duck_err)?;
            while let Some((table, batch)) = rx.blocking_recv() {
                let mut app = conn.appender(TABLES[table].name).map_err(duck_err)?;
                app.append_record_batch(batch).map_err(duck_err)?;
                app.flush().map_err(duck_err)?;
            }
            conn.execute_batch("CHECKPOINT").map_err(duck_err)?;
            drop(conn);
            Ok(())
        });

        let produced = async {
            let mut counts = Vec::new();
            for (index, spec) in TABLES.iter().enumerate() {
                let schema = schema_of(spec);
                let mut rows = sqlx::query(spec.source_sql).fetch(pool);
                let mut chunk: Vec<PgRow> = Vec::with_capacity(BATCH_ROWS);
                let mut total = 0u64;
                loop {
                    let next = rows.try_next().await?;
                    let done = next.is_none();
                    if let Some(r) = next {
                        chunk.push(r);
                    }
                    if chunk.len() == BATCH_ROWS || (done && !chunk.is_empty()) {
                        total += chunk.len() as u64;
                        let batch = to_batch(spec, schema.clone(), &chunk)?;
                        chunk.clear();
                        if tx.send((index, batch)).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                    if done {
                        break;
                    }
                }
                counts.push((spec.name, total));
            }
            Ok::<_, MirrorError>(counts)
        }
        .await;
        drop(tx);
        let written = writer.await.expect("the DuckDB writer thread panicked");
        let counts = match (produced, written) {
            (_, Err(e)) | (Err(e), _) => {
                let _ = remove_db_files(&tmp);
                return Err(e);
            }
            (Ok(c), Ok(())) => c,
        };
        std::fs::rename(&tmp, &self.path).map_err(|source| MirrorError::Io {
            path: self.path.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(wal_of(&self.path));
        Ok(counts)
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

fn create_tables_sql() -> String {
    let mut sql = String::new();
    for t in TABLES {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(n, k)| format!("\"{n}\" {}", k.duck()))
            .collect();
        sql.push_str(&format!("CREATE TABLE {} ({});\n", t.name, cols.join(", ")));
    }
    sql.push_str(
        "COMMENT ON COLUMN transactions.amount IS 'Bank-statement sign: money in is positive, money out is negative';\n",
    );
    sql
}

fn schema_of(spec: &TableSpec) -> SchemaRef {
    Arc::new(Schema::new(
        spec.columns
            .iter()
            .map(|(n, k)| Field::new(*n, k.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

fn to_batch(
    spec: &TableSpec,
    schema: SchemaRef,
    rows: &[PgRow],
) -> Result<RecordBatch, MirrorError> {
    let arrow_err = |message: String| MirrorError::Arrow {
        table: spec.name,
        message,
    };
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(spec.columns.len());
    for (i, (_, kind)) in spec.columns.iter().enumerate() {
        let array: ArrayRef = match kind {
            Kind::Text => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(r.try_get::<Option<String>, _>(i)?);
                }
                Arc::new(b.finish())
            }
            Kind::Date => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                let mut b = Date32Builder::new();
                for r in rows {
                    let d: Option<chrono::NaiveDate> = r.try_get(i)?;
                    b.append_option(d.map(|d| (d - epoch).num_days() as i32));
                }
                Arc::new(b.finish())
            }
            Kind::Money => {
                let mut b = Decimal128Builder::new();
                for r in rows {
                    let d: Option<Decimal> = r.try_get(i)?;
                    b.append_option(d.map(|mut d| {
                        d.rescale(2);
                        d.mantissa()
                    }));
                }
                Arc::new(
                    b.finish()
                        .with_precision_and_scale(14, 2)
                        .map_err(|e| arrow_err(e.to_string()))?,
                )
            }
            Kind::Bool => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    b.append_option(r.try_get::<Option<bool>, _>(i)?);
                }
                Arc::new(b.finish())
            }
            Kind::Int => {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(r.try_get::<Option<i64>, _>(i)?);
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema, arrays).map_err(|e| arrow_err(e.to_string()))
}

/// The mirrored tables and their columns, for `\d` and the language model's context.
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}

impl finq_core::plugin::Sink for DuckMirror {
    fn name(&self) -> &'static str {
        "duckdb_mirror"
    }

    async fn write(
        &self,
        pool: &PgPool,
    ) -> Result<finq_core::plugin::Counts, finq_core::plugin::BoxError> {
        Ok(self.refresh(pool).await?)
    }
}

//! The mirror's write connection to DuckDB, through DuckDB's C API.
//!
//! Rows reach DuckDB as an Arrow stream that DuckDB's own (C++) Arrow scan reads inside one
//! `INSERT … SELECT`: strings are not copied on the way in, and no appender buffers them a
//! second time. The Rust binding's appender converts every value in Rust and then copies it
//! through the appender's buffer; on a million rows that was most of the mirror build.
//! The binding offers no Arrow stream scan, hence this small wrapper.

use std::cell::OnceCell;
use std::ffi::{CStr, CString, c_char};
use std::path::Path;

use duckdb::arrow::ffi_stream::FFI_ArrowArrayStream;
use duckdb::arrow::record_batch::RecordBatchReader;
use duckdb::ffi;

/// The settings of a write connection: never reach for the network, and bounded memory (a
/// write streams; DuckDB writes out what does not fit).
const SETTINGS: &[(&str, &str)] = &[
    ("autoload_known_extensions", "false"),
    ("autoinstall_known_extensions", "false"),
    ("max_memory", "192MB"),
];

/// How many threads DuckDB may use for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// A full build is one stream, fed by PostgreSQL and the decoder: a second DuckDB
    /// thread only contends with them for the cores (measured slower on two cores).
    One,
    /// An incremental write is DuckDB's own work (deleting and inserting by id over the
    /// whole table): as many threads as DuckDB likes.
    Default,
}

/// The in-memory database attached beside the file: DuckDB's C API creates the view an
/// Arrow stream is scanned through in the current catalog, and a view over a stream of this
/// process cannot be written to the file. Rows can be staged there too.
pub const STAGE: &str = "ingest";
const INGEST_VIEW: &str = "_finq_ingest";

/// One database and one connection to it, both closed on drop.
pub struct DuckWriter {
    db: ffi::duckdb_database,
    con: ffi::duckdb_connection,
    /// The file's catalog name (DuckDB names it after the file), once the staging database
    /// is attached (at the first ingest: a write with nothing to do never needs it).
    catalog: OnceCell<String>,
}

// The handles are used from one thread at a time (the mirror's writer thread).
unsafe impl Send for DuckWriter {}

impl DuckWriter {
    /// Open (or create) the database file for writing.
    pub fn open(path: &Path, threads: Threads) -> Result<DuckWriter, String> {
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| "the path holds a NUL byte".to_string())?;
        let mut config: ffi::duckdb_config = std::ptr::null_mut();
        let mut db: ffi::duckdb_database = std::ptr::null_mut();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: every pointer passed is valid for the call; the config is destroyed after
        // the open (DuckDB copies it), and an error string is freed with duckdb_free.
        unsafe {
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                return Err("DuckDB could not create a configuration".into());
            }
            let one_thread = [("threads", "1")];
            let extra: &[(&str, &str)] = match threads {
                Threads::One => &one_thread,
                Threads::Default => &[],
            };
            for (name, value) in SETTINGS.iter().chain(extra) {
                let (n, v) = (CString::new(*name).unwrap(), CString::new(*value).unwrap());
                if ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess {
                    ffi::duckdb_destroy_config(&mut config);
                    return Err(format!("DuckDB refused the setting {name} = {value}"));
                }
            }
            let rc = ffi::duckdb_open_ext(c_path.as_ptr(), &mut db, config, &mut err);
            ffi::duckdb_destroy_config(&mut config);
            if rc != ffi::DuckDBSuccess {
                let message = if err.is_null() {
                    "DuckDB could not open the file".to_string()
                } else {
                    let m = CStr::from_ptr(err).to_string_lossy().into_owned();
                    ffi::duckdb_free(err.cast());
                    m
                };
                return Err(message);
            }
            let mut con: ffi::duckdb_connection = std::ptr::null_mut();
            if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
                ffi::duckdb_close(&mut db);
                return Err("DuckDB could not connect to the file".into());
            }
            Ok(DuckWriter {
                db,
                con,
                catalog: OnceCell::new(),
            })
        }
    }

    /// A connection of the binding's, for reading (its own session, same database).
    pub fn reader(&self) -> Result<duckdb::Connection, duckdb::Error> {
        // SAFETY: `db` is open for as long as `self` lives, and the binding does not close
        // a database it was handed (`open_from_raw`); callers drop the connection first.
        unsafe { duckdb::Connection::open_from_raw(self.db) }
    }

    /// Run SQL (one or more statements).
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        let c_sql = CString::new(sql).map_err(|_| "SQL with a NUL byte".to_string())?;
        // SAFETY: the result is zero-initialised, filled by duckdb_query, and destroyed
        // whatever the outcome; the error text is copied before that.
        unsafe {
            let mut result: ffi::duckdb_result = std::mem::zeroed();
            let rc = ffi::duckdb_query(self.con, c_sql.as_ptr(), &mut result);
            let outcome = if rc == ffi::DuckDBSuccess {
                Ok(())
            } else {
                let e = ffi::duckdb_result_error(&mut result);
                Err(if e.is_null() {
                    "DuckDB failed without a message".to_string()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                })
            };
            ffi::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    /// Run `{into} SELECT * FROM <the batches reader yields>`, e.g. `INSERT INTO t` (same
    /// columns, same order) or `CREATE TABLE ingest.x AS`, as one statement. The reader may
    /// block: DuckDB pulls from it as the statement runs. Not inside an explicit
    /// transaction that has written the file (the view is made in the staging database, and
    /// a DuckDB transaction writes one database).
    pub fn ingest(
        &self,
        into: &str,
        reader: Box<dyn RecordBatchReader + Send>,
    ) -> Result<(), String> {
        let catalog = match self.catalog.get() {
            Some(c) => c,
            None => {
                let name: String = self
                    .reader()
                    .and_then(|r| r.query_row("SELECT current_database()", [], |row| row.get(0)))
                    .map_err(|e| e.to_string())?;
                self.execute(&format!("ATTACH ':memory:' AS {STAGE}"))?;
                self.catalog.get_or_init(|| name)
            }
        };
        // Boxed: DuckDB keeps a pointer to the stream until the view is dropped.
        let mut stream = Box::new(FFI_ArrowArrayStream::new(reader));
        let view = CString::new(INGEST_VIEW).unwrap();
        self.execute(&format!("USE {STAGE}"))?;
        // SAFETY: the stream outlives the view (dropped below, after the view), and DuckDB
        // does not release it (the caller keeps ownership).
        let rc = unsafe {
            ffi::duckdb_arrow_scan(
                self.con,
                view.as_ptr(),
                (&mut *stream as *mut FFI_ArrowArrayStream).cast(),
            )
        };
        self.execute(&format!("USE {}", ident(catalog)))?;
        if rc != ffi::DuckDBSuccess {
            return Err("DuckDB could not scan the Arrow stream".into());
        }
        let inserted = self.execute(&format!("{into} SELECT * FROM {STAGE}.{INGEST_VIEW}"));
        let dropped = self.execute(&format!("DROP VIEW {STAGE}.{INGEST_VIEW}"));
        drop(stream);
        inserted.and(dropped)
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Drop for DuckWriter {
    fn drop(&mut self) {
        // SAFETY: both handles came from open and are closed once; closing checkpoints.
        unsafe {
            ffi::duckdb_disconnect(&mut self.con);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

//! finq-analytics: the DuckDB side.
//!
//! - [`mirror`]: PostgreSQL → DuckDB through Arrow record batches (`transactions`,
//!   `accounts`, `categories`, `items`, `balance_snapshots`, `transfers`, `sync_log`),
//!   applied incrementally from the derive step's change feed, rebuilt when it must be; and
//!   views computed when queried (`recurring`, `balance_history`, `net_worth`).
//! - [`query`]: the [`query::QueryEngine`]: a read-only connection to the mirror that works
//!   offline (no extension is ever downloaded), renders every result type, and turns every
//!   failure into an error. Model-written SQL additionally runs with no file, extension or
//!   database access.
//! - [`render`]: results as a table (folded to the terminal, or a record at a time),
//!   Markdown, DuckDB's line mode, CSV or JSON; long results cut for people.
//! - [`export`]: the transactions as CSV or Parquet (by DuckDB), or as hledger and
//!   beancount journals (double entry: the bank side and the category).
//! - [`nl`]: questions in plain English: the context (schema, the person's names, summaries),
//!   Ollama with a JSON-schema `format` for the plan (repaired with DuckDB's error when it
//!   fails), an answer in words whose every number is checked against the rows
//!   ([`nl::verify`]), and conversations kept in PostgreSQL ([`nl::chats`]).
//!
//! [`SinkConfig`] is the `[[sinks]]` section of `finq.toml`.

pub mod export;
pub mod mirror;
pub mod nl;
pub mod query;
pub mod render;

use std::path::PathBuf;

use finq_core::config::{ConfigError, PluginTables, Settings};
use finq_core::pipeline::{BoxError, Context, Counts, Sink};
use serde::Deserialize;

use crate::mirror::DuckMirror;

/// One `[[sinks]]` table of `finq.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// The DuckDB mirror; `path` defaults to `finq.duckdb` in the data directory. The first
    /// DuckDB sink is the one finq's readers query ([`mirror_path`]).
    Duckdb {
        #[serde(default)]
        path: Option<PathBuf>,
    },
}

impl SinkConfig {
    /// The configured sinks, or the default DuckDB mirror when `finq.toml` lists none.
    pub fn from_settings(settings: &Settings) -> Result<Vec<SinkConfig>, ConfigError> {
        Ok(PluginTables::parse(&settings.plugins.sinks, "sinks")?
            .unwrap_or_else(|| vec![SinkConfig::Duckdb { path: None }]))
    }

    pub fn build(&self, settings: &Settings) -> SinkPlugin {
        match self {
            SinkConfig::Duckdb { path } => SinkPlugin::Duckdb(DuckMirror::new(
                path.clone().unwrap_or_else(|| settings.duckdb_path()),
            )),
        }
    }
}

/// The mirror people query (the REPL, `finq sql`, questions, reports): the first DuckDB
/// sink's file.
pub fn mirror_path(settings: &Settings) -> Result<std::path::PathBuf, ConfigError> {
    Ok(SinkConfig::from_settings(settings)?
        .into_iter()
        .map(|c| match c.build(settings) {
            SinkPlugin::Duckdb(m) => m.path().to_path_buf(),
        })
        .next()
        .unwrap_or_else(|| settings.duckdb_path()))
}

/// A built sink.
pub enum SinkPlugin {
    Duckdb(DuckMirror),
}

impl Sink for SinkPlugin {
    fn name(&self) -> &'static str {
        match self {
            SinkPlugin::Duckdb(s) => s.name(),
        }
    }

    fn feeds(&self) -> &'static [&'static str] {
        match self {
            SinkPlugin::Duckdb(s) => s.feeds(),
        }
    }

    async fn write(&self, ctx: &Context) -> Result<Counts, BoxError> {
        match self {
            SinkPlugin::Duckdb(s) => Sink::write(s, ctx).await,
        }
    }
}

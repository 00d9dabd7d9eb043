//! finq-analytics: the DuckDB side.
//!
//! - [`mirror`]: PostgreSQL → DuckDB through Arrow record batches (`transactions`,
//!   `accounts`, `categories`), rebuilt into a new file and swapped in atomically.
//! - [`query`]: running SQL on the mirror, read-only, and rendering results as a table, CSV
//!   or JSON. Model-written SQL additionally runs with no file, extension or database access.
//! - [`nl`]: questions in plain English: a minijinja prompt, Ollama with a JSON-schema
//!   `format`, a structured query plan back, run through [`query`].

pub mod mirror;
pub mod nl;
pub mod query;

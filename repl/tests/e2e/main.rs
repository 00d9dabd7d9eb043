//! finq's end-to-end tests, built as one test binary: real PostgreSQL (a fresh database per
//! test), the Plaid simulator, a fake Ollama server, and the `finq` binary itself. The
//! shared helpers are the `finq-e2e` crate (`tests/` at the top of the repository).
//!
//! - [`sync`]: simulator → connector → PostgreSQL equals the simulator's ground truth.
//! - [`mirror`]: the pipeline to DuckDB, and the property test that the incremental
//!   pipeline always ends where a full rebuild would.
//! - [`ask`]: the question path against the fake Ollama server.
//! - [`simulator`], [`openapi`]: the simulator behaves as Plaid documents (webhook retries
//!   and key rotation included), every response matches Plaid's OpenAPI spec, and Plaid's
//!   official Python client accepts it.
//! - [`demo`]: `finq demo` as a person runs it.
//! - [`link`]: linking a bank in headless chromium through the Link page of `finq serve`.
//! - [`reliability`]: `finq sync` and `finq run` killed at random moments lose nothing.

mod ask;
mod demo;
mod link;
mod mirror;
mod openapi;
mod reliability;
mod simulator;
mod sync;

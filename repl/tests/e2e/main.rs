//! finq's end-to-end tests, built as one test binary: real PostgreSQL (a fresh database per
//! test), the Plaid simulator, a fake Ollama server, and the `finq` binary itself. The
//! shared helpers are the `finq-e2e` crate (`tests/` at the top of the repository).
//!
//! - [`sync`]: simulator → connector → PostgreSQL equals the simulator's ground truth.
//! - [`mirror`]: the pipeline to DuckDB, and the property test that the incremental
//!   pipeline always ends where a full rebuild would.
//! - [`ask`]: the question path against the fake Ollama server.
//! - [`categories`]: the person's edits, rules and categories, and their precedence.
//! - [`transfers`]: transfers between own accounts equal a brute-force search; unmarking.
//! - [`networth`]: balances filled in between snapshots, net worth, disagreements flagged.
//! - [`recurring`]: the simulated bank's bills and subscriptions found, price changes and
//!   missed payments flagged.
//! - [`export`]: hledger, bean-check and DuckDB read what `finq export` writes.
//! - [`import`]: bank and card exports imported (exact, idempotent, all or nothing),
//!   transactions added by hand, manual accounts with balances, as library and as process.
//! - [`simulator`], [`openapi`]: the simulator behaves as Plaid documents (webhook retries
//!   and key rotation included), every response matches Plaid's OpenAPI spec, and Plaid's
//!   official Python client accepts it.
//! - [`demo`]: `finq demo` as a person runs it.
//! - [`repl`]: `finq repl` through a pseudo-terminal: completion, Ctrl-C, formats, charts,
//!   history and hints; `finq sql --chart`.
//! - [`doctor`]: `finq doctor` on a healthy set-up and on one broken in each way.
//! - [`link`]: linking a bank in headless chromium through the Link page of `finq serve`.
//! - [`reliability`]: `finq sync` and `finq run` killed at random moments lose nothing.

mod ask;
mod categories;
mod demo;
mod doctor;
mod export;
mod import;
mod link;
mod mirror;
mod networth;
mod openapi;
mod recurring;
mod reliability;
mod repl;
mod simulator;
mod sync;
mod transfers;

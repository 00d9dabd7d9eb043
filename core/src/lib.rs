//! finq-core: what every other finq crate builds on.
//!
//! - [`config`]: settings from `finq.toml` plus environment (environment wins), secrets redacted.
//! - [`vault`]: the token vault; Plaid access tokens are only ever stored AES-256-GCM sealed.
//! - [`local_pg`]: finq's private PostgreSQL cluster under the data directory, used when
//!   `DATABASE_URL` is unset.
//! - [`db`]: connecting to PostgreSQL (either kind) and running the migrations ([`MIGRATOR`]).
//! - [`jobs`]: a work queue in PostgreSQL (`FOR UPDATE SKIP LOCKED`, leases, backoff).
//! - [`pipeline`]: the `Source` / `Transform` / `Sink` traits and the one runner every
//!   caller uses: sources → derive (transforms, consuming `change_log`) → sinks.

pub mod config;
pub mod db;
pub mod jobs;
pub mod local_pg;
pub mod pipeline;
pub mod vault;

/// The workspace's migrations (`migrations/` at the top of the repository).
/// Tests use it with `#[sqlx::test(migrator = "finq_core::MIGRATOR")]`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The single local user every row belongs to (created by the first migration).
pub const LOCAL_USER_ID: i64 = 1;

//! finq-connectors: where data comes from.
//!
//! - [`pfc`]: Plaid's personal-finance-category taxonomy (v1 and v2), from Plaid's own file.
//! - [`plaid`]: the Plaid connector.
//!   - [`plaid::types`]: wire types, lenient where Plaid's enums are extensible.
//!   - [`plaid::client`]: the HTTP client (credentials in headers, `PlaidError` decoding,
//!     retries with backoff on 429 / 5xx / transport errors).
//!   - [`plaid::link`]: linking an institution (sandbox public token → exchange → store).
//!   - [`plaid::sync`]: the `/transactions/sync` source: all pages of an update and the new
//!     cursor applied in one Postgres transaction, under a per-item advisory lock.
//! - [`sim`]: the offline Plaid simulator: the same HTTP API, deterministic generated data.

pub mod pfc;
pub mod plaid;
pub mod sim;

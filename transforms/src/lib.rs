//! finq-transforms: derived data, one module per transform. Each is idempotent.
//!
//! - [`categories`]: Plaid's PFC codes → the user's categories (`category_mappings`; a
//!   detailed rule beats its primary's; the user's override beats both).
//! - [`union`]: manual and Plaid transactions in one table, `unified_transactions`, with the
//!   bank-statement sign (money in positive, money out negative) and a `source` column.

pub mod categories;
pub mod union;

pub use categories::CategoryMapping;
pub use union::UnionTransactions;

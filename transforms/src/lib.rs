//! finq-transforms: derived data, one module per transform, each applied to what changed.
//!
//! - [`categories`]: Plaid's PFC codes → the person's categories (`category_mappings`; a
//!   detailed rule beats its primary's; the person's override beats both).
//! - [`union`]: manual and Plaid transactions in one table, `unified_transactions`, with the
//!   bank-statement sign (money in positive, money out negative), kept up to date row by row
//!   from the derive step's [`ChangeSet`](finq_core::pipeline::ChangeSet).
//! - [`merchant`]: a statement's merchant text → the merchant's name (processor prefixes,
//!   store numbers, city and state removed), applied by the union to every row.
//! - [`transfers`]: pairs of opposite amounts between the person's own accounts, marked on
//!   both sides (`is_transfer`), recomputed for the amounts that changed.
//! - [`rules`]: the person's categorisation rules, applied to transactions as they arrive
//!   and, when asked, to the whole history.
//!
//! [`TransformConfig`] is the `[[transforms]]` section of `finq.toml`: one variant per
//! transform, building it and delegating the [`Transform`] trait to it.

pub mod categories;
pub mod merchant;
pub mod rules;
pub mod transfers;
pub mod union;

use finq_core::config::{ConfigError, PluginTables, Settings};
use finq_core::pipeline::{BoxError, ChangeSet, Counts, Transform};
use serde::Deserialize;
use sqlx::PgConnection;

pub use transfers::Transfers;
pub use union::UnionTransactions;

/// One `[[transforms]]` table of `finq.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// Manual + Plaid transactions, categorized, into `unified_transactions`.
    Union,
    /// Transfers between the person's own accounts, marked (after the union).
    Transfers,
}

impl TransformConfig {
    /// The configured transforms, or the defaults when `finq.toml` lists none.
    pub fn from_settings(settings: &Settings) -> Result<Vec<TransformConfig>, ConfigError> {
        Ok(
            PluginTables::parse(&settings.plugins.transforms, "transforms")?
                .unwrap_or_else(|| vec![TransformConfig::Union, TransformConfig::Transfers]),
        )
    }

    pub fn build(&self) -> TransformPlugin {
        match self {
            TransformConfig::Union => TransformPlugin::Union(UnionTransactions),
            TransformConfig::Transfers => TransformPlugin::Transfers(Transfers),
        }
    }
}

/// A built transform.
pub enum TransformPlugin {
    Union(UnionTransactions),
    Transfers(Transfers),
}

impl Transform for TransformPlugin {
    fn name(&self) -> &'static str {
        match self {
            TransformPlugin::Union(t) => t.name(),
            TransformPlugin::Transfers(t) => t.name(),
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        changes: &ChangeSet,
    ) -> Result<Counts, BoxError> {
        match self {
            TransformPlugin::Union(t) => t.apply(conn, changes).await,
            TransformPlugin::Transfers(t) => t.apply(conn, changes).await,
        }
    }
}

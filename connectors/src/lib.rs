//! finq-connectors: where data comes from.
//!
//! - [`import`]: bank and card exports (CSV in the common US layouts or as `--columns`
//!   says, OFX/QFX) read all or nothing, and a file as a pipeline source into a manual
//!   account, recognising rows imported before.
//! - [`manual`]: the manual store: accounts Plaid does not cover, their balances, their
//!   transactions (typed in or imported), the files imported.
//! - [`pfc`]: Plaid's personal-finance-category taxonomy (v1 and v2), from Plaid's own file.
//! - [`plaid`]: the Plaid connector.
//!   - [`plaid::types`]: wire types, lenient where Plaid's enums are extensible.
//!   - [`plaid::client`]: the HTTP client (credentials in headers, `PlaidError` decoding,
//!     retries with backoff on 429 / 5xx / transport errors).
//!   - [`plaid::items`]: the item store (`plaid_items`: list, tokens, delete).
//!   - [`plaid::connect`]: which Plaid an item talks to (in-process simulator, a configured
//!     URL, sandbox, production) and linking in the configured environment.
//!   - [`plaid::link`]: linking an institution (sandbox public token → exchange → store).
//!   - [`plaid::sync`]: the `/transactions/sync` source: all pages of an update and the new
//!     cursor applied in one Postgres transaction, under a per-item advisory lock.
//!   - [`plaid::source`]: Plaid as a pipeline [`Source`](finq_core::pipeline::Source).
//!   - [`plaid::webhook`]: verifying a webhook's `Plaid-Verification` token and body as
//!     Plaid prescribes, with the verification keys cached by `kid`; the store of
//!     verified webhooks (`webhook_events`).
//! - `sim` (cargo feature `simulator`, on by default): the offline Plaid simulator: the same
//!   HTTP API, deterministic generated data. Without it the crate is the Plaid client alone.
//!
//! [`SourceConfig`] is the `[[sources]]` section of `finq.toml`.

pub mod import;
pub mod manual;
pub mod pfc;
pub mod plaid;
#[cfg(feature = "simulator")]
pub mod sim;

use std::sync::Arc;

use finq_core::config::{ConfigError, PluginTables, Settings};
use finq_core::pipeline::{BoxError, Context, PipelineReport, Source};
use finq_core::vault::TokenVault;
use serde::Deserialize;

use crate::import::ImportSource;
use crate::plaid::source::PlaidSource;
use crate::plaid::sync::SyncSettings;

/// One `[[sources]]` table of `finq.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Every linked Plaid item, through `/transactions/sync`.
    Plaid {
        /// Transactions per `/transactions/sync` page (1–500).
        #[serde(default)]
        page_size: Option<i64>,
    },
    /// A bank or card export imported into a manual account on every run (rows already
    /// there are recognised and skipped).
    Import(ImportSource),
}

impl SourceConfig {
    /// The configured sources, or Plaid when `finq.toml` lists none.
    pub fn from_settings(settings: &Settings) -> Result<Vec<SourceConfig>, ConfigError> {
        let configs = PluginTables::parse(&settings.plugins.sources, "sources")?
            .unwrap_or_else(|| vec![SourceConfig::Plaid { page_size: None }]);
        for c in &configs {
            if let SourceConfig::Plaid { page_size } = c
                && let Some(n) = page_size
                && !(1..=500).contains(n)
            {
                return Err(ConfigError::Invalid {
                    key: "sources.page_size",
                    message: format!("{n} is not between 1 and 500"),
                });
            }
        }
        Ok(configs)
    }

    pub fn build(&self, settings: &Settings, vault: Arc<TokenVault>) -> SourcePlugin {
        match self {
            SourceConfig::Plaid { page_size } => {
                let mut sync = SyncSettings::default();
                if let Some(n) = page_size {
                    sync.page_size = *n;
                }
                SourcePlugin::Plaid(Box::new(PlaidSource {
                    settings: settings.clone(),
                    vault,
                    sync,
                }))
            }
            SourceConfig::Import(source) => SourcePlugin::Import(source.clone()),
        }
    }
}

/// A built source.
pub enum SourcePlugin {
    /// Boxed: it carries the settings, many times the size of an import's.
    Plaid(Box<PlaidSource>),
    Import(ImportSource),
}

impl Source for SourcePlugin {
    fn name(&self) -> String {
        match self {
            SourcePlugin::Plaid(s) => s.name(),
            SourcePlugin::Import(s) => s.name(),
        }
    }

    async fn pull(&self, ctx: &Context, report: &mut PipelineReport) -> Result<(), BoxError> {
        match self {
            SourcePlugin::Plaid(s) => s.pull(ctx, report).await,
            SourcePlugin::Import(s) => s.pull(ctx, report).await,
        }
    }
}

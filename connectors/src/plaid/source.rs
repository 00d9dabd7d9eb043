//! Plaid as a pipeline source: every linked item (or the one in the context's scope) is
//! synced and recorded as its own step, so one failing connection does not stop the others.

use std::sync::Arc;

use finq_core::config::Settings;
use finq_core::pipeline::{BoxError, Context, PipelineReport, Source, StepKind};
use finq_core::vault::TokenVault;

use super::connect::Connections;
use super::items;
use super::sync::{SyncProgress, SyncSettings, sync_item};

pub struct PlaidSource {
    pub settings: Settings,
    pub vault: Arc<TokenVault>,
    pub sync: SyncSettings,
}

impl Source for PlaidSource {
    fn name(&self) -> String {
        "plaid".to_string()
    }

    async fn pull(&self, ctx: &Context, report: &mut PipelineReport) -> Result<(), BoxError> {
        let all = items::list(&ctx.pool).await?;
        let mut conns = Connections::new(&self.settings);
        for item in all
            .iter()
            .filter(|i| ctx.only.as_ref().is_none_or(|o| *o == i.item_id))
        {
            let name = format!("{} (item {})", item.institution, item.item_id);
            let step = async {
                let client = conns.client_for(item).await?;
                ctx.progress
                    .update(&name, &format!("syncing {}", item.institution));
                let progress = |p: SyncProgress| {
                    ctx.progress.update(
                        &name,
                        &format!(
                            "syncing {}: {} changes, {} pages",
                            item.institution, p.changes, p.pages
                        ),
                    )
                };
                let o = sync_item(
                    &ctx.pool,
                    &client,
                    &self.vault,
                    &item.item_id,
                    self.sync,
                    &progress,
                )
                .await?;
                Ok::<_, BoxError>(vec![
                    ("added", o.added),
                    ("modified", o.modified),
                    ("removed", o.removed),
                    ("pages", o.pages),
                ])
            };
            report.record(StepKind::Source, name.clone(), step).await;
            ctx.progress.finish(&name);
        }
        conns.stop().await;
        Ok(())
    }
}

//! A pipeline run: sources (every linked item) → transforms → sinks (the DuckDB mirror),
//! each step timed and recorded; a failing connection does not stop the others.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use finq_analytics::mirror::DuckMirror;
use finq_connectors::plaid::sync::{PlaidItemSource, SyncProgress, SyncSettings};
use finq_core::plugin::{PipelineReport, Sink, Source, StepKind, Transform};
use finq_transforms::{CategoryMapping, UnionTransactions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;
use crate::connections::{Connections, list_items};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps {
    /// Sources only.
    SyncOnly,
    /// Transforms and sinks only (after local changes).
    DeriveOnly,
    All,
}

/// The transforms, in order. A closed list: the compiler sees every one.
enum TransformStep {
    Categories(CategoryMapping),
    Union(UnionTransactions),
}

impl TransformStep {
    fn all() -> Vec<TransformStep> {
        vec![
            TransformStep::Categories(CategoryMapping),
            TransformStep::Union(UnionTransactions),
        ]
    }
}

pub async fn run(
    app: &App,
    steps: Steps,
    only_item: Option<&str>,
    show_progress: bool,
) -> Result<PipelineReport> {
    let mut report = PipelineReport::default();
    let items = list_items(app).await?;
    let mut conns = Connections::new(&app.settings);
    for item in items
        .iter()
        .filter(|i| only_item.is_none_or(|o| o == i.item_id))
    {
        let name = format!("{} (item {})", item.institution, item.item_id);
        let client = match conns.client_for(item).await {
            Ok(c) => c,
            Err(e) => {
                let e: finq_core::plugin::BoxError = e.into();
                report
                    .record(StepKind::Source, name, async { Err(e) })
                    .await;
                continue;
            }
        };
        let bar = if show_progress {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            bar.set_message(format!("syncing {}", item.institution));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        let progress_bar = bar.clone();
        let institution = item.institution.clone();
        let source = PlaidItemSource {
            client,
            vault: app.vault.clone(),
            item_id: item.item_id.clone(),
            institution: item.institution.clone(),
            settings: SyncSettings::default(),
            progress: Arc::new(move |p: SyncProgress| {
                progress_bar.set_message(format!(
                    "syncing {institution}: {} changes, {} pages",
                    p.changes, p.pages
                ));
            }),
        };
        report
            .record(StepKind::Source, source.name(), source.sync(&app.pool))
            .await;
        bar.finish_and_clear();
    }
    conns.stop().await;
    if steps != Steps::SyncOnly {
        for t in TransformStep::all() {
            match t {
                TransformStep::Categories(t) => {
                    report
                        .record(StepKind::Transform, t.name().into(), t.run(&app.pool))
                        .await
                }
                TransformStep::Union(t) => {
                    report
                        .record(StepKind::Transform, t.name().into(), t.run(&app.pool))
                        .await
                }
            };
        }
        let mirror = DuckMirror::new(app.settings.duckdb_path());
        report
            .record(
                StepKind::Sink,
                mirror.name().into(),
                mirror.write(&app.pool),
            )
            .await;
    }
    Ok(report)
}

pub fn print_report(report: &PipelineReport, json: bool) -> Result<ExitCode> {
    if json {
        let value = serde_json::json!({ "ok": report.ok(), "steps": report.steps });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if report.steps.is_empty() {
            println!(
                "Nothing to do: no institution is linked yet. `finq link` links one (or try `finq demo`)."
            );
        }
        for s in &report.steps {
            let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            if s.ok {
                println!(
                    "ok    {:<9} {}  {}  ({} ms)",
                    kind(s.kind),
                    s.name,
                    counts.join(", "),
                    s.millis
                );
            } else {
                println!(
                    "FAIL  {:<9} {}: {}",
                    kind(s.kind),
                    s.name,
                    s.error.as_deref().unwrap_or("failed")
                );
            }
        }
    }
    let failed: Vec<&str> = report.failed().map(|s| s.name.as_str()).collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} step(s) failed: {}",
            failed.len(),
            failed.join("; ")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn kind(k: StepKind) -> &'static str {
    match k {
        StepKind::Source => "sync",
        StepKind::Transform => "transform",
        StepKind::Sink => "mirror",
    }
}

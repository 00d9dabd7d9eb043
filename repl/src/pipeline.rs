//! The binary's side of a pipeline run: the plan built from `finq.toml`, a spinner on
//! stderr for people, and the report printed as text or JSON. The run itself is
//! [`finq_core::pipeline::run`].

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use finq_analytics::{SinkConfig, SinkPlugin};
use finq_connectors::{SourceConfig, SourcePlugin};
use finq_core::pipeline::{self, Context, PipelineReport, Plan, Progress, Stages, StepKind};
use finq_transforms::{TransformConfig, TransformPlugin};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::App;

pub type FinqPlan = Plan<SourcePlugin, TransformPlugin, SinkPlugin>;

/// The plugins `finq.toml` lists, or the defaults.
pub fn plan(app: &App) -> Result<FinqPlan> {
    let s = &app.settings;
    Ok(Plan {
        sources: SourceConfig::from_settings(s)?
            .iter()
            .map(|c| c.build(s, app.vault.clone()))
            .collect(),
        transforms: TransformConfig::from_settings(s)?
            .iter()
            .map(TransformConfig::build)
            .collect(),
        sinks: SinkConfig::from_settings(s)?
            .iter()
            .map(|c| c.build(s))
            .collect(),
    })
}

/// Run the pipeline; `only` limits the sources to one item.
pub async fn run(
    app: &App,
    stages: Stages,
    only: Option<&str>,
    show_progress: bool,
) -> Result<PipelineReport> {
    let plan = plan(app)?;
    Ok(run_with(app, &plan, stages, only, show_progress).await)
}

/// Derive and mirror what a command just changed, so the next query sees it; a failing
/// step is an error of the command.
pub async fn derive(app: &App) -> Result<PipelineReport> {
    let report = run(app, Stages::Derive, None, false).await?;
    if let Some(failed) = report.failed().next() {
        anyhow::bail!(
            "stored, but {} failed: {} (`finq run` tries again)",
            failed.name,
            failed.error.as_deref().unwrap_or("failed")
        );
    }
    Ok(report)
}

/// Run a plan of the caller's (e.g. `finq import`'s: one file as the source).
pub async fn run_plan(
    app: &App,
    plan: &FinqPlan,
    stages: Stages,
    show_progress: bool,
) -> PipelineReport {
    run_with(app, plan, stages, None, show_progress).await
}

async fn run_with(
    app: &App,
    plan: &FinqPlan,
    stages: Stages,
    only: Option<&str>,
    show_progress: bool,
) -> PipelineReport {
    let mut ctx = Context::new(app.pool.clone()).only(only.map(str::to_string));
    if show_progress {
        ctx = ctx.with_progress(Arc::new(Spinners::default()));
    }
    pipeline::run(&ctx, plan, stages).await
}

/// One spinner per running step, on stderr.
#[derive(Default)]
struct Spinners {
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for Spinners {
    fn update(&self, step: &str, message: &str) {
        let mut bars = self.bars.lock().expect("progress lock");
        let bar = bars.entry(step.to_string()).or_insert_with(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(message.to_string());
    }

    fn finish(&self, step: &str) {
        if let Some(bar) = self.bars.lock().expect("progress lock").remove(step) {
            bar.finish_and_clear();
        }
    }
}

/// Say so when a run that syncs found nothing to sync.
pub fn note_no_items(report: &PipelineReport, json: bool) {
    if !json && !report.steps.iter().any(|s| s.kind == StepKind::Source) {
        eprintln!("No institution is linked yet: `finq link` links one (or try `finq demo`).");
    }
}

pub fn print_report(report: &PipelineReport, json: bool) -> Result<ExitCode> {
    if json {
        let value = serde_json::json!({ "ok": report.ok(), "steps": report.steps });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if report.steps.is_empty() {
            println!("No institution is linked yet: `finq link` links one (or try `finq demo`).");
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
        StepKind::Source => "source",
        StepKind::Transform => "transform",
        StepKind::Sink => "mirror",
    }
}

//! `finq demo`: the whole path with zero configuration — database, simulated bank, link,
//! sync, transforms, mirror — then a report. Running it again reuses what is there.

use std::process::ExitCode;

use anyhow::{Context, Result};
use finq_core::config::{PlaidEnv, Settings};

use crate::app::App;
use finq_connectors::plaid::{connect, items};
use finq_core::pipeline::Stages;

use crate::pipeline;

const DEMO_INSTITUTION: &str = "ins_109508";
const DEMO_TAG: &str = "demo";

pub async fn run(transactions: usize, seed: u64) -> Result<ExitCode> {
    anyhow::ensure!(
        (1..=1_000_000).contains(&transactions),
        "--transactions must be between 1 and 1000000"
    );
    let mut settings = Settings::load()?;
    if settings.plaid.env != PlaidEnv::Sim || settings.plaid.base_url.is_some() {
        eprintln!(
            "note: the demo always uses finq's built-in Plaid simulator; PLAID_ENV / PLAID_BASE_URL are ignored"
        );
    }
    settings.plaid.env = PlaidEnv::Sim;
    settings.plaid.base_url = None;

    eprintln!(
        "finq demo  (data directory: {})",
        settings.data_dir.display()
    );
    eprintln!(
        "[1/4] database: {}",
        match &settings.database_url {
            Some(_) => "DATABASE_URL".to_string(),
            None => "finq's private PostgreSQL cluster (started if needed)".to_string(),
        }
    );
    let app = App::open_with(settings).await?;

    // Reuse the demo item if this seed and size were linked before; replace older demo items.
    let linked = items::list(&app.pool).await?;
    let mut demo_item = None;
    let mut stale = Vec::new();
    for item in &linked {
        if item.created_by.as_deref() != Some(DEMO_TAG) {
            continue;
        }
        match &item.sim_spec {
            Some(s)
                if s.seed == seed
                    && s.transactions == transactions
                    && s.institution_id == DEMO_INSTITUTION
                    && demo_item.is_none() =>
            {
                demo_item = Some(item.item_id.clone())
            }
            _ => stale.push(item.item_id.clone()),
        }
    }
    if !stale.is_empty() {
        let mut tx = app.pool.begin().await?;
        for item in &stale {
            items::delete(&mut tx, item).await?;
        }
        tx.commit().await?;
        eprintln!(
            "      removed {} earlier demo connection(s) made with other options",
            stale.len()
        );
    }
    let item_id = match demo_item {
        Some(id) => {
            eprintln!("[2/4] bank: reusing the simulated First Platypus Bank (item {id})");
            id
        }
        None => {
            let sim = connect::SimLink {
                seed,
                transactions,
                tag: DEMO_TAG,
            };
            let linked = connect::link(
                &app.pool,
                &app.vault,
                &app.settings,
                DEMO_INSTITUTION,
                Some(sim),
            )
            .await
            .context("linking the simulated bank failed")?;
            eprintln!(
                "[2/4] bank: linked {} (simulated) — item {}, {} accounts",
                linked.institution_name, linked.item_id, linked.accounts
            );
            linked.item_id
        }
    };

    eprintln!("[3/4] sync → transforms → DuckDB mirror");
    let report = pipeline::run(&app, Stages::All, Some(&item_id), true).await?;
    for s in &report.steps {
        let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        match &s.error {
            None => eprintln!(
                "      ok  {}  {}  ({} ms)",
                s.name,
                counts.join(", "),
                s.millis
            ),
            Some(e) => eprintln!("      FAILED  {}: {e}", s.name),
        }
    }
    if !report.ok() {
        anyhow::bail!("the demo pipeline failed (see above)");
    }

    eprintln!("[4/4] report\n");
    let mirror = finq_analytics::mirror_path(&app.settings)?;
    crate::report::print(&mirror)?;
    println!(
        "\nNext:\n  finq repl                      SQL (end with ;), \\d for tables, ?question for plain English\n  \
         finq sql \"SELECT category, sum(amount) FROM transactions GROUP BY 1 ORDER BY 2\"\n  \
         finq ask \"how much did I spend on groceries last month?\"   (needs Ollama with {})\n  \
         The mirror is a plain DuckDB file: {}",
        app.settings.model,
        mirror.display()
    );
    Ok(ExitCode::SUCCESS)
}

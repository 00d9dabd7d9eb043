//! `finq transfers`: the pairs of transactions finq found moving money between your own
//! accounts (left out of spending and income), and unmarking one that is not.

use std::process::ExitCode;

use anyhow::{Result, bail};
use finq_transforms::transfers;

use crate::app::App;

pub async fn list(app: &App, json: bool) -> Result<ExitCode> {
    let pairs = transfers::list(&app.pool).await?;
    if json {
        let value: Vec<serde_json::Value> = pairs
            .iter()
            .map(|p| {
                serde_json::json!({
                    "out_id": p.out_id, "in_id": p.in_id, "amount": p.amount.to_string(),
                    "out_date": p.out_date, "in_date": p.in_date,
                    "from_account": p.from_account, "to_account": p.to_account,
                    "description": p.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if pairs.is_empty() {
        println!("No transfers between your accounts found.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["date", "amount", "from", "to", "description", "out id"]);
    for p in &pairs {
        table.add_row([
            p.out_date.to_string(),
            format!("{:.2}", p.amount),
            p.from_account.clone().unwrap_or_default(),
            p.to_account.clone().unwrap_or_default(),
            p.description.clone(),
            p.out_id.clone(),
        ]);
    }
    println!("{table}");
    println!(
        "({} transfers, left out of spending and income; `finq transfers unmark ID` if one is not)",
        pairs.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn unmark(app: &App, id: &str) -> Result<ExitCode> {
    let Some((out_id, in_id)) = transfers::unmark(&app.pool, id).await? else {
        bail!("{id} is not part of a transfer; `finq transfers` lists them");
    };
    crate::pipeline::derive(app).await?;
    println!(
        "{out_id} and {in_id} are no transfer: they count as spending and income again, and finq will not pair them again"
    );
    Ok(ExitCode::SUCCESS)
}

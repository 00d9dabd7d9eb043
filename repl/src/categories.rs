//! Categories the person controls: `finq categories` (list, add, rename, merge, delete),
//! `finq categorize` (the person's own edit, on ids or on a query's result) and
//! `finq rules`. Each change is derived and mirrored before the command returns.

use std::process::ExitCode;

use anyhow::{Result, bail};
use finq_analytics::query::{QueryEngine, Trust};
use finq_transforms::categories;
use finq_transforms::rules::{self, NewRule};

use crate::app::App;

pub async fn list(app: &App, json: bool) -> Result<ExitCode> {
    let rows = categories::list(&app.pool).await?;
    if json {
        let value: Vec<serde_json::Value> = rows
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "parent": c.parent, "is_income": c.is_income,
                    "transactions": c.transactions,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["category", "parent", "income", "transactions"]);
    for c in rows {
        table.add_row([
            c.name,
            c.parent.unwrap_or_default(),
            if c.is_income { "yes" } else { "" }.to_string(),
            c.transactions.to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub async fn add(app: &App, name: &str, parent: Option<&str>, income: bool) -> Result<ExitCode> {
    categories::add(&app.pool, name, parent, income).await?;
    crate::pipeline::derive(app).await?;
    println!("category {:?} added", name.trim());
    Ok(ExitCode::SUCCESS)
}

pub async fn rename(app: &App, old: &str, new: &str) -> Result<ExitCode> {
    let old = categories::rename(&app.pool, old, new).await?;
    crate::pipeline::derive(app).await?;
    println!("category {old:?} is now {:?}", new.trim());
    Ok(ExitCode::SUCCESS)
}

pub async fn merge(app: &App, from: &str, into: &str) -> Result<ExitCode> {
    let (from, into) = categories::merge(&app.pool, from, into).await?;
    crate::pipeline::derive(app).await?;
    println!("{from:?} merged into {into:?} (its transactions, edits, mappings and rules)");
    Ok(ExitCode::SUCCESS)
}

/// The ids `query` returns (its first column) from the mirror.
fn ids_of_query(app: &App, sql: &str) -> Result<Vec<String>> {
    let mut engine = QueryEngine::open(&finq_analytics::mirror_path(&app.settings)?, Trust::User)?;
    let result = engine.run(sql)?;
    let ids: Vec<String> = result
        .rows()
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    if ids.is_empty() {
        bail!("the query returned no transactions; nothing was changed");
    }
    Ok(ids)
}

pub async fn categorize(
    app: &App,
    mut args: Vec<String>,
    query: Option<String>,
    undo: bool,
) -> Result<ExitCode> {
    let category = if undo {
        None
    } else {
        match args.pop() {
            Some(category) => Some(category),
            None => bail!("name the category last, e.g. `finq categorize plaid:abc Groceries`"),
        }
    };
    let ids = match query {
        Some(sql) if args.is_empty() => ids_of_query(app, &sql)?,
        Some(_) => bail!("give transaction ids or --query, not both"),
        None if args.is_empty() && undo => bail!(
            "name the transactions whose edit to take back (ids from the id column of transactions, or --query \"SELECT id FROM transactions WHERE …\")"
        ),
        None if args.is_empty() => bail!(
            "name the transactions (ids from the id column of transactions, or --query \"SELECT id FROM transactions WHERE …\") and then the category"
        ),
        None => args,
    };
    let category = match category {
        Some(name) => Some(categories::get(&app.pool, &name).await?),
        None => None,
    };
    let n = categories::categorize(&app.pool, &ids, category.as_ref().map(|c| c.0)).await?;
    crate::pipeline::derive(app).await?;
    let plural = |one: &'static str, many: &'static str| if n == 1 { one } else { many };
    match category {
        Some((_, name)) => println!(
            "{n} transaction{} now in {name:?} (your edit: rules and Plaid's mapping no longer decide {})",
            plural("", "s"),
            plural("it", "them")
        ),
        None => println!(
            "{n} transaction{} back to the category rules and Plaid's mapping give {}",
            plural("", "s"),
            plural("it", "them")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub struct RuleArgs {
    pub category: String,
    pub merchant: Option<String>,
    pub description: Option<String>,
    pub regex: bool,
    pub min: Option<rust_decimal::Decimal>,
    pub max: Option<rust_decimal::Decimal>,
    pub account: Option<String>,
    pub priority: i32,
    pub apply: bool,
}

pub async fn add_rule(app: &App, args: RuleArgs) -> Result<ExitCode> {
    let (category_id, category) = categories::get(&app.pool, &args.category).await?;
    let account_id = match &args.account {
        Some(name) => Some(rules::resolve_account(&app.pool, name).await?),
        None => None,
    };
    let id = rules::add(
        &app.pool,
        &NewRule {
            category_id,
            priority: args.priority,
            merchant: args.merchant,
            description: args.description,
            regex: args.regex,
            min_amount: args.min.map(|m| m.abs()),
            max_amount: args.max.map(|m| m.abs()),
            account_id,
        },
    )
    .await?;
    println!("rule {id} added: into {category:?}");
    if args.apply {
        return apply(app).await;
    }
    let matches = rules::count_matches(&app.pool, id).await?;
    if matches > 0 {
        println!(
            "It matches {matches} transaction{} you already have; `finq rules apply` applies the rules to them (new transactions get them as they arrive).",
            if matches == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn apply(app: &App) -> Result<ExitCode> {
    let changed = rules::apply_all(&app.pool).await?;
    crate::pipeline::derive(app).await?;
    println!("rules applied to every transaction: {changed} changed (your own edits still win)");
    Ok(ExitCode::SUCCESS)
}

pub async fn list_rules(app: &App, json: bool) -> Result<ExitCode> {
    let rows = rules::list(&app.pool).await?;
    if json {
        let value: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "category": r.category, "priority": r.priority,
                    "merchant": r.merchant, "description": r.description, "regex": r.regex,
                    "min_amount": r.min_amount.map(|d| d.to_string()),
                    "max_amount": r.max_amount.map(|d| d.to_string()),
                    "account": r.account, "transactions": r.hits,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "No rules yet. Example: finq rules add Coffee --merchant starbucks (`finq rules add --help`)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["rule", "priority", "when", "category", "transactions"]);
    for r in rows {
        table.add_row([
            r.id.to_string(),
            r.priority.to_string(),
            r.condition(),
            r.category.clone(),
            r.hits.to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_rule(app: &App, id: i64) -> Result<ExitCode> {
    rules::delete(&app.pool, id).await?;
    crate::pipeline::derive(app).await?;
    println!("rule {id} deleted; the transactions it categorised follow Plaid's mapping again");
    Ok(ExitCode::SUCCESS)
}

//! Money Plaid does not see: `finq import` (a bank or card export, through the pipeline),
//! `finq add` (one transaction by hand), `finq accounts` (manual accounts and their
//! balances). Each change is derived and mirrored before the command returns, so the next
//! query sees it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use finq_connectors::import::{FileFormat, ImportSource, parse_amount, parse_date};
use finq_connectors::manual::{self, AccountType, ManualAccount, NewTransaction};
use finq_connectors::{SourcePlugin, manual::ManualError};
use finq_core::pipeline::{Plan, Stages};
use rust_decimal::Decimal;

use crate::app::App;

/// `finq import FILE --account NAME`.
pub struct ImportArgs {
    pub file: PathBuf,
    pub account: String,
    pub format: Option<FileFormat>,
    pub columns: Option<String>,
    pub date_format: Option<String>,
    pub json: bool,
}

pub async fn import(app: &App, args: ImportArgs) -> Result<ExitCode> {
    // The account first: a typo is refused before the file is even read.
    manual::find(&mut *app.pool.acquire().await?, &args.account).await?;
    let configured = crate::pipeline::plan(app)?;
    let plan = Plan {
        sources: vec![SourcePlugin::Import(ImportSource {
            path: args.file,
            account: args.account,
            format: args.format,
            columns: args.columns,
            date_format: args.date_format,
        })],
        transforms: configured.transforms,
        sinks: configured.sinks,
    };
    let report = crate::pipeline::run_plan(app, &plan, Stages::All, !args.json).await;
    crate::pipeline::print_report(&report, args.json)
}

/// A date as a person types it (`2026-11-20`, `11/20/2026`, `today`, `yesterday`).
pub fn parse_day(text: &str) -> Result<NaiveDate, String> {
    let today = chrono::Local::now().date_naive();
    match text.trim().to_ascii_lowercase().as_str() {
        "today" => Ok(today),
        "yesterday" => Ok(today - chrono::Days::new(1)),
        _ => parse_date(text, None),
    }
}

/// An amount as a person types it (`-12.50`, `$1,200`, `(12.50)`).
pub fn parse_money(text: &str) -> Result<Decimal, String> {
    let amount = parse_amount(text)?;
    if amount.scale() > 2 && amount.round_dp(2) != amount {
        return Err(format!("{text:?} has more than two decimal places"));
    }
    Ok(amount)
}

/// `finq add`.
pub struct AddArgs {
    pub amount: Decimal,
    pub description: String,
    pub date: Option<NaiveDate>,
    pub account: String,
    pub category: Option<String>,
    pub notes: Option<String>,
}

pub async fn add(app: &App, args: AddArgs) -> Result<ExitCode> {
    let account = if args.account.eq_ignore_ascii_case("cash") {
        // Every wallet is a cash account; it is made on first use.
        manual::find_or_create(&app.pool, &args.account, AccountType::Cash).await?
    } else {
        manual::find(&mut *app.pool.acquire().await?, &args.account).await?
    };
    let category = match &args.category {
        None => None,
        Some(name) => match finq_transforms::categories::find(&app.pool, name).await? {
            Some(c) => Some(c),
            None => bail!(
                "there is no category {name:?}; there are: {}",
                finq_transforms::categories::names(&app.pool)
                    .await?
                    .join(", ")
            ),
        },
    };
    let date = args
        .date
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let id = manual::add_transaction(
        &app.pool,
        &account,
        &NewTransaction {
            date,
            amount: args.amount,
            description: args.description.clone(),
            category_id: category.as_ref().map(|c| c.0),
            notes: args.notes,
        },
    )
    .await?;
    crate::pipeline::derive(app).await?;
    println!(
        "added manual:{id}: {date} {} {:.2} {}{}",
        account.name,
        args.amount,
        args.description.trim(),
        category.map(|c| format!(" ({})", c.1)).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn list(app: &App, json: bool) -> Result<ExitCode> {
    let accounts = manual::list(&app.pool).await?;
    if json {
        let value: Vec<serde_json::Value> = accounts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "account_id": a.mirror_id(),
                    "name": a.name,
                    "type": a.kind,
                    "currency": a.currency,
                    "balance": a.balance.map(|b| b.to_string()),
                    "balance_as_of": a.balance_as_of,
                    "transactions": a.transactions,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if accounts.is_empty() {
        println!(
            "No manual accounts yet: `finq accounts add NAME --type TYPE` makes one (a card to import, cash, a house, a loan)."
        );
    } else {
        print!("{}", render(&accounts));
    }
    println!("(linked banks' accounts: `finq items`)");
    Ok(ExitCode::SUCCESS)
}

fn render(accounts: &[ManualAccount]) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["name", "type", "balance", "as of", "transactions"]);
    for a in accounts {
        table.add_row([
            a.name.clone(),
            a.kind.clone(),
            a.balance
                .map(|b| format!("{b:.2} {}", a.currency))
                .unwrap_or_else(|| "-".into()),
            a.balance_as_of
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            a.transactions.to_string(),
        ]);
    }
    format!("{table}\n")
}

pub async fn create(
    app: &App,
    name: &str,
    kind: AccountType,
    currency: &str,
    balance: Option<(Decimal, NaiveDate)>,
) -> Result<ExitCode> {
    let account = manual::create(&app.pool, name, kind, currency).await?;
    if let Some((amount, as_of)) = balance {
        manual::set_balance(&app.pool, &account, as_of, amount).await?;
    }
    crate::pipeline::derive(app).await?;
    println!(
        "account {:?} ({}) created{}",
        account.name,
        account.kind,
        balance
            .map(|(b, d)| format!(" with a balance of {b:.2} {} on {d}", account.currency))
            .unwrap_or_default()
    );
    if kind.is_liability() {
        println!("(a {kind} account's balance is the amount owed, as a positive number)");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn set_balance(
    app: &App,
    name: &str,
    amount: Decimal,
    as_of: NaiveDate,
) -> Result<ExitCode> {
    let account = find_manual(app, name).await?;
    manual::set_balance(&app.pool, &account, as_of, amount)
        .await
        .context("cannot store the balance")?;
    crate::pipeline::derive(app).await?;
    println!(
        "{}: balance {amount:.2} {} on {as_of}",
        account.name, account.currency
    );
    Ok(ExitCode::SUCCESS)
}

/// The manual account called `name`, or an error that says where other accounts live.
async fn find_manual(app: &App, name: &str) -> Result<ManualAccount> {
    manual::find(&mut *app.pool.acquire().await?, name)
        .await
        .map_err(|e| match e {
            ManualError::NoAccount { .. } => anyhow::anyhow!(
                "{e} (the accounts of linked banks are kept by the bank: `finq items` lists them)"
            ),
            e => e.into(),
        })
}

pub async fn rename(app: &App, name: &str, new_name: &str) -> Result<ExitCode> {
    let account = find_manual(app, name).await?;
    let renamed = manual::rename(&app.pool, &account, new_name).await?;
    crate::pipeline::derive(app).await?;
    println!(
        "account {:?} is now {:?} ({} transactions)",
        account.name, renamed.name, renamed.transactions
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(app: &App, name: &str, yes: bool) -> Result<ExitCode> {
    let account = find_manual(app, name).await?;
    if account.transactions > 0 && !yes {
        anyhow::bail!(
            "account {:?} has {} transactions, which would be deleted with it; run `finq accounts delete {:?} --yes` to delete them all",
            account.name,
            account.transactions,
            account.name
        );
    }
    manual::delete(&app.pool, &account).await?;
    crate::pipeline::derive(app).await?;
    println!(
        "account {:?} deleted, with its balances and {} transactions",
        account.name, account.transactions
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_money_as_typed() {
        let today = chrono::Local::now().date_naive();
        assert_eq!(parse_day("today"), Ok(today));
        assert_eq!(parse_day("Yesterday"), Ok(today - chrono::Days::new(1)));
        assert_eq!(
            parse_day("11/20/2026"),
            Ok(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap())
        );
        assert!(parse_day("someday").is_err());
        assert_eq!(parse_money("-$1,200.5"), Ok(Decimal::new(-120050, 2)));
        assert_eq!(parse_money("(12.50)"), Ok(Decimal::new(-1250, 2)));
        assert!(parse_money("1.234").unwrap_err().contains("two decimal"));
    }
}

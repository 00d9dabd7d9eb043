//! The printed report: accounts and balances, and spending by category for recent months.
//! Every number comes from the DuckDB mirror.

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{Datelike, Months, NaiveDate};
use finq_analytics::export::{self, ExportFormat};
use finq_analytics::query::{self, OutputFormat, QueryEngine, Trust};

pub fn print(mirror: &Path) -> Result<()> {
    let mut engine = QueryEngine::open(mirror, Trust::User)?;
    let accounts = engine.run(
        "SELECT institution, name || coalesce(' ••' || mask, '') AS account, subtype AS type,
                current_balance AS balance, available_balance AS available, currency
         FROM accounts ORDER BY institution, type, account",
    )?;
    println!(
        "Accounts\n{}\n",
        query::render(&accounts, OutputFormat::Table)
    );

    let today = chrono::Local::now().date_naive();
    let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("valid date");
    let months: Vec<NaiveDate> = (0..3).rev().map(|i| this_month - Months::new(i)).collect();
    let columns: Vec<String> = months
        .iter()
        .map(|m| {
            format!(
                "coalesce(sum(-amount) FILTER (WHERE month = DATE '{}'), 0) AS \"{}{}\"",
                m,
                m.format("%b %Y"),
                if *m == this_month { " (so far)" } else { "" }
            )
        })
        .collect();
    let sql = format!(
        "WITH spending AS (
             SELECT coalesce(category, 'Uncategorized') AS category, date_trunc('month', date) AS month, amount
             FROM transactions
             WHERE amount < 0 AND date >= DATE '{first}' AND NOT is_transfer
               AND coalesce(category, '') NOT IN ('Transfers In', 'Transfers Out', 'Loans', 'Income')
         )
         SELECT CASE WHEN grouping(category) = 1 THEN 'Total' ELSE category END AS category, {cols}
         FROM spending GROUP BY ROLLUP (category)
         ORDER BY grouping(category), sum(-amount) DESC",
        first = months[0],
        cols = columns.join(", ")
    );
    let spending = engine.run(&sql)?;
    println!(
        "Spending by category (money out, pending included)\n{}",
        query::render(&spending, OutputFormat::Table)
    );
    Ok(())
}

/// `finq recurring`: subscriptions and bills from the mirror's `recurring` view, the
/// costliest first, with what needs a look (a price change, a payment that did not come).
pub fn recurring(mirror: &Path, format: OutputFormat) -> Result<()> {
    let mut engine = QueryEngine::open(mirror, Trust::User)?;
    let found = engine.run(
        "SELECT merchant, cadence, typical_amount AS amount, monthly_cost, last_date AS last_paid,
                next_expected,
                CASE WHEN missed THEN 'missed: expected ' || strftime(next_expected, '%Y-%m-%d')
                     WHEN price_changed THEN 'price changed: ' || previous_amount || ' → ' || last_amount
                     ELSE '' END AS attention,
                account_name AS account, payments
         FROM recurring ORDER BY monthly_cost DESC, merchant",
    )?;
    if format != OutputFormat::Table {
        println!("{}", query::render(&found, format).trim_end());
        return Ok(());
    }
    if found.row_count() == 0 {
        println!(
            "No recurring payments found (at least three payments at a regular cadence are needed)."
        );
        return Ok(());
    }
    println!("{}", query::render(&found, OutputFormat::Table).trim_end());
    let total = engine.run("SELECT sum(monthly_cost), count(*) FROM recurring")?;
    let row = &total.rows()[0];
    println!(
        "{} recurring payments, {} a month",
        row[1].as_deref().unwrap_or("0"),
        row[0].as_deref().unwrap_or("0")
    );
    Ok(())
}

/// Write a file only its owner can read (exports hold every transaction).
fn owner_only(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `finq export`.
pub fn export(
    mirror: &Path,
    format: ExportFormat,
    output: Option<&Path>,
    since: Option<NaiveDate>,
    opening_balances: bool,
) -> Result<()> {
    use std::io::Write;
    let mut engine = QueryEngine::open(mirror, Trust::User)?;
    if opening_balances && matches!(format, ExportFormat::Csv | ExportFormat::Parquet) {
        bail!("--opening-balances is for the ledger formats (hledger, beancount)");
    }
    let text = match format {
        ExportFormat::Csv | ExportFormat::Parquet => {
            let Some(path) = output else {
                if format == ExportFormat::Parquet {
                    bail!("Parquet is a binary format: name the file with --output FILE");
                }
                let filter = since
                    .map(|d| format!("WHERE date >= DATE '{d}'"))
                    .unwrap_or_default();
                let all = engine.run(&format!(
                    "SELECT * FROM transactions {filter} ORDER BY date, id"
                ))?;
                println!("{}", query::render(&all, OutputFormat::Csv).trim_end());
                return Ok(());
            };
            drop(owner_only(path)?);
            export::copy_to(&mut engine, format, path, since)?;
            eprintln!("wrote {}", path.display());
            return Ok(());
        }
        ExportFormat::Hledger | ExportFormat::Beancount => {
            let rows = export::ledger_rows(&mut engine, since)?;
            let openings = if opening_balances {
                export::openings(&mut engine, since)?
            } else {
                Vec::new()
            };
            if format == ExportFormat::Hledger {
                export::hledger(&rows, &openings)
            } else {
                export::beancount(&rows, &openings)
            }
        }
    };
    match output {
        Some(path) => {
            owner_only(path)?
                .write_all(text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

//! Reports: the demo's (accounts, spending by category), `finq report` (spending, income,
//! cash flow, net worth, recurring; with bars where a picture reads faster), exports.
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

    let spending = engine.run(&by_category_sql(Flow::Spending, 3))?;
    println!(
        "Spending by category (money out, pending included)\n{}",
        query::render(&spending, OutputFormat::Table)
    );
    Ok(())
}

/// Money out or in, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Spending,
    Income,
}

/// The first day of each of the last `months` months, this one last.
fn months_back(months: u32) -> Vec<NaiveDate> {
    let today = chrono::Local::now().date_naive();
    let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("valid date");
    (0..months.max(1))
        .rev()
        .map(|i| this_month - Months::new(i))
        .collect()
}

/// Categories by month (a column a month) and their total, the largest first, with a
/// Total row; transfers between the person's accounts left out.
fn by_category_sql(flow: Flow, months: u32) -> String {
    let months = months_back(months);
    let this_month = *months.last().expect("a month");
    let columns: Vec<String> = months
        .iter()
        .map(|m| {
            format!(
                "coalesce(sum(value) FILTER (WHERE month = DATE '{}'), 0) AS \"{}{}\"",
                m,
                m.format("%b %Y"),
                if *m == this_month { " (so far)" } else { "" }
            )
        })
        .collect();
    let filter = match flow {
        Flow::Spending => {
            "amount < 0 AND coalesce(category, '') NOT IN ('Transfers In', 'Transfers Out', 'Loans', 'Income')"
        }
        Flow::Income => {
            "amount > 0 AND coalesce(category, '') NOT IN ('Transfers In', 'Transfers Out')"
        }
    };
    format!(
        "WITH flows AS (
             SELECT coalesce(category, 'Uncategorized') AS category, date_trunc('month', date) AS month,
                    abs(amount) AS value
             FROM transactions
             WHERE {filter} AND date >= DATE '{first}' AND NOT is_transfer
         )
         SELECT CASE WHEN grouping(category) = 1 THEN 'Total' ELSE category END AS category, {cols},
                sum(value) AS total
         FROM flows GROUP BY ROLLUP (category)
         ORDER BY grouping(category), sum(value) DESC, category",
        first = months[0],
        cols = columns.join(", ")
    )
}

/// What `finq report` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportKind {
    /// Money out by category and month.
    Spending,
    /// Money in by category and month.
    Income,
    /// Money in, out and the difference, by month.
    Cashflow,
    /// Assets, liabilities and net worth at each month's end.
    Networth,
    /// Subscriptions and bills.
    Recurring,
}

/// (first column, a number column) of each row, for a chart.
fn series(result: &query::QueryResult, column: usize) -> Vec<(String, f64)> {
    result
        .rows()
        .into_iter()
        .filter_map(|r| {
            let label = r.first().cloned().flatten()?;
            let value = r.get(column).cloned().flatten()?.parse().ok()?;
            Some((label, value))
        })
        .collect()
}

/// `finq report`.
pub fn report(mirror: &Path, kind: ReportKind, months: u32, format: OutputFormat) -> Result<()> {
    if kind == ReportKind::Recurring {
        return recurring(mirror, format);
    }
    let mut engine = QueryEngine::open(mirror, Trust::User)?;
    let first = months_back(months)[0];
    let (title, sql, chart_column) = match kind {
        ReportKind::Spending | ReportKind::Income => {
            let flow = if kind == ReportKind::Spending {
                Flow::Spending
            } else {
                Flow::Income
            };
            let title = if flow == Flow::Spending {
                "Spending by category (money out; transfers between your accounts left out)"
            } else {
                "Income by category (money in; transfers between your accounts left out)"
            };
            let sql = by_category_sql(flow, months);
            (title, sql, months.max(1) as usize + 1)
        }
        ReportKind::Cashflow => (
            "Cash flow by month (transfers between your accounts left out)",
            format!(
                "SELECT strftime(date_trunc('month', date), '%Y-%m') AS month,
                        CAST(coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS DECIMAL(18, 2)) AS money_in,
                        CAST(coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS DECIMAL(18, 2)) AS money_out,
                        CAST(sum(amount) AS DECIMAL(18, 2)) AS net
                 FROM transactions
                 WHERE date >= DATE '{first}' AND NOT is_transfer
                 GROUP BY 1 ORDER BY 1"
            ),
            3,
        ),
        ReportKind::Networth => (
            "Net worth at each month's end (today for this month)",
            format!(
                "SELECT strftime(date, '%Y-%m') AS month, assets, liabilities, net_worth,
                        CASE WHEN agrees THEN '' ELSE 'balances and transactions disagree' END AS note
                 FROM net_worth
                 WHERE date >= DATE '{first}'
                   AND (date = last_day(date) OR date = current_date)
                 ORDER BY date"
            ),
            3,
        ),
        ReportKind::Recurring => unreachable!("handled above"),
    };
    let result = engine.run(&sql)?;
    if format != OutputFormat::Table {
        println!("{}", query::render(&result, format).trim_end());
        return Ok(());
    }
    println!(
        "{title}\n{}",
        query::render(&result, OutputFormat::Table).trim_end()
    );
    let mut points = series(&result, chart_column);
    points.retain(|(label, _)| label != "Total");
    if !points.is_empty() {
        println!(
            "\n{}",
            crate::chart::bars(&points, crate::repl::terminal_width().unwrap_or(80)).trim_end()
        );
    }
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

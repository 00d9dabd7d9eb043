//! The printed report: accounts and balances, and spending by category for recent months.
//! Every number comes from the DuckDB mirror.

use std::path::Path;

use anyhow::Result;
use chrono::{Datelike, Months, NaiveDate};
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
             WHERE amount < 0 AND date >= DATE '{first}'
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

//! What the model is told besides the question: the mirror's schema with its comments, the
//! person's own words for things (account, category and merchant names, so a filter is
//! spelled as the data spells it), and summaries computed in DuckDB (balances, spending by
//! category over 30 days, money in and out by month over 6 months, the latest
//! transactions). Every number in the summaries is also a [`Fact`] an answer may quote.
//!
//! The whole must fit the model's window: [`Context::fit`] shortens the latest
//! transactions, then the merchant list, until the rendered prompt is within budget.

use duckdb::arrow::datatypes::DataType;
use rust_decimal::Decimal;

use super::verify::Fact;
use crate::query::{QueryEngine, QueryError, QueryResult, TableInfo};

/// A table of figures computed for the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub title: &'static str,
    pub columns: Vec<String>,
    /// Which columns hold numbers.
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Context {
    pub tables: Vec<TableInfo>,
    pub accounts: Vec<String>,
    pub categories: Vec<String>,
    pub merchants: Vec<String>,
    pub summaries: Vec<Summary>,
}

/// Categories that move money between the person's own accounts or repay debt: not
/// spending or income.
pub const NOT_SPENDING: &str = "('Transfers In', 'Transfers Out', 'Loans')";

const RECENT: usize = 100;

fn summaries_sql() -> [(&'static str, String); 4] {
    [
        (
            "Balances",
            "SELECT name AS account, type, current_balance, available_balance, currency
             FROM accounts ORDER BY type, name"
                .to_string(),
        ),
        (
            "Spending by category, last 30 days",
            format!(
                "SELECT category, round(-sum(amount), 2) AS spent, count(*) AS transactions
                 FROM transactions
                 WHERE amount < 0 AND date > current_date - INTERVAL 30 DAY
                   AND NOT is_transfer AND category NOT IN {NOT_SPENDING}
                 GROUP BY category ORDER BY spent DESC"
            ),
        ),
        (
            "Money in and out by month, last 6 months",
            format!(
                "SELECT strftime(date_trunc('month', date), '%Y-%m') AS month,
                        round(coalesce(sum(amount) FILTER (WHERE amount > 0), 0), 2) AS money_in,
                        round(coalesce(-sum(amount) FILTER (WHERE amount < 0), 0), 2) AS money_out
                 FROM transactions
                 WHERE date >= date_trunc('month', current_date) - INTERVAL 5 MONTH
                   AND NOT is_transfer AND category NOT IN {NOT_SPENDING}
                 GROUP BY 1 ORDER BY 1"
            ),
        ),
        (
            "Latest transactions",
            format!(
                "SELECT date, coalesce(merchant, description) AS what, amount, category,
                        account_name AS account
                 FROM transactions ORDER BY date DESC, id LIMIT {RECENT}"
            ),
        ),
    ]
}

fn strings(result: &QueryResult) -> Vec<String> {
    result
        .rows()
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
}

/// Every number of a result as a fact: each cell (named by the row's first text cell, or
/// its number, and the column), and the whole-column figures: the number of rows, and the
/// total and average of each numeric column.
pub fn result_facts(result: &QueryResult) -> Vec<Fact> {
    let numeric: Vec<bool> = result.types.iter().map(DataType::is_numeric).collect();
    let rows = result.rows();
    let mut facts = facts_of_rows(&result.columns, &numeric, &rows, "");
    facts.push(Fact::new(
        Decimal::from(rows.len() as u64),
        "the number of rows",
    ));
    if rows.len() < 2 {
        return facts;
    }
    for (i, column) in result
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| numeric[*i])
    {
        let values: Vec<Decimal> = rows
            .iter()
            .filter_map(|r| r[i].as_deref().and_then(parse_number))
            .collect();
        if values.is_empty() {
            continue;
        }
        let total: Decimal = values.iter().sum();
        facts.push(Fact::new(total, format!("the total of {column}")));
        facts.push(Fact::new(
            total / Decimal::from(values.len() as u64),
            format!("the average of {column}"),
        ));
    }
    facts
}

/// The cells' facts (see [`result_facts`]), each source prefixed with `label`.
fn facts_of_rows(
    columns: &[String],
    numeric: &[bool],
    rows: &[Vec<Option<String>>],
    label: &str,
) -> Vec<Fact> {
    let mut facts = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let name = row
            .iter()
            .zip(numeric)
            .find(|(cell, num)| !**num && cell.is_some())
            .and_then(|(cell, _)| cell.clone())
            .unwrap_or_else(|| format!("row {}", n + 1));
        for ((cell, column), num) in row.iter().zip(columns).zip(numeric) {
            if !num {
                continue;
            }
            if let Some(value) = cell.as_deref().and_then(parse_number) {
                facts.push(Fact::new(value, format!("{label}{name}, {column}")));
            }
        }
    }
    facts
}

/// A cell's text as a number (DuckDB shows floats in full, or with an exponent).
pub fn parse_number(text: &str) -> Option<Decimal> {
    use std::str::FromStr;
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

impl Context {
    /// Gather the context from the mirror.
    pub fn gather(engine: &mut QueryEngine) -> Result<Context, QueryError> {
        let tables = engine.describe()?;
        let accounts = strings(&engine.run("SELECT name FROM accounts ORDER BY 1")?);
        let categories = strings(&engine.run("SELECT name FROM categories ORDER BY name")?);
        let merchants = strings(&engine.run(
            "SELECT merchant FROM transactions WHERE merchant IS NOT NULL
             GROUP BY merchant ORDER BY count(*) DESC, merchant LIMIT 40",
        )?);
        let mut summaries = Vec::new();
        for (title, sql) in summaries_sql() {
            let result = engine.run(&sql)?;
            summaries.push(Summary {
                title,
                columns: result.columns.clone(),
                numeric: result.types.iter().map(DataType::is_numeric).collect(),
                rows: result
                    .rows()
                    .into_iter()
                    .map(|r| r.into_iter().map(|c| c.unwrap_or_default()).collect())
                    .collect(),
            });
        }
        Ok(Context {
            tables,
            accounts,
            categories,
            merchants,
            summaries,
        })
    }

    /// The numbers the model is shown, as facts an answer may quote.
    pub fn facts(&self) -> Vec<Fact> {
        let mut facts = Vec::new();
        for s in &self.summaries {
            let rows: Vec<Vec<Option<String>>> = s
                .rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|c| Some(c.clone()).filter(|c| !c.is_empty()))
                        .collect()
                })
                .collect();
            facts.extend(facts_of_rows(
                &s.columns,
                &s.numeric,
                &rows,
                &format!("{}: ", s.title),
            ));
        }
        facts
    }

    /// Shorten the context until `render` of it is at most `budget` characters: the latest
    /// transactions first (down to 10), then the merchants (down to 10).
    pub fn fit<E>(
        &mut self,
        budget: usize,
        render: impl Fn(&Context) -> Result<String, E>,
    ) -> Result<String, E> {
        loop {
            let text = render(self)?;
            if text.len() <= budget {
                return Ok(text);
            }
            let recent = self
                .summaries
                .iter_mut()
                .find(|s| s.title == "Latest transactions");
            if let Some(recent) = recent.filter(|r| r.rows.len() > 10) {
                let keep = recent.rows.len() / 2;
                recent.rows.truncate(keep.max(10));
                continue;
            }
            if self.merchants.len() > 10 {
                self.merchants.truncate(10);
                continue;
            }
            return Ok(text);
        }
    }
}

//! Exports of the mirror's transactions: CSV and Parquet (written by DuckDB), and the
//! double-entry journals of hledger and beancount.
//!
//! In a journal each finq transaction is one entry of two postings: the bank side, with the
//! statement-signed amount, to `assets:ACCOUNT` (or `liabilities:ACCOUNT` for credit and
//! loan accounts), and the other side to the category (`expenses:CATEGORY`, or
//! `income:CATEGORY` for income categories; `equity:transfers` for either side of a
//! transfer between the person's own accounts, so the two sides cancel there). Pending
//! transactions are flagged `!`, posted ones `*`. Opening balances only when asked, so by
//! default the journal holds exactly finq's transactions.

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::query::{QueryEngine, QueryError};

/// What `finq export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Parquet,
    Hledger,
    Beancount,
}

/// One transaction as a journal needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub id: String,
    pub date: NaiveDate,
    pub description: String,
    pub merchant: Option<String>,
    /// Statement sign: money out negative.
    pub amount: Decimal,
    pub currency: String,
    pub account: String,
    /// A credit or loan account.
    pub liability: bool,
    pub category: String,
    pub income: bool,
    pub pending: bool,
    pub transfer: bool,
}

/// An account's balance before the first exported transaction (statement sign: what is
/// owed is negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub date: NaiveDate,
    pub account: String,
    pub liability: bool,
    pub currency: String,
    pub amount: Decimal,
}

fn since_filter(since: Option<NaiveDate>) -> String {
    since
        .map(|d| format!("t.date >= DATE '{d}'"))
        .unwrap_or_else(|| "true".into())
}

fn text(cell: &Option<String>) -> String {
    cell.clone().unwrap_or_default()
}

fn parse<T: FromStr>(cell: &Option<String>, what: &str) -> Result<T, QueryError> {
    cell.as_deref()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| QueryError::Export(format!("unexpected {what} {cell:?} in the mirror")))
}

/// The transactions from `since` on, in date order.
pub fn ledger_rows(
    engine: &mut QueryEngine,
    since: Option<NaiveDate>,
) -> Result<Vec<LedgerRow>, QueryError> {
    let result = engine.run(&format!(
        "SELECT t.id, t.date, t.description, t.merchant, t.amount, coalesce(t.currency, 'USD'),
                coalesce(t.account_name, 'Unknown'), coalesce(a.type IN ('credit', 'loan'), false),
                coalesce(t.category, 'Uncategorized'), coalesce(c.is_income, false), t.pending,
                t.is_transfer
         FROM transactions t
         LEFT JOIN accounts a USING (account_id)
         LEFT JOIN categories c ON c.name = t.category
         WHERE {}
         ORDER BY t.date, t.id",
        since_filter(since)
    ))?;
    result
        .rows()
        .iter()
        .map(|r| {
            Ok(LedgerRow {
                id: text(&r[0]),
                date: parse(&r[1], "date")?,
                description: text(&r[2]),
                merchant: r[3].clone(),
                amount: parse(&r[4], "amount")?,
                currency: text(&r[5]),
                account: text(&r[6]),
                liability: parse(&r[7], "flag")?,
                category: text(&r[8]),
                income: parse(&r[9], "flag")?,
                pending: parse(&r[10], "flag")?,
                transfer: parse(&r[11], "flag")?,
            })
        })
        .collect()
}

/// Each account's balance just before its first exported transaction, from the balance
/// history (accounts that never reported a balance have none).
pub fn openings(
    engine: &mut QueryEngine,
    since: Option<NaiveDate>,
) -> Result<Vec<Opening>, QueryError> {
    let result = engine.run(&format!(
        "WITH w AS (SELECT account_id, min(date) AS d0 FROM transactions t
                    WHERE {} AND account_id IS NOT NULL GROUP BY 1),
              f AS (SELECT account_id, date, sum(amount) AS flow FROM transactions
                    WHERE NOT pending GROUP BY 1, 2)
         SELECT w.d0, b.account_name, b.type IN ('credit', 'loan'), coalesce(a.currency, 'USD'),
                CASE WHEN b.type IN ('credit', 'loan') THEN -(b.balance + coalesce(f.flow, 0))
                     ELSE b.balance - coalesce(f.flow, 0) END
         FROM w
         JOIN balance_history b ON b.account_id = w.account_id AND b.date = w.d0
         JOIN accounts a ON a.account_id = w.account_id
         LEFT JOIN f ON f.account_id = w.account_id AND f.date = w.d0
         ORDER BY 1, 2",
        since_filter(since)
    ))?;
    result
        .rows()
        .iter()
        .map(|r| {
            Ok(Opening {
                date: parse(&r[0], "date")?,
                account: text(&r[1]),
                liability: parse(&r[2], "flag")?,
                currency: text(&r[3]),
                amount: parse(&r[4], "amount")?,
            })
        })
        .collect()
}

/// Write the transactions from `since` on to `path` as CSV or Parquet, by DuckDB.
pub fn copy_to(
    engine: &mut QueryEngine,
    format: ExportFormat,
    path: &std::path::Path,
    since: Option<NaiveDate>,
) -> Result<(), QueryError> {
    let options = match format {
        ExportFormat::Csv => "FORMAT csv, HEADER true",
        ExportFormat::Parquet => "FORMAT parquet",
        _ => return Err(QueryError::Export("not a DuckDB format".into())),
    };
    let target = path.display().to_string().replace('\'', "''");
    engine.run(&format!(
        "COPY (SELECT * FROM transactions t WHERE {} ORDER BY t.date, t.id) TO '{target}' ({options})",
        since_filter(since)
    ))?;
    Ok(())
}

/// An account name part as hledger reads it: no `:` (the separator), no `;` (a comment),
/// single spaces (two end the name).
fn hledger_part(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if matches!(c, ':' | ';') { '-' } else { c })
        .collect();
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    if words.is_empty() {
        "Unknown".into()
    } else {
        words.join(" ")
    }
}

/// An account name part as beancount reads it: starts with a capital letter, then
/// letters, digits and hyphens (ASCII).
fn beancount_part(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if out.is_empty() {
                out.extend(c.to_uppercase());
            } else {
                out.push(c);
            }
            dash = false;
        } else if !out.is_empty() && !dash {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    match out.chars().next() {
        None => "Unknown".into(),
        Some(c) if c.is_ascii_uppercase() => out,
        Some(_) => format!("X{out}"),
    }
}

/// The two accounts of a row: (bank side, other side), as `root:name` with `roots` the five
/// root names in the journal's spelling (assets, liabilities, expenses, income, equity).
fn sides(row: &LedgerRow, roots: [&str; 5], part: fn(&str) -> String) -> (String, String) {
    let [assets, liabilities, expenses, income, equity] = roots;
    let bank = format!(
        "{}:{}",
        if row.liability { liabilities } else { assets },
        part(&row.account)
    );
    let other = if row.transfer {
        format!("{equity}:{}", part("Transfers"))
    } else if row.income {
        format!("{income}:{}", part(&row.category))
    } else {
        format!("{expenses}:{}", part(&row.category))
    };
    (bank, other)
}

fn single_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An hledger journal.
pub fn hledger(rows: &[LedgerRow], openings: &[Opening]) -> String {
    let roots = ["assets", "liabilities", "expenses", "income", "equity"];
    let mut out = format!("; finq export: {} transactions\n\n", rows.len());
    for o in openings {
        let account = format!(
            "{}:{}",
            if o.liability { "liabilities" } else { "assets" },
            hledger_part(&o.account)
        );
        let _ = write!(
            out,
            "{} * opening balance\n    {account}  {:.2} {}\n    equity:opening balances\n\n",
            o.date, o.amount, o.currency
        );
    }
    for r in rows {
        let (bank, other) = sides(r, roots, hledger_part);
        let description = single_line(&r.description).replace(';', ",");
        let _ = write!(
            out,
            "{} {} {description}  ; id:{}\n    {bank}  {:.2} {cur}\n    {other}  {:.2} {cur}\n\n",
            r.date,
            if r.pending { "!" } else { "*" },
            r.id,
            r.amount,
            -r.amount,
            cur = r.currency,
        );
    }
    out
}

fn quoted(s: &str) -> String {
    format!(
        "\"{}\"",
        single_line(s).replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// A beancount file (every account opened on the first day it is used).
pub fn beancount(rows: &[LedgerRow], openings: &[Opening]) -> String {
    let roots = ["Assets", "Liabilities", "Expenses", "Income", "Equity"];
    let opening_account = format!("Equity:{}", beancount_part("Opening Balances"));
    let mut opened: std::collections::BTreeMap<String, NaiveDate> = Default::default();
    let mut open = |account: &str, date: NaiveDate| {
        let first = opened.entry(account.to_string()).or_insert(date);
        *first = (*first).min(date);
    };
    let mut body = String::new();
    for o in openings {
        let account = format!(
            "{}:{}",
            if o.liability { "Liabilities" } else { "Assets" },
            beancount_part(&o.account)
        );
        open(&account, o.date);
        open(&opening_account, o.date);
        let _ = write!(
            body,
            "{} * \"Opening balance\"\n  {account}  {:.2} {cur}\n  {opening_account}  {:.2} {cur}\n\n",
            o.date,
            o.amount,
            -o.amount,
            cur = o.currency
        );
    }
    for r in rows {
        let (bank, other) = sides(r, roots, beancount_part);
        open(&bank, r.date);
        open(&other, r.date);
        let _ = write!(
            body,
            "{} {} {} {}\n  id: {}\n  {bank}  {:.2} {cur}\n  {other}  {:.2} {cur}\n\n",
            r.date,
            if r.pending { "!" } else { "*" },
            quoted(r.merchant.as_deref().unwrap_or(&r.description)),
            quoted(&r.description),
            quoted(&r.id),
            r.amount,
            -r.amount,
            cur = r.currency,
        );
    }
    let mut out = format!(
        "; finq export: {} transactions\noption \"title\" \"finq\"\n\n",
        rows.len()
    );
    for (account, date) in &opened {
        let _ = writeln!(out, "{date} open {account}");
    }
    out.push('\n');
    out.push_str(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> LedgerRow {
        LedgerRow {
            id: "plaid:abc".into(),
            date: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            description: "SQ *BLUE  BOTTLE; \"COFFEE\"".into(),
            merchant: Some("Blue Bottle".into()),
            amount: Decimal::new(-450, 2),
            currency: "USD".into(),
            account: "Visa: Gold".into(),
            liability: true,
            category: "Food & Drink".into(),
            income: false,
            pending: true,
            transfer: false,
        }
    }

    #[test]
    fn account_names_each_tool_reads() {
        assert_eq!(hledger_part("Visa: Gold;  x"), "Visa- Gold- x");
        assert_eq!(beancount_part("Food & Drink"), "Food-Drink");
        assert_eq!(beancount_part("401k plan"), "X401k-plan");
        assert_eq!(beancount_part("café"), "Caf");
        assert_eq!(beancount_part("&&"), "Unknown");
    }

    #[test]
    fn one_entry_per_transaction_with_both_sides() {
        let h = hledger(&[row()], &[]);
        assert!(
            h.contains(
                "2026-11-02 ! SQ *BLUE BOTTLE, \"COFFEE\"  ; id:plaid:abc\n    liabilities:Visa- Gold  -4.50 USD\n    expenses:Food & Drink  4.50 USD\n"
            ),
            "{h}"
        );
        let b = beancount(&[row()], &[]);
        assert!(b.contains("2026-11-02 open Liabilities:Visa-Gold\n"), "{b}");
        assert!(
            b.contains(
                "2026-11-02 ! \"Blue Bottle\" \"SQ *BLUE BOTTLE; \\\"COFFEE\\\"\"\n  id: \"plaid:abc\"\n  Liabilities:Visa-Gold  -4.50 USD\n  Expenses:Food-Drink  4.50 USD\n"
            ),
            "{b}"
        );
        let mut t = row();
        t.transfer = true;
        assert!(hledger(&[t], &[]).contains("equity:Transfers  4.50 USD"));
    }
}

//! The manual store: accounts Plaid does not cover (`manual_accounts`), their stated
//! balances (`manual_balances`), their transactions (`transactions`: typed in or imported)
//! and the files imported (`imports`). The only module that writes these tables.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

use finq_core::LOCAL_USER_ID;

/// What a manual account holds. Credit and loan balances are amounts owed (positive), as
/// Plaid reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountType {
    Cash,
    Depository,
    Credit,
    Loan,
    Investment,
    Property,
    Other,
}

impl AccountType {
    pub const ALL: [AccountType; 7] = [
        AccountType::Cash,
        AccountType::Depository,
        AccountType::Credit,
        AccountType::Loan,
        AccountType::Investment,
        AccountType::Property,
        AccountType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Cash => "cash",
            AccountType::Depository => "depository",
            AccountType::Credit => "credit",
            AccountType::Loan => "loan",
            AccountType::Investment => "investment",
            AccountType::Property => "property",
            AccountType::Other => "other",
        }
    }

    /// Whether a balance is money owed.
    pub fn is_liability(self) -> bool {
        matches!(self, AccountType::Credit | AccountType::Loan)
    }
}

impl fmt::Display for AccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "checking" | "savings" | "bank" => Some(AccountType::Depository),
            "card" | "credit card" | "credit-card" => Some(AccountType::Credit),
            "mortgage" => Some(AccountType::Loan),
            "house" | "home" | "car" | "real estate" => Some(AccountType::Property),
            _ => None,
        };
        alias
            .or_else(|| AccountType::ALL.into_iter().find(|t| t.as_str() == s))
            .ok_or_else(|| {
                let names: Vec<&str> = AccountType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown account type {s:?}; one of {} (or checking, savings, card, mortgage, house)",
                    names.join(", ")
                )
            })
    }
}

/// A manual account with its latest stated balance.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ManualAccount {
    pub id: i64,
    pub name: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub currency: String,
    pub balance: Option<Decimal>,
    pub balance_as_of: Option<NaiveDate>,
    pub transactions: i64,
}

impl ManualAccount {
    /// Its id in the mirror (`accounts.account_id`).
    pub fn mirror_id(&self) -> String {
        format!("manual:{}", self.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("there is no manual account {name:?}{}; create it with `finq accounts add {name:?} --type TYPE`", known_list(.known))]
    NoAccount { name: String, known: Vec<String> },
    #[error("there is already an account {0:?}; `finq accounts` lists them")]
    Exists(String),
    #[error("an account's name cannot be empty")]
    EmptyName,
    #[error("a transaction's description cannot be empty")]
    EmptyDescription,
    #[error("database error in the manual store: {0}")]
    Db(#[from] sqlx::Error),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (there are: {})", known.join(", "))
    }
}

const SELECT: &str = "SELECT m.id, m.name, m.type, m.currency, b.balance, b.as_of AS balance_as_of,
        (SELECT count(*) FROM transactions t WHERE t.account_id = m.id) AS transactions
     FROM manual_accounts m
     LEFT JOIN LATERAL (SELECT balance, as_of FROM manual_balances
                        WHERE account_id = m.id ORDER BY as_of DESC LIMIT 1) b ON true";

/// Every manual account, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<ManualAccount>, ManualError> {
    Ok(
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY m.name")))
            .fetch_all(pool)
            .await?,
    )
}

/// The manual account called `name` (case ignored when no account has it exactly).
pub async fn find(conn: &mut PgConnection, name: &str) -> Result<ManualAccount, ManualError> {
    let found: Option<ManualAccount> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE m.name = $1 OR lower(m.name) = lower($1)
         ORDER BY m.name = $1 DESC LIMIT 1"
    )))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    match found {
        Some(a) => Ok(a),
        None => Err(ManualError::NoAccount {
            name: name.to_string(),
            known: sqlx::query_scalar("SELECT name FROM manual_accounts ORDER BY name")
                .fetch_all(&mut *conn)
                .await?,
        }),
    }
}

/// A new manual account.
pub async fn create(
    pool: &PgPool,
    name: &str,
    kind: AccountType,
    currency: &str,
) -> Result<ManualAccount, ManualError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ManualError::EmptyName);
    }
    let existing: Option<String> =
        sqlx::query_scalar("SELECT name FROM manual_accounts WHERE lower(name) = lower($1)")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    if let Some(existing) = existing {
        return Err(ManualError::Exists(existing));
    }
    let inserted = sqlx::query(
        "INSERT INTO manual_accounts (user_id, name, type, currency) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, name) DO NOTHING",
    )
    .bind(LOCAL_USER_ID)
    .bind(name)
    .bind(kind.as_str())
    .bind(currency.trim().to_ascii_uppercase())
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ManualError::Exists(name.to_string()));
    }
    find(&mut *pool.acquire().await?, name).await
}

/// Give a manual account another name; its transactions carry the new one once derived
/// again (a trigger asks for that).
pub async fn rename(
    pool: &PgPool,
    account: &ManualAccount,
    new_name: &str,
) -> Result<ManualAccount, ManualError> {
    let new_name = new_name.trim();
    if new_name.is_empty() {
        return Err(ManualError::EmptyName);
    }
    let taken: Option<String> = sqlx::query_scalar(
        "SELECT name FROM manual_accounts WHERE lower(name) = lower($1) AND id <> $2",
    )
    .bind(new_name)
    .bind(account.id)
    .fetch_optional(pool)
    .await?;
    if let Some(taken) = taken {
        return Err(ManualError::Exists(taken));
    }
    let renamed =
        sqlx::query("UPDATE manual_accounts SET name = $2, updated_at = now() WHERE id = $1")
            .bind(account.id)
            .bind(new_name)
            .execute(pool)
            .await;
    match renamed {
        // Taken meanwhile by another finq.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ManualError::Exists(new_name.to_string()));
        }
        Err(e) => return Err(e.into()),
        Ok(r) if r.rows_affected() == 0 => {
            return Err(ManualError::NoAccount {
                name: account.name.clone(),
                known: Vec::new(),
            });
        }
        Ok(_) => {}
    }
    find(&mut *pool.acquire().await?, new_name).await
}

/// Delete a manual account with its balances, its transactions and the record of the
/// files imported into it (triggers tell the derive step what went).
pub async fn delete(pool: &PgPool, account: &ManualAccount) -> Result<(), ManualError> {
    let deleted = sqlx::query("DELETE FROM manual_accounts WHERE id = $1")
        .bind(account.id)
        .execute(pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(ManualError::NoAccount {
            name: account.name.clone(),
            known: Vec::new(),
        });
    }
    Ok(())
}

/// The account called `name`, created as `kind` when there is none (`finq add`'s "Cash").
pub async fn find_or_create(
    pool: &PgPool,
    name: &str,
    kind: AccountType,
) -> Result<ManualAccount, ManualError> {
    match find(&mut *pool.acquire().await?, name).await {
        Err(ManualError::NoAccount { .. }) => match create(pool, name, kind, "USD").await {
            // Created meanwhile by another finq.
            Err(ManualError::Exists(_)) => find(&mut *pool.acquire().await?, name).await,
            other => other,
        },
        other => other,
    }
}

/// State an account's balance on a day (replacing what was stated for that day).
pub async fn set_balance(
    pool: &PgPool,
    account: &ManualAccount,
    as_of: NaiveDate,
    balance: Decimal,
) -> Result<(), ManualError> {
    sqlx::query(
        "INSERT INTO manual_balances (account_id, as_of, balance) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, as_of) DO UPDATE
         SET balance = EXCLUDED.balance, recorded_at = now()",
    )
    .bind(account.id)
    .bind(as_of)
    .bind(balance)
    .execute(pool)
    .await?;
    Ok(())
}

/// One transaction typed in by hand.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    pub date: NaiveDate,
    /// Statement sign: money out negative.
    pub amount: Decimal,
    pub description: String,
    pub category_id: Option<i64>,
    pub notes: Option<String>,
}

/// Add one transaction to a manual account; returns its id (`manual:<id>` in the mirror).
pub async fn add_transaction(
    pool: &PgPool,
    account: &ManualAccount,
    tx: &NewTransaction,
) -> Result<i64, ManualError> {
    let description = tx.description.trim();
    if description.is_empty() {
        return Err(ManualError::EmptyDescription);
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO transactions (user_id, account_id, date, description, amount, currency,
                                   category_id, notes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(LOCAL_USER_ID)
    .bind(account.id)
    .bind(tx.date)
    .bind(description)
    .bind(tx.amount)
    .bind(&account.currency)
    .bind(tx.category_id)
    .bind(&tx.notes)
    .fetch_one(pool)
    .await?)
}

/// One row of an imported file, with the key that recognises it in a later import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub key: String,
    pub date: NaiveDate,
    pub amount: Decimal,
    pub description: String,
}

/// The file an import came from.
#[derive(Debug, Clone)]
pub struct ImportFile {
    pub name: String,
    pub sha256: String,
    /// `csv (Chase)`, `ofx`, …
    pub format: String,
}

/// Store an import's rows in `account`, skipping those already there (same key), and
/// record the file, in the caller's transaction. Returns the rows added.
pub async fn store_import(
    conn: &mut PgConnection,
    account: &ManualAccount,
    file: &ImportFile,
    rows: &[ImportRow],
) -> Result<u64, ManualError> {
    let import_id: i64 = sqlx::query_scalar(
        "INSERT INTO imports (account_id, file_name, sha256, format, rows_read, rows_added)
         VALUES ($1, $2, $3, $4, $5, 0) RETURNING id",
    )
    .bind(account.id)
    .bind(&file.name)
    .bind(&file.sha256)
    .bind(&file.format)
    .bind(rows.len() as i32)
    .fetch_one(&mut *conn)
    .await?;
    let mut added = 0;
    // Bounded batches: one statement's arrays stay small whatever the file's size.
    for chunk in rows.chunks(5000) {
        let keys: Vec<&str> = chunk.iter().map(|r| r.key.as_str()).collect();
        let dates: Vec<NaiveDate> = chunk.iter().map(|r| r.date).collect();
        let amounts: Vec<Decimal> = chunk.iter().map(|r| r.amount).collect();
        let descriptions: Vec<&str> = chunk.iter().map(|r| r.description.as_str()).collect();
        added += sqlx::query(
            "INSERT INTO transactions (user_id, account_id, date, description, amount, currency,
                                       import_key, import_id)
             SELECT $1, $2, d, description, a, $3, k, $4
             FROM unnest($5::text[], $6::date[], $7::numeric[], $8::text[]) AS r(k, d, a, description)
             ON CONFLICT (account_id, import_key) DO NOTHING",
        )
        .bind(LOCAL_USER_ID)
        .bind(account.id)
        .bind(&account.currency)
        .bind(import_id)
        .bind(&keys)
        .bind(&dates)
        .bind(&amounts)
        .bind(&descriptions)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    sqlx::query("UPDATE imports SET rows_added = $2 WHERE id = $1")
        .bind(import_id)
        .bind(added as i32)
        .execute(&mut *conn)
        .await?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_types_by_name_and_alias() {
        assert_eq!("cash".parse(), Ok(AccountType::Cash));
        assert_eq!("Checking".parse(), Ok(AccountType::Depository));
        assert_eq!("mortgage".parse(), Ok(AccountType::Loan));
        assert_eq!(" house ".parse(), Ok(AccountType::Property));
        let err = "boat".parse::<AccountType>().unwrap_err();
        assert!(
            err.contains("\"boat\"") && err.contains("property"),
            "{err}"
        );
        assert!(AccountType::Loan.is_liability() && !AccountType::Property.is_liability());
    }
}

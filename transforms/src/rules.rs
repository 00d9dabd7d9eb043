//! The person's categorisation rules (`category_rules`) and what they matched
//! (`rule_hits`). The only module that writes these tables.
//!
//! A rule names a category and what a transaction must look like: its merchant's name
//! and/or description containing a text (case ignored) or matching a regular expression,
//! the size of its amount within bounds, its account. Rules are applied as transactions
//! arrive or change (by the union, in the derive step) and over the whole history when the
//! person asks ([`apply_all`]); what a rule matched is kept (`rule_hits`), so adding a rule
//! never silently rewrites old months. Of the rules that match, the highest priority wins,
//! then the newest. A person's own edit beats any rule; a rule beats Plaid's mapping.

use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};

use finq_core::LOCAL_USER_ID;

/// A rule as the person states it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRule {
    pub category_id: i64,
    pub priority: i32,
    pub merchant: Option<String>,
    pub description: Option<String>,
    pub regex: bool,
    pub min_amount: Option<Decimal>,
    pub max_amount: Option<Decimal>,
    /// `accounts.account_id`: Plaid's id or `manual:<n>`.
    pub account_id: Option<String>,
}

/// A stored rule, with its category's and account's names and how many transactions it
/// categorises now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Rule {
    pub id: i64,
    pub category: String,
    pub priority: i32,
    pub merchant: Option<String>,
    pub description: Option<String>,
    pub regex: bool,
    pub min_amount: Option<Decimal>,
    pub max_amount: Option<Decimal>,
    pub account: Option<String>,
    pub hits: i64,
}

impl Rule {
    /// What it matches, in words: `merchant contains "starbucks", 5.00–20.00, account Visa`.
    pub fn condition(&self) -> String {
        let how = if self.regex { "matches" } else { "contains" };
        let mut parts = Vec::new();
        if let Some(m) = &self.merchant {
            parts.push(format!("merchant {how} {m:?}"));
        }
        if let Some(d) = &self.description {
            parts.push(format!("description {how} {d:?}"));
        }
        match (self.min_amount, self.max_amount) {
            (Some(lo), Some(hi)) => parts.push(format!("amount {lo:.2}–{hi:.2}")),
            (Some(lo), None) => parts.push(format!("amount ≥ {lo:.2}")),
            (None, Some(hi)) => parts.push(format!("amount ≤ {hi:.2}")),
            (None, None) => {}
        }
        if let Some(a) = &self.account {
            parts.push(format!("account {a}"));
        }
        parts.join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error(
        "a rule needs something to match: --merchant, --description, --min, --max or --account"
    )]
    Empty,
    #[error("{field} {pattern:?} is not a valid regular expression: {message}")]
    BadPattern {
        field: &'static str,
        pattern: String,
        message: String,
    },
    #[error("--min {min} is more than --max {max}")]
    BadRange { min: Decimal, max: Decimal },
    #[error("there is no rule {0}; `finq rules` lists them")]
    Unknown(i64),
    #[error("there is no account {name:?}; there are: {}", .known.join(", "))]
    UnknownAccount { name: String, known: Vec<String> },
    #[error("{name:?} names more than one account ({}): give the account's id instead", .ids.join(", "))]
    AmbiguousAccount { name: String, ids: Vec<String> },
    #[error("database error in the rules: {0}")]
    Db(#[from] sqlx::Error),
}

/// Does transaction `x` (columns `account_id`, `size`, `merchant`, `description`) meet
/// rule `r`?
const MATCHES: &str = "(r.account_id IS NULL OR r.account_id = x.account_id)
    AND (r.min_amount IS NULL OR x.size >= r.min_amount)
    AND (r.max_amount IS NULL OR x.size <= r.max_amount)
    AND (r.merchant IS NULL OR CASE WHEN r.regex THEN x.merchant ~* r.merchant
                                    ELSE strpos(lower(x.merchant), lower(r.merchant)) > 0 END)
    AND (r.description IS NULL OR CASE WHEN r.regex THEN x.description ~* r.description
                                       ELSE strpos(lower(x.description), lower(r.description)) > 0 END)";

/// The Plaid transactions `filter` selects (`t`), as rules see them.
pub fn plaid_candidates(filter: &str) -> String {
    format!(
        "SELECT 'plaid:' || t.plaid_transaction_id AS tx_id, t.account_id, abs(t.amount) AS size,
                coalesce(t.merchant_name, mn.name, t.name) AS merchant, t.name AS description
         FROM plaid_transactions t
         LEFT JOIN merchant_names mn ON t.merchant_name IS NULL AND mn.raw = t.name
         WHERE {filter}"
    )
}

/// The manual transactions `filter` selects (`t`), as rules see them.
pub fn manual_candidates(filter: &str) -> String {
    format!(
        "SELECT 'manual:' || t.id AS tx_id, 'manual:' || t.account_id AS account_id,
                abs(t.amount) AS size, coalesce(mn.name, t.description) AS merchant,
                t.description
         FROM transactions t
         LEFT JOIN merchant_names mn ON mn.raw = t.description
         WHERE {filter}"
    )
}

/// Apply the rules to the transactions `candidates` selects (ids bound as `$1` when given):
/// record the winning rule of each, drop the hits of those no rule matches any more.
/// `from_derive`: the derive step is deriving these rows now, so their hits need not be
/// logged as changes. Returns the hits written or dropped.
pub async fn evaluate<T>(
    conn: &mut PgConnection,
    candidates: &str,
    ids: Option<&[T]>,
    from_derive: bool,
) -> Result<u64, sqlx::Error>
where
    for<'q> &'q [T]: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    T: Sync,
{
    let any: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM category_rules) OR EXISTS (SELECT 1 FROM rule_hits)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !any {
        return Ok(0);
    }
    if from_derive {
        sqlx::query("SELECT set_config('finq.deriving', 'on', true)")
            .execute(&mut *conn)
            .await?;
    }
    let sql = format!(
        "WITH best AS (
             SELECT x.tx_id, (SELECT r.id FROM category_rules r WHERE {MATCHES}
                              ORDER BY r.priority DESC, r.id DESC LIMIT 1) AS rule_id
             FROM ({candidates}) x
         ),
         dropped AS (
             DELETE FROM rule_hits h USING best
             WHERE h.tx_id = best.tx_id AND best.rule_id IS NULL
             RETURNING 1
         ),
         written AS (
             INSERT INTO rule_hits (tx_id, rule_id)
             SELECT tx_id, rule_id FROM best WHERE rule_id IS NOT NULL
             ON CONFLICT (tx_id) DO UPDATE SET rule_id = EXCLUDED.rule_id
             WHERE rule_hits.rule_id <> EXCLUDED.rule_id
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM dropped) + (SELECT count(*) FROM written)"
    );
    let query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
    let changed: i64 = match ids {
        Some(ids) => query.bind(ids).fetch_one(&mut *conn).await?,
        None => query.fetch_one(&mut *conn).await?,
    };
    if from_derive {
        sqlx::query("SELECT set_config('finq.deriving', 'off', true)")
            .execute(&mut *conn)
            .await?;
    }
    Ok(changed as u64)
}

/// Apply the rules to every transaction (`finq rules apply`). The changed hits are logged,
/// so the next derive step re-categorises exactly those transactions. Returns how many
/// changed.
pub async fn apply_all(pool: &PgPool) -> Result<u64, RuleError> {
    let mut tx = pool.begin().await?;
    let mut changed = 0;
    for candidates in [plaid_candidates("true"), manual_candidates("true")] {
        changed += evaluate::<String>(&mut tx, &candidates, None, false).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Store a rule, after checking its patterns with PostgreSQL's own regular expressions.
pub async fn add(pool: &PgPool, rule: &NewRule) -> Result<i64, RuleError> {
    let is_blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
    if is_blank(&rule.merchant)
        && is_blank(&rule.description)
        && rule.min_amount.is_none()
        && rule.max_amount.is_none()
        && rule.account_id.is_none()
    {
        return Err(RuleError::Empty);
    }
    if let (Some(min), Some(max)) = (rule.min_amount, rule.max_amount)
        && min > max
    {
        return Err(RuleError::BadRange { min, max });
    }
    if rule.regex {
        for (field, pattern) in [
            ("--merchant", &rule.merchant),
            ("--description", &rule.description),
        ] {
            let Some(pattern) = pattern else { continue };
            if let Err(e) = sqlx::query("SELECT '' ~* $1")
                .bind(pattern)
                .execute(pool)
                .await
            {
                let message = match &e {
                    sqlx::Error::Database(d) => d.message().to_string(),
                    _ => return Err(e.into()),
                };
                return Err(RuleError::BadPattern {
                    field,
                    pattern: pattern.clone(),
                    message,
                });
            }
        }
    }
    let blank_to_none = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
    Ok(sqlx::query_scalar(
        "INSERT INTO category_rules (user_id, category_id, priority, merchant, description, regex,
                                     min_amount, max_amount, account_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(LOCAL_USER_ID)
    .bind(rule.category_id)
    .bind(rule.priority)
    .bind(blank_to_none(&rule.merchant))
    .bind(blank_to_none(&rule.description))
    .bind(rule.regex)
    .bind(rule.min_amount)
    .bind(rule.max_amount)
    .bind(&rule.account_id)
    .fetch_one(pool)
    .await?)
}

/// How many transactions rule `id` would categorise if applied to the whole history now
/// (whether or not a higher rule or an edit wins).
pub async fn count_matches(pool: &PgPool, id: i64) -> Result<i64, RuleError> {
    let sql = format!(
        "SELECT count(*) FROM ({} UNION ALL {}) x, category_rules r WHERE r.id = $1 AND {MATCHES}",
        plaid_candidates("true"),
        manual_candidates("true")
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(pool)
        .await?)
}

/// The id of the account called `name` (a manual or a linked one, case ignored), or with
/// that id.
pub async fn resolve_account(pool: &PgPool, name: &str) -> Result<String, RuleError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT 'manual:' || id FROM manual_accounts WHERE lower(name) = lower($1) OR 'manual:' || id = $1
         UNION ALL
         SELECT account_id FROM plaid_accounts WHERE lower(name) = lower($1) OR account_id = $1",
    )
    .bind(name)
    .fetch_all(pool)
    .await?;
    match ids.len() {
        1 => Ok(ids.into_iter().next().expect("one id")),
        0 => Err(RuleError::UnknownAccount {
            name: name.to_string(),
            known: sqlx::query_scalar(
                "SELECT name FROM manual_accounts UNION SELECT name FROM plaid_accounts ORDER BY 1",
            )
            .fetch_all(pool)
            .await?,
        }),
        _ => Err(RuleError::AmbiguousAccount {
            name: name.to_string(),
            ids,
        }),
    }
}

/// Every rule, the one that wins first.
pub async fn list(pool: &PgPool) -> Result<Vec<Rule>, RuleError> {
    Ok(sqlx::query_as(
        "SELECT r.id, c.name AS category, r.priority, r.merchant, r.description, r.regex,
                r.min_amount, r.max_amount,
                coalesce(pa.name, ma.name, r.account_id) AS account,
                (SELECT count(*) FROM rule_hits h WHERE h.rule_id = r.id) AS hits
         FROM category_rules r
         JOIN categories c ON c.id = r.category_id
         LEFT JOIN plaid_accounts pa ON pa.account_id = r.account_id
         LEFT JOIN manual_accounts ma ON 'manual:' || ma.id = r.account_id
         ORDER BY r.priority DESC, r.id DESC",
    )
    .fetch_all(pool)
    .await?)
}

/// Delete a rule; the transactions it categorised go back to Plaid's mapping (or a lower
/// rule, at the next `finq rules apply`).
pub async fn delete(pool: &PgPool, id: i64) -> Result<(), RuleError> {
    let deleted = sqlx::query("DELETE FROM category_rules WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(RuleError::Unknown(id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_in_words() {
        let rule = Rule {
            id: 1,
            category: "Coffee".into(),
            priority: 0,
            merchant: Some("starbucks".into()),
            description: None,
            regex: false,
            min_amount: Some(Decimal::new(5, 0)),
            max_amount: Some(Decimal::new(2000, 2)),
            account: Some("Visa".into()),
            hits: 0,
        };
        assert_eq!(
            rule.condition(),
            "merchant contains \"starbucks\", amount 5.00–20.00, account Visa"
        );
    }
}

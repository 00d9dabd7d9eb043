//! Plaid's personal finance categories → the person's categories.
//!
//! The effective category of a Plaid transaction is, in order: the person's override
//! (`category_override_id`), the person's rule that matched it ([`crate::rules`]), the
//! `category_mappings` entry for its detailed PFC code, the entry for its primary code, and
//! "Uncategorized", so nothing silently drops out of a spending report. A manual
//! transaction's is its own category, else a rule's, else "Uncategorized". It is computed where rows are derived ([`crate::union`]), from these
//! joins, so a change of a mapping re-derives exactly the rows of that PFC primary.

/// Joins that make `cat` the effective category of `t` (a `plaid_transactions` row) of the
/// user `i.user_id`.
pub const PLAID_CATEGORY_JOINS: &str = "
    LEFT JOIN category_mappings md ON md.user_id = i.user_id AND md.pfc_primary = t.plaid_category
                                  AND md.pfc_detailed = t.plaid_detailed_category
    LEFT JOIN category_mappings mp ON mp.user_id = i.user_id AND mp.pfc_primary = t.plaid_category
                                  AND mp.pfc_detailed = ''
    LEFT JOIN rule_hits rh ON rh.tx_id = 'plaid:' || t.plaid_transaction_id
    LEFT JOIN category_rules cr ON cr.id = rh.rule_id
    LEFT JOIN categories unc ON unc.user_id = i.user_id AND unc.name = 'Uncategorized'
    LEFT JOIN categories cat ON cat.id = coalesce(t.category_override_id, cr.category_id,
                                                  md.category_id, mp.category_id, unc.id)";

/// Joins that make `cat` the effective category of `t` (a manual `transactions` row).
pub const MANUAL_CATEGORY_JOINS: &str = "
    LEFT JOIN rule_hits rh ON rh.tx_id = 'manual:' || t.id
    LEFT JOIN category_rules cr ON cr.id = rh.rule_id
    LEFT JOIN categories unc ON unc.user_id = t.user_id AND unc.name = 'Uncategorized'
    LEFT JOIN categories cat ON cat.id = coalesce(t.category_id, cr.category_id, unc.id)";

/// The category called `name` (case ignored when none has it exactly): its id and name.
pub async fn find(pool: &sqlx::PgPool, name: &str) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name FROM categories
         WHERE user_id = $1 AND (name = $2 OR lower(name) = lower($2))
         ORDER BY name = $2 DESC LIMIT 1",
    )
    .bind(finq_core::LOCAL_USER_ID)
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Every category's name, sorted.
pub async fn names(pool: &sqlx::PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM categories WHERE user_id = $1 ORDER BY name")
        .bind(finq_core::LOCAL_USER_ID)
        .fetch_all(pool)
        .await
}

/// A category with how many transactions it holds now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CategoryRow {
    pub id: i64,
    pub name: String,
    pub parent: Option<String>,
    pub is_income: bool,
    pub transactions: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CategoryError {
    #[error("there is no category {name:?}; there are: {}", .known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("there is already a category {0:?}")]
    Exists(String),
    #[error("a category's name cannot be empty")]
    EmptyName,
    #[error(
        "\"Uncategorized\" is where transactions go when nothing else says where: it cannot be renamed, merged away or deleted"
    )]
    Fallback,
    #[error("{0:?} would be merged into itself")]
    SameCategory(String),
    #[error("{0}")]
    NoTransactions(String),
    #[error("database error in the categories: {0}")]
    Db(#[from] sqlx::Error),
}

const FALLBACK: &str = "Uncategorized";

/// Every category, with its transaction count (from the derived transactions).
pub async fn list(pool: &sqlx::PgPool) -> Result<Vec<CategoryRow>, CategoryError> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.name, p.name AS parent, c.is_income,
                (SELECT count(*) FROM unified_transactions u WHERE u.category_id = c.id) AS transactions
         FROM categories c LEFT JOIN categories p ON p.id = c.parent_id
         WHERE c.user_id = $1 ORDER BY c.name",
    )
    .bind(finq_core::LOCAL_USER_ID)
    .fetch_all(pool)
    .await?)
}

/// The category called `name`, or an error listing the others.
pub async fn get(pool: &sqlx::PgPool, name: &str) -> Result<(i64, String), CategoryError> {
    match find(pool, name).await? {
        Some(c) => Ok(c),
        None => Err(CategoryError::Unknown {
            name: name.to_string(),
            known: names(pool).await?,
        }),
    }
}

fn unique_violation(e: sqlx::Error, name: &str) -> CategoryError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            CategoryError::Exists(name.to_string())
        }
        _ => e.into(),
    }
}

pub async fn add(
    pool: &sqlx::PgPool,
    name: &str,
    parent: Option<&str>,
    is_income: bool,
) -> Result<i64, CategoryError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CategoryError::EmptyName);
    }
    if let Some((_, existing)) = find(pool, name).await? {
        return Err(CategoryError::Exists(existing));
    }
    let parent_id = match parent {
        Some(p) => Some(get(pool, p).await?.0),
        None => None,
    };
    sqlx::query_scalar(
        "INSERT INTO categories (user_id, name, parent_id, is_income) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(finq_core::LOCAL_USER_ID)
    .bind(name)
    .bind(parent_id)
    .bind(is_income)
    .fetch_one(pool)
    .await
    .map_err(|e| unique_violation(e, name))
}

/// Rename a category; every transaction in it follows (the union re-derives them).
pub async fn rename(pool: &sqlx::PgPool, old: &str, new: &str) -> Result<String, CategoryError> {
    let (id, old) = get(pool, old).await?;
    let new = new.trim();
    if new.is_empty() {
        return Err(CategoryError::EmptyName);
    }
    if old == FALLBACK {
        return Err(CategoryError::Fallback);
    }
    if let Some((other, existing)) = find(pool, new).await?
        && other != id
    {
        return Err(CategoryError::Exists(existing));
    }
    sqlx::query("UPDATE categories SET name = $2 WHERE id = $1")
        .bind(id)
        .bind(new)
        .execute(pool)
        .await
        .map_err(|e| unique_violation(e, new))?;
    Ok(old)
}

/// Move everything that names `from` (edits, manual transactions, Plaid mappings, rules,
/// subcategories, edits waiting for a re-linked item) to `into`, then delete `from`, in one
/// transaction. Returns the two names as stored.
pub async fn merge(
    pool: &sqlx::PgPool,
    from: &str,
    into: &str,
) -> Result<(String, String), CategoryError> {
    let (from_id, from) = get(pool, from).await?;
    let (into_id, into) = get(pool, into).await?;
    if from == FALLBACK {
        return Err(CategoryError::Fallback);
    }
    if from_id == into_id {
        return Err(CategoryError::SameCategory(from));
    }
    let mut tx = pool.begin().await?;
    for sql in [
        "UPDATE plaid_transactions SET category_override_id = $2 WHERE category_override_id = $1",
        "UPDATE transactions SET category_id = $2 WHERE category_id = $1",
        "UPDATE category_mappings SET category_id = $2 WHERE category_id = $1",
        "UPDATE category_rules SET category_id = $2 WHERE category_id = $1",
        "UPDATE relink_carryover SET category_override_id = $2 WHERE category_override_id = $1",
        "UPDATE categories SET parent_id = $2 WHERE parent_id = $1 AND id <> $2",
        "DELETE FROM categories WHERE id = $1",
    ] {
        sqlx::query(sql)
            .bind(from_id)
            .bind(into_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((from, into))
}

/// The person's own category for these transactions (ids as in the mirror: `plaid:…`,
/// `manual:…`), beating rules and Plaid's mapping, kept through re-syncs, pending →
/// posted and re-linking; `None` takes the person's edit back (rules and Plaid's mapping
/// decide again; a manual transaction is left without a category of its own). Every id
/// must exist; returns how many were set.
pub async fn categorize(
    pool: &sqlx::PgPool,
    ids: &[String],
    category_id: Option<i64>,
) -> Result<u64, CategoryError> {
    let mut plaid = Vec::new();
    let mut manual = Vec::new();
    for id in ids {
        if let Some(p) = id.strip_prefix("plaid:") {
            plaid.push(p.to_string());
        } else if let Some(n) = id
            .strip_prefix("manual:")
            .and_then(|n| n.parse::<i64>().ok())
        {
            manual.push(n);
        } else {
            return Err(CategoryError::NoTransactions(format!(
                "{id:?} is not a transaction id; ids look like plaid:… or manual:N (the id column of transactions)"
            )));
        }
    }
    let mut tx = pool.begin().await?;
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT 'plaid:' || plaid_transaction_id FROM plaid_transactions
         WHERE plaid_transaction_id = ANY($1)
         UNION ALL SELECT 'manual:' || id FROM transactions WHERE id = ANY($2)",
    )
    .bind(&plaid)
    .bind(&manual)
    .fetch_all(&mut *tx)
    .await?;
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| !found.contains(id))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(CategoryError::NoTransactions(format!(
            "no transaction {}; nothing was changed",
            missing.join(", ")
        )));
    }
    let mut set = sqlx::query(
        "UPDATE plaid_transactions SET category_override_id = $2 WHERE plaid_transaction_id = ANY($1)",
    )
    .bind(&plaid)
    .bind(category_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    set += sqlx::query("UPDATE transactions SET category_id = $2 WHERE id = ANY($1)")
        .bind(&manual)
        .bind(category_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(set)
}

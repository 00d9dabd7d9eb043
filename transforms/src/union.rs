//! Manual + Plaid transactions in one table, `unified_transactions`, in the bank-statement
//! sign, derived row by row from what changed. The merchant is Plaid's merchant name, else
//! the description named by [`normalize`](crate::merchant::normalize), once per distinct
//! description (`merchant_names`).
//!
//! Every row written gets the next number of `mirror_seq` (its `seq`); every row deleted
//! leaves a `tx_delete` (or, for a whole item, `tx_delete_item`) entry in `mirror_changes`.
//! That is all a sink needs to follow along.

use std::collections::HashSet;

use finq_core::pipeline::{BoxError, ChangeSet, Counts, Transform};
use sqlx::PgConnection;

use crate::categories::{MANUAL_CATEGORY_JOINS, PLAID_CATEGORY_JOINS};
use crate::merchant::normalize;
use crate::rules;

pub struct UnionTransactions;

const COLUMNS: &str =
    "id, source, user_id, item_id, institution, account_id, account_name, date, amount,
    currency, description, merchant, category_id, category, pending, plaid_category,
    plaid_detailed_category, seq";

const UPDATE_ALL: &str =
    "source = EXCLUDED.source, user_id = EXCLUDED.user_id, item_id = EXCLUDED.item_id,
    institution = EXCLUDED.institution, account_id = EXCLUDED.account_id,
    account_name = EXCLUDED.account_name, date = EXCLUDED.date, amount = EXCLUDED.amount,
    currency = EXCLUDED.currency, description = EXCLUDED.description, merchant = EXCLUDED.merchant,
    category_id = EXCLUDED.category_id, category = EXCLUDED.category, pending = EXCLUDED.pending,
    plaid_category = EXCLUDED.plaid_category,
    plaid_detailed_category = EXCLUDED.plaid_detailed_category, seq = EXCLUDED.seq";

/// The descriptions of the Plaid transactions `filter` selects that have no name yet and
/// need one: Plaid's own merchant name, when it sent one, is already clean and used as is.
fn unnamed_plaid(filter: &str) -> String {
    format!(
        "SELECT DISTINCT t.name FROM plaid_transactions t
         WHERE ({filter}) AND t.merchant_name IS NULL AND NOT EXISTS
             (SELECT 1 FROM merchant_names mn WHERE mn.raw = t.name)"
    )
}

/// The descriptions of the manual transactions `filter` selects that have no name yet.
fn unnamed_manual(filter: &str) -> String {
    format!(
        "SELECT DISTINCT t.description FROM transactions t
         WHERE ({filter}) AND NOT EXISTS
             (SELECT 1 FROM merchant_names mn WHERE mn.raw = t.description)"
    )
}

/// Name the merchant texts that `unnamed` (a query above, its ids bound as `$1` if `ids`
/// is given) finds: each text is normalised once, in Rust, and kept in `merchant_names`
/// for the upserts to join.
async fn name_merchants<T>(
    conn: &mut PgConnection,
    unnamed: &str,
    ids: Option<&[T]>,
) -> Result<(), sqlx::Error>
where
    for<'q> &'q [T]: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    T: Sync,
{
    let query = sqlx::query_scalar(sqlx::AssertSqlSafe(unnamed));
    let raws: Vec<String> = match ids {
        Some(ids) => query.bind(ids).fetch_all(&mut *conn).await?,
        None => query.fetch_all(&mut *conn).await?,
    };
    if raws.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = raws.iter().map(|r| normalize(r)).collect();
    sqlx::query(
        "INSERT INTO merchant_names (raw, name) SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (raw) DO NOTHING",
    )
    .bind(&raws)
    .bind(&names)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Insert or refresh the unified rows of the Plaid transactions that `filter` selects (`t`).
fn upsert_plaid(filter: &str) -> String {
    format!(
        "INSERT INTO unified_transactions ({COLUMNS})
         SELECT 'plaid:' || t.plaid_transaction_id, 'plaid', i.user_id, t.item_id,
                coalesce(i.institution_name, i.institution_id), t.account_id, a.name, t.date,
                -t.amount, coalesce(t.iso_currency_code, t.unofficial_currency_code), t.name,
                coalesce(t.merchant_name, mn.name), cat.id, cat.name, t.pending, t.plaid_category,
                t.plaid_detailed_category, nextval('mirror_seq')
         FROM plaid_transactions t
         JOIN plaid_items i USING (item_id)
         LEFT JOIN plaid_accounts a ON a.account_id = t.account_id
         LEFT JOIN merchant_names mn ON t.merchant_name IS NULL AND mn.raw = t.name
         {PLAID_CATEGORY_JOINS}
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET {UPDATE_ALL}"
    )
}

/// Insert or refresh the unified rows of the manual transactions that `filter` selects (`t`).
fn upsert_manual(filter: &str) -> String {
    format!(
        "INSERT INTO unified_transactions ({COLUMNS})
         SELECT 'manual:' || t.id, 'manual', t.user_id, NULL, NULL, 'manual:' || m.id, m.name,
                t.date, t.amount, t.currency, t.description, mn.name, cat.id, cat.name, false,
                NULL, NULL, nextval('mirror_seq')
         FROM transactions t
         JOIN manual_accounts m ON m.id = t.account_id
         LEFT JOIN merchant_names mn ON mn.raw = t.description
         {MANUAL_CATEGORY_JOINS}
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET {UPDATE_ALL}"
    )
}

/// How one source's changed rows are derived: the upsert for the ids bound as `$1`, and the
/// prefix that makes a source id a unified one.
struct Rows {
    upsert: String,
    prefix: &'static str,
}

impl Rows {
    /// Upsert the rows of `ids` and delete (leaving `tx_delete` entries) the unified rows
    /// whose source row is gone: those of the ids the upsert did not write (it writes every
    /// id whose source row exists). Returns (upserted, deleted).
    async fn apply<T>(&self, conn: &mut PgConnection, ids: &[T]) -> Result<(u64, u64), sqlx::Error>
    where
        for<'q> &'q [T]: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: Sync + std::fmt::Display,
    {
        let written: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{} RETURNING id", self.upsert)))
                .bind(ids)
                .fetch_all(&mut *conn)
                .await?;
        let written: HashSet<&str> = written.iter().map(String::as_str).collect();
        let gone: Vec<String> = ids
            .iter()
            .map(|id| format!("{}{id}", self.prefix))
            .filter(|id| !written.contains(id.as_str()))
            .collect();
        let mut deleted = 0;
        if !gone.is_empty() {
            deleted = sqlx::query(
                "WITH gone AS (
                     DELETE FROM unified_transactions WHERE id = ANY($1) RETURNING id
                 )
                 INSERT INTO mirror_changes (kind, key) SELECT 'tx_delete', id FROM gone",
            )
            .bind(&gone)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        Ok((written.len() as u64, deleted))
    }
}

impl Transform for UnionTransactions {
    fn name(&self) -> &'static str {
        "union_transactions"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        changes: &ChangeSet,
    ) -> Result<Counts, BoxError> {
        let (mut upserted, mut deleted) = (0u64, 0u64);
        // Everything again: the derive step hands `all` to every sink, which starts over.
        if changes.everything() {
            deleted += sqlx::query("DELETE FROM unified_transactions")
                .execute(&mut *conn)
                .await?
                .rows_affected();
            name_merchants::<String>(conn, &unnamed_plaid("true"), None).await?;
            name_merchants::<String>(conn, &unnamed_manual("true"), None).await?;
            for sql in [upsert_plaid("true"), upsert_manual("true")] {
                upserted += sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            }
            return Ok(vec![("upserted", upserted), ("deleted", deleted)]);
        }

        // Whole items: a first load, a removal, a renamed institution.
        let items = changes.keys("plaid_item");
        if !items.is_empty() {
            deleted += sqlx::query("DELETE FROM unified_transactions WHERE item_id = ANY($1)")
                .bind(&items)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            sqlx::query(
                "INSERT INTO mirror_changes (kind, key) SELECT 'tx_delete_item', unnest($1::text[])",
            )
            .bind(&items)
            .execute(&mut *conn)
            .await?;
            name_merchants(
                conn,
                &unnamed_plaid("t.item_id = ANY($1)"),
                Some(items.as_slice()),
            )
            .await?;
            rules::evaluate(
                conn,
                &rules::plaid_candidates("t.item_id = ANY($1)"),
                Some(items.as_slice()),
                true,
            )
            .await?;
            upserted += sqlx::query(sqlx::AssertSqlSafe(upsert_plaid("t.item_id = ANY($1)")))
                .bind(&items)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }

        // Rows whose derived values depend on something else that changed: a category
        // (renamed, deleted; or "Uncategorized" re-created, for rows that had none), a
        // mapping rule (every row of its PFC primary), an account's name (Plaid or manual).
        let categories: Vec<i64> = changes
            .keys("category")
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        let mappings = changes.keys("mapping");
        let accounts = changes.keys("account_rows");
        let mut plaid_ids = changes.keys("plaid_tx");
        let mut manual_ids: Vec<i64> = changes
            .keys("manual_tx")
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        // New and changed transactions get their merchant's name and meet the rules before
        // their rows are derived. The rows re-derived below for other reasons (a category,
        // mapping, account or rule hit) existed already, so their names exist too.
        if !plaid_ids.is_empty() {
            let filter = "t.plaid_transaction_id = ANY($1)";
            name_merchants(conn, &unnamed_plaid(filter), Some(plaid_ids.as_slice())).await?;
            rules::evaluate(
                conn,
                &rules::plaid_candidates(filter),
                Some(plaid_ids.as_slice()),
                true,
            )
            .await?;
        }
        if !manual_ids.is_empty() {
            let filter = "t.id = ANY($1)";
            name_merchants(conn, &unnamed_manual(filter), Some(manual_ids.as_slice())).await?;
            rules::evaluate(
                conn,
                &rules::manual_candidates(filter),
                Some(manual_ids.as_slice()),
                true,
            )
            .await?;
        }
        // A rule's hit came or went (`finq rules apply`, a rule deleted or edited).
        for key in changes.keys("rule_hit") {
            if let Some(id) = key.strip_prefix("plaid:") {
                plaid_ids.push(id.to_string());
            } else if let Some(id) = key.strip_prefix("manual:").and_then(|n| n.parse().ok()) {
                manual_ids.push(id);
            }
        }
        if !categories.is_empty() {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT source, id FROM unified_transactions
                 WHERE category_id = ANY($1) OR category_id IS NULL",
            )
            .bind(&categories)
            .fetch_all(&mut *conn)
            .await?;
            for (source, id) in rows {
                match source.as_str() {
                    "plaid" => plaid_ids.push(id["plaid:".len()..].to_string()),
                    _ => manual_ids.extend(id["manual:".len()..].parse::<i64>().ok()),
                }
            }
        }
        let manual_accounts: Vec<i64> = changes
            .keys("manual_account_rows")
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        if !manual_accounts.is_empty() {
            let ids: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM transactions WHERE account_id = ANY($1)")
                    .bind(&manual_accounts)
                    .fetch_all(&mut *conn)
                    .await?;
            manual_ids.extend(ids);
        }
        if !mappings.is_empty() || !accounts.is_empty() {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT plaid_transaction_id FROM plaid_transactions
                 WHERE plaid_category = ANY($1) OR account_id = ANY($2)",
            )
            .bind(&mappings)
            .bind(&accounts)
            .fetch_all(&mut *conn)
            .await?;
            plaid_ids.extend(ids);
        }
        plaid_ids.sort_unstable();
        plaid_ids.dedup();
        manual_ids.sort_unstable();
        manual_ids.dedup();

        let plaid = Rows {
            upsert: upsert_plaid("t.plaid_transaction_id = ANY($1)"),
            prefix: "plaid:",
        };
        let manual = Rows {
            upsert: upsert_manual("t.id = ANY($1)"),
            prefix: "manual:",
        };
        if !plaid_ids.is_empty() {
            let (u, d) = plaid.apply(conn, &plaid_ids).await?;
            (upserted, deleted) = (upserted + u, deleted + d);
        }
        if !manual_ids.is_empty() {
            let (u, d) = manual.apply(conn, &manual_ids).await?;
            (upserted, deleted) = (upserted + u, deleted + d);
        }
        Ok(vec![("upserted", upserted), ("deleted", deleted)])
    }
}

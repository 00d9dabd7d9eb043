//! Manual + Plaid transactions in one table, `unified_transactions`, in the bank-statement
//! sign, derived row by row from what changed.
//!
//! Every row written gets the next number of `mirror_seq` (its `seq`); every row deleted
//! leaves a `tx_delete` (or, for a whole item, `tx_delete_item`) entry in `mirror_changes`.
//! That is all a sink needs to follow along.

use finq_core::pipeline::{BoxError, ChangeSet, Counts, Transform};
use sqlx::PgConnection;

use crate::categories::{MANUAL_CATEGORY_JOINS, PLAID_CATEGORY_JOINS};

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

/// Insert or refresh the unified rows of the Plaid transactions that `filter` selects (`t`).
fn upsert_plaid(filter: &str) -> String {
    format!(
        "INSERT INTO unified_transactions ({COLUMNS})
         SELECT 'plaid:' || t.plaid_transaction_id, 'plaid', i.user_id, t.item_id,
                coalesce(i.institution_name, i.institution_id), t.account_id, a.name, t.date,
                -t.amount, coalesce(t.iso_currency_code, t.unofficial_currency_code), t.name,
                t.merchant_name, cat.id, cat.name, t.pending, t.plaid_category,
                t.plaid_detailed_category, nextval('mirror_seq')
         FROM plaid_transactions t
         JOIN plaid_items i USING (item_id)
         LEFT JOIN plaid_accounts a ON a.account_id = t.account_id
         {PLAID_CATEGORY_JOINS}
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET {UPDATE_ALL}"
    )
}

/// Insert or refresh the unified rows of the manual transactions that `filter` selects (`t`).
fn upsert_manual(filter: &str) -> String {
    format!(
        "INSERT INTO unified_transactions ({COLUMNS})
         SELECT 'manual:' || t.id, 'manual', t.user_id, NULL, NULL, NULL, t.account_name, t.date,
                t.amount, t.currency, t.description, NULL, cat.id, cat.name, false, NULL, NULL,
                nextval('mirror_seq')
         FROM transactions t
         {MANUAL_CATEGORY_JOINS}
         WHERE {filter}
         ON CONFLICT (id) DO UPDATE SET {UPDATE_ALL}"
    )
}

/// How one source's changed rows are derived: the upsert for the ids bound as `$1`, the
/// unified ids of those ids (`$1`), and whether a unified row `u` still has its source row.
struct Rows {
    upsert: String,
    ids: &'static str,
    source_exists: &'static str,
}

impl Rows {
    /// Upsert the rows of `ids` and delete (leaving `tx_delete` entries) the unified rows
    /// whose source row is gone. Returns (upserted, deleted).
    async fn apply<T>(&self, conn: &mut PgConnection, ids: &[T]) -> Result<(u64, u64), sqlx::Error>
    where
        for<'q> &'q [T]: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: Sync,
    {
        let upserted = sqlx::query(sqlx::AssertSqlSafe(self.upsert.as_str()))
            .bind(ids)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH gone AS (
                 DELETE FROM unified_transactions u
                 WHERE u.id = ANY({}) AND NOT EXISTS ({})
                 RETURNING u.id
             )
             INSERT INTO mirror_changes (kind, key) SELECT 'tx_delete', id FROM gone",
            self.ids, self.source_exists
        )))
        .bind(ids)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok((upserted, deleted))
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
            upserted += sqlx::query(sqlx::AssertSqlSafe(upsert_plaid("t.item_id = ANY($1)")))
                .bind(&items)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }

        // Rows whose derived values depend on something else that changed: a category
        // (renamed, deleted; or "Uncategorized" re-created, for rows that had none), a
        // mapping rule (every row of its PFC primary), an account's name.
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
            ids: "SELECT 'plaid:' || x FROM unnest($1::text[]) x",
            source_exists: "SELECT 1 FROM plaid_transactions t WHERE t.plaid_transaction_id = substr(u.id, 7)",
        };
        let manual = Rows {
            upsert: upsert_manual("t.id = ANY($1)"),
            ids: "SELECT 'manual:' || x FROM unnest($1::bigint[]) x",
            source_exists: "SELECT 1 FROM transactions t WHERE t.id = substr(u.id, 8)::bigint",
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

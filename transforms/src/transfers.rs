//! Transfers between the person's own accounts, found in `unified_transactions` and marked
//! on both sides (`is_transfer`), so that a credit-card payment or a move to savings is
//! neither spending nor income.
//!
//! A pair is two posted transactions of opposite amounts in two accounts, the same
//! currency, at most [`MAX_DAYS`] apart, each the other's closest candidate (then the
//! lowest id), not unmarked by the person (`transfer_rejections`). Because each pair
//! depends only on the transactions of its amount, the transform recomputes exactly the
//! amounts whose transactions changed: it follows `unified_transactions` by change number
//! (`seq`) from its own position, as a sink does, and keeps the candidates it last saw
//! (`transfer_rows`) so that an amount's old value is known when it changes.
//!
//! Runs after the union, in the same derive transaction. Rows whose mark changes get a new
//! change number, so the mirror takes them; the `transfers` table of the mirror is reloaded
//! when any pair changed (`mirror_changes` kind `transfer`).

use finq_core::pipeline::{BoxError, ChangeSet, Counts, Transform};
use rust_decimal::Decimal;
use sqlx::PgConnection;

pub struct Transfers;

/// The longest a transfer takes to arrive, in days.
pub const MAX_DAYS: i32 = 4;

const POSITION: &str = "transform:transfers";

/// Which unified rows may be a side of a transfer.
const CANDIDATE: &str = "u.account_id IS NOT NULL AND NOT u.pending AND u.amount <> 0";

/// The pairs among the candidates of the amounts `sizes` selects (`r.size`).
fn pairs_sql(sizes: &str) -> String {
    format!(
        "WITH c AS (SELECT * FROM transfer_rows r WHERE {sizes}),
         cand AS (
             SELECT o.id AS out_id, i.id AS in_id, o.size, abs(i.date - o.date) AS gap
             FROM c o JOIN c i ON i.size = o.size AND i.amount > 0 AND o.amount < 0
                              AND i.account_id <> o.account_id
                              AND i.currency IS NOT DISTINCT FROM o.currency
                              AND abs(i.date - o.date) <= {MAX_DAYS}
             WHERE NOT EXISTS (SELECT 1 FROM transfer_rejections x
                               WHERE x.out_id = o.id AND x.in_id = i.id)
         ),
         best_out AS (SELECT DISTINCT ON (out_id) out_id, in_id FROM cand
                      ORDER BY out_id, gap, in_id COLLATE \"C\"),
         best_in AS (SELECT DISTINCT ON (in_id) in_id, out_id FROM cand
                     ORDER BY in_id, gap, out_id COLLATE \"C\")
         SELECT b.out_id, b.in_id, c.size
         FROM best_out b JOIN best_in USING (out_id, in_id) JOIN c ON c.id = b.out_id"
    )
}

impl Transform for Transfers {
    fn name(&self) -> &'static str {
        "transfers"
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        changes: &ChangeSet,
    ) -> Result<Counts, BoxError> {
        let (position, pruned): (Option<i64>, i64) = sqlx::query_as(
            "SELECT (SELECT position FROM pipeline_positions WHERE consumer = $1),
                    coalesce((SELECT position FROM pipeline_positions WHERE consumer = 'pruned'), 0)",
        )
        .bind(POSITION)
        .fetch_one(&mut *conn)
        .await?;
        let position = position.filter(|p| *p >= pruned && !changes.everything());

        // The amounts to recompute: None = all of them.
        let sizes: Option<Vec<Decimal>> = match position {
            None => {
                sqlx::query("DELETE FROM transfer_rows")
                    .execute(&mut *conn)
                    .await?;
                if changes.everything() {
                    // The union rebuilt every row unmarked: every pair is to be marked anew.
                    sqlx::query("DELETE FROM transfer_pairs")
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO transfer_rows (id, item_id, account_id, date, amount, currency)
                     SELECT id, item_id, account_id, date, amount, currency
                     FROM unified_transactions u WHERE {CANDIDATE}"
                )))
                .execute(&mut *conn)
                .await?;
                None
            }
            Some(position) => {
                let changed: Vec<String> =
                    sqlx::query_scalar("SELECT id FROM unified_transactions WHERE seq > $1")
                        .bind(position)
                        .fetch_all(&mut *conn)
                        .await?;
                let (deleted, deleted_items): (Vec<String>, Vec<String>) = {
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT kind, key FROM mirror_changes
                         WHERE seq > $1 AND kind IN ('tx_delete', 'tx_delete_item')",
                    )
                    .bind(position)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut d = (Vec::new(), Vec::new());
                    for (kind, key) in rows {
                        if kind == "tx_delete" {
                            d.0.push(key)
                        } else {
                            d.1.push(key)
                        }
                    }
                    d
                };
                let mut sizes: Vec<Decimal> = sqlx::query_scalar(
                    "DELETE FROM transfer_rows
                     WHERE id = ANY($1) OR id = ANY($2) OR item_id = ANY($3)
                     RETURNING size",
                )
                .bind(&changed)
                .bind(&deleted)
                .bind(&deleted_items)
                .fetch_all(&mut *conn)
                .await?;
                let added: Vec<Decimal> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO transfer_rows (id, item_id, account_id, date, amount, currency)
                     SELECT id, item_id, account_id, date, amount, currency
                     FROM unified_transactions u WHERE u.id = ANY($1) AND {CANDIDATE}
                     RETURNING size"
                )))
                .bind(&changed)
                .fetch_all(&mut *conn)
                .await?;
                sizes.extend(added);
                sizes.extend(
                    changes
                        .keys("transfer_size")
                        .iter()
                        .filter_map(|k| k.parse::<Decimal>().ok()),
                );
                sizes.sort_unstable();
                sizes.dedup();
                Some(sizes)
            }
        };

        let (mut removed, mut added) = (0u64, 0u64);
        let mut touched: Vec<String> = Vec::new();
        if sizes.as_ref().is_none_or(|s| !s.is_empty()) {
            let (filter_rows, filter_pairs) = match &sizes {
                None => ("true", "true"),
                Some(_) => ("r.size = ANY($1)", "p.size = ANY($1)"),
            };
            let fresh_sql = pairs_sql(filter_rows);
            // Pairs that are no longer, then pairs that are new.
            let gone_sql = format!(
                "WITH fresh AS ({fresh_sql})
                 DELETE FROM transfer_pairs p
                 WHERE {filter_pairs} AND NOT EXISTS
                     (SELECT 1 FROM fresh f WHERE f.out_id = p.out_id AND f.in_id = p.in_id)
                 RETURNING p.out_id, p.in_id"
            );
            let new_sql = format!(
                "WITH fresh AS ({fresh_sql})
                 INSERT INTO transfer_pairs (out_id, in_id, size)
                 SELECT out_id, in_id, size FROM fresh
                 ON CONFLICT DO NOTHING
                 RETURNING out_id, in_id"
            );
            for (sql, count) in [(gone_sql, &mut removed), (new_sql, &mut added)] {
                let query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                let rows: Vec<(String, String)> = match &sizes {
                    Some(s) => query.bind(s).fetch_all(&mut *conn).await?,
                    None => query.fetch_all(&mut *conn).await?,
                };
                *count += rows.len() as u64;
                touched.extend(rows.into_iter().flat_map(|(o, i)| [o, i]));
            }
        }
        if !touched.is_empty() {
            // The rows of the pairs that came or went: those whose mark changes get a new
            // change number, for the mirror.
            sqlx::query(
                "WITH want AS (
                     SELECT u.id, EXISTS (SELECT 1 FROM transfer_pairs p WHERE p.out_id = u.id)
                               OR EXISTS (SELECT 1 FROM transfer_pairs p WHERE p.in_id = u.id) AS mark
                     FROM unified_transactions u WHERE u.id = ANY($1)
                 )
                 UPDATE unified_transactions u
                 SET is_transfer = want.mark, seq = nextval('mirror_seq')
                 FROM want WHERE want.id = u.id AND u.is_transfer <> want.mark",
            )
            .bind(&touched)
            .execute(&mut *conn)
            .await?;
            sqlx::query("INSERT INTO mirror_changes (kind, key) VALUES ('transfer', '')")
                .execute(&mut *conn)
                .await?;
        }
        record_position(conn).await?;
        Ok(vec![("pairs_added", added), ("pairs_removed", removed)])
    }
}

/// Everything up to the latest change number is seen (including this transform's own).
async fn record_position(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO pipeline_positions (consumer, position)
         SELECT $1, CASE WHEN is_called THEN last_value ELSE 0 END FROM mirror_seq
         ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
    )
    .bind(POSITION)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A pair as `finq transfers` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Pair {
    pub out_id: String,
    pub in_id: String,
    pub amount: Decimal,
    pub out_date: chrono::NaiveDate,
    pub in_date: chrono::NaiveDate,
    pub from_account: Option<String>,
    pub to_account: Option<String>,
    pub description: String,
}

/// Every pair, the latest first.
pub async fn list(pool: &sqlx::PgPool) -> Result<Vec<Pair>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.out_id, p.in_id, p.size AS amount, o.date AS out_date, i.date AS in_date,
                o.account_name AS from_account, i.account_name AS to_account,
                o.description
         FROM transfer_pairs p
         JOIN unified_transactions o ON o.id = p.out_id
         JOIN unified_transactions i ON i.id = p.in_id
         ORDER BY o.date DESC, p.out_id",
    )
    .fetch_all(pool)
    .await
}

/// The person says the pair with transaction `id` (either side) is no transfer: it is
/// never paired again. Returns the pair, or None when `id` is in no pair.
pub async fn unmark(
    pool: &sqlx::PgPool,
    id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO transfer_rejections (out_id, in_id, size)
         SELECT out_id, in_id, size FROM transfer_pairs WHERE out_id = $1 OR in_id = $1
         ON CONFLICT DO NOTHING
         RETURNING out_id, in_id",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

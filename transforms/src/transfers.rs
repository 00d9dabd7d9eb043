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

/// The pairs among the candidates of the amounts `sizes` selects (`r.size`). Money in is
/// rare beside money out, so the inflows are found first (`transfer_rows_in_idx`), and
/// only the outflows of their amounts are read.
fn pairs_sql(sizes: &str) -> String {
    format!(
        "WITH i AS (SELECT r.* FROM transfer_rows r WHERE r.amount > 0 AND {sizes}),
         o AS (SELECT r.* FROM transfer_rows r
               WHERE r.amount < 0 AND r.size IN (SELECT DISTINCT size FROM i)),
         cand AS (
             SELECT o.id AS out_id, i.id AS in_id, o.size, abs(i.date - o.date) AS gap,
                    o.date AS out_date, i.date AS in_date, o.account_id AS out_account,
                    i.account_id AS in_account
             FROM o JOIN i ON i.size = o.size
                              AND i.account_id <> o.account_id
                              AND i.currency IS NOT DISTINCT FROM o.currency
                              AND abs(i.date - o.date) <= {MAX_DAYS}
             WHERE NOT EXISTS (SELECT 1 FROM transfer_rejections x
                               WHERE x.out_id = o.id AND x.in_id = i.id)
         ),
         best_out AS (SELECT DISTINCT ON (out_id) * FROM cand
                      ORDER BY out_id, gap, in_id COLLATE \"C\"),
         best_in AS (SELECT DISTINCT ON (in_id) in_id, out_id FROM cand
                     ORDER BY in_id, gap, out_id COLLATE \"C\")
         SELECT b.out_id, b.in_id, b.size, b.out_date, b.in_date, b.out_account, b.in_account
         FROM best_out b JOIN best_in USING (out_id, in_id)"
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
                // A bulk load: the indexes are built once afterwards, and the statistics
                // taken, so that the next incremental run's plans fit the data.
                for sql in [
                    "TRUNCATE transfer_rows",
                    "DROP INDEX transfer_rows_size_idx",
                    "DROP INDEX transfer_rows_in_idx",
                    "ALTER TABLE transfer_rows DROP CONSTRAINT transfer_rows_pkey",
                ] {
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
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
                for sql in [
                    "ALTER TABLE transfer_rows ADD CONSTRAINT transfer_rows_pkey PRIMARY KEY (id)",
                    "CREATE INDEX transfer_rows_size_idx ON transfer_rows (size)",
                    "CREATE INDEX transfer_rows_in_idx ON transfer_rows (size) WHERE amount > 0",
                    "ANALYZE transfer_rows",
                ] {
                    sqlx::query(sql).execute(&mut *conn).await?;
                }
                None
            }
            Some(position) => {
                // Two-sided, so that the planner takes the index even before statistics.
                let changed: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM unified_transactions WHERE seq > $1 AND seq <= $2",
                )
                .bind(position)
                .bind(i64::MAX)
                .fetch_all(&mut *conn)
                .await?;
                let (deleted, deleted_items): (Vec<String>, Vec<String>) = {
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT kind, key FROM mirror_changes
                         WHERE seq > $1 AND seq <= $2 AND kind IN ('tx_delete', 'tx_delete_item')",
                    )
                    .bind(position)
                    .bind(i64::MAX)
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
                let mut sizes: Vec<Decimal> = Vec::new();
                let gone: Vec<&String> = changed.iter().chain(&deleted).collect();
                if !gone.is_empty() {
                    sizes = sqlx::query_scalar(
                        "DELETE FROM transfer_rows WHERE id = ANY($1) RETURNING size",
                    )
                    .bind(&gone)
                    .fetch_all(&mut *conn)
                    .await?;
                }
                if !deleted_items.is_empty() {
                    // Rare (an item removed or relinked): a scan is fine.
                    let of_items: Vec<Decimal> = sqlx::query_scalar(
                        "DELETE FROM transfer_rows WHERE item_id = ANY($1) RETURNING size",
                    )
                    .bind(&deleted_items)
                    .fetch_all(&mut *conn)
                    .await?;
                    sizes.extend(of_items);
                }
                let added: Vec<Decimal> = if changed.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO transfer_rows (id, item_id, account_id, date, amount, currency)
                         SELECT id, item_id, account_id, date, amount, currency
                         FROM unified_transactions u WHERE u.id = ANY($1) AND {CANDIDATE}
                         RETURNING size"
                    )))
                    .bind(&changed)
                    .fetch_all(&mut *conn)
                    .await?
                };
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
            // The pairs as they should be, once, then what differs from what is stored.
            let (rows, filter_pairs) = match &sizes {
                None => ("true", "true"),
                Some(_) => ("r.size = ANY($1)", "p.size = ANY($1)"),
            };
            let fresh = format!(
                "CREATE TEMP TABLE transfer_fresh ON COMMIT DROP AS {}",
                pairs_sql(rows)
            );
            let gone_sql = format!(
                "DELETE FROM transfer_pairs p
                 WHERE {filter_pairs} AND NOT EXISTS
                     (SELECT 1 FROM transfer_fresh f
                      WHERE (f.out_id, f.in_id, f.out_date, f.in_date, f.out_account, f.in_account)
                          = (p.out_id, p.in_id, p.out_date, p.in_date, p.out_account, p.in_account))
                 RETURNING p.out_id, p.in_id"
            );
            let query = sqlx::query(sqlx::AssertSqlSafe(fresh));
            match &sizes {
                Some(s) => query.bind(s).execute(&mut *conn).await?,
                None => query.execute(&mut *conn).await?,
            };
            let query = sqlx::query_as(sqlx::AssertSqlSafe(gone_sql));
            let gone: Vec<(String, String)> = match &sizes {
                Some(s) => query.bind(s).fetch_all(&mut *conn).await?,
                None => query.fetch_all(&mut *conn).await?,
            };
            let new: Vec<(String, String)> = sqlx::query_as(
                "INSERT INTO transfer_pairs (out_id, in_id, size, out_date, in_date, out_account,
                                             in_account)
                 SELECT * FROM transfer_fresh
                 ON CONFLICT DO NOTHING
                 RETURNING out_id, in_id",
            )
            .fetch_all(&mut *conn)
            .await?;
            sqlx::query("DROP TABLE transfer_fresh")
                .execute(&mut *conn)
                .await?;
            (removed, added) = (gone.len() as u64, new.len() as u64);
            touched.extend(gone.into_iter().chain(new).flat_map(|(o, i)| [o, i]));
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
        Ok(vec![
            ("pairs_added", added),
            ("pairs_removed", removed),
            ("amounts", sizes.as_ref().map_or(0, |s| s.len() as u64)),
            ("everything", u64::from(sizes.is_none())),
        ])
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

//! Manual + Plaid transactions in one table, in the bank-statement sign.

use finq_core::plugin::{BoxError, Counts, Transform};
use sqlx::PgPool;

/// Rebuilds `unified_transactions` in one Postgres transaction, so readers see either the
/// old or the new table, never half of it.
pub struct UnionTransactions;

impl Transform for UnionTransactions {
    fn name(&self) -> &'static str {
        "union_transactions"
    }

    async fn run(&self, pool: &PgPool) -> Result<Counts, BoxError> {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM unified_transactions")
            .execute(&mut *tx)
            .await?;
        let plaid = sqlx::query(
            "INSERT INTO unified_transactions (id, source, user_id, item_id, account_id, account_name, date,
                 amount, currency, description, merchant, category_id, category, pending,
                 plaid_category, plaid_detailed_category)
             SELECT 'plaid:' || t.plaid_transaction_id, 'plaid', i.user_id, t.item_id, t.account_id, a.name, t.date,
                 -t.amount, coalesce(t.iso_currency_code, t.unofficial_currency_code), t.name, t.merchant_name,
                 c.id, c.name, t.pending, t.plaid_category, t.plaid_detailed_category
             FROM plaid_transactions t
             JOIN plaid_items i USING (item_id)
             LEFT JOIN plaid_accounts a ON a.account_id = t.account_id
             LEFT JOIN categories c ON c.id = coalesce(t.category_override_id, t.category_id)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let manual = sqlx::query(
            "INSERT INTO unified_transactions (id, source, user_id, item_id, account_id, account_name, date,
                 amount, currency, description, merchant, category_id, category, pending,
                 plaid_category, plaid_detailed_category)
             SELECT 'manual:' || t.id, 'manual', t.user_id, NULL, NULL, t.account_name, t.date,
                 t.amount, t.currency, t.description, NULL, c.id, coalesce(c.name, 'Uncategorized'), false, NULL, NULL
             FROM transactions t LEFT JOIN categories c ON c.id = t.category_id",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(vec![("plaid", plaid), ("manual", manual)])
    }
}

//! Map Plaid's personal finance categories onto the user's categories.

use finq_core::plugin::{BoxError, Counts, Transform};
use sqlx::PgPool;

/// Sets `plaid_transactions.category_id` from `category_mappings`. Unmapped codes land in
/// "Uncategorized", so nothing silently drops out of a spending report.
pub struct CategoryMapping;

impl Transform for CategoryMapping {
    fn name(&self) -> &'static str {
        "category_mapping"
    }

    async fn run(&self, pool: &PgPool) -> Result<Counts, BoxError> {
        let updated = sqlx::query(
            "WITH target AS (
                 SELECT t.plaid_transaction_id,
                        coalesce(
                            (SELECT m.category_id FROM category_mappings m
                             WHERE m.user_id = i.user_id AND m.pfc_primary = t.plaid_category
                               AND m.pfc_detailed = t.plaid_detailed_category),
                            (SELECT m.category_id FROM category_mappings m
                             WHERE m.user_id = i.user_id AND m.pfc_primary = t.plaid_category
                               AND m.pfc_detailed = ''),
                            (SELECT c.id FROM categories c
                             WHERE c.user_id = i.user_id AND c.name = 'Uncategorized')
                        ) AS category_id
                 FROM plaid_transactions t JOIN plaid_items i USING (item_id)
             )
             UPDATE plaid_transactions p SET category_id = target.category_id
             FROM target
             WHERE p.plaid_transaction_id = target.plaid_transaction_id AND p.category_id IS DISTINCT FROM target.category_id",
        )
        .execute(pool)
        .await?
        .rows_affected();
        Ok(vec![("updated", updated)])
    }
}

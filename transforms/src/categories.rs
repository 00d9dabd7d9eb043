//! Plaid's personal finance categories → the person's categories.
//!
//! The effective category of a Plaid transaction is, in order: the person's override
//! (`category_override_id`), the `category_mappings` rule for its detailed PFC code, the
//! rule for its primary code, and "Uncategorized", so nothing silently drops out of a
//! spending report. It is computed where rows are derived ([`crate::union`]), from these
//! joins, so a change of a mapping re-derives exactly the rows of that PFC primary.

/// Joins that make `cat` the effective category of `t` (a `plaid_transactions` row) of the
/// user `i.user_id`.
pub const PLAID_CATEGORY_JOINS: &str = "
    LEFT JOIN category_mappings md ON md.user_id = i.user_id AND md.pfc_primary = t.plaid_category
                                  AND md.pfc_detailed = t.plaid_detailed_category
    LEFT JOIN category_mappings mp ON mp.user_id = i.user_id AND mp.pfc_primary = t.plaid_category
                                  AND mp.pfc_detailed = ''
    LEFT JOIN categories unc ON unc.user_id = i.user_id AND unc.name = 'Uncategorized'
    LEFT JOIN categories cat ON cat.id = coalesce(t.category_override_id, md.category_id, mp.category_id, unc.id)";

/// Joins that make `cat` the effective category of `t` (a manual `transactions` row).
pub const MANUAL_CATEGORY_JOINS: &str = "
    LEFT JOIN categories unc ON unc.user_id = t.user_id AND unc.name = 'Uncategorized'
    LEFT JOIN categories cat ON cat.id = coalesce(t.category_id, unc.id)";

//! The item store: `plaid_items` and what hangs off it: listing, health (errors, notices,
//! what polling may retry), opening sealed access tokens, removal. Two writes happen
//! elsewhere, each inside a larger statement or transaction of its own: linking inserts
//! the item with its accounts (`link`), and a sync records its outcome on the item in the
//! statement that writes its `sync_log` entry (`sync`).

use finq_core::vault::{TokenVault, VaultError};
use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};

/// What recreates one item of the in-process simulator (stored with the item, so a later
/// process can recreate it: the simulator is deterministic).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimItemSpec {
    pub seed: u64,
    pub institution_id: String,
    /// 0 for the first item of this institution in a simulator, 1 for the next, …
    pub ordinal: u32,
    pub transactions: usize,
    /// The simulated "today" when the item was created.
    pub anchor: chrono::NaiveDate,
}

/// A linked item, as the pipeline needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ItemInfo {
    pub item_id: String,
    /// The institution's name (its id when the name is unknown).
    pub institution: String,
    /// `sim`, `sandbox` or `production`.
    pub environment: String,
    #[sqlx(json(nullable))]
    pub sim_spec: Option<SimItemSpec>,
    /// Who made it (`demo` for the demo's item).
    pub created_by: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("no linked item `{0}`; `finq items` lists them")]
    Unknown(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("database error reading items: {0}")]
    Db(#[from] sqlx::Error),
}

const SELECT: &str = "SELECT item_id, coalesce(institution_name, institution_id) AS institution,
        environment, sim_spec, sim_spec->>'created_by' AS created_by
     FROM plaid_items";

/// Every linked item, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ItemInfo>, ItemError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} ORDER BY created_at, item_id"
    )))
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, item_id: &str) -> Result<ItemInfo, ItemError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE item_id = $1")))
        .bind(item_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ItemError::Unknown(item_id.to_string()))
}

/// The item's access token, unsealed.
pub async fn open_token(
    pool: &PgPool,
    vault: &TokenVault,
    item_id: &str,
) -> Result<SecretString, ItemError> {
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT access_token_enc FROM plaid_items WHERE item_id = $1")
            .bind(item_id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| ItemError::Unknown(item_id.to_string()))?;
    Ok(vault.open(item_id, &sealed)?)
}

/// Delete an item's local data: its transactions (their partition is dropped whole, by a
/// trigger), accounts, cursor and sync history. Plaid is not told; see `/item/remove`.
pub async fn delete(conn: &mut PgConnection, item_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM plaid_items WHERE item_id = $1")
        .bind(item_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Record an error Plaid reported for the item (by webhook); `error_since` keeps the first
/// time this code was seen. Returns whether the item exists.
pub async fn set_error(
    pool: &PgPool,
    item_id: &str,
    code: &str,
    message: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE plaid_items SET error_code = $2, error_message = $3, updated_at = now(),
             error_since = CASE WHEN error_code IS NOT DISTINCT FROM $2 THEN coalesce(error_since, now()) ELSE now() END
         WHERE item_id = $1",
    )
    .bind(item_id)
    .bind(code)
    .bind(message)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// Clear the item's error if it is one of `codes` (and only then): the login repaired
/// (`ITEM_LOGIN_REQUIRED`).
pub async fn clear_error(pool: &PgPool, item_id: &str, codes: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE plaid_items SET error_code = NULL, error_message = NULL, error_since = NULL, updated_at = now()
         WHERE item_id = $1 AND error_code = ANY($2)",
    )
    .bind(item_id)
    .bind(codes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Errors a sync cannot get past: only the user (through Link's update mode, or at the
/// bank) or linking again mends them. Items with one are not polled; any other error (the
/// bank or Plaid down, a rate limit, a failed sync) is retried.
pub const BLOCKING_ERRORS: &[&str] = &[
    "ITEM_LOGIN_REQUIRED",
    "ITEM_LOCKED",
    "USER_SETUP_REQUIRED",
    "ACCESS_NOT_GRANTED",
    "ADDITIONAL_CONSENT_REQUIRED",
    "NO_ACCOUNTS",
    "USER_PERMISSION_REVOKED",
    "USER_ACCOUNT_REVOKED",
    "ITEM_NOT_FOUND",
    "INVALID_ACCESS_TOKEN",
    "INSTITUTION_NO_LONGER_SUPPORTED",
];

/// The item's error, if it is one a sync cannot get past ([`BLOCKING_ERRORS`]).
pub async fn blocking_error(pool: &PgPool, item_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT error_code FROM plaid_items WHERE item_id = $1 AND error_code = ANY($2)",
    )
    .bind(item_id)
    .bind(BLOCKING_ERRORS)
    .fetch_optional(pool)
    .await
}

/// Errors the user mends in Link's update mode (or at the bank, then in Link).
const LINK_MENDS: &[&str] = &["ITEM_LOGIN_REQUIRED", "ITEM_LOCKED"];

/// Notices: the item works, but its user should go through Link's update mode soon.
pub const NOTICES: &[&str] = &[
    "PENDING_EXPIRATION",
    "PENDING_DISCONNECT",
    "NEW_ACCOUNTS_AVAILABLE",
];

/// Whether the item needs its user on the Link page (update mode): a login to repair, or a
/// notice (consent ending, new accounts).
pub fn needs_link(error_code: Option<&str>, notice_code: Option<&str>) -> bool {
    error_code.is_some_and(|c| LINK_MENDS.contains(&c)) || notice_code.is_some()
}

/// Record a notice Plaid sent for the item (see [`NOTICES`]); `notice_since` keeps the first
/// time this code was seen. A sync leaves it; Link's update mode clears it
/// ([`relinked`]).
pub async fn set_notice(pool: &PgPool, item_id: &str, code: &str) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE plaid_items SET notice_code = $2, updated_at = now(),
             notice_since = CASE WHEN notice_code IS NOT DISTINCT FROM $2 THEN coalesce(notice_since, now()) ELSE now() END
         WHERE item_id = $1",
    )
    .bind(item_id)
    .bind(code)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// The user has been through Link's update mode for the item: a login error it mends and
/// any notice are cleared.
pub async fn relinked(pool: &PgPool, item_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE plaid_items
            SET notice_code = NULL, notice_since = NULL, updated_at = now(),
                error_message = CASE WHEN error_code = ANY($2) THEN NULL ELSE error_message END,
                error_since = CASE WHEN error_code = ANY($2) THEN NULL ELSE error_since END,
                error_code = CASE WHEN error_code = ANY($2) THEN NULL ELSE error_code END
          WHERE item_id = $1",
    )
    .bind(item_id)
    .bind(LINK_MENDS)
    .execute(pool)
    .await?;
    Ok(())
}

/// Each account's name and mask, e.g. "Plaid Checking ••0000".
pub async fn account_labels(pool: &PgPool, item_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name || coalesce(' ••' || mask, '') FROM plaid_accounts
         WHERE item_id = $1 ORDER BY name, account_id",
    )
    .bind(item_id)
    .fetch_all(pool)
    .await
}

/// How many transactions the item has.
pub async fn transaction_count(pool: &PgPool, item_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM plaid_transactions WHERE item_id = $1")
        .bind(item_id)
        .fetch_one(pool)
        .await
}

/// Items with no successful sync for `older_than` (or none ever) and no attempt for
/// `older_than` or an hour, whichever is shorter (a failing bank is retried hourly, not at
/// every look), leaving out those with an error only their user can mend
/// ([`BLOCKING_ERRORS`]: a sync would only fail again).
pub async fn due_for_poll(
    pool: &PgPool,
    older_than: std::time::Duration,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.item_id FROM plaid_items i
         WHERE (i.error_code IS NULL OR i.error_code <> ALL($2))
           AND coalesce((SELECT max(l.finished_at) FROM sync_log l
                         WHERE l.item_id = i.item_id AND l.outcome = 'ok'), '-infinity')
               < now() - make_interval(secs => $1)
           AND coalesce((SELECT max(l.started_at) FROM sync_log l WHERE l.item_id = i.item_id),
                        '-infinity')
               < now() - make_interval(secs => least($1, 3600))
         ORDER BY i.item_id",
    )
    .bind(older_than.as_secs_f64())
    .bind(BLOCKING_ERRORS)
    .fetch_all(pool)
    .await
}

pub async fn exists(pool: &PgPool, item_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plaid_items WHERE item_id = $1)")
        .bind(item_id)
        .fetch_one(pool)
        .await
}

/// An item's health and size, for `finq items`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ItemStatus {
    pub item_id: String,
    pub institution: String,
    pub environment: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_since: Option<chrono::DateTime<chrono::Utc>>,
    /// A notice (see [`NOTICES`]) and since when.
    pub notice_code: Option<String>,
    pub notice_since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_synced_at: Option<chrono::DateTime<chrono::Utc>>,
    pub accounts: i64,
    pub transactions: i64,
    /// Each account's name and mask, e.g. "Plaid Checking ••0000, Plaid Saving ••1111".
    pub account_names: Option<String>,
    /// The error of the last failed sync.
    pub last_error: Option<String>,
}

/// Every item's status (or one item's), oldest first.
pub async fn statuses(pool: &PgPool, item: Option<&str>) -> Result<Vec<ItemStatus>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.item_id, coalesce(i.institution_name, i.institution_id) AS institution, i.environment,
                i.error_code, i.error_message, i.error_since, i.notice_code, i.notice_since,
                i.last_synced_at,
                (SELECT count(*) FROM plaid_accounts a WHERE a.item_id = i.item_id) AS accounts,
                (SELECT count(*) FROM plaid_transactions t WHERE t.item_id = i.item_id) AS transactions,
                (SELECT string_agg(a.name || coalesce(' ••' || a.mask, ''), ', ' ORDER BY a.name)
                 FROM plaid_accounts a WHERE a.item_id = i.item_id) AS account_names,
                (SELECT l.error FROM sync_log l WHERE l.item_id = i.item_id AND l.outcome <> 'ok'
                 ORDER BY l.id DESC LIMIT 1) AS last_error
         FROM plaid_items i WHERE $1::text IS NULL OR i.item_id = $1
         ORDER BY i.created_at, i.item_id",
    )
    .bind(item)
    .fetch_all(pool)
    .await
}

//! The item store: `plaid_items` and what hangs off it. The only module that reads or
//! writes items' rows (and opens their sealed access tokens).

use finq_core::vault::{TokenVault, VaultError};
use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};

use crate::sim::SimItemSpec;

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

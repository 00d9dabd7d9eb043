//! Linking an institution: sandbox public token → exchange → item, accounts and the sealed
//! access token stored in one Postgres transaction.

use finq_core::LOCAL_USER_ID;
use finq_core::vault::TokenVault;
use secrecy::SecretString;
use sqlx::{PgPool, Postgres, Transaction as PgTx};

use super::client::{PlaidApiError, PlaidClient};
use super::types::AccountBase;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Plaid(#[from] PlaidApiError),
    #[error("database error while storing the new connection: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone)]
pub struct LinkedItem {
    pub item_id: String,
    pub institution_id: String,
    pub institution_name: String,
    pub accounts: usize,
}

/// Link an institution through the sandbox flow (simulator or Plaid Sandbox).
///
/// `environment` (`sim`, `sandbox`, `production`) is recorded with the item; `sim_spec_for`
/// gives, for in-process simulator items, what recreates them (see `sim::SimItemSpec`).
pub async fn link_sandbox_institution(
    pool: &PgPool,
    client: &PlaidClient,
    vault: &TokenVault,
    institution_id: &str,
    environment: &str,
    sim_spec_for: impl FnOnce(&str) -> Option<serde_json::Value>,
) -> Result<LinkedItem, LinkError> {
    let public = client
        .sandbox_public_token_create(institution_id, None)
        .await?;
    let exchanged = client.exchange_public_token(&public.public_token).await?;
    let access_token = SecretString::from(exchanged.access_token);
    let accounts = client.accounts_get(&access_token).await?;
    let institution_name = match client.institution_get_by_id(institution_id).await {
        Ok(r) => r.institution.name,
        Err(e) => {
            tracing::warn!(error = %e, "could not look up the institution's name");
            accounts
                .item
                .institution_name
                .clone()
                .unwrap_or_else(|| institution_id.to_string())
        }
    };
    let item_id = exchanged.item_id;
    let sim_spec = sim_spec_for(&item_id);

    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO plaid_items (item_id, user_id, institution_id, institution_name, access_token_enc, environment, sim_spec)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&item_id)
    .bind(LOCAL_USER_ID)
    .bind(institution_id)
    .bind(&institution_name)
    .bind(vault.seal(&item_id, &access_token))
    .bind(environment)
    .bind(sim_spec)
    .execute(&mut *tx)
    .await?;
    upsert_accounts(&mut tx, &item_id, &accounts.accounts).await?;
    tx.commit().await?;
    tracing::info!(%item_id, institution = %institution_name, "linked");
    Ok(LinkedItem {
        item_id,
        institution_id: institution_id.to_string(),
        institution_name,
        accounts: accounts.accounts.len(),
    })
}

/// Insert or refresh accounts and their balances.
pub async fn upsert_accounts(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    accounts: &[AccountBase],
) -> Result<(), sqlx::Error> {
    for a in accounts {
        sqlx::query(
            "INSERT INTO plaid_accounts (account_id, item_id, name, official_name, mask, type, subtype,
                 current_balance, available_balance, credit_limit, iso_currency_code, unofficial_currency_code)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (account_id) DO UPDATE SET
                 name = EXCLUDED.name, official_name = EXCLUDED.official_name, mask = EXCLUDED.mask,
                 type = EXCLUDED.type, subtype = EXCLUDED.subtype,
                 current_balance = EXCLUDED.current_balance, available_balance = EXCLUDED.available_balance,
                 credit_limit = EXCLUDED.credit_limit, iso_currency_code = EXCLUDED.iso_currency_code,
                 unofficial_currency_code = EXCLUDED.unofficial_currency_code, updated_at = now()",
        )
        .bind(&a.account_id)
        .bind(item_id)
        .bind(&a.name)
        .bind(&a.official_name)
        .bind(&a.mask)
        .bind(&a.account_type)
        .bind(&a.subtype)
        .bind(a.balances.current)
        .bind(a.balances.available)
        .bind(a.balances.limit)
        .bind(&a.balances.iso_currency_code)
        .bind(&a.balances.unofficial_currency_code)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

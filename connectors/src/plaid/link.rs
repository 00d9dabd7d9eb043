//! Linking an institution: a public token (from Plaid Link, or the sandbox shortcut) →
//! exchange → item, accounts and the sealed access token stored in one Postgres transaction.

use finq_core::LOCAL_USER_ID;
use finq_core::vault::TokenVault;
use rust_decimal::Decimal;
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
    /// Earlier items of the same login that this one replaced (their data was moved over).
    pub replaced: Vec<String>,
}

/// Link an institution through the sandbox flow (simulator or Plaid Sandbox): a public
/// token from `/sandbox/public_token/create`, then [`exchange_and_store`].
///
/// `environment` (`sim`, `sandbox`, `production`) is recorded with the item; `sim_spec_for`
/// gives, for in-process simulator items, what recreates them (see `sim::SimItemSpec`).
pub async fn link_sandbox_institution(
    pool: &PgPool,
    client: &PlaidClient,
    vault: &TokenVault,
    institution_id: &str,
    environment: &str,
    webhook: Option<String>,
    sim_spec_for: impl FnOnce(&str) -> Option<serde_json::Value>,
) -> Result<LinkedItem, LinkError> {
    let public = client
        .sandbox_public_token_create(institution_id, webhook)
        .await?;
    exchange_and_store(
        pool,
        client,
        vault,
        &public.public_token,
        environment,
        sim_spec_for,
    )
    .await
}

/// Exchange a public token (from Plaid Link's `onSuccess`, or the sandbox) for an access
/// token and store the new item: its accounts, and the token sealed by the vault, in one
/// transaction. The same login linked before is replaced, keeping the user's edits.
pub async fn exchange_and_store(
    pool: &PgPool,
    client: &PlaidClient,
    vault: &TokenVault,
    public_token: &str,
    environment: &str,
    sim_spec_for: impl FnOnce(&str) -> Option<serde_json::Value>,
) -> Result<LinkedItem, LinkError> {
    let exchanged = client.exchange_public_token(public_token).await?;
    let access_token = SecretString::from(exchanged.access_token);
    let accounts = client.accounts_get(&access_token).await?;
    let institution_id = accounts
        .item
        .institution_id
        .clone()
        .unwrap_or_else(|| "unknown".to_string());
    let institution_id = institution_id.as_str();
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
    // The same login linked again would duplicate every transaction: the new item replaces
    // the old one, keeping the user's edits.
    let replaced = relinked_items(&mut tx, institution_id, &item_id).await?;
    let mut old_tokens = Vec::new();
    for old in &replaced {
        let sealed: Vec<u8> =
            sqlx::query_scalar("SELECT access_token_enc FROM plaid_items WHERE item_id = $1")
                .bind(old)
                .fetch_one(&mut *tx)
                .await?;
        old_tokens.push((old.clone(), sealed));
        let kept = replace_item(&mut tx, old, &item_id).await?;
        tracing::info!(old_item = %old, new_item = %item_id, edits_kept = kept, "re-link: the new item replaces the old one");
    }
    tx.commit().await?;
    // The old items are gone here; tell Plaid too, so they are not billed twice.
    for (old, sealed) in old_tokens {
        match vault.open(&old, &sealed) {
            Ok(token) => {
                if let Err(e) = client.item_remove(&token).await {
                    tracing::warn!(item_id = %old, error = %e, "could not remove the replaced item at Plaid");
                }
            }
            Err(e) => {
                tracing::warn!(item_id = %old, error = %e, "could not open the replaced item's token")
            }
        }
    }
    tracing::info!(%item_id, institution = %institution_name, "linked");
    Ok(LinkedItem {
        item_id,
        institution_id: institution_id.to_string(),
        institution_name,
        accounts: accounts.accounts.len(),
        replaced,
    })
}

/// Insert or refresh accounts and their balances.
pub async fn upsert_accounts(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    accounts: &[AccountBase],
) -> Result<(), sqlx::Error> {
    if accounts.is_empty() {
        return Ok(());
    }
    // Two statements for all accounts (this runs in every sync, incremental ones included).
    let col = |f: fn(&AccountBase) -> Option<String>| accounts.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<String> = accounts.iter().map(|a| a.account_id.clone()).collect();
    let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    let types: Vec<String> = accounts.iter().map(|a| a.account_type.clone()).collect();
    let amount =
        |f: fn(&AccountBase) -> Option<Decimal>| accounts.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO plaid_accounts (account_id, item_id, name, official_name, mask, type, subtype,
             current_balance, available_balance, credit_limit, iso_currency_code, unofficial_currency_code)
         SELECT a.id, $2, a.name, a.official_name, a.mask, a.type, a.subtype, a.cur, a.avail, a.lim, a.iso, a.unofficial
         FROM unnest($1::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::numeric[], $9::numeric[], $10::numeric[], $11::text[], $12::text[])
              AS a (id, name, official_name, mask, type, subtype, cur, avail, lim, iso, unofficial)
         ON CONFLICT (account_id) DO UPDATE SET
             name = EXCLUDED.name, official_name = EXCLUDED.official_name, mask = EXCLUDED.mask,
             type = EXCLUDED.type, subtype = EXCLUDED.subtype,
             current_balance = EXCLUDED.current_balance, available_balance = EXCLUDED.available_balance,
             credit_limit = EXCLUDED.credit_limit, iso_currency_code = EXCLUDED.iso_currency_code,
             unofficial_currency_code = EXCLUDED.unofficial_currency_code, updated_at = now()",
    )
    .bind(&ids)
    .bind(item_id)
    .bind(&names)
    .bind(col(|a| a.official_name.clone()))
    .bind(col(|a| a.mask.clone()))
    .bind(&types)
    .bind(col(|a| a.subtype.clone()))
    .bind(amount(|a| a.balances.current))
    .bind(amount(|a| a.balances.available))
    .bind(amount(|a| a.balances.limit))
    .bind(col(|a| a.balances.iso_currency_code.clone()))
    .bind(col(|a| a.balances.unofficial_currency_code.clone()))
    .execute(&mut **tx)
    .await?;
    // Today's balance snapshot, from the rows just written.
    sqlx::query(
        "INSERT INTO balance_snapshots (account_id, as_of, current_balance, available_balance, credit_limit, iso_currency_code)
         SELECT account_id, current_date, current_balance, available_balance, credit_limit, iso_currency_code
         FROM plaid_accounts WHERE account_id = ANY($1)
         ON CONFLICT (account_id, as_of) DO UPDATE SET
             current_balance = EXCLUDED.current_balance, available_balance = EXCLUDED.available_balance,
             credit_limit = EXCLUDED.credit_limit, iso_currency_code = EXCLUDED.iso_currency_code,
             recorded_at = now()",
    )
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Earlier items of the same institution whose accounts all reappear (same name, mask and
/// subtype) in `new_item`: the same login linked again.
pub async fn relinked_items(
    tx: &mut PgTx<'_, Postgres>,
    institution_id: &str,
    new_item: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT i.item_id FROM plaid_items i
         WHERE i.institution_id = $1 AND i.item_id <> $2
           AND EXISTS (SELECT 1 FROM plaid_accounts a WHERE a.item_id = i.item_id)
           AND NOT EXISTS (
               SELECT 1 FROM plaid_accounts a
               WHERE a.item_id = i.item_id
                 AND NOT EXISTS (SELECT 1 FROM plaid_accounts b
                                 WHERE b.item_id = $2 AND b.name = a.name
                                   AND b.mask IS NOT DISTINCT FROM a.mask
                                   AND b.subtype IS NOT DISTINCT FROM a.subtype))
         ORDER BY i.created_at",
    )
    .bind(institution_id)
    .bind(new_item)
    .fetch_all(&mut **tx)
    .await
}

/// Replace `old_item` by `new_item`: keep the user's edits for the new item's transactions
/// (matched after its first sync), then delete the old item's local data.
async fn replace_item(
    tx: &mut PgTx<'_, Postgres>,
    old_item: &str,
    new_item: &str,
) -> Result<u64, sqlx::Error> {
    let kept = sqlx::query(
        "INSERT INTO relink_carryover (item_id, account_id, date, amount, name, category_override_id, notes)
         SELECT $2, b.account_id, t.date, t.amount, t.name, t.category_override_id, t.notes
         FROM plaid_transactions t
         JOIN plaid_accounts a ON a.account_id = t.account_id
         JOIN plaid_accounts b ON b.item_id = $2 AND b.name = a.name
              AND b.mask IS NOT DISTINCT FROM a.mask AND b.subtype IS NOT DISTINCT FROM a.subtype
         WHERE t.item_id = $1 AND (t.category_override_id IS NOT NULL OR t.notes IS NOT NULL)",
    )
    .bind(old_item)
    .bind(new_item)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    super::items::delete(tx, old_item).await?;
    Ok(kept)
}

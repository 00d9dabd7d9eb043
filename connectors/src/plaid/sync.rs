//! The `/transactions/sync` source.
//!
//! One *update* is every page from the stored cursor until `has_more` is false. All its pages
//! are applied, page by page (never all held in memory), inside one Postgres transaction that
//! also writes the final cursor, so a crash or error leaves the previous consistent state.
//! The transaction first takes a per-item advisory lock, so two syncs of one item (even in two
//! processes) never interleave: the second waits, then starts from the cursor the first wrote.
//! On `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION` the update is rolled back and restarted
//! from its first cursor, as Plaid prescribes.
//!
//! Pending → posted: removals are applied at the end of the update, after the posted row has
//! inherited the user's edits (category override, note) from the pending row it replaces.

use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use finq_core::vault::{TokenVault, VaultError};
use rust_decimal::Decimal;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Row, Transaction as PgTx};

use super::client::{PlaidApiError, PlaidClient};
use super::link::upsert_accounts;
use super::types::{RemovedTransaction, Transaction};

pub const MUTATION_ERROR: &str = "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no linked item {0}; `finq items` lists them")]
    UnknownItem(String),
    #[error(transparent)]
    Plaid(#[from] PlaidApiError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("database error during sync: {0}")]
    Db(#[from] sqlx::Error),
    #[error("Plaid's data kept changing during pagination ({0} restarts); try again in a minute")]
    TooManyRestarts(u32),
}

#[derive(Debug, Clone, Copy)]
pub struct SyncSettings {
    /// `count` per page: Plaid allows 1–500; 500 also makes mutation errors less likely.
    pub page_size: i64,
    /// How often an update may restart after `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`.
    pub max_restarts: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            page_size: 500,
            max_restarts: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncOutcome {
    pub item_id: String,
    pub institution: String,
    pub added: u64,
    pub modified: u64,
    pub removed: u64,
    pub pages: u64,
    pub restarts: u32,
    pub update_status: String,
}

/// Progress of one update, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct SyncProgress {
    pub pages: u64,
    pub changes: u64,
}

struct ItemRow {
    institution: String,
    token: SecretString,
}

async fn load_item(pool: &PgPool, vault: &TokenVault, item_id: &str) -> Result<ItemRow, SyncError> {
    let row = sqlx::query(
        "SELECT coalesce(institution_name, institution_id) AS institution, access_token_enc
         FROM plaid_items WHERE item_id = $1",
    )
    .bind(item_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| SyncError::UnknownItem(item_id.to_string()))?;
    let sealed: Vec<u8> = row.get("access_token_enc");
    Ok(ItemRow {
        institution: row.get("institution"),
        token: vault.open(item_id, &sealed)?,
    })
}

/// Sync one item: pull every update page and apply it atomically with the new cursor.
pub async fn sync_item(
    pool: &PgPool,
    client: &PlaidClient,
    vault: &TokenVault,
    item_id: &str,
    settings: SyncSettings,
    progress: &(dyn Fn(SyncProgress) + Send + Sync),
) -> Result<SyncOutcome, SyncError> {
    let started = Utc::now();
    let clock = Instant::now();
    let item = load_item(pool, vault, item_id).await?;
    let mut outcome = SyncOutcome {
        item_id: item_id.to_string(),
        institution: item.institution.clone(),
        ..Default::default()
    };
    let mut cursor_before = None;
    let mut cursor_after = None;
    let result = async {
        loop {
            outcome.added = 0;
            outcome.modified = 0;
            outcome.removed = 0;
            outcome.pages = 0;
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('finq.sync:' || $1, 0))")
                .bind(item_id)
                .execute(&mut *tx)
                .await?;
            // Read the cursor under the lock: a sync that held it before us may have moved it.
            let start: Option<String> =
                sqlx::query_scalar("SELECT cursor FROM sync_cursors WHERE item_id = $1")
                    .bind(item_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            cursor_before = start.clone();
            sqlx::query(
                "CREATE TEMP TABLE finq_removed (plaid_transaction_id text PRIMARY KEY) ON COMMIT DROP",
            )
            .execute(&mut *tx)
            .await?;
            match pull_update(&mut tx, client, &item.token, item_id, start, settings, &mut outcome, progress).await {
                Ok(final_cursor) => {
                    finish_update(&mut tx, item_id, &final_cursor).await?;
                    tx.commit().await?;
                    cursor_after = Some(final_cursor);
                    return Ok(());
                }
                Err(SyncError::Plaid(e)) if e.code() == Some(MUTATION_ERROR) => {
                    tx.rollback().await?;
                    outcome.restarts += 1;
                    if outcome.restarts > settings.max_restarts {
                        return Err(SyncError::TooManyRestarts(outcome.restarts - 1));
                    }
                    tracing::info!(item_id, restarts = outcome.restarts, "data changed during pagination; restarting the update from its first cursor");
                }
                Err(e) => {
                    tx.rollback().await?;
                    return Err(e);
                }
            }
        }
    }
    .await;

    let (outcome_word, error_text) = match &result {
        Ok(()) => ("ok", None),
        Err(e) => ("error", Some(e.to_string())),
    };
    // Item health: keep Plaid's error code on the item; clear it on success.
    let (code, message) = match &result {
        Ok(()) => (None, None),
        Err(SyncError::Plaid(PlaidApiError::Plaid { error, .. })) => (
            Some(error.error_code.clone()),
            Some(error.error_message.clone()),
        ),
        Err(e) => (Some("SYNC_FAILED".to_string()), Some(e.to_string())),
    };
    let health = sqlx::query(
        "UPDATE plaid_items SET error_code = $2, error_message = $3, updated_at = now(),
             last_synced_at = CASE WHEN $2::text IS NULL THEN now() ELSE last_synced_at END
         WHERE item_id = $1",
    )
    .bind(item_id)
    .bind(code)
    .bind(message)
    .execute(pool);
    let log = sqlx::query(
        "INSERT INTO sync_log (item_id, started_at, cursor_before, cursor_after, added, modified, removed, pages, outcome, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(item_id)
    .bind(started)
    .bind(cursor_before)
    .bind(cursor_after)
    .bind(outcome.added as i32)
    .bind(outcome.modified as i32)
    .bind(outcome.removed as i32)
    .bind(outcome.pages as i32)
    .bind(outcome_word)
    .bind(error_text)
    .execute(pool);
    if let Err(e) = health.await.and(log.await) {
        tracing::warn!(item_id, error = %e, "could not record the sync outcome");
    }
    tracing::info!(
        item_id,
        ms = clock.elapsed().as_millis() as u64,
        added = outcome.added,
        modified = outcome.modified,
        removed = outcome.removed,
        ok = result.is_ok(),
        "sync finished"
    );
    result.map(|()| outcome)
}

#[allow(clippy::too_many_arguments)]
async fn pull_update(
    tx: &mut PgTx<'_, Postgres>,
    client: &PlaidClient,
    token: &SecretString,
    item_id: &str,
    start: Option<String>,
    settings: SyncSettings,
    outcome: &mut SyncOutcome,
    progress: &(dyn Fn(SyncProgress) + Send + Sync),
) -> Result<String, SyncError> {
    let mut cursor = start;
    loop {
        let page = client
            .transactions_sync(token, cursor.as_deref(), settings.page_size)
            .await?;
        upsert_accounts(tx, item_id, &page.accounts).await?;
        upsert_transactions(tx, item_id, &page.added).await?;
        upsert_transactions(tx, item_id, &page.modified).await?;
        mark_removed(tx, &page.removed).await?;
        outcome.added += page.added.len() as u64;
        outcome.modified += page.modified.len() as u64;
        outcome.removed += page.removed.len() as u64;
        outcome.pages += 1;
        outcome.update_status = page.transactions_update_status;
        progress(SyncProgress {
            pages: outcome.pages,
            changes: outcome.added + outcome.modified + outcome.removed,
        });
        let next = page.next_cursor.unwrap_or_default();
        if !page.has_more {
            return Ok(next);
        }
        cursor = Some(next);
    }
}

/// Batch upsert by `plaid_transaction_id` (one statement per page, arrays via UNNEST).
async fn upsert_transactions(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    txns: &[Transaction],
) -> Result<(), sqlx::Error> {
    if txns.is_empty() {
        return Ok(());
    }
    let n = txns.len();
    let mut ids = Vec::with_capacity(n);
    let mut accounts = Vec::with_capacity(n);
    let mut amounts: Vec<Decimal> = Vec::with_capacity(n);
    let mut iso = Vec::with_capacity(n);
    let mut unofficial = Vec::with_capacity(n);
    let mut dates: Vec<NaiveDate> = Vec::with_capacity(n);
    let mut auth_dates: Vec<Option<NaiveDate>> = Vec::with_capacity(n);
    let mut datetimes: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut merchants = Vec::with_capacity(n);
    let mut channels = Vec::with_capacity(n);
    let mut pendings = Vec::with_capacity(n);
    let mut pending_ids = Vec::with_capacity(n);
    let mut primaries = Vec::with_capacity(n);
    let mut detaileds = Vec::with_capacity(n);
    let mut confidences = Vec::with_capacity(n);
    for t in txns {
        ids.push(t.transaction_id.as_str());
        accounts.push(t.account_id.as_str());
        amounts.push(t.amount.round_dp(2));
        iso.push(t.iso_currency_code.as_deref());
        unofficial.push(t.unofficial_currency_code.as_deref());
        dates.push(t.date);
        auth_dates.push(t.authorized_date);
        datetimes.push(t.datetime);
        names.push(
            t.name
                .as_deref()
                .or(t.merchant_name.as_deref())
                .unwrap_or("(no description)"),
        );
        merchants.push(t.merchant_name.as_deref());
        channels.push(t.payment_channel.as_str());
        pendings.push(t.pending);
        pending_ids.push(t.pending_transaction_id.as_deref());
        let pfc = t.personal_finance_category.as_ref();
        primaries.push(pfc.map(|p| p.primary.as_str()));
        detaileds.push(pfc.map(|p| p.detailed.as_str()));
        confidences.push(pfc.and_then(|p| p.confidence_level.as_deref()));
    }
    sqlx::query(
        "INSERT INTO plaid_transactions (plaid_transaction_id, item_id, account_id, amount, iso_currency_code,
             unofficial_currency_code, date, authorized_date, datetime, name, merchant_name, payment_channel,
             pending, pending_transaction_id, plaid_category, plaid_detailed_category, plaid_category_confidence)
         SELECT t.id, $1, t.account_id, t.amount, t.iso, t.unofficial, t.date, t.auth_date, t.dt, t.name,
             t.merchant, t.channel, t.pending, t.pending_id, t.pfc_primary, t.pfc_detailed, t.confidence
         FROM UNNEST($2::text[], $3::text[], $4::numeric[], $5::text[], $6::text[], $7::date[], $8::date[],
             $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::bool[], $14::text[], $15::text[],
             $16::text[], $17::text[])
             AS t(id, account_id, amount, iso, unofficial, date, auth_date, dt, name, merchant, channel, pending,
                  pending_id, pfc_primary, pfc_detailed, confidence)
         ON CONFLICT (plaid_transaction_id) DO UPDATE SET
             account_id = EXCLUDED.account_id, amount = EXCLUDED.amount,
             iso_currency_code = EXCLUDED.iso_currency_code, unofficial_currency_code = EXCLUDED.unofficial_currency_code,
             date = EXCLUDED.date, authorized_date = EXCLUDED.authorized_date, datetime = EXCLUDED.datetime,
             name = EXCLUDED.name, merchant_name = EXCLUDED.merchant_name, payment_channel = EXCLUDED.payment_channel,
             pending = EXCLUDED.pending, pending_transaction_id = EXCLUDED.pending_transaction_id,
             plaid_category = EXCLUDED.plaid_category, plaid_detailed_category = EXCLUDED.plaid_detailed_category,
             plaid_category_confidence = EXCLUDED.plaid_category_confidence, updated_at = now()",
    )
    .bind(item_id)
    .bind(ids)
    .bind(accounts)
    .bind(amounts)
    .bind(iso)
    .bind(unofficial)
    .bind(dates)
    .bind(auth_dates)
    .bind(datetimes)
    .bind(names)
    .bind(merchants)
    .bind(channels)
    .bind(pendings)
    .bind(pending_ids)
    .bind(primaries)
    .bind(detaileds)
    .bind(confidences)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn mark_removed(
    tx: &mut PgTx<'_, Postgres>,
    removed: &[RemovedTransaction],
) -> Result<(), sqlx::Error> {
    if removed.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = removed.iter().map(|r| r.transaction_id.as_str()).collect();
    sqlx::query("INSERT INTO finq_removed SELECT UNNEST($1::text[]) ON CONFLICT DO NOTHING")
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn finish_update(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    cursor: &str,
) -> Result<(), sqlx::Error> {
    // A posted transaction inherits what the user set on the pending one it replaces.
    sqlx::query(
        "UPDATE plaid_transactions p SET
             category_override_id = coalesce(p.category_override_id, o.category_override_id),
             notes = coalesce(p.notes, o.notes), updated_at = now()
         FROM plaid_transactions o
         WHERE o.plaid_transaction_id IN (SELECT plaid_transaction_id FROM finq_removed)
           AND p.pending_transaction_id = o.plaid_transaction_id
           AND p.item_id = $1
           AND (o.category_override_id IS NOT NULL OR o.notes IS NOT NULL)",
    )
    .bind(item_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM plaid_transactions
         WHERE item_id = $1 AND plaid_transaction_id IN (SELECT plaid_transaction_id FROM finq_removed)",
    )
    .bind(item_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO sync_cursors (item_id, cursor) VALUES ($1, $2)
         ON CONFLICT (item_id) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
    )
    .bind(item_id)
    .bind(cursor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One Plaid item as a pipeline [`Source`](finq_core::plugin::Source).
pub struct PlaidItemSource {
    pub client: PlaidClient,
    pub vault: std::sync::Arc<TokenVault>,
    pub item_id: String,
    pub institution: String,
    pub settings: SyncSettings,
    pub progress: std::sync::Arc<dyn Fn(SyncProgress) + Send + Sync>,
}

impl finq_core::plugin::Source for PlaidItemSource {
    fn name(&self) -> String {
        format!("{} (item {})", self.institution, self.item_id)
    }

    async fn sync(
        &self,
        pool: &PgPool,
    ) -> Result<finq_core::plugin::Counts, finq_core::plugin::BoxError> {
        let o = sync_item(
            pool,
            &self.client,
            &self.vault,
            &self.item_id,
            self.settings,
            &*self.progress,
        )
        .await?;
        Ok(vec![
            ("added", o.added),
            ("modified", o.modified),
            ("removed", o.removed),
            ("pages", o.pages),
        ])
    }
}

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

use std::time::{Duration, Instant};

use chrono::Utc;
use finq_core::vault::{TokenVault, VaultError};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Row, Transaction as PgTx};

use super::client::{PlaidApiError, PlaidClient};
use super::link::upsert_accounts;
use super::types::Transaction;

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
    /// A new item answers `NOT_READY` until Plaid has pulled its data: how long to wait for
    /// it within one sync (Plaid: "typically within 10 seconds").
    pub not_ready_wait: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            page_size: 500,
            max_restarts: 10,
            not_ready_wait: Duration::from_secs(30),
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
    let mut not_ready_delay = Duration::from_millis(100);
    let mut force_staged = false;
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
            // An item with no rows yet (its first real update) is written straight into the
            // table; otherwise pages go through a staging table and are merged at the end.
            let empty: bool = sqlx::query_scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM plaid_transactions WHERE item_id = $1)",
            )
            .bind(item_id)
            .fetch_one(&mut *tx)
            .await?;
            let mode = if empty && !force_staged { WriteMode::Direct } else { WriteMode::Staged };
            sqlx::query(
                "CREATE TEMP TABLE finq_stage (seq bigint NOT NULL, plaid_transaction_id text NOT NULL,
                     account_id text NOT NULL, amount numeric(12,2) NOT NULL, iso_currency_code text,
                     unofficial_currency_code text, date date NOT NULL, authorized_date date, datetime timestamptz,
                     name text NOT NULL, merchant_name text, payment_channel text, pending boolean NOT NULL,
                     pending_transaction_id text, plaid_category text, plaid_detailed_category text,
                     plaid_category_confidence text) ON COMMIT DROP",
            )
            .execute(&mut *tx)
            .await?;
            match pull_update(&mut tx, client, &item.token, item_id, start, settings, &mut outcome, progress).await {
                Ok((final_cursor, removed)) => {
                    finish_update(&mut tx, item_id, &final_cursor, mode, &removed).await?;
                    tx.commit().await?;
                    cursor_after = Some(final_cursor);
                    // Not ready yet: poll again shortly rather than report an empty bank.
                    if outcome.update_status == "NOT_READY" && clock.elapsed() + not_ready_delay <= settings.not_ready_wait {
                        tracing::info!(item_id, delay = ?not_ready_delay, "Plaid has no data for this item yet; waiting");
                        tokio::time::sleep(not_ready_delay).await;
                        not_ready_delay = (not_ready_delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
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
                Err(SyncError::Db(sqlx::Error::Database(e)))
                    if mode == WriteMode::Direct && e.code().as_deref() == Some("23505") =>
                {
                    // The same transaction twice in one update: redo it through the staging
                    // table, which keeps the latest version.
                    tx.rollback().await?;
                    force_staged = true;
                    tracing::info!(item_id, "a transaction came twice in one update; redoing the update through staging");
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
             error_since = CASE WHEN $2::text IS NULL THEN NULL
                                WHEN error_code IS NOT DISTINCT FROM $2 THEN coalesce(error_since, now())
                                ELSE now() END,
             last_synced_at = CASE WHEN $2::text IS NULL THEN now() ELSE last_synced_at END
         WHERE item_id = $1",
    )
    .bind(item_id)
    .bind(code)
    .bind(message)
    .execute(pool);
    let log = sqlx::query(
        "INSERT INTO sync_log (item_id, started_at, cursor_before, cursor_after, added, modified, removed, pages, outcome, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
    .bind(clock.elapsed().as_millis() as i32)
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
) -> Result<(String, Vec<String>), SyncError> {
    let mut seq = 0i64;
    // Only ids: removals are applied at the end of the update (see finish_update).
    let mut removed = Vec::new();
    let (mut fetch_wait, mut write) = (Duration::ZERO, Duration::ZERO);
    let fetch = |cursor: Option<String>| {
        let (client, token) = (client.clone(), token.clone());
        let count = settings.page_size;
        tokio::spawn(async move {
            client
                .transactions_sync(&token, cursor.as_deref(), count)
                .await
        })
    };
    let mut next_page = Some(fetch(start));
    while let Some(pending) = next_page.take() {
        let t = Instant::now();
        let page = pending.await.expect("the page fetch task panicked")?;
        fetch_wait += t.elapsed();
        // Fetch the next page while this one is written.
        if page.has_more {
            next_page = Some(fetch(page.next_cursor.clone()));
        }
        let t = Instant::now();
        if outcome.pages == 0 {
            // Balances come with every page; the first page's are enough.
            upsert_accounts(tx, item_id, &page.accounts).await?;
        }
        write_transactions(tx, &page.added, &mut seq).await?;
        write_transactions(tx, &page.modified, &mut seq).await?;
        removed.extend(page.removed.iter().map(|r| r.transaction_id.clone()));
        write += t.elapsed();
        outcome.added += page.added.len() as u64;
        outcome.modified += page.modified.len() as u64;
        outcome.removed += page.removed.len() as u64;
        outcome.pages += 1;
        outcome.update_status = page.transactions_update_status;
        progress(SyncProgress {
            pages: outcome.pages,
            changes: outcome.added + outcome.modified + outcome.removed,
        });
        if !page.has_more {
            tracing::debug!(
                item_id,
                pages = outcome.pages,
                fetch_wait_ms = fetch_wait.as_millis() as u64,
                write_ms = write.as_millis() as u64,
                "update pulled"
            );
            return Ok((page.next_cursor.unwrap_or_default(), removed));
        }
    }
    unreachable!("the loop returns on the page without more")
}

/// Columns of the per-update staging table, in COPY order (after `seq`).
const STAGE_COLUMNS: &str = "plaid_transaction_id, account_id, amount, iso_currency_code, unofficial_currency_code, \
     date, authorized_date, datetime, name, merchant_name, payment_channel, pending, pending_transaction_id, \
     plaid_category, plaid_detailed_category, plaid_category_confidence";

/// Append one value in COPY text format.
fn copy_field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// How the staged rows of an update reach `plaid_transactions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// The item has no rows yet: one plain INSERT, in key order (cheap on the indexes).
    Direct,
    /// Insert or update by Plaid's id.
    Staged,
}

/// Stream a page's added/modified transactions into the update's staging table with COPY,
/// the cheapest way into PostgreSQL (no indexes there); see [`merge_staged`].
async fn write_transactions(
    tx: &mut PgTx<'_, Postgres>,
    txns: &[Transaction],
    seq: &mut i64,
) -> Result<(), sqlx::Error> {
    if txns.is_empty() {
        return Ok(());
    }
    let mut buf = String::with_capacity(txns.len() * 200);
    for t in txns {
        *seq += 1;
        buf.push_str(&seq.to_string());
        let pfc = t.personal_finance_category.as_ref();
        let amount = t.amount.round_dp(2).to_string();
        let date = t.date.to_string();
        let auth = t.authorized_date.map(|d| d.to_string());
        let dt = t.datetime.map(|d| d.to_rfc3339());
        let name = t
            .name
            .as_deref()
            .or(t.merchant_name.as_deref())
            .unwrap_or("(no description)");
        let fields: [Option<&str>; 16] = [
            Some(&t.transaction_id),
            Some(&t.account_id),
            Some(&amount),
            t.iso_currency_code.as_deref(),
            t.unofficial_currency_code.as_deref(),
            Some(&date),
            auth.as_deref(),
            dt.as_deref(),
            Some(name),
            t.merchant_name.as_deref(),
            Some(&t.payment_channel),
            Some(if t.pending { "t" } else { "f" }),
            t.pending_transaction_id.as_deref(),
            pfc.map(|p| p.primary.as_str()),
            pfc.map(|p| p.detailed.as_str()),
            pfc.and_then(|p| p.confidence_level.as_deref()),
        ];
        for f in fields {
            buf.push('\t');
            copy_field(&mut buf, f);
        }
        buf.push('\n');
    }
    let statement = format!("COPY finq_stage (seq, {STAGE_COLUMNS}) FROM STDIN");
    let mut copy = tx.copy_in_raw(&statement).await?;
    copy.send(buf.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Merge the staged rows into `plaid_transactions` (insert or update by Plaid's id).
async fn merge_staged(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    mode: WriteMode,
) -> Result<(), sqlx::Error> {
    if mode == WriteMode::Direct {
        // A transaction staged twice fails here (23505) and the update is redone staged.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO plaid_transactions (item_id, {STAGE_COLUMNS})
             SELECT $1, {STAGE_COLUMNS} FROM finq_stage ORDER BY plaid_transaction_id"
        )))
        .bind(item_id)
        .execute(&mut **tx)
        .await?;
        return Ok(());
    }
    const UPSERT: &str = "ON CONFLICT (plaid_transaction_id) DO UPDATE SET
             account_id = EXCLUDED.account_id, amount = EXCLUDED.amount,
             iso_currency_code = EXCLUDED.iso_currency_code, unofficial_currency_code = EXCLUDED.unofficial_currency_code,
             date = EXCLUDED.date, authorized_date = EXCLUDED.authorized_date, datetime = EXCLUDED.datetime,
             name = EXCLUDED.name, merchant_name = EXCLUDED.merchant_name, payment_channel = EXCLUDED.payment_channel,
             pending = EXCLUDED.pending, pending_transaction_id = EXCLUDED.pending_transaction_id,
             plaid_category = EXCLUDED.plaid_category, plaid_detailed_category = EXCLUDED.plaid_detailed_category,
             plaid_category_confidence = EXCLUDED.plaid_category_confidence, updated_at = now()";
    // Fast path: each transaction staged once (Plaid collapses an update). Should one come
    // twice, PostgreSQL refuses to update a row twice, and the slow path keeps the latest.
    let mut attempt = sqlx::Connection::begin(&mut **tx).await?;
    let fast = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO plaid_transactions (item_id, {STAGE_COLUMNS}) SELECT $1, {STAGE_COLUMNS} FROM finq_stage {UPSERT}"
    )))
    .bind(item_id)
    .execute(&mut *attempt)
    .await;
    match fast {
        Ok(_) => attempt.commit().await?,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("21000") => {
            attempt.rollback().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO plaid_transactions (item_id, {STAGE_COLUMNS})
                 SELECT $1, {STAGE_COLUMNS} FROM (
                     SELECT DISTINCT ON (plaid_transaction_id) * FROM finq_stage ORDER BY plaid_transaction_id, seq DESC
                 ) latest {UPSERT}"
            )))
            .bind(item_id)
            .execute(&mut **tx)
            .await?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn finish_update(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    cursor: &str,
    mode: WriteMode,
    removed: &[String],
) -> Result<(), sqlx::Error> {
    merge_staged(tx, item_id, mode).await?;
    // A posted transaction inherits what the user set on the pending one it replaces.
    // Every statement here is driven by the few changed ids (and indexes), never by a scan
    // of the item's history: an incremental update costs what it changes.
    if !removed.is_empty() {
        // A posted transaction inherits what the user set on the pending one it replaces.
        sqlx::query(
            "UPDATE plaid_transactions p SET
                 category_override_id = coalesce(p.category_override_id, o.category_override_id),
                 notes = coalesce(p.notes, o.notes), updated_at = now()
             FROM plaid_transactions o
             WHERE p.pending_transaction_id = ANY($2::text[])
               AND o.plaid_transaction_id = p.pending_transaction_id
               AND p.item_id = $1
               AND (o.category_override_id IS NOT NULL OR o.notes IS NOT NULL)",
        )
        .bind(item_id)
        .bind(removed)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM plaid_transactions WHERE plaid_transaction_id = ANY($2::text[]) AND item_id = $1",
        )
        .bind(item_id)
        .bind(removed)
        .execute(&mut **tx)
        .await?;
    }
    let carryover: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM relink_carryover WHERE item_id = $1)")
            .bind(item_id)
            .fetch_one(&mut **tx)
            .await?;
    // After a re-link: the user's edits on the replaced item find their transactions.
    if carryover {
        sqlx::query(
            "WITH matched AS (
             UPDATE plaid_transactions p SET
                 category_override_id = coalesce(p.category_override_id, c.category_override_id),
                 notes = coalesce(p.notes, c.notes), updated_at = now()
             FROM relink_carryover c
             WHERE c.item_id = $1 AND p.item_id = $1 AND p.account_id = c.account_id
               AND p.date = c.date AND p.amount = c.amount AND p.name = c.name
             RETURNING c.id
         )
         DELETE FROM relink_carryover WHERE id IN (SELECT id FROM matched)",
        )
        .bind(item_id)
        .execute(&mut **tx)
        .await?;
    }
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

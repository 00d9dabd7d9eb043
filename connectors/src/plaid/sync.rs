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
use sqlx::{PgPool, Postgres, Transaction as PgTx};

use super::client::{Bytes, PlaidApiError, PlaidClient, decode};
use super::link::upsert_accounts;
use super::types::{AccountBase, SyncPage, SyncTransaction};

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
    #[error("Plaid sent transaction {id} that finq cannot store: {reason}")]
    BadTransaction { id: String, reason: String },
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
    let item = super::items::get(pool, item_id).await?;
    Ok(ItemRow {
        institution: item.institution,
        token: super::items::open_token(pool, vault, item_id).await?,
    })
}

impl From<super::items::ItemError> for SyncError {
    fn from(e: super::items::ItemError) -> Self {
        use super::items::ItemError;
        match e {
            ItemError::Unknown(item) => SyncError::UnknownItem(item),
            ItemError::Vault(e) => SyncError::Vault(e),
            ItemError::Db(e) => SyncError::Db(e),
        }
    }
}

/// How one attempt at an update ended.
enum Attempt {
    /// Applied, with the new cursor, and committed.
    Applied {
        mode: WriteMode,
        rows: u64,
        /// The Direct mode's table (the item's new partition).
        table: String,
    },
    /// Applied and committed, but Plaid has no data for the item yet.
    NotReady,
    /// Plaid's data changed between pages: rolled back, to restart from the first cursor.
    MutationRestart,
    /// A transaction came twice in a first load: rolled back, to redo through staging.
    RedoStaged,
}

/// The cursors of a sync, for the sync log.
#[derive(Default)]
struct Cursors {
    before: Option<String>,
    after: Option<String>,
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
    let (started, clock) = (Utc::now(), Instant::now());
    let item = load_item(pool, vault, item_id).await?;
    let mut outcome = SyncOutcome {
        item_id: item_id.to_string(),
        institution: item.institution.clone(),
        ..Default::default()
    };
    let mut cursors = Cursors::default();
    let mut not_ready_delay = Duration::from_millis(100);
    let mut force_staged = false;
    let result = async {
        loop {
            let update = Update { pool, client, token: &item.token, item_id, settings, progress };
            match update.attempt(force_staged, &mut outcome, &mut cursors).await? {
                Attempt::Applied { mode, rows, table } => {
                    if mode == WriteMode::Direct && rows > 0 {
                        vacuum_new_partition(pool, item_id, &table).await;
                    }
                    return Ok(());
                }
                // Poll again shortly rather than report an empty bank.
                Attempt::NotReady if clock.elapsed() + not_ready_delay <= settings.not_ready_wait => {
                    tracing::info!(item_id, delay = ?not_ready_delay, "Plaid has no data for this item yet; waiting");
                    tokio::time::sleep(not_ready_delay).await;
                    not_ready_delay = (not_ready_delay * 2).min(Duration::from_secs(5));
                }
                Attempt::NotReady => return Ok(()),
                Attempt::MutationRestart => {
                    outcome.restarts += 1;
                    if outcome.restarts > settings.max_restarts {
                        return Err(SyncError::TooManyRestarts(outcome.restarts - 1));
                    }
                    tracing::info!(item_id, restarts = outcome.restarts, "data changed during pagination; restarting the update from its first cursor");
                }
                Attempt::RedoStaged => {
                    force_staged = true;
                    tracing::info!(item_id, "a transaction came twice in one update; redoing the update through staging");
                }
            }
        }
    }
    .await;
    record_outcome(pool, item_id, started, clock, &cursors, &outcome, &result).await;
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

/// What one attempt at an update needs.
struct Update<'a> {
    pool: &'a PgPool,
    client: &'a PlaidClient,
    token: &'a SecretString,
    item_id: &'a str,
    settings: SyncSettings,
    progress: &'a (dyn Fn(SyncProgress) + Send + Sync),
}

impl Update<'_> {
    /// Pull every page from the stored cursor and apply them with the new cursor in one
    /// transaction; roll back on a restartable failure and say which.
    async fn attempt(
        &self,
        force_staged: bool,
        outcome: &mut SyncOutcome,
        cursors: &mut Cursors,
    ) -> Result<Attempt, SyncError> {
        let item_id = self.item_id;
        outcome.added = 0;
        outcome.modified = 0;
        outcome.removed = 0;
        outcome.pages = 0;
        let phase = Instant::now();
        let mut tx = self.pool.begin().await?;
        // Two syncs of one item never interleave: the second waits here.
        // And commit without waiting for the disk: the cursor is written in this same
        // transaction, so should the machine crash in the fraction of a second before the
        // commit reaches the disk, the database is still consistent at the previous cursor,
        // and the next sync fetches this update again from Plaid. (A process crash loses
        // nothing.)
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('finq.sync:' || $1, 0)),
                    set_config('synchronous_commit', 'off', true)",
        )
        .bind(item_id)
        .execute(&mut *tx)
        .await?;
        // Under the lock (a sync that held it before may have moved the cursor): the cursor,
        // and whether the item has its partition yet. The item's row is held, so an item
        // removed meanwhile is not synced, and its removal (which drops the item's partition)
        // waits for this update to end.
        let Some((start, has_partition)) = sqlx::query_as::<_, (Option<String>, bool)>(
            "SELECT (SELECT cursor FROM sync_cursors c WHERE c.item_id = i.item_id),
                    finq_tx_partition_exists(i.item_id)
             FROM plaid_items i WHERE i.item_id = $1 FOR KEY SHARE OF i",
        )
        .bind(item_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Err(SyncError::UnknownItem(item_id.to_string()));
        };
        cursors.before = start.clone();
        // An item's first update (no partition yet) is loaded into a fresh table that becomes
        // its partition; later updates go through a staging table and are merged.
        let mode = if !has_partition && !force_staged {
            WriteMode::Direct
        } else {
            WriteMode::Staged
        };
        let table = prepare_target(&mut tx, item_id, mode, has_partition).await?;
        let setup = phase.elapsed();
        let target = RowWriter::new(mode, item_id, &table);
        let applied = match pull_update(
            &mut tx,
            self.client,
            self.token,
            target,
            start,
            self.settings,
            outcome,
            self.progress,
        )
        .await
        {
            Ok((cursor, removed, rows)) => {
                let pulled = phase.elapsed();
                finish_update(&mut tx, item_id, &cursor, mode, rows, &removed)
                    .await
                    .map(|()| (cursor, rows, pulled))
                    .map_err(SyncError::from)
            }
            Err(e) => Err(e),
        };
        match applied {
            Ok((cursor, rows, pulled)) => {
                let finished = phase.elapsed();
                tx.commit().await?;
                tracing::debug!(
                    item_id,
                    ?mode,
                    setup_ms = setup.as_secs_f64() * 1e3,
                    pull_ms = (pulled - setup).as_secs_f64() * 1e3,
                    finish_ms = (finished - pulled).as_secs_f64() * 1e3,
                    commit_ms = (phase.elapsed() - finished).as_secs_f64() * 1e3,
                    "update applied"
                );
                cursors.after = Some(cursor);
                if outcome.update_status == "NOT_READY" {
                    return Ok(Attempt::NotReady);
                }
                Ok(Attempt::Applied { mode, rows, table })
            }
            Err(SyncError::Plaid(e)) if e.code() == Some(MUTATION_ERROR) => {
                tx.rollback().await?;
                Ok(Attempt::MutationRestart)
            }
            Err(SyncError::Db(sqlx::Error::Database(e)))
                if mode == WriteMode::Direct && e.code().as_deref() == Some("23505") =>
            {
                // The same transaction twice in one update: the staging table keeps the
                // latest version.
                tx.rollback().await?;
                Ok(Attempt::RedoStaged)
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }
}

/// Where an update's rows go: the Direct mode's new table (returned), or the staging table.
async fn prepare_target(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    mode: WriteMode,
    has_partition: bool,
) -> Result<String, sqlx::Error> {
    match mode {
        WriteMode::Direct => {
            sqlx::query_scalar("SELECT finq_tx_partition_begin($1)")
                .bind(item_id)
                .fetch_one(&mut **tx)
                .await
        }
        WriteMode::Staged => {
            if !has_partition {
                sqlx::query("SELECT finq_tx_partition_begin($1), finq_tx_partition_attach($1)")
                    .bind(item_id)
                    .execute(&mut **tx)
                    .await?;
            }
            // Made once per connection, emptied by every commit.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TEMP TABLE IF NOT EXISTS finq_stage (seq bigint NOT NULL, {})
                 ON COMMIT DELETE ROWS",
                stage_table_columns()
            )))
            .execute(&mut **tx)
            .await?;
            Ok(String::new())
        }
    }
}

/// A freshly loaded partition: its statistics and visibility map now, rather than
/// autovacuum's a minute later, in the middle of whatever the user does next. (Not inside
/// the load's transaction: VACUUM cannot run there, and ANALYZE there is forgotten at commit,
/// when the load's own row counts reach the statistics collector.) The load has committed:
/// a failure here only costs speed.
async fn vacuum_new_partition(pool: &PgPool, item_id: &str, table: &str) {
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM (ANALYZE) \"{table}\"")))
        .execute(pool)
        .await
    {
        tracing::warn!(item_id, error = %e, "could not vacuum and analyse the new partition; autovacuum will");
    }
}

/// The item's health (Plaid's error code kept, or cleared on success) and the sync log
/// entry, in one statement.
async fn record_outcome(
    pool: &PgPool,
    item_id: &str,
    started: chrono::DateTime<Utc>,
    clock: Instant,
    cursors: &Cursors,
    outcome: &SyncOutcome,
    result: &Result<(), SyncError>,
) {
    let (outcome_word, error_text) = match result {
        Ok(()) => ("ok", None),
        Err(e) => ("error", Some(e.to_string())),
    };
    let (code, message) = match result {
        Ok(()) => (None, None),
        Err(SyncError::Plaid(PlaidApiError::Plaid { error, .. })) => (
            Some(error.error_code.clone()),
            Some(error.error_message.clone()),
        ),
        Err(e) => (Some("SYNC_FAILED".to_string()), Some(e.to_string())),
    };
    let recorded = sqlx::query(
        "WITH health AS (
             UPDATE plaid_items SET error_code = $2, error_message = $3, updated_at = now(),
                 error_since = CASE WHEN $2::text IS NULL THEN NULL
                                    WHEN error_code IS NOT DISTINCT FROM $2 THEN coalesce(error_since, now())
                                    ELSE now() END,
                 last_synced_at = CASE WHEN $2::text IS NULL THEN now() ELSE last_synced_at END
             WHERE item_id = $1
         )
         INSERT INTO sync_log (item_id, started_at, cursor_before, cursor_after, added, modified, removed, pages, outcome, error, duration_ms)
         VALUES ($1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(item_id)
    .bind(code)
    .bind(message)
    .bind(started)
    .bind(&cursors.before)
    .bind(&cursors.after)
    .bind(outcome.added as i32)
    .bind(outcome.modified as i32)
    .bind(outcome.removed as i32)
    .bind(outcome.pages as i32)
    .bind(outcome_word)
    .bind(error_text)
    .bind(clock.elapsed().as_millis() as i32)
    .execute(pool)
    .await;
    if let Err(e) = recorded {
        tracing::warn!(item_id, error = %e, "could not record the sync outcome");
    }
}

/// `/transactions/sync` pages fetched ahead of the writer: each page's cursor is read as
/// soon as it arrives and the next request goes out at once, while earlier pages are still
/// being decoded and stored. Pages wait in a small bounded queue (memory stays flat).
fn fetch_ahead(
    client: &PlaidClient,
    token: &SecretString,
    start: Option<String>,
    count: i64,
) -> (PageQueue, tokio::task::JoinHandle<()>) {
    /// What the next request needs, and the page's balances; the rest of the page is
    /// skipped, not built.
    #[derive(serde::Deserialize)]
    struct Next {
        next_cursor: Option<String>,
        has_more: bool,
        accounts: Vec<AccountBase>,
    }
    let (pages, rx) = tokio::sync::mpsc::channel(4);
    let (client, token) = (client.clone(), token.clone());
    let task = tokio::spawn(async move {
        let mut cursor = start;
        loop {
            let page = async {
                let (status, body) = client
                    .transactions_sync_body(&token, cursor.as_deref(), count)
                    .await?;
                let next: Next = decode(SYNC_PATH, status, &body)?;
                Ok((status, body, next))
            }
            .await;
            match page {
                Ok((status, body, next)) => {
                    // A closed queue: the writer gave up on this update.
                    let page = FetchedPage {
                        status,
                        body,
                        accounts: next.accounts,
                    };
                    if pages.send(Ok(page)).await.is_err() || !next.has_more {
                        return;
                    }
                    cursor = next.next_cursor;
                }
                Err(e) => {
                    let _ = pages.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    (rx, task)
}

const SYNC_PATH: &str = "/transactions/sync";

/// A fetched page, undecoded but for its balances.
struct FetchedPage {
    status: u16,
    body: Bytes,
    accounts: Vec<AccountBase>,
}

/// Fetched pages, or the error that ended fetching.
type PageQueue = tokio::sync::mpsc::Receiver<Result<FetchedPage, PlaidApiError>>;

#[allow(clippy::too_many_arguments)]
async fn pull_update(
    tx: &mut PgTx<'_, Postgres>,
    client: &PlaidClient,
    token: &SecretString,
    mut rows: RowWriter<'_>,
    start: Option<String>,
    settings: SyncSettings,
    outcome: &mut SyncOutcome,
    progress: &(dyn Fn(SyncProgress) + Send + Sync),
) -> Result<(String, Vec<String>, u64), SyncError> {
    let item_id = rows.item_id;
    let (mut pages, fetcher) = fetch_ahead(client, token, start, settings.page_size);
    // Stop fetching whatever way this function ends.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _fetcher = AbortOnDrop(fetcher);
    let mut next = async || {
        pages
            .recv()
            .await
            .expect("the page fetcher sends a last page or an error before it stops")
    };
    // Only ids: removals are applied at the end of the update (see finish_update).
    let mut removed = Vec::new();
    let (mut fetch_wait, mut write) = (Duration::ZERO, Duration::ZERO);
    let t = Instant::now();
    let FetchedPage {
        mut status,
        mut body,
        accounts,
    } = next().await?;
    fetch_wait += t.elapsed();
    // Balances come with every page; the first page's are enough.
    upsert_accounts(tx, item_id, &accounts).await?;
    // Every page's rows go into one COPY that stays open for the whole update: PostgreSQL
    // stores a page while the next ones are fetched and decoded.
    let mut copy = tx.copy_in_raw(&rows.copy_statement()).await?;
    let result = async {
        loop {
            let t = Instant::now();
            let page: SyncPage<'_> = decode(SYNC_PATH, status, &body)?;
            let mut buf = String::with_capacity((page.added.len() + page.modified.len()) * 256);
            for t in page.added.iter().chain(&page.modified) {
                rows.write(&mut buf, t)?;
            }
            if !buf.is_empty() {
                copy.send(buf.into_bytes()).await?;
            }
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
                return Ok::<_, SyncError>(page.next_cursor.unwrap_or_default());
            }
            let t = Instant::now();
            FetchedPage { status, body, .. } = next().await?;
            fetch_wait += t.elapsed();
        }
    }
    .await;
    let cursor = match result {
        Ok(cursor) => {
            let t = Instant::now();
            copy.finish().await?;
            write += t.elapsed();
            cursor
        }
        Err(e) => {
            // Leave the connection usable for the rollback.
            let _ = copy.abort("finq: the update is abandoned").await;
            return Err(e);
        }
    };
    tracing::debug!(
        item_id,
        pages = outcome.pages,
        fetch_wait_ms = fetch_wait.as_millis() as u64,
        decode_and_write_ms = write.as_millis() as u64,
        "update pulled"
    );
    Ok((cursor, removed, rows.count))
}

/// The Plaid transaction columns finq stores, in COPY order (after the leading `seq` of the
/// staging table or `item_id` of a first load), with their PostgreSQL types. This one list
/// drives the COPY statements, the staging table, the merge and `finq bench sync`.
pub const STORED_COLUMNS: &[(&str, &str)] = &[
    ("plaid_transaction_id", "text NOT NULL"),
    ("account_id", "text NOT NULL"),
    ("amount", "numeric(12,2) NOT NULL"),
    ("iso_currency_code", "text"),
    ("unofficial_currency_code", "text"),
    ("date", "date NOT NULL"),
    ("authorized_date", "date"),
    ("datetime", "timestamptz"),
    ("name", "text NOT NULL"),
    ("merchant_name", "text"),
    ("payment_channel", "text"),
    ("pending", "boolean NOT NULL"),
    ("pending_transaction_id", "text"),
    ("plaid_category", "text"),
    ("plaid_detailed_category", "text"),
    ("plaid_category_confidence", "text"),
];

/// `plaid_transaction_id, account_id, …`
pub fn stored_column_list() -> String {
    STORED_COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The staging table's columns, after `seq`.
fn stage_table_columns() -> String {
    STORED_COLUMNS
        .iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Append one value in COPY text format.
fn copy_field(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("\\N"),
        Some(v) => {
            // Most values need no escaping: copy them whole.
            if !v
                .bytes()
                .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
            {
                out.push_str(v);
                return;
            }
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

/// How the rows of an update reach `plaid_transactions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteMode {
    /// The item's first update: COPY into a fresh table, indexed and attached as the item's
    /// partition at the end (see `finq_tx_partition_attach`).
    Direct,
    /// COPY into a staging table, then insert or update by Plaid's id.
    Staged,
}

/// Formats transactions as COPY text rows for the update's target table.
struct RowWriter<'a> {
    mode: WriteMode,
    item_id: &'a str,
    /// The Direct mode's table.
    table: &'a str,
    /// Rows written (in Staged mode also the `seq` of the last one).
    count: u64,
}

impl<'a> RowWriter<'a> {
    fn new(mode: WriteMode, item_id: &'a str, table: &'a str) -> Self {
        RowWriter {
            mode,
            item_id,
            table,
            count: 0,
        }
    }

    fn copy_statement(&self) -> String {
        match self.mode {
            // FREEZE: the table was created in this transaction, so its rows can be written
            // already frozen (no later rewrite of every page by VACUUM).
            WriteMode::Direct => format!(
                "COPY \"{}\" (item_id, {}) FROM STDIN WITH (FREEZE)",
                self.table,
                stored_column_list()
            ),
            WriteMode::Staged => {
                format!("COPY finq_stage (seq, {}) FROM STDIN", stored_column_list())
            }
        }
    }

    fn write(&mut self, buf: &mut String, t: &SyncTransaction<'_>) -> Result<(), SyncError> {
        use std::fmt::Write;
        if !t.amount.is_finite() || t.amount.abs() >= 1e10 {
            return Err(SyncError::BadTransaction {
                id: t.transaction_id.to_string(),
                reason: format!("amount {} is out of range", t.amount),
            });
        }
        self.count += 1;
        match self.mode {
            WriteMode::Direct => copy_field(buf, Some(self.item_id)),
            WriteMode::Staged => write!(buf, "{}", self.count).expect("writing to a String"),
        }
        let pfc = t.personal_finance_category.as_ref();
        let name = t
            .name
            .as_deref()
            .or(t.merchant_name.as_deref())
            .unwrap_or("(no description)");
        buf.push('\t');
        copy_field(buf, Some(&t.transaction_id));
        buf.push('\t');
        copy_field(buf, Some(&t.account_id));
        // The shortest text of the double: Plaid's two decimals, exactly.
        write!(buf, "\t{}\t", t.amount).expect("writing to a String");
        copy_field(buf, t.iso_currency_code.as_deref());
        buf.push('\t');
        copy_field(buf, t.unofficial_currency_code.as_deref());
        write!(buf, "\t{}\t", t.date).expect("writing to a String");
        match t.authorized_date {
            Some(d) => write!(buf, "{d}").expect("writing to a String"),
            None => buf.push_str("\\N"),
        }
        buf.push('\t');
        match t.datetime {
            Some(d) => buf.push_str(&d.to_rfc3339()),
            None => buf.push_str("\\N"),
        }
        let rest: [Option<&str>; 8] = [
            Some(name),
            t.merchant_name.as_deref(),
            Some(&t.payment_channel),
            Some(if t.pending { "t" } else { "f" }),
            t.pending_transaction_id.as_deref(),
            pfc.map(|p| &*p.primary),
            pfc.map(|p| &*p.detailed),
            pfc.and_then(|p| p.confidence_level.as_deref()),
        ];
        for f in rest {
            buf.push('\t');
            copy_field(buf, f);
        }
        buf.push('\n');
        Ok(())
    }
}

/// Merge the staged rows into `plaid_transactions` (insert or update by Plaid's id). Should
/// a transaction have come twice in the update (Plaid collapses updates, so it should not),
/// its latest version wins: PostgreSQL would refuse to update one row twice in a statement.
/// A row Plaid sent again unchanged is left alone: no new row version, nothing logged.
async fn merge_staged(tx: &mut PgTx<'_, Postgres>, item_id: &str) -> Result<(), sqlx::Error> {
    let columns = stored_column_list();
    let updated = || STORED_COLUMNS.iter().skip(1).map(|(n, _)| *n);
    let updates: Vec<String> = updated().map(|n| format!("{n} = EXCLUDED.{n}")).collect();
    let (stored, sent): (Vec<String>, Vec<String>) = updated()
        .map(|n| (format!("plaid_transactions.{n}"), format!("EXCLUDED.{n}")))
        .unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO plaid_transactions (item_id, {columns})
         SELECT $1, {columns} FROM (
             SELECT DISTINCT ON (plaid_transaction_id) * FROM finq_stage ORDER BY plaid_transaction_id, seq DESC
         ) latest
         ON CONFLICT (plaid_transaction_id, item_id) DO UPDATE SET {}, updated_at = now()
         WHERE ({}) IS DISTINCT FROM ({})",
        updates.join(", "),
        stored.join(", "),
        sent.join(", ")
    )))
    .bind(item_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn finish_update(
    tx: &mut PgTx<'_, Postgres>,
    item_id: &str,
    cursor: &str,
    mode: WriteMode,
    rows: u64,
    removed: &[String],
) -> Result<(), sqlx::Error> {
    match mode {
        // A transaction that came twice fails here on the key (23505); the update is then
        // redone through staging, which keeps the latest version.
        WriteMode::Direct if rows > 0 => {
            sqlx::query("SELECT finq_tx_partition_attach($1)")
                .bind(item_id)
                .execute(&mut **tx)
                .await?;
        }
        // Nothing to load (Plaid not ready yet): no partition until there are rows.
        WriteMode::Direct => {
            sqlx::query("SELECT finq_tx_partition_drop($1)")
                .bind(item_id)
                .execute(&mut **tx)
                .await?;
        }
        WriteMode::Staged => merge_staged(tx, item_id).await?,
    }
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
    // The new cursor, and whether edits from a replaced item wait for this one's rows.
    let carryover: bool = sqlx::query_scalar(
        "WITH saved AS (
             INSERT INTO sync_cursors (item_id, cursor) VALUES ($1, $2)
             ON CONFLICT (item_id) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()
             RETURNING item_id
         )
         SELECT EXISTS (SELECT 1 FROM relink_carryover WHERE item_id = $1) FROM saved",
    )
    .bind(item_id)
    .bind(cursor)
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TX: &str = r#"{"transaction_id": "t1", "account_id": "acc\tone", "amount": 12.5,
        "iso_currency_code": "USD", "date": "2026-11-02", "authorized_date": null,
        "datetime": "2026-11-02T10:00:00Z", "name": "Caf\u00e9 \\ line\nbreak",
        "merchant_name": null, "payment_channel": "in store", "pending": true,
        "pending_transaction_id": null,
        "personal_finance_category": {"primary": "FOOD_AND_DRINK",
            "detailed": "FOOD_AND_DRINK_COFFEE", "confidence_level": "HIGH"}}"#;

    fn fields(line: &str) -> Vec<&str> {
        line.strip_suffix('\n')
            .expect("a row ends its line")
            .split('\t')
            .collect()
    }

    #[test]
    fn row_writer_writes_one_copy_row_in_stored_column_order() {
        let t: SyncTransaction = serde_json::from_str(TX).unwrap();
        let mut staged = RowWriter::new(WriteMode::Staged, "item-1", "");
        let mut buf = String::new();
        staged.write(&mut buf, &t).unwrap();
        let f = fields(&buf);
        assert_eq!(f.len(), 1 + STORED_COLUMNS.len());
        let expected = [
            "1", // seq
            "t1",
            "acc\\tone", // a tab, escaped
            "12.5",
            "USD",
            "\\N",
            "2026-11-02",
            "\\N",
            "2026-11-02T10:00:00+00:00",
            "Café \\\\ line\\nbreak",
            "\\N",
            "in store",
            "t",
            "\\N",
            "FOOD_AND_DRINK",
            "FOOD_AND_DRINK_COFFEE",
            "HIGH",
        ];
        assert_eq!(f, expected);
        // The next row gets the next sequence number.
        staged.write(&mut buf, &t).unwrap();
        assert_eq!(staged.count, 2);
        assert!(buf.lines().nth(1).unwrap().starts_with("2\tt1\t"));

        // A first load writes the item id first instead.
        let mut direct = RowWriter::new(WriteMode::Direct, "item-1", "p");
        let mut buf = String::new();
        direct.write(&mut buf, &t).unwrap();
        assert_eq!(fields(&buf)[0], "item-1");
        assert!(direct.copy_statement().contains("FREEZE"));
    }

    #[test]
    fn row_writer_refuses_amounts_it_cannot_store() {
        for amount in ["1e12", "-1e10"] {
            let json = TX.replace("12.5", amount);
            let t: SyncTransaction = serde_json::from_str(&json).unwrap();
            let mut w = RowWriter::new(WriteMode::Staged, "item-1", "");
            let mut buf = String::new();
            assert!(
                matches!(w.write(&mut buf, &t), Err(SyncError::BadTransaction { .. })),
                "{amount}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn one_column_list_drives_copy_staging_and_merge() {
        let list = stored_column_list();
        assert!(list.starts_with("plaid_transaction_id, account_id, amount"));
        let staging = stage_table_columns();
        for (name, ty) in STORED_COLUMNS {
            assert!(staging.contains(&format!("{name} {ty}")));
        }
        let w = RowWriter::new(WriteMode::Staged, "i", "");
        assert!(w.copy_statement().contains(&list));
    }
}

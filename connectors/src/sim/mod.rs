//! The offline Plaid simulator: Plaid's HTTP API for the endpoints finq uses, over
//! deterministic generated data (see [`data`]), served by [`server`].
//!
//! Each item keeps an append-only change log; a cursor names a position in it. A sync from
//! cursor *c* collapses the log after *c* into Plaid's `added` / `modified` / `removed`
//! (a transaction added and changed since *c* is just `added`; one added and removed is
//! nothing), ordered by last change, and pages through that list with `count`.

pub mod data;
pub mod faults;
pub mod server;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{Duration, NaiveDate};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::pfc;
use crate::plaid::types::{
    AccountBase, Balances, PersonalFinanceCategory, RemovedTransaction, Transaction,
};
pub use data::SimItemSpec;
use data::{AccountKind, SimAccount};
pub use faults::Faults;
pub use server::SimServer;
use webhooks::WebhookSigner;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Transactions generated per item at link time.
    pub transactions: usize,
    /// When set, only these credentials are accepted; otherwise any non-empty pair.
    pub client_id: Option<String>,
    pub secret: Option<String>,
    /// The simulated "today" (defaults to the real date).
    pub today: NaiveDate,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            transactions: 1000,
            client_id: None,
            secret: None,
            today: chrono::Local::now().date_naive(),
            faults: Faults::default(),
        }
    }
}

/// One change in an item's log: `tx` is the new version, or `None` for a removal.
#[derive(Debug, Clone)]
struct Change {
    id: String,
    account_id: String,
    tx: Option<Arc<Transaction>>,
    /// The first appearance of this transaction.
    new: bool,
}

#[derive(Debug, Clone)]
pub enum Update {
    Added(Arc<Transaction>),
    Modified(Arc<Transaction>),
    Removed(RemovedTransaction),
}

/// A span of an item's change log: (from, to).
type Window = (usize, usize);

pub(crate) struct SimItem {
    pub spec: SimItemSpec,
    pub item_id: String,
    pub access_token: String,
    pub institution_id: String,
    pub accounts: Vec<SimAccount>,
    current: BTreeMap<String, Arc<Transaction>>,
    log: Vec<Change>,
    rng: ChaCha8Rng,
    pub webhook: Option<String>,
    /// `/sandbox/item/reset_login` was called and the login not yet repaired.
    pub login_required: bool,
    /// `/transactions/sync` has been called: data is ready and updates fire webhooks.
    pub sync_called: bool,
    pub(crate) sync_calls: VecDeque<Instant>,
    pub(crate) refresh_calls: VecDeque<Instant>,
    /// Collapsed updates for the last (from, to) window asked for: pages reuse it.
    cache: Option<(Window, Arc<Vec<Update>>)>,
    /// Per account: (sum of posted amounts, sum of pending amounts), kept up to date so
    /// balances cost nothing per request.
    sums: HashMap<String, (Decimal, Decimal)>,
}

impl SimItem {
    fn from_spec(spec: SimItemSpec) -> SimItem {
        let generated = data::generate(&spec);
        let mut item = SimItem {
            item_id: generated.item_id,
            access_token: generated.access_token,
            institution_id: spec.institution_id.clone(),
            accounts: generated.accounts,
            current: BTreeMap::new(),
            log: Vec::with_capacity(generated.transactions.len()),
            rng: generated.rng,
            webhook: None,
            login_required: false,
            sync_called: false,
            sync_calls: VecDeque::new(),
            refresh_calls: VecDeque::new(),
            cache: None,
            sums: HashMap::new(),
            spec,
        };
        for t in generated.transactions {
            item.upsert(t);
        }
        // Plaid prepares an item's history before it reports it ready: so does the
        // simulator, rather than on the first `/transactions/sync` call.
        item.collapse(0, item.head());
        item
    }

    fn account_sums(&mut self, t: &Transaction, sign: Decimal) {
        let entry = self.sums.entry(t.account_id.clone()).or_default();
        if t.pending {
            entry.1 += sign * t.amount;
        } else {
            entry.0 += sign * t.amount;
        }
    }

    fn upsert(&mut self, mut t: Transaction) {
        // Stored as v2 (the taxonomy the simulator generates in), ready to serve as is.
        if let Some(pfc) = &mut t.personal_finance_category {
            pfc.version.get_or_insert_with(|| "v2".to_string());
        }
        let t = Arc::new(t);
        self.account_sums(&t, Decimal::ONE);
        let old = self.current.insert(t.transaction_id.clone(), t.clone());
        if let Some(old) = &old {
            self.account_sums(old, Decimal::NEGATIVE_ONE);
        }
        let new = old.is_none();
        self.log.push(Change {
            id: t.transaction_id.clone(),
            account_id: t.account_id.clone(),
            tx: Some(t),
            new,
        });
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.current.remove(id) {
            Some(t) => {
                self.account_sums(&t, Decimal::NEGATIVE_ONE);
                self.log.push(Change {
                    id: id.to_string(),
                    account_id: t.account_id.clone(),
                    tx: None,
                    new: false,
                });
                true
            }
            None => false,
        }
    }

    pub fn transactions(&self) -> impl Iterator<Item = &Arc<Transaction>> {
        self.current.values()
    }

    pub fn head(&self) -> usize {
        self.log.len()
    }

    /// Drop the cached window. Freeing a large list (a whole history) takes tens of
    /// milliseconds: that happens in the background, not on a request's time.
    fn release_cache(&mut self) {
        match self.cache.take() {
            Some(old) if old.1.len() > 10_000 => {
                std::thread::spawn(move || drop(old));
            }
            _ => {}
        }
    }

    /// The log between two positions, collapsed into Plaid's update lists.
    fn collapse(&mut self, from: usize, to: usize) -> Arc<Vec<Update>> {
        if let Some((key, list)) = &self.cache
            && *key == (from, to)
        {
            return list.clone();
        }
        self.release_cache();
        // id -> (appeared in this window, latest version, position of last change)
        let mut seen: HashMap<&str, (bool, Option<&Arc<Transaction>>, usize)> = HashMap::new();
        for (pos, c) in self.log[from..to].iter().enumerate() {
            let entry = seen.entry(c.id.as_str()).or_insert((c.new, None, pos));
            entry.1 = c.tx.as_ref();
            entry.2 = pos;
        }
        let mut entries: Vec<_> = seen.into_iter().collect();
        entries.sort_by_key(|(_, (_, _, pos))| *pos);
        let list: Vec<Update> = entries
            .into_iter()
            .filter_map(|(id, (appeared, latest, pos))| match (appeared, latest) {
                (true, Some(t)) => Some(Update::Added(t.clone())),
                (false, Some(t)) => Some(Update::Modified(t.clone())),
                (false, None) => Some(Update::Removed(RemovedTransaction {
                    transaction_id: id.to_string(),
                    account_id: self.log[from + pos].account_id.clone(),
                })),
                (true, None) => None,
            })
            .collect();
        let list = Arc::new(list);
        self.cache = Some(((from, to), list.clone()));
        list
    }

    /// Balances consistent with the transactions.
    pub fn account_bases(&self) -> Vec<AccountBase> {
        self.accounts
            .iter()
            .map(|a| {
                let (posted, pending) = self.sums.get(&a.account_id).copied().unwrap_or_default();
                let (ty, subtype) = a.type_and_subtype();
                let balances = match a.kind {
                    AccountKind::Loan => Balances {
                        current: Some(a.opening + posted),
                        available: None,
                        limit: None,
                        iso_currency_code: Some("USD".into()),
                        unofficial_currency_code: None,
                    },
                    AccountKind::CreditCard => Balances {
                        current: Some(posted),
                        available: Some(a.opening - posted - pending),
                        limit: Some(a.opening),
                        iso_currency_code: Some("USD".into()),
                        unofficial_currency_code: None,
                    },
                    _ => {
                        let current = a.opening - posted;
                        Balances {
                            current: Some(current),
                            available: Some(current - pending.max(Decimal::ZERO)),
                            limit: None,
                            iso_currency_code: Some("USD".into()),
                            unofficial_currency_code: None,
                        }
                    }
                };
                AccountBase {
                    account_id: a.account_id.clone(),
                    balances,
                    mask: Some(a.mask.clone()),
                    name: a.name.to_string(),
                    official_name: Some(a.official_name.to_string()),
                    account_type: ty.to_string(),
                    subtype: Some(subtype.to_string()),
                }
            })
            .collect()
    }

    /// One simulated day: pending transactions post (some with a tip), new purchases arrive
    /// as pending, sometimes a posted transaction is corrected or disappears.
    /// `changes` changes, each to a different transaction, so the next update carries
    /// exactly that many (nothing collapses).
    fn churn(&mut self, changes: usize, today: NaiveDate) -> AdvanceCounts {
        let mut counts = AdvanceCounts::default();
        let mut left = changes;
        let ids: Vec<String> = self.current.keys().cloned().collect();
        let mut touched: HashSet<String> = HashSet::new();
        // A transaction not changed yet in this churn, if the draw finds one.
        let pick = |rng: &mut ChaCha8Rng, touched: &mut HashSet<String>| {
            let id = &ids[rng.gen_range(0..ids.len())];
            touched.insert(id.clone()).then(|| id.clone())
        };
        while left > 0 {
            let roll = self.rng.gen_range(0..10);
            if roll < 6 || ids.len() < 2 * changes {
                let t = data::random_purchase(&mut self.rng, &self.accounts, today, true);
                touched.insert(t.transaction_id.clone());
                self.upsert(t);
                counts.added += 1;
                left -= 1;
            } else if roll < 8 {
                if let Some(id) = pick(&mut self.rng, &mut touched)
                    && let Some(t) = self.current.get(&id)
                {
                    let mut t = (**t).clone();
                    t.amount += Decimal::ONE;
                    self.upsert(t);
                    counts.modified += 1;
                    left -= 1;
                }
            } else if roll < 9 || left < 2 {
                if let Some(id) = pick(&mut self.rng, &mut touched)
                    && self.remove(&id)
                {
                    counts.removed += 1;
                    left -= 1;
                }
            } else {
                // Post a pending transaction nothing else touched: its removal and the
                // posted one are two changes.
                let pending = self
                    .current
                    .values()
                    .find(|t| t.pending && !touched.contains(&t.transaction_id))
                    .cloned();
                match pending {
                    Some(p) => {
                        touched.insert(p.transaction_id.clone());
                        let mut posted = (*p).clone();
                        posted.transaction_id = data::plaid_id(&mut self.rng);
                        posted.pending = false;
                        posted.pending_transaction_id = Some(p.transaction_id.clone());
                        posted.date = today;
                        self.remove(&p.transaction_id);
                        self.upsert(posted);
                        counts.posted += 1;
                        left -= 2;
                    }
                    None => continue,
                }
            }
        }
        counts
    }

    pub(crate) fn advance_day(&mut self, today: NaiveDate) -> AdvanceCounts {
        let mut counts = AdvanceCounts::default();
        let due: Vec<Arc<Transaction>> = self
            .current
            .values()
            .filter(|t| t.pending && (today - t.date).num_days() >= 2)
            .cloned()
            .collect();
        for p in due {
            let mut posted = (*p).clone();
            posted.transaction_id = data::plaid_id(&mut self.rng);
            posted.pending = false;
            posted.pending_transaction_id = Some(p.transaction_id.clone());
            posted.date = today;
            let restaurant = posted
                .personal_finance_category
                .as_ref()
                .is_some_and(|c| c.detailed == "FOOD_AND_DRINK_RESTAURANT");
            if restaurant && self.rng.gen_bool(0.5) {
                posted.amount = (posted.amount * Decimal::new(118, 2)).round_dp(2); // the tip
            }
            self.remove(&p.transaction_id);
            self.upsert(posted);
            counts.posted += 1;
        }
        let per_day =
            (self.spec.transactions as i64 / data::history_days(self.spec.transactions)).max(1);
        let new = self.rng.gen_range(0..=2 * per_day);
        for _ in 0..new {
            let t = data::random_purchase(&mut self.rng, &self.accounts, today, true);
            self.upsert(t);
            counts.added += 1;
        }
        let posted_ids: Vec<String> = self
            .current
            .values()
            .filter(|t| !t.pending)
            .map(|t| t.transaction_id.clone())
            .collect();
        if !posted_ids.is_empty() && self.rng.gen_bool(0.5) {
            let id = &posted_ids[self.rng.gen_range(0..posted_ids.len())];
            let mut t = (*self.current[id]).clone();
            t.amount += Decimal::ONE;
            self.upsert(t);
            counts.modified += 1;
        }
        if posted_ids.len() > 1 && self.rng.gen_bool(0.25) {
            let id = posted_ids[self.rng.gen_range(0..posted_ids.len())].clone();
            if self.remove(&id) {
                counts.removed += 1;
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct AdvanceCounts {
    pub added: u64,
    pub posted: u64,
    pub modified: u64,
    pub removed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdvanceReport {
    pub item_id: String,
    #[serde(flatten)]
    pub counts: AdvanceCounts,
}

pub(crate) struct SimState {
    pub config: SimConfig,
    pub today: NaiveDate,
    pub items: HashMap<String, SimItem>,
    pub tokens: HashMap<String, String>,
    /// Access tokens of removed items: they answer `ITEM_NOT_FOUND`.
    pub removed_tokens: HashSet<String>,
    pub public_tokens: HashMap<String, String>,
    ordinals: HashMap<String, u32>,
    pub fault_rng: ChaCha8Rng,
    pub signer: WebhookSigner,
}

/// A handle on one simulator; clones share it.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) state: Arc<Mutex<SimState>>,
}

/// What a sync page holds.
pub struct SyncPage {
    pub status: &'static str,
    pub added: Vec<Arc<Transaction>>,
    pub modified: Vec<Arc<Transaction>>,
    pub removed: Vec<RemovedTransaction>,
    pub next_cursor: String,
    pub has_more: bool,
}

pub(crate) enum CursorError {
    Invalid,
    /// The item's data changed since the first page of this update.
    Mutation,
}

fn encode_cursor(from: usize, to: usize, offset: usize) -> String {
    B64.encode(format!("sim1:{from}:{to}:{offset}"))
}

fn decode_cursor(c: &str) -> Result<(usize, usize, usize), CursorError> {
    let bytes = B64.decode(c).map_err(|_| CursorError::Invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| CursorError::Invalid)?;
    let mut parts = text
        .strip_prefix("sim1:")
        .ok_or(CursorError::Invalid)?
        .split(':');
    let mut next = || -> Result<usize, CursorError> {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or(CursorError::Invalid)
    };
    let (from, to, offset) = (next()?, next()?, next()?);
    if from > to {
        return Err(CursorError::Invalid);
    }
    Ok((from, to, offset))
}

/// Present a transaction in the PFC version the client asked for (v1 unless "v2"). Stored
/// transactions are v2 already: those are shared, not copied.
pub(crate) fn with_pfc_version(t: &Arc<Transaction>, v2: bool) -> Arc<Transaction> {
    if v2 {
        return t.clone();
    }
    let mut t = Transaction::clone(t);
    if let Some(pfc) = &mut t.personal_finance_category {
        pfc.version = None;
    }
    {
        if let Some(pfc) = &t.personal_finance_category
            && let Some((p, d)) = pfc::find_v2(&pfc.detailed).and_then(|r| r.v1.clone())
        {
            t.personal_finance_category = Some(PersonalFinanceCategory {
                primary: p.clone(),
                detailed: d,
                confidence_level: pfc.confidence_level.clone(),
                version: None,
            });
            t.personal_finance_category_icon_url = Some(format!(
                "https://plaid-category-icons.plaid.com/PFC_{p}.png"
            ));
        }
    }
    Arc::new(t)
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        use rand::SeedableRng;
        let today = config.today;
        let mut fault_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_fa17);
        let signer = WebhookSigner::new(&mut fault_rng);
        Simulator {
            state: Arc::new(Mutex::new(SimState {
                config,
                today,
                items: HashMap::new(),
                tokens: HashMap::new(),
                removed_tokens: HashSet::new(),
                public_tokens: HashMap::new(),
                ordinals: HashMap::new(),
                fault_rng,
                signer,
            })),
        }
    }

    /// The `kid` of the key that signs this simulator's webhooks.
    pub fn webhook_key_id(&self) -> String {
        self.lock().signer.kid.clone()
    }

    pub fn faults(&self) -> Faults {
        self.lock().config.faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().config.faults = faults;
    }

    /// What `/sandbox/item/reset_login` does: the item needs its user to log in again.
    pub fn reset_login(&self, item_id: &str) -> bool {
        let hook = {
            let mut s = self.lock();
            match s.items.get_mut(item_id) {
                Some(item) => {
                    item.login_required = true;
                    item.webhook.clone()
                }
                None => return false,
            }
        };
        if let Some(url) = hook {
            self.send_webhook(url, webhook_payload("ERROR", item_id, 0));
        }
        true
    }

    /// Update-mode Link completed: the login works again.
    pub fn repair_login(&self, item_id: &str) -> bool {
        let hook = {
            let mut s = self.lock();
            match s.items.get_mut(item_id) {
                Some(item) if item.login_required => {
                    item.login_required = false;
                    item.webhook.clone()
                }
                Some(_) => None,
                None => return false,
            }
        };
        if let Some(url) = hook {
            self.send_webhook(url, webhook_payload("LOGIN_REPAIRED", item_id, 0));
        }
        true
    }

    /// Sign and send a webhook (in the background).
    pub fn send_webhook(&self, url: String, payload: serde_json::Value) {
        let (body, jwt) = self.lock().signer.sign(&payload);
        webhooks::deliver(url, body, jwt);
    }

    /// Fire `SYNC_UPDATES_AVAILABLE` for items whose data changed, as Plaid does once
    /// `/transactions/sync` has been called on them.
    pub(crate) fn notify_changed(&self, changed: &[String]) {
        let hooks: Vec<(String, String)> = {
            let s = self.lock();
            changed
                .iter()
                .filter_map(|id| {
                    let item = s.items.get(id)?;
                    (item.sync_called).then_some(())?;
                    Some((id.clone(), item.webhook.clone()?))
                })
                .collect()
        };
        for (item_id, url) in hooks {
            self.send_webhook(url, webhook_payload("SYNC_UPDATES_AVAILABLE", &item_id, 0));
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SimState> {
        // A panic in one handler must not take the whole simulator down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn today(&self) -> NaiveDate {
        self.lock().today
    }

    /// Create a new item for an institution (what `/sandbox/public_token/create` does).
    pub fn create_item(&self, institution_id: &str, webhook: Option<String>) -> String {
        let mut s = self.lock();
        let ordinal = {
            let o = s.ordinals.entry(institution_id.to_string()).or_insert(0);
            *o += 1;
            *o - 1
        };
        let spec = SimItemSpec {
            seed: s.config.seed,
            institution_id: institution_id.to_string(),
            ordinal,
            transactions: s.config.transactions,
            anchor: s.today,
        };
        let mut item = SimItem::from_spec(spec);
        item.webhook = webhook;
        let id = item.item_id.clone();
        s.tokens.insert(item.access_token.clone(), id.clone());
        s.items.insert(id.clone(), item);
        id
    }

    /// Recreate an item linked by an earlier in-process simulator.
    pub fn restore_item(&self, spec: SimItemSpec) -> String {
        let mut s = self.lock();
        let o = s.ordinals.entry(spec.institution_id.clone()).or_insert(0);
        *o = (*o).max(spec.ordinal + 1);
        let mut item = SimItem::from_spec(spec);
        // It was linked (and synced) through an earlier simulator.
        item.sync_called = true;
        let id = item.item_id.clone();
        s.tokens.insert(item.access_token.clone(), id.clone());
        s.items.insert(id.clone(), item);
        id
    }

    /// Exactly `changes` updates to one item's data, now: about 60% new pending purchases,
    /// 20% corrections, 10% removals and 10% pending transactions posting (each posting is a
    /// removal and an addition, so it counts twice).
    pub fn churn(&self, item_id: &str, changes: usize) -> Option<AdvanceCounts> {
        let mut s = self.lock();
        let today = s.today;
        let item = s.items.get_mut(item_id)?;
        Some(item.churn(changes, today))
    }

    pub fn spec_of(&self, item_id: &str) -> Option<SimItemSpec> {
        self.lock().items.get(item_id).map(|i| i.spec.clone())
    }

    /// The item's current transactions (ground truth), PFC v2, ordered by id.
    pub fn ground_truth(&self, item_id: &str) -> Option<Vec<Transaction>> {
        let s = self.lock();
        s.items
            .get(item_id)
            .map(|i| i.transactions().map(|t| (**t).clone()).collect())
    }

    /// The item's transactions as a client that applied every update up to `cursor` (a final
    /// cursor this simulator issued; `""` for none) must hold them.
    pub fn truth_at_cursor(&self, item_id: &str, cursor: &str) -> Option<Vec<Transaction>> {
        let s = self.lock();
        let item = s.items.get(item_id)?;
        let upto = if cursor.is_empty() {
            0
        } else {
            match decode_cursor(cursor) {
                Ok((_, to, 0)) => to,
                _ => return None,
            }
        };
        let mut state: BTreeMap<&str, &Arc<Transaction>> = BTreeMap::new();
        for c in &item.log[..upto.min(item.log.len())] {
            match &c.tx {
                Some(t) => state.insert(c.id.as_str(), t),
                None => state.remove(c.id.as_str()),
            };
        }
        Some(state.into_values().map(|t| (**t).clone()).collect())
    }

    pub fn accounts(&self, item_id: &str) -> Option<Vec<AccountBase>> {
        self.lock().items.get(item_id).map(|i| i.account_bases())
    }

    /// Move simulated time forward for every item, and fire `SYNC_UPDATES_AVAILABLE` for
    /// the items that changed.
    pub fn advance(&self, days: u32) -> Vec<AdvanceReport> {
        let reports = self.advance_quietly(days);
        let changed: Vec<String> = reports
            .iter()
            .filter(|r| r.counts != AdvanceCounts::default())
            .map(|r| r.item_id.clone())
            .collect();
        self.notify_changed(&changed);
        reports
    }

    fn advance_quietly(&self, days: u32) -> Vec<AdvanceReport> {
        let mut s = self.lock();
        let mut reports: BTreeMap<String, AdvanceCounts> = BTreeMap::new();
        for _ in 0..days {
            s.today += Duration::days(1);
            let today = s.today;
            let mut ids: Vec<String> = s.items.keys().cloned().collect();
            ids.sort();
            for id in ids {
                let c = s.items.get_mut(&id).unwrap().advance_day(today);
                let r = reports.entry(id).or_default();
                r.added += c.added;
                r.posted += c.posted;
                r.modified += c.modified;
                r.removed += c.removed;
            }
        }
        reports
            .into_iter()
            .map(|(item_id, counts)| AdvanceReport { item_id, counts })
            .collect()
    }

    /// One page of `/transactions/sync`.
    pub(crate) fn sync_page(
        &self,
        item_id: &str,
        cursor: Option<&str>,
        count: usize,
        v2: bool,
    ) -> Result<SyncPage, CursorError> {
        let mut s = self.lock();
        let item = s.items.get_mut(item_id).ok_or(CursorError::Invalid)?;
        if !item.sync_called {
            // A fresh item's first call: not ready yet, no data, an empty cursor; it also
            // arms SYNC_UPDATES_AVAILABLE.
            item.sync_called = true;
            return Ok(SyncPage {
                status: "NOT_READY",
                added: Vec::new(),
                modified: Vec::new(),
                removed: Vec::new(),
                next_cursor: String::new(),
                has_more: false,
            });
        }
        let head = item.head();
        let (from, to, offset) = match cursor {
            None | Some("") => (0, head, 0),
            Some("now") => (head, head, 0),
            Some(c) => {
                let (from, to, offset) = decode_cursor(c)?;
                if to > head {
                    return Err(CursorError::Invalid);
                }
                if offset > 0 && to != head {
                    return Err(CursorError::Mutation);
                }
                // A final cursor (offset 0 at the end of its window) continues from there.
                if offset == 0 && from == to {
                    (to, head, 0)
                } else {
                    (from, to, offset)
                }
            }
        };
        let list = item.collapse(from, to);
        let end = (offset + count).min(list.len());
        let mut page = SyncPage {
            status: "HISTORICAL_UPDATE_COMPLETE",
            added: Vec::new(),
            modified: Vec::new(),
            removed: Vec::new(),
            has_more: end < list.len(),
            next_cursor: if end < list.len() {
                encode_cursor(from, to, end)
            } else {
                encode_cursor(to, to, 0)
            },
        };
        for u in list.get(offset..end).unwrap_or(&[]) {
            match u {
                Update::Added(t) => page.added.push(with_pfc_version(t, v2)),
                Update::Modified(t) => page.modified.push(with_pfc_version(t, v2)),
                Update::Removed(r) => page.removed.push(r.clone()),
            }
        }
        if end == list.len() {
            // The window is served: free its list now rather than in a later request (and
            // let go of this request's reference first, so the freeing happens there).
            drop(list);
            item.release_cache();
        }
        Ok(page)
    }
}

/// Plaid's `error_message` for `ITEM_LOGIN_REQUIRED`.
pub const LOGIN_REQUIRED_MESSAGE: &str = "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information. use Link's update mode to restore the item to a good state";

/// Plaid's webhook payloads for the codes the simulator sends.
pub fn webhook_payload(code: &str, item_id: &str, new_transactions: u64) -> serde_json::Value {
    use serde_json::json;
    let error = |code: &str, message: &str| {
        json!({ "error_type": "ITEM_ERROR", "error_code": code, "error_message": message,
                "display_message": null, "status": 400 })
    };
    match code {
        "SYNC_UPDATES_AVAILABLE" => json!({
            "webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": item_id,
            "initial_update_complete": true, "historical_update_complete": true, "environment": "sandbox"
        }),
        "DEFAULT_UPDATE" => json!({
            "webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": item_id,
            "new_transactions": new_transactions, "error": null, "environment": "sandbox"
        }),
        "ERROR" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "error": error("ITEM_LOGIN_REQUIRED", LOGIN_REQUIRED_MESSAGE),
            "environment": "sandbox"
        }),
        "USER_PERMISSION_REVOKED" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "error": error("USER_PERMISSION_REVOKED", "the holder of this account has revoked their permission for your application to access it"),
            "environment": "sandbox"
        }),
        "PENDING_DISCONNECT" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "reason": "INSTITUTION_MIGRATION", "environment": "sandbox"
        }),
        "PENDING_EXPIRATION" => json!({
            "webhook_type": "ITEM", "webhook_code": code, "item_id": item_id,
            "consent_expiration_time": (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "environment": "sandbox"
        }),
        other => json!({
            "webhook_type": "ITEM", "webhook_code": other, "item_id": item_id, "error": null, "environment": "sandbox"
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> Simulator {
        Simulator::new(SimConfig {
            seed: 7,
            transactions: 300,
            today: NaiveDate::from_ymd_opt(2026, 6, 15).unwrap(),
            ..Default::default()
        })
    }

    fn drain(
        s: &Simulator,
        item: &str,
        cursor: Option<String>,
        count: usize,
    ) -> (usize, usize, usize, String) {
        let (mut a, mut m, mut r) = (0, 0, 0);
        let mut cursor = cursor;
        loop {
            let p = s
                .sync_page(item, cursor.as_deref(), count, true)
                .ok()
                .unwrap();
            a += p.added.len();
            m += p.modified.len();
            r += p.removed.len();
            cursor = Some(p.next_cursor);
            if !p.has_more {
                return (a, m, r, cursor.unwrap());
            }
        }
    }

    #[test]
    fn deterministic_from_the_spec() {
        let (a, b) = (sim(), sim());
        let ia = a.create_item("ins_109508", None);
        let ib = b.create_item("ins_109508", None);
        assert_eq!(ia, ib);
        assert_eq!(a.ground_truth(&ia), b.ground_truth(&ib));
        let restored = sim();
        let ir = restored.restore_item(a.spec_of(&ia).unwrap());
        assert_eq!(ir, ia);
        assert_eq!(restored.ground_truth(&ir).unwrap().len(), 300);
    }

    /// A new item whose first (NOT_READY) sync call has been made.
    fn armed(s: &Simulator) -> String {
        let item = s.create_item("ins_109508", None);
        let first = s.sync_page(&item, None, 100, true).ok().unwrap();
        assert_eq!(first.status, "NOT_READY");
        assert!(first.added.is_empty() && first.next_cursor.is_empty() && !first.has_more);
        item
    }

    #[test]
    fn relinking_gives_the_same_history_under_new_ids() {
        let s = sim();
        let a = s.create_item("ins_109508", None);
        let b = s.create_item("ins_109508", None);
        assert_ne!(a, b);
        let (ta, tb) = (s.ground_truth(&a).unwrap(), s.ground_truth(&b).unwrap());
        let key = |t: &Transaction| (t.date, t.amount, t.name.clone());
        let mut ka: Vec<_> = ta.iter().map(key).collect();
        let mut kb: Vec<_> = tb.iter().map(key).collect();
        ka.sort();
        kb.sort();
        assert_eq!(ka, kb);
        assert!(
            ta.iter()
                .all(|t| tb.iter().all(|u| u.transaction_id != t.transaction_id))
        );
    }

    #[test]
    fn data_changing_between_pages_is_a_mutation_error() {
        let s = sim();
        let item = armed(&s);
        let p = s.sync_page(&item, None, 50, true).ok().unwrap();
        assert!(p.has_more);
        s.advance(1);
        assert!(matches!(
            s.sync_page(&item, Some(&p.next_cursor), 50, true),
            Err(CursorError::Mutation)
        ));
        // Restarting from the update's first cursor works.
        assert!(s.sync_page(&item, None, 50, true).is_ok());
    }

    #[test]
    fn paging_and_collapsing() {
        let s = sim();
        let item = armed(&s);
        let (a, m, r, cursor) = drain(&s, &item, None, 37);
        assert_eq!((a, m, r), (300, 0, 0));
        // Nothing new: nothing returned.
        assert_eq!(drain(&s, &item, Some(cursor.clone()), 100).0, 0);
        let report = s.advance(5);
        let c = report[0].counts;
        let (a2, m2, r2, _) = drain(&s, &item, Some(cursor), 7);
        // Postings add and remove; a modified transaction may since have been removed.
        assert!(a2 as u64 <= c.added + c.posted && a2 > 0);
        assert!(m2 as u64 <= c.modified);
        assert!(r2 as u64 <= c.posted + c.removed);
        // "now" skips everything.
        let p = s.sync_page(&item, Some("now"), 100, true).ok().unwrap();
        assert!(p.added.is_empty() && !p.has_more);
    }

    #[test]
    fn pfc_v1_by_default() {
        let s = sim();
        let item = armed(&s);
        let p = s.sync_page(&item, None, 500, false).ok().unwrap();
        let v1 = pfc::v1_primaries();
        assert!(p.added.iter().all(|t| {
            v1.contains(
                t.personal_finance_category
                    .as_ref()
                    .unwrap()
                    .primary
                    .as_str(),
            )
        }));
        assert!(
            p.added
                .iter()
                .any(|t| t.personal_finance_category.as_ref().unwrap().detailed == "INCOME_WAGES")
        );
    }
}

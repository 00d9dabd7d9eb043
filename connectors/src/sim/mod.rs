//! The offline Plaid simulator: Plaid's HTTP API for the endpoints finq uses, over
//! deterministic generated data.
//!
//! - [`data`]: what an item holds, as a pure function of its [`SimItemSpec`].
//! - `item`: one item's accounts, balances and how its data moves with simulated time.
//! - `log`: an item's append-only change log, collapsed into Plaid's
//!   `added` / `modified` / `removed` for a window of it.
//! - `cursor`: the `/transactions/sync` cursor (a window of the log and a page in it).
//! - [`webhooks`]: Plaid's webhook payloads, signed as Plaid signs them.
//! - [`faults`]: the failures a test can switch on.
//! - [`link`]: the Plaid Link stand-in a browser opens (institution, login, `onSuccess`).
//! - [`server`]: the HTTP API over a [`Simulator`].

mod cursor;
pub mod data;
pub mod faults;
mod item;
pub mod link;
mod log;
pub mod server;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{Duration, NaiveDate};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::pfc;
use crate::plaid::types::{AccountBase, PersonalFinanceCategory, RemovedTransaction, Transaction};
pub(crate) use cursor::{Cursor, CursorError};
pub use data::SimItemSpec;
pub use faults::Faults;
use item::SimItem;
use log::Update;
pub use server::SimServer;
use webhooks::WebhookSigner;
pub use webhooks::{LOGIN_REQUIRED_MESSAGE, webhook_payload};

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
    /// The delay before a webhook's first retry (Plaid: 30 s; each further one is 4 times
    /// longer). Tests shorten it.
    pub webhook_retry: std::time::Duration,
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
            webhook_retry: std::time::Duration::from_secs(30),
        }
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
    /// Link tokens from `/link/token/create`, each opening one Link session.
    pub(crate) link_tokens: HashMap<String, link::LinkSession>,
    ordinals: HashMap<String, u32>,
    pub fault_rng: ChaCha8Rng,
    pub signer: WebhookSigner,
    /// Keys rotated out, as `/webhook_verification_key/get` serves them (with `expired_at`).
    pub retired_keys: HashMap<String, serde_json::Value>,
    /// Every webhook delivery attempt.
    pub deliveries: Vec<webhooks::Delivery>,
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
                link_tokens: HashMap::new(),
                ordinals: HashMap::new(),
                fault_rng,
                signer,
                retired_keys: HashMap::new(),
                deliveries: Vec::new(),
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

    /// Every webhook delivery attempt so far.
    pub fn deliveries(&self) -> Vec<webhooks::Delivery> {
        self.lock().deliveries.clone()
    }

    /// Rotate the webhook signing key, as Plaid does: webhooks are signed with a new key
    /// (a new `kid`); the old key is still served, with `expired_at` set to now. Returns the
    /// new `kid`.
    pub fn rotate_webhook_key(&self) -> String {
        let mut s = self.lock();
        let next = WebhookSigner::new(&mut s.fault_rng);
        let old = std::mem::replace(&mut s.signer, next);
        s.retired_keys.insert(
            old.kid.clone(),
            old.expired_jwk(chrono::Utc::now().timestamp()),
        );
        s.signer.kid.clone()
    }

    /// A webhook as this simulator would send it: the exact body and its
    /// `Plaid-Verification` header value.
    pub fn sign_webhook(&self, payload: &serde_json::Value) -> (String, String) {
        self.lock().signer.sign(payload)
    }

    /// The `Plaid-Verification` header value for any body bytes, signed now.
    pub fn sign_webhook_body(&self, body: &str) -> String {
        self.lock()
            .signer
            .sign_body_at(body, chrono::Utc::now().timestamp())
    }

    /// The signing key's public half, as `/webhook_verification_key/get` serves it.
    pub fn webhook_jwk(&self) -> serde_json::Value {
        self.lock().signer.jwk().clone()
    }

    /// [`Self::sign_webhook`] as if signed at `iat` (Unix seconds).
    pub fn sign_webhook_at(&self, payload: &serde_json::Value, iat: i64) -> (String, String) {
        self.lock().signer.sign_at(payload, iat)
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
            .map(|i| i.log.current().map(|t| (**t).clone()).collect())
    }

    /// The item's transactions as a client that applied every update up to `cursor` (a final
    /// cursor this simulator issued; `""` for none) must hold them.
    pub fn truth_at_cursor(&self, item_id: &str, cursor: &str) -> Option<Vec<Transaction>> {
        let s = self.lock();
        let item = s.items.get(item_id)?;
        let upto = if cursor.is_empty() {
            0
        } else {
            match Cursor::decode(cursor) {
                Ok(c) if c.is_final() => c.to,
                _ => return None,
            }
        };
        Some(item.log.state_at(upto))
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
        let Cursor { from, to, offset } = Cursor::resolve(cursor, item.log.head())?;
        let list = item.log.collapse(from, to);
        let end = (offset + count).min(list.len());
        let mut page = SyncPage {
            status: "HISTORICAL_UPDATE_COMPLETE",
            added: Vec::new(),
            modified: Vec::new(),
            removed: Vec::new(),
            has_more: end < list.len(),
            next_cursor: if end < list.len() {
                Cursor {
                    from,
                    to,
                    offset: end,
                }
                .encode()
            } else {
                Cursor::end_of(to).encode()
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
            item.log.release_cache();
        }
        Ok(page)
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

//! One simulated item: its accounts, its change log, balances kept consistent with the
//! transactions, and how its data moves with simulated time (purchases arrive pending,
//! pending transactions post, corrections, removals).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use super::AdvanceCounts;
use super::data::{self, AccountKind, SimAccount, SimItemSpec};
use super::log::ChangeLog;
use crate::plaid::types::{AccountBase, Balances, Transaction};

pub(crate) struct SimItem {
    pub spec: SimItemSpec,
    pub item_id: String,
    pub access_token: String,
    pub institution_id: String,
    pub accounts: Vec<SimAccount>,
    pub(crate) log: ChangeLog,
    rng: ChaCha8Rng,
    pub webhook: Option<String>,
    /// `/sandbox/item/reset_login` was called and the login not yet repaired.
    pub login_required: bool,
    /// `/transactions/sync` has been called: data is ready and updates fire webhooks.
    pub sync_called: bool,
    pub(crate) sync_calls: VecDeque<Instant>,
    pub(crate) refresh_calls: VecDeque<Instant>,
    /// Per account: (sum of posted amounts, sum of pending amounts), kept up to date so
    /// balances cost nothing per request.
    sums: HashMap<String, (Decimal, Decimal)>,
}

/// Stored as v2 (the taxonomy the simulator generates in), ready to serve as is.
fn v2(mut t: Transaction) -> Transaction {
    if let Some(pfc) = &mut t.personal_finance_category {
        pfc.version.get_or_insert_with(|| "v2".to_string());
    }
    t
}

impl SimItem {
    pub(crate) fn from_spec(spec: SimItemSpec) -> SimItem {
        let generated = data::generate(&spec);
        let mut item = SimItem {
            item_id: generated.item_id,
            access_token: generated.access_token,
            institution_id: spec.institution_id.clone(),
            accounts: generated.accounts,
            log: ChangeLog::default(),
            rng: generated.rng,
            webhook: None,
            login_required: false,
            sync_called: false,
            sync_calls: VecDeque::new(),
            refresh_calls: VecDeque::new(),
            sums: HashMap::new(),
            spec,
        };
        let additions = generated.transactions.into_iter().map(v2).map(Arc::new);
        match ChangeLog::of_additions(additions.collect()) {
            Ok(log) => {
                for t in log.current() {
                    item.account_sums(t, Decimal::ONE);
                }
                item.log = log;
            }
            // Two generated transactions with one id: the second changes the first.
            Err(additions) => {
                for t in additions {
                    item.upsert_arc(t);
                }
            }
        }
        // Plaid prepares an item's history before it reports it ready: so does the
        // simulator, rather than on the first `/transactions/sync` call.
        item.log.collapse(0, item.log.head());
        item
    }

    fn account_sums(&mut self, t: &Transaction, sign: Decimal) {
        // A lookup first: the account's id is copied only for its first transaction.
        if !self.sums.contains_key(&t.account_id) {
            self.sums.insert(t.account_id.clone(), Default::default());
        }
        let entry = self.sums.get_mut(&t.account_id).expect("inserted above");
        if t.pending {
            entry.1 += sign * t.amount;
        } else {
            entry.0 += sign * t.amount;
        }
    }

    fn upsert(&mut self, t: Transaction) {
        self.upsert_arc(Arc::new(v2(t)));
    }

    fn upsert_arc(&mut self, t: Arc<Transaction>) {
        self.account_sums(&t, Decimal::ONE);
        if let Some(old) = self.log.upsert(t) {
            self.account_sums(&old, Decimal::NEGATIVE_ONE);
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.log.remove(id) {
            Some(t) => {
                self.account_sums(&t, Decimal::NEGATIVE_ONE);
                true
            }
            None => false,
        }
    }

    /// A pending transaction posts: Plaid removes the pending one and adds the posted one
    /// under a new id that points back at it, dated today. With `tip`, a restaurant bill
    /// may post higher than it was authorised (half of them, by 18%).
    fn post(&mut self, pending: &Transaction, today: NaiveDate, tip: bool) {
        let mut posted = pending.clone();
        posted.transaction_id = data::plaid_id(&mut self.rng);
        posted.pending = false;
        posted.pending_transaction_id = Some(pending.transaction_id.clone());
        posted.date = today;
        let restaurant = posted
            .personal_finance_category
            .as_ref()
            .is_some_and(|c| c.detailed == "FOOD_AND_DRINK_RESTAURANT");
        if tip && restaurant && self.rng.gen_bool(0.5) {
            posted.amount = (posted.amount * Decimal::new(118, 2)).round_dp(2);
        }
        self.remove(&pending.transaction_id);
        self.upsert(posted);
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
    pub(crate) fn churn(&mut self, changes: usize, today: NaiveDate) -> AdvanceCounts {
        let mut counts = AdvanceCounts::default();
        let mut left = changes;
        let ids: Vec<String> = self.log.ids().cloned().collect();
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
                    && let Some(t) = self.log.get(&id)
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
                    .log
                    .current()
                    .find(|t| t.pending && !touched.contains(&t.transaction_id))
                    .cloned();
                match pending {
                    Some(p) => {
                        touched.insert(p.transaction_id.clone());
                        self.post(&p, today, false);
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
            .log
            .current()
            .filter(|t| t.pending && (today - t.date).num_days() >= 2)
            .cloned()
            .collect();
        for p in due {
            self.post(&p, today, true);
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
            .log
            .current()
            .filter(|t| !t.pending)
            .map(|t| t.transaction_id.clone())
            .collect();
        if !posted_ids.is_empty() && self.rng.gen_bool(0.5) {
            let id = &posted_ids[self.rng.gen_range(0..posted_ids.len())];
            let mut t = Transaction::clone(self.log.get(id).expect("a current id"));
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

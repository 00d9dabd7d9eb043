//! An item's append-only change log: every version of every transaction in the order it
//! changed, and the current set. A sync from log position *from* to *to* collapses the
//! changes between them into Plaid's `added` / `modified` / `removed` (a transaction added
//! and changed in the window is just `added`; one added and removed is nothing), ordered by
//! last change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::plaid::types::{RemovedTransaction, Transaction};

/// One change: `tx` is the new version, or `None` for a removal.
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

/// A span of the log: (from, to).
type Window = (usize, usize);

#[derive(Default)]
pub(crate) struct ChangeLog {
    current: BTreeMap<String, Arc<Transaction>>,
    log: Vec<Change>,
    /// Collapsed updates for the last window asked for: its pages reuse it.
    cache: Option<(Window, Arc<Vec<Update>>)>,
}

impl ChangeLog {
    /// A log of these transactions added in order; they are handed back if two share an
    /// id. Built in one pass (the map of current transactions from the sorted ids): a
    /// generated history of a million transactions, inserted one by one, spent seconds
    /// searching the map.
    pub fn of_additions(txs: Vec<Arc<Transaction>>) -> Result<ChangeLog, Vec<Arc<Transaction>>> {
        let current: BTreeMap<String, Arc<Transaction>> = txs
            .iter()
            .map(|t| (t.transaction_id.clone(), t.clone()))
            .collect();
        if current.len() != txs.len() {
            return Err(txs);
        }
        let log = txs
            .into_iter()
            .map(|t| Change {
                id: t.transaction_id.clone(),
                account_id: t.account_id.clone(),
                new: true,
                tx: Some(t),
            })
            .collect();
        Ok(ChangeLog {
            current,
            log,
            cache: None,
        })
    }

    /// Record a new version (or a new transaction); returns the version it replaces.
    pub fn upsert(&mut self, t: Arc<Transaction>) -> Option<Arc<Transaction>> {
        let old = self.current.insert(t.transaction_id.clone(), t.clone());
        self.log.push(Change {
            id: t.transaction_id.clone(),
            account_id: t.account_id.clone(),
            new: old.is_none(),
            tx: Some(t),
        });
        old
    }

    /// Record a removal; returns the removed transaction, or `None` if there was none.
    pub fn remove(&mut self, id: &str) -> Option<Arc<Transaction>> {
        let t = self.current.remove(id)?;
        self.log.push(Change {
            id: id.to_string(),
            account_id: t.account_id.clone(),
            tx: None,
            new: false,
        });
        Some(t)
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Transaction>> {
        self.current.get(id)
    }

    /// The current transactions, ordered by id.
    pub fn current(&self) -> impl Iterator<Item = &Arc<Transaction>> {
        self.current.values()
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.current.keys()
    }

    /// The position after the last change.
    pub fn head(&self) -> usize {
        self.log.len()
    }

    /// The transactions as they stood at log position `upto`, ordered by id.
    pub fn state_at(&self, upto: usize) -> Vec<Transaction> {
        let mut state: BTreeMap<&str, &Arc<Transaction>> = BTreeMap::new();
        for c in &self.log[..upto.min(self.log.len())] {
            match &c.tx {
                Some(t) => state.insert(c.id.as_str(), t),
                None => state.remove(c.id.as_str()),
            };
        }
        state.into_values().map(|t| (**t).clone()).collect()
    }

    /// Drop the cached window. Freeing a large list (a whole history) takes tens of
    /// milliseconds: that happens in the background, not on a request's time.
    pub fn release_cache(&mut self) {
        match self.cache.take() {
            Some(old) if old.1.len() > 10_000 => {
                std::thread::spawn(move || drop(old));
            }
            _ => {}
        }
    }

    /// The log between two positions, collapsed into Plaid's update lists.
    pub fn collapse(&mut self, from: usize, to: usize) -> Arc<Vec<Update>> {
        if let Some((key, list)) = &self.cache
            && *key == (from, to)
        {
            return list.clone();
        }
        self.release_cache();
        let list = Arc::new(self.collapsed(from, to));
        self.cache = Some(((from, to), list.clone()));
        list
    }

    fn collapsed(&self, from: usize, to: usize) -> Vec<Update> {
        // A window of first appearances only: no id can appear twice in it (that takes a
        // removal between), so it collapses to those additions in order. An item's whole
        // history as generated is such a window: a million entries, without a map of them.
        let window = &self.log[from..to];
        if window.iter().all(|c| c.new && c.tx.is_some()) {
            return window
                .iter()
                .filter_map(|c| c.tx.clone().map(Update::Added))
                .collect();
        }
        // id -> (appeared in this window, latest version, position of last change)
        let mut seen: HashMap<&str, (bool, Option<&Arc<Transaction>>, usize)> = HashMap::new();
        for (pos, c) in window.iter().enumerate() {
            let entry = seen.entry(c.id.as_str()).or_insert((c.new, None, pos));
            entry.1 = c.tx.as_ref();
            entry.2 = pos;
        }
        let mut entries: Vec<_> = seen.into_iter().collect();
        entries.sort_by_key(|(_, (_, _, pos))| *pos);
        entries
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
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: &str, amount: i64) -> Arc<Transaction> {
        let mut t: Transaction = serde_json::from_value(serde_json::json!({
            "transaction_id": id, "account_id": "acc", "amount": amount,
            "date": "2026-06-01", "name": "x", "pending": false, "payment_channel": "online",
        }))
        .unwrap();
        t.amount = rust_decimal::Decimal::from(amount);
        Arc::new(t)
    }

    fn kinds(list: &[Update]) -> Vec<String> {
        list.iter()
            .map(|u| match u {
                Update::Added(t) => format!("+{}:{}", t.transaction_id, t.amount),
                Update::Modified(t) => format!("~{}:{}", t.transaction_id, t.amount),
                Update::Removed(r) => format!("-{}", r.transaction_id),
            })
            .collect()
    }

    #[test]
    fn collapsing_a_window() {
        let mut log = ChangeLog::default();
        log.upsert(tx("a", 1));
        log.upsert(tx("b", 2));
        log.upsert(tx("c", 3));
        let first = log.head();
        assert_eq!(kinds(&log.collapse(0, first)), ["+a:1", "+b:2", "+c:3"]);
        log.upsert(tx("a", 10)); // changed
        log.upsert(tx("d", 4)); // added ...
        log.upsert(tx("d", 5)); // ... and changed: still just added
        log.upsert(tx("e", 6)); // added ...
        log.remove("e"); // ... and removed: nothing
        log.remove("b");
        assert!(log.remove("b").is_none(), "a second removal is no change");
        let head = log.head();
        assert_eq!(kinds(&log.collapse(first, head)), ["~a:10", "+d:5", "-b"]);
        assert_eq!(kinds(&log.collapse(0, head)), ["+c:3", "+a:10", "+d:5"]);
        // The state at a position replays the log up to it.
        let ids = |v: Vec<Transaction>| {
            v.into_iter()
                .map(|t| format!("{}:{}", t.transaction_id, t.amount))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(log.state_at(first)), ["a:1", "b:2", "c:3"]);
        assert_eq!(ids(log.state_at(head)), ["a:10", "c:3", "d:5"]);
        let current: Vec<_> = log.current().map(|t| t.transaction_id.clone()).collect();
        assert_eq!(current, ["a", "c", "d"]);
        // A later window of additions only.
        log.upsert(tx("f", 7));
        log.upsert(tx("g", 8));
        assert_eq!(kinds(&log.collapse(head, log.head())), ["+f:7", "+g:8"]);
        // Re-adding a removed transaction is an addition again, and the window collapses
        // as before.
        let before = log.head();
        log.remove("f");
        log.upsert(tx("f", 9));
        assert_eq!(kinds(&log.collapse(before, log.head())), ["~f:9"]);
    }

    #[test]
    fn a_log_of_additions_is_the_log_of_upserting_them() {
        let txs = || vec![tx("c", 1), tx("a", 2), tx("b", 3)];
        let mut one_by_one = ChangeLog::default();
        for t in txs() {
            one_by_one.upsert(t);
        }
        let Ok(mut built) = ChangeLog::of_additions(txs()) else {
            panic!("the ids are distinct");
        };
        assert_eq!(built.head(), one_by_one.head());
        let ids = |l: &ChangeLog| l.ids().cloned().collect::<Vec<_>>();
        assert_eq!(ids(&built), ids(&one_by_one));
        let head = built.head();
        assert_eq!(
            kinds(&built.collapse(0, head)),
            kinds(&one_by_one.collapse(0, head))
        );
        assert_eq!(kinds(&built.collapse(0, head)), ["+c:1", "+a:2", "+b:3"]);
        // Two with one id: handed back whole.
        let Err(back) = ChangeLog::of_additions(vec![tx("a", 1), tx("a", 2)]) else {
            panic!("a repeated id is refused");
        };
        assert_eq!(back.len(), 2);
    }
}

//! A bound on work in progress, overall and per key (a peer).
//!
//! A single bound lets one peer take every slot, so honest peers are told
//! "busy" while it floods; with a share per key the others keep being
//! served. Admission returns a [`Permit`] that gives its slot back when
//! dropped, so a task that ends any way (answered, failed, cancelled) frees it.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{Arc, Mutex},
};

/// Why a unit of work was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("busy: {0} requests are in progress here; retry later")]
    Full(usize),
    #[error("busy: this peer already has its share of {0} requests in progress here; retry later")]
    Share(usize),
}

/// At most `total` permits at once, and at most `per_key` for any one key.
/// Cheap to clone; clones share the count.
pub struct Quota<K> {
    total: usize,
    per_key: usize,
    state: Arc<Mutex<State<K>>>,
}

struct State<K> {
    in_progress: usize,
    /// Only keys holding a permit are present, so the map holds at most
    /// `total` entries however many keys come and go.
    by_key: HashMap<K, usize>,
}

impl<K> Clone for Quota<K> {
    fn clone(&self) -> Self {
        Self { total: self.total, per_key: self.per_key, state: self.state.clone() }
    }
}

impl<K> fmt::Debug for Quota<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota").field("total", &self.total).field("per_key", &self.per_key).finish()
    }
}

impl<K: Hash + Eq + Clone> Quota<K> {
    pub fn new(total: usize, per_key: usize) -> Self {
        Self { total, per_key, state: Arc::new(Mutex::new(State { in_progress: 0, by_key: HashMap::new() })) }
    }

    /// Takes a slot for `key`, or says which bound is reached.
    pub fn try_admit(&self, key: K) -> Result<Permit<K>, Refusal> {
        let mut state = self.state.lock().expect("quota lock is never held across a panic");
        if state.in_progress >= self.total {
            return Err(Refusal::Full(self.total));
        }
        let held = state.by_key.get(&key).copied().unwrap_or(0);
        if held >= self.per_key {
            return Err(Refusal::Share(self.per_key));
        }
        state.in_progress += 1;
        state.by_key.insert(key.clone(), held + 1);
        Ok(Permit { key: Some(key), state: self.state.clone() })
    }

    /// Permits held now, overall.
    pub fn in_progress(&self) -> usize {
        self.state.lock().expect("quota lock").in_progress
    }

    /// Permits `key` holds now.
    pub fn held_by(&self, key: &K) -> usize {
        self.state.lock().expect("quota lock").by_key.get(key).copied().unwrap_or(0)
    }

    /// Keys holding at least one permit.
    pub fn keys(&self) -> usize {
        self.state.lock().expect("quota lock").by_key.len()
    }
}

/// One admitted unit of work; its slot is free again when this drops.
pub struct Permit<K: Hash + Eq> {
    key: Option<K>,
    state: Arc<Mutex<State<K>>>,
}

impl<K: Hash + Eq> fmt::Debug for Permit<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

impl<K: Hash + Eq> Drop for Permit<K> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        // A poisoned lock means a panic elsewhere already broke the count; never panic in drop.
        let Ok(mut state) = self.state.lock() else { return };
        state.in_progress = state.in_progress.saturating_sub(1);
        if let Some(held) = state.by_key.get_mut(&key) {
            *held -= 1;
            if *held == 0 {
                state.by_key.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_cannot_take_more_than_its_share() {
        let quota = Quota::new(8, 3);
        let flood: Vec<_> = (0..3).map(|_| quota.try_admit("rogue").unwrap()).collect();
        assert_eq!(quota.try_admit("rogue").unwrap_err(), Refusal::Share(3));
        // Honest keys still get in.
        let honest = quota.try_admit("honest").unwrap();
        assert_eq!(quota.in_progress(), 4);
        drop(flood);
        assert_eq!(quota.held_by(&"rogue"), 0);
        assert!(quota.try_admit("rogue").is_ok());
        drop(honest);
    }

    #[test]
    fn the_total_bounds_every_key_together() {
        let quota = Quota::new(4, 3);
        let _held: Vec<_> = (0..4).map(|i| quota.try_admit(i).unwrap()).collect();
        assert_eq!(quota.try_admit(99).unwrap_err(), Refusal::Full(4));
    }

    #[test]
    fn keys_without_permits_leave_no_trace() {
        let quota = Quota::new(1000, 1);
        for i in 0..10_000u32 {
            drop(quota.try_admit(i).unwrap());
        }
        assert_eq!(quota.keys(), 0);
        assert_eq!(quota.in_progress(), 0);
    }

    #[test]
    fn refusals_name_the_bound() {
        assert!(Refusal::Share(16).to_string().contains("share of 16"));
        assert!(Refusal::Full(64).to_string().contains("64 requests"));
    }
}

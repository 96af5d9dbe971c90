//! Who each simulated node believes is live, and each blob's candidates.
//!
//! Running the membership table on every one of 10,000 nodes costs n² adverts
//! per interval, so views are modelled instead: every membership change (a
//! crash, a restart, a join, a partition) records a [`Snapshot`] of the
//! truth, and a node sees the snapshot that was current its own lag ago, cut
//! to its side of a partition. Views are therefore stale, partial and
//! different between nodes, as gossip makes them.
//!
//! Ranking every node for every blob on every walk would dominate the run, so
//! [`Ranking`] keeps each blob's best-scored nodes (by the node's own
//! `placement::score`) and hands `plan` the first few of them in a view: the
//! homes of a view depend only on its top k (tested in `replication::plan`).

use std::{collections::HashMap, sync::Arc};

use mass_node::{placement::score, replication::plan::Peer};
use mass_protocol::ContentId;

/// A set of node numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bits(Vec<u64>);

impl Bits {
    pub fn get(&self, i: u32) -> bool {
        self.0.get(i as usize / 64).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    pub fn set(&mut self, i: u32, on: bool) {
        let word = i as usize / 64;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        if on {
            self.0[word] |= 1 << (i % 64);
        } else {
            self.0[word] &= !(1 << (i % 64));
        }
    }
}

/// The truth at one moment: who is up, and the minority side of a partition.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at_ms: u64,
    pub live: Bits,
    pub minority: Option<Arc<Bits>>,
}

impl Snapshot {
    pub fn side(&self, node: u32) -> bool {
        self.minority.as_ref().is_some_and(|m| m.get(node))
    }

    /// Whether `observer` would list `peer` as live.
    pub fn sees(&self, observer: u32, peer: u32) -> bool {
        self.live.get(peer) && self.side(peer) == self.side(observer)
    }
}

/// Every snapshot so far, oldest first.
#[derive(Debug, Default)]
pub struct History {
    snapshots: Vec<Snapshot>,
}

impl History {
    pub fn record(&mut self, snapshot: Snapshot) {
        self.snapshots.push(snapshot);
    }

    /// The id of the latest snapshot taken at or before `at_ms`.
    pub fn at(&self, at_ms: u64) -> usize {
        self.snapshots.partition_point(|s| s.at_ms <= at_ms).saturating_sub(1)
    }

    pub fn latest(&self) -> usize {
        self.snapshots.len() - 1
    }

    pub fn get(&self, id: usize) -> &Snapshot {
        &self.snapshots[id]
    }
}

/// How many of each blob's best-scored nodes are kept.
const PREFIX: usize = 64;
/// Cached candidate lists before the cache is emptied (it is only a cache).
const CACHE_LIMIT: usize = 1 << 20;

/// Each blob's nodes in rendezvous order, as far as views need them.
#[derive(Debug)]
pub struct Ranking {
    ids: Vec<ContentId>,
    /// The best `PREFIX` (score, node) of each blob, best first.
    prefix: Vec<Vec<(f64, u32)>>,
    nodes: u32,
    /// Every node of a blob, best first; built when a view holds fewer
    /// than the wanted candidates among the prefix.
    full: HashMap<u32, Vec<u32>>,
    cache: HashMap<(usize, bool, u32), Vec<u32>>,
}

fn rank_all(id: &ContentId, nodes: u32) -> Vec<(f64, u32)> {
    let mut scored: Vec<(f64, u32)> = (0..nodes).map(|n| (score(&n.placement_key(), id.as_bytes(), 1.0), n)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
}

impl Ranking {
    pub fn new(ids: Vec<ContentId>, nodes: u32) -> Self {
        let prefix = ids
            .iter()
            .map(|id| {
                let mut all = rank_all(id, nodes);
                all.truncate(PREFIX);
                all
            })
            .collect();
        Self { ids, prefix, nodes, full: HashMap::new(), cache: HashMap::new() }
    }

    pub fn id(&self, blob: u32) -> &ContentId {
        &self.ids[blob as usize]
    }

    /// A new node (numbered `self.nodes`) joins every ranking.
    pub fn add_node(&mut self) -> u32 {
        let node = self.nodes;
        self.nodes += 1;
        for (id, prefix) in self.ids.iter().zip(&mut self.prefix) {
            let s = score(&node.placement_key(), id.as_bytes(), 1.0);
            let at = prefix.partition_point(|(other, _)| *other >= s);
            if at < PREFIX {
                prefix.insert(at, (s, node));
                prefix.truncate(PREFIX);
            }
        }
        self.full.clear();
        self.cache.clear();
        node
    }

    /// The first `want` nodes of `blob`'s ranking that `observer` sees in
    /// snapshot `snapshot_id`: a part of its view holding the view's top.
    pub fn candidates(
        &mut self,
        snapshot_id: usize,
        snapshot: &Snapshot,
        observer: u32,
        blob: u32,
        want: usize,
    ) -> Vec<u32> {
        let key = (snapshot_id, snapshot.side(observer), blob);
        if let Some(found) = self.cache.get(&key) {
            return found.clone();
        }
        let mut found: Vec<u32> = self.prefix[blob as usize]
            .iter()
            .map(|(_, n)| *n)
            .filter(|n| snapshot.sees(observer, *n))
            .take(want)
            .collect();
        if found.len() < want && (self.nodes as usize) > PREFIX {
            // Fewer than wanted among the best: look further down.
            let (ids, nodes) = (&self.ids, self.nodes);
            let all = self
                .full
                .entry(blob)
                .or_insert_with(|| rank_all(&ids[blob as usize], nodes).into_iter().map(|(_, n)| n).collect());
            found = all.iter().copied().filter(|n| snapshot.sees(observer, *n)).take(want).collect();
        }
        if self.cache.len() >= CACHE_LIMIT {
            self.cache.clear();
        }
        self.cache.insert(key, found.clone());
        found
    }
}

#[cfg(test)]
mod tests {
    use mass_node::replication::homes;

    use super::*;

    #[test]
    fn candidates_give_the_same_homes_as_the_whole_view() {
        let ids: Vec<ContentId> = (0..50u32).map(|b| ContentId::of(&b.to_le_bytes())).collect();
        let mut ranking = Ranking::new(ids.clone(), 300);
        let joined = ranking.add_node();
        let mut live = Bits::default();
        let mut minority = Bits::default();
        for n in 0..=joined {
            live.set(n, n % 7 != 0);
            minority.set(n, n % 3 == 0);
        }
        let snapshot = Snapshot { at_ms: 0, live, minority: Some(Arc::new(minority)) };
        for observer in [1u32, 3, joined] {
            let view: Vec<u32> = (0..=joined).filter(|n| snapshot.sees(observer, *n)).collect();
            for blob in 0..50u32 {
                let candidates = ranking.candidates(0, &snapshot, observer, blob, 3);
                assert_eq!(homes(&ids[blob as usize], &candidates, 2), homes(&ids[blob as usize], &view, 2));
            }
        }
    }

    #[test]
    fn a_view_is_the_snapshot_its_lag_ago() {
        let mut history = History::default();
        for at_ms in [0, 100, 100, 250] {
            history.record(Snapshot { at_ms, live: Bits::default(), minority: None });
        }
        assert_eq!(history.at(0), 0);
        assert_eq!(history.at(99), 0);
        assert_eq!(history.at(100), 2);
        assert_eq!(history.at(1000), 3);
    }
}

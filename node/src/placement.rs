//! Weighted rendezvous hashing: who is responsible for a key.
//!
//! Every node ranks the same live peers for the same key the same way, so
//! "where does this blob live" or "who drives this job" needs no coordinator.
//! A peer's score for a key is `-weight / ln(u)`, with `u` in (0, 1) drawn from
//! blake3(peer, key): the peer with the highest score wins, and a peer with
//! twice the weight wins twice as often. When a peer leaves, only the keys it
//! ranked first move; when one joins, it takes only keys it now ranks first.
//!
//! [`plan_by_capacity`] places work by measured capacity instead: where it
//! would finish soonest.
//!
//! Pure: no I/O, no clock. `simulations/` calls it directly.

/// A candidate with its weight (capacity); weights must be positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub id: &'a [u8],
    pub weight: f64,
}

/// Score of `peer` for `key`; higher ranks first.
pub fn score(peer: &[u8], key: &[u8], weight: f64) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(peer.len() as u64).to_le_bytes());
    hasher.update(peer);
    hasher.update(key);
    let hash = hasher.finalize();
    let bits = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    // 53 random bits mapped into the open interval (0, 1).
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight.max(f64::MIN_POSITIVE) / u.ln()
}

/// Candidates ordered from most to least responsible for `key`. Ties (never
/// in practice) fall back to the id, so the order is total.
pub fn rank<'a>(key: &[u8], candidates: impl IntoIterator<Item = Candidate<'a>>) -> Vec<&'a [u8]> {
    let mut scored: Vec<(f64, &'a [u8])> = candidates.into_iter().map(|c| (score(c.id, key, c.weight), c.id)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().map(|(_, id)| id).collect()
}

/// The `k` most responsible candidates for `key`.
pub fn top_k<'a>(key: &[u8], candidates: impl IntoIterator<Item = Candidate<'a>>, k: usize) -> Vec<&'a [u8]> {
    let mut ranked = rank(key, candidates);
    ranked.truncate(k);
    ranked
}

/// A node work can go to: its measured capacity (GFLOP/s offered to Mass
/// work) and the work it already has (in the same cost unit as tasks).
#[derive(Debug, Clone, PartialEq)]
pub struct Worker<Id> {
    pub id: Id,
    pub capacity: f64,
    pub load: f64,
}

/// A piece of work: its cost, and the nodes that hold its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Task<Id> {
    pub cost: f64,
    pub homes: Vec<Id>,
}

/// How much longer work takes on a node that must first fetch its data.
pub const FETCH_PENALTY: f64 = 1.25;

/// For each task, the nodes to ask, best first: the node where it would
/// finish soonest given the work already planned there (greedy list
/// scheduling over measured capacities, largest tasks first), then the
/// others in the same order. A node twice as fast gets about twice the
/// work; a node that does not hold a task's data pays a fetch penalty.
/// `uniform` ignores capacities (every node equal), the old rule.
pub fn plan_by_capacity<Id: Clone + PartialEq + Ord>(
    tasks: &[Task<Id>],
    workers: &[Worker<Id>],
    uniform: bool,
) -> Vec<Vec<Id>> {
    let capacity = |w: &Worker<Id>| if uniform { 1.0 } else { w.capacity.max(1e-9) };
    let mut planned: Vec<f64> = workers.iter().map(|w| w.load).collect();
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    // Largest first; ties in task order, so the plan is the same everywhere.
    order.sort_by(|&a, &b| tasks[b].cost.total_cmp(&tasks[a].cost).then(a.cmp(&b)));
    let mut plans = vec![Vec::new(); tasks.len()];
    for t in order {
        let task = &tasks[t];
        let finish = |i: usize| {
            let fetch = if task.homes.contains(&workers[i].id) { 1.0 } else { FETCH_PENALTY };
            (planned[i] + task.cost * fetch) / capacity(&workers[i])
        };
        let mut ranked: Vec<usize> = (0..workers.len()).collect();
        ranked.sort_by(|&a, &b| finish(a).total_cmp(&finish(b)).then_with(|| workers[a].id.cmp(&workers[b].id)));
        if let Some(&best) = ranked.first() {
            let fetch = if task.homes.contains(&workers[best].id) { 1.0 } else { FETCH_PENALTY };
            planned[best] += task.cost * fetch;
        }
        plans[t] = ranked.into_iter().map(|i| workers[i].id.clone()).collect();
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_four_times_as_fast_gets_most_of_the_work() {
        let workers = vec![Worker { id: 0, capacity: 100.0, load: 0.0 }, Worker { id: 1, capacity: 25.0, load: 0.0 }];
        let tasks: Vec<Task<u32>> = (0..8).map(|_| Task { cost: 1.0, homes: vec![0, 1] }).collect();
        let plans = plan_by_capacity(&tasks, &workers, false);
        let fast = plans.iter().filter(|p| p[0] == 0).count();
        assert!(fast >= 6, "{plans:?}");
        assert!(plans.iter().all(|p| p.len() == 2));
        let uniform = plan_by_capacity(&tasks, &workers, true);
        assert_eq!(uniform.iter().filter(|p| p[0] == 0).count(), 4);
    }

    #[test]
    fn data_stays_home_unless_a_node_is_much_faster() {
        let workers = vec![Worker { id: 0, capacity: 10.0, load: 0.0 }, Worker { id: 1, capacity: 11.0, load: 0.0 }];
        let tasks = vec![Task { cost: 1.0, homes: vec![0] }];
        assert_eq!(plan_by_capacity(&tasks, &workers, false)[0][0], 0, "a 10% faster node does not pay a fetch");
        let busy = vec![Worker { id: 0, capacity: 10.0, load: 5.0 }, Worker { id: 1, capacity: 10.0, load: 0.0 }];
        assert_eq!(plan_by_capacity(&tasks, &busy, false)[0][0], 1, "a busy home loses the task");
    }

    fn peers(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("peer-{i}").into_bytes()).collect()
    }

    fn uniform(ids: &[Vec<u8>]) -> Vec<Candidate<'_>> {
        ids.iter().map(|id| Candidate { id, weight: 1.0 }).collect()
    }

    #[test]
    fn same_inputs_same_ranking_regardless_of_order() {
        let ids = peers(10);
        let mut reversed = uniform(&ids);
        reversed.reverse();
        assert_eq!(rank(b"blob", uniform(&ids)), rank(b"blob", reversed));
    }

    #[test]
    fn removing_a_peer_moves_only_its_keys() {
        let ids = peers(10);
        let fewer: Vec<Vec<u8>> = ids[1..].to_vec();
        for key in 0..500u32 {
            let key = key.to_le_bytes();
            let before = top_k(&key, uniform(&ids), 1)[0];
            let after = top_k(&key, uniform(&fewer), 1)[0];
            if before != ids[0].as_slice() {
                assert_eq!(before, after, "a key not owned by the removed peer moved");
            }
        }
    }

    #[test]
    fn weight_scales_the_share_of_keys() {
        let ids = peers(2);
        let candidates = [Candidate { id: &ids[0], weight: 3.0 }, Candidate { id: &ids[1], weight: 1.0 }];
        let heavy = (0..20_000u32).filter(|k| top_k(&k.to_le_bytes(), candidates, 1)[0] == ids[0].as_slice()).count();
        let share = heavy as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }

    #[test]
    fn uniform_weights_spread_keys_evenly() {
        let ids = peers(4);
        let mut counts = [0usize; 4];
        for k in 0..40_000u32 {
            let top = top_k(&k.to_le_bytes(), uniform(&ids), 1)[0];
            counts[ids.iter().position(|id| id.as_slice() == top).unwrap()] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}

//! Blob placement over thousands of nodes, with the node's own homes
//! (`mass_node::replication::homes`, rendezvous ranking).
//!
//! Each round crashes or adds nodes (seeded), then moves every blob to where
//! repair converges: its homes, the top-k live nodes for its id. How the
//! node's rule gets there, message by message under faults, is
//! [`crate::replication`]; this checks what placement alone promises.
//!
//! Invariants, checked after every round:
//! - **no loss**: with at most k-1 crashes between repairs, every blob keeps a
//!   live copy;
//! - **repair**: after the repair step every blob has exactly k live copies,
//!   on exactly its homes;
//! - **minimal movement**: a join or a crash moves about k/n of the copies, not
//!   a reshuffle (checked against a bound of 4x the expectation).

use std::collections::{BTreeSet, HashMap};

use mass_node::replication;
use mass_protocol::ContentId;
use rand::{Rng, SeedableRng, rngs::StdRng};

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: u32,
    pub blobs: u32,
    pub k: usize,
    pub rounds: u32,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub crashes: u32,
    pub joins: u32,
    /// Copies created by repair and migration, over all rounds.
    pub copies_moved: u64,
    /// Largest fraction of all copies moved in one round.
    pub worst_round_fraction: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: round {round}: {what}")]
pub struct Violation {
    pub seed: u64,
    pub round: u32,
    pub what: String,
}

fn homes(blob: u32, live: &BTreeSet<u32>, k: usize) -> Vec<u32> {
    let view: Vec<u32> = live.iter().copied().collect();
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&blob.to_le_bytes());
    replication::homes(&ContentId::from_bytes(id), &view, k)
}

pub fn run(scenario: &Scenario) -> Result<Report, Violation> {
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let mut live: BTreeSet<u32> = (0..scenario.nodes).collect();
    let mut next_id = scenario.nodes;
    let mut holders: HashMap<u32, BTreeSet<u32>> =
        (0..scenario.blobs).map(|b| (b, homes(b, &live, scenario.k).into_iter().collect())).collect();
    let mut report = Report::default();
    let total_copies = (scenario.blobs as usize * scenario.k) as f64;

    for round in 0..scenario.rounds {
        let violation = |what: String| Violation { seed: scenario.seed, round, what };
        // Membership change: up to k-1 crashes, or a join.
        if rng.random_bool(0.5) && live.len() > scenario.k + 1 {
            let crashes = rng.random_range(1..scenario.k.max(2));
            for _ in 0..crashes {
                let victim = *live.iter().nth(rng.random_range(0..live.len())).expect("non-empty");
                live.remove(&victim);
                for copies in holders.values_mut() {
                    copies.remove(&victim);
                }
                report.crashes += 1;
            }
        } else {
            live.insert(next_id);
            next_id += 1;
            report.joins += 1;
        }
        for (blob, copies) in &holders {
            if copies.is_empty() {
                return Err(violation(format!("blob {blob} lost every copy")));
            }
        }
        // Repair and migration, as every holder's repair walk does it.
        let mut moved = 0u64;
        for (blob, copies) in holders.iter_mut() {
            let want: BTreeSet<u32> = homes(*blob, &live, scenario.k).into_iter().collect();
            moved += want.difference(copies).count() as u64;
            *copies = want;
        }
        for (blob, copies) in &holders {
            if copies.len() != scenario.k.min(live.len()) {
                return Err(violation(format!("blob {blob} has {} copies after repair", copies.len())));
            }
        }
        let fraction = moved as f64 / total_copies;
        let expected = scenario.k as f64 / live.len() as f64 * scenario.k as f64;
        if fraction > 4.0 * expected + 0.01 {
            return Err(violation(format!("moved {:.3} of all copies; expected about {expected:.3}", fraction)));
        }
        report.copies_moved += moved;
        report.worst_round_fraction = report.worst_round_fraction.max(fraction);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariants_hold_over_a_thousand_nodes() {
        for seed in 0..2 {
            let scenario = Scenario { seed, nodes: 1000, blobs: 1000, k: 2, rounds: 6 };
            let report = run(&scenario).unwrap_or_else(|v| panic!("{v}"));
            assert!(report.crashes + report.joins >= 6);
            assert!(report.worst_round_fraction < 0.02, "{report:?}");
        }
    }

    #[test]
    fn k_three_survives_two_crashes_per_round() {
        let scenario = Scenario { seed: 9, nodes: 100, blobs: 1000, k: 3, rounds: 10 };
        run(&scenario).unwrap_or_else(|v| panic!("{v}"));
    }

    #[test]
    fn same_seed_same_report() {
        let scenario = Scenario { seed: 4, nodes: 300, blobs: 1000, k: 2, rounds: 5 };
        assert_eq!(run(&scenario).unwrap(), run(&scenario).unwrap());
    }
}

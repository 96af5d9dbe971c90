//! Planted bugs: variants of the replication rule the simulation must catch.
//! They live here, never in the node; a [`super::Rule`] picks one per run.

use mass_node::replication::plan::{self, Action, Confirmations, Keep};
use mass_protocol::ContentId;

/// Evidence as a careless implementation keeps it: answers counted, not
/// peers. Reset when the view changes and when the copy is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub claims: usize,
    pub proofs: usize,
}

/// "Repair counts a holder twice": like [`plan::plan`], but a home that says
/// yes on two walks counts as two homes, for claims and for proofs. While a
/// slow home is still fetching, the other home's repeated answers fill the
/// count and the copy goes with fewer than k verified copies elsewhere.
pub fn counts_answers(blob: &ContentId, me: u32, view: &[u32], k: usize, tally: &Tally) -> Vec<Action<u32>> {
    let mut candidates = view.to_vec();
    candidates.push(me);
    let homes = plan::homes(blob, &candidates, k);
    if homes.contains(&me) || homes.is_empty() {
        return plan::decide(&me, &homes, &Confirmations::default());
    }
    let ask = |wrap: fn(u32) -> Action<u32>, keep| homes.iter().map(|h| wrap(*h)).chain([Action::Keep(keep)]).collect();
    if tally.claims < homes.len() {
        ask(Action::AskHome, Keep::Unclaimed)
    } else if tally.proofs < homes.len() {
        ask(Action::Verify, Keep::Unverified)
    } else {
        vec![Action::Drop { verified_homes: homes }]
    }
}

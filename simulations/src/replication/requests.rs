//! Predictions sent to the simulated mesh, answered with serving's own
//! choice of nodes (`mass_node::serving::choice`): a blob stands for a model
//! version, its `replicas` homes over the entry node's view are its
//! replicas, and a node answers from its disk or after loading the blob.
//!
//! A request is played out at once against the mesh as it is when it
//! arrives (it lasts at most a deadline, much less than the phases), in the
//! router's steps: the entry node serves itself when it ranks among the
//! replicas, else asks the replicas, best first, then every other node it
//! sees, each within [`choice::budget`], and finally serves itself if time
//! is left. Hedging is not simulated. Invariants:
//! - **in time**: every request is answered or refused by its deadline;
//! - **answered when healthy**: in a converged mesh (the end of a quiet
//!   phase) every request is answered.

use std::time::Duration;

use mass_node::{replication::homes, serving::choice};
use rand::Rng;

use super::World;

/// How one request ended, in simulated milliseconds since it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered { after_ms: u64 },
    Refused { after_ms: u64 },
}

/// What one node does with an attempt: answers after `ms`, or never.
enum Reply {
    After(u64),
    Never,
}

impl World {
    /// Sends one prediction for `blob` to `entry` and checks it ended in time.
    pub(super) fn request(&mut self, entry: u32, blob: u32) -> Result<Option<Outcome>, String> {
        if !self.nodes[entry as usize].status.runs() {
            // The client cannot reach it: it tries another node.
            return Ok(None);
        }
        let deadline = self.s.deadline_ms;
        let view_id = self.history.at(self.now.saturating_sub(self.nodes[entry as usize].lag_ms));
        let snapshot = self.history.get(view_id).clone();
        let mut view = self.ranking.candidates(view_id, &snapshot, entry, blob, self.s.replicas + 2);
        view.push(entry);
        let replica_set = homes(self.ranking.id(blob), &view, self.s.replicas);
        let outcome = if replica_set.contains(&entry) {
            self.serve_locally(entry, blob, 0)
        } else {
            let chosen = choice::replicas_first(&replica_set, &entry, |_| 0, &mut self.rng);
            let live: Vec<u32> = (0..self.nodes.len() as u32).filter(|n| snapshot.sees(entry, *n)).collect();
            let candidates = choice::then_the_rest(chosen, &live, &entry, &mut self.rng);
            self.forward(entry, blob, &candidates)
        };
        let (answered, after_ms) = match outcome {
            Outcome::Answered { after_ms } => (true, after_ms),
            Outcome::Refused { after_ms } => (false, after_ms),
        };
        self.report.requests += 1;
        self.report.answered += u64::from(answered);
        self.report.slowest_answer_ms = self.report.slowest_answer_ms.max(if answered { after_ms } else { 0 });
        if after_ms > deadline {
            return Err(format!(
                "request for blob {blob} through node {entry} {} after {after_ms} ms, past its {deadline} ms deadline",
                if answered { "answered" } else { "refused" }
            ));
        }
        Ok(Some(outcome))
    }

    /// The router's forward: candidates in turn, each within its budget,
    /// then this node itself if time is left.
    fn forward(&mut self, entry: u32, blob: u32, candidates: &[u32]) -> Outcome {
        let deadline = self.s.deadline_ms;
        let mut elapsed = 0;
        for (attempt, &peer) in candidates.iter().enumerate() {
            if elapsed >= deadline {
                return Outcome::Refused { after_ms: elapsed };
            }
            let left = Duration::from_millis(deadline - elapsed);
            let Some(budget) = choice::budget(left, attempt, candidates.len()) else { break };
            let budget = budget.as_millis() as u64;
            match self.reply(entry, peer, blob) {
                Reply::After(ms) if ms <= budget => return Outcome::Answered { after_ms: elapsed + ms },
                _ => elapsed += budget,
            }
        }
        if elapsed < deadline {
            return self.serve_locally(entry, blob, elapsed);
        }
        Outcome::Refused { after_ms: elapsed }
    }

    /// `serve_local_within`: from disk, or after loading, until the deadline.
    fn serve_locally(&mut self, entry: u32, blob: u32, elapsed: u64) -> Outcome {
        let took = elapsed + self.serve_ms(entry, blob);
        if took <= self.s.deadline_ms {
            Outcome::Answered { after_ms: took }
        } else {
            Outcome::Refused { after_ms: self.s.deadline_ms }
        }
    }

    /// Time for `node` to answer for `blob`: from its disk, or after
    /// loading the blob first.
    fn serve_ms(&mut self, node: u32, blob: u32) -> u64 {
        let load = if self.nodes[node as usize].disk.contains(&blob) { 0 } else { self.transfer_ms[blob as usize] };
        load + self.rng.random_range(1..=self.s.max_serve_ms)
    }

    /// Whether and when `peer` answers `entry`'s request: never if it is
    /// down or across a partition, or when chaos loses the message.
    fn reply(&mut self, entry: u32, peer: u32, blob: u32) -> Reply {
        if !self.nodes[peer as usize].status.runs() || self.split(entry, peer) {
            return Reply::Never;
        }
        if self.chaos && self.rng.random_bool(self.s.loss) {
            return Reply::Never;
        }
        let round_trip = 2 * self.rng.random_range(1..=self.s.max_delay_ms);
        Reply::After(round_trip + self.serve_ms(peer, blob))
    }

    /// At the end of a quiet phase the mesh has converged: every request,
    /// one per blob through a random running node, is answered.
    pub(super) fn check_served(&mut self) -> Result<(), String> {
        for blob in 0..self.s.blobs.min(self.s.requests_per_check) {
            let entry = self.rng.random_range(0..self.nodes.len() as u32);
            if let Some(Outcome::Refused { after_ms }) = self.request(entry, blob)? {
                return Err(format!(
                    "converged mesh: request for blob {blob} through node {entry} refused after {after_ms} ms"
                ));
            }
        }
        Ok(())
    }
}

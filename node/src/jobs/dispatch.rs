//! Handing a job's tasks to the nodes its plan chose, at most as many at
//! once per node as the node has compute slots: a task waits for its first
//! choice (the plan already weighed that node's speed and load), and moves
//! to its next choice only when that node refuses it (busy with other work)
//! or fails. Pure bookkeeping; the driver runs the tasks.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub struct Dispatch<P> {
    waiting: VecDeque<(usize, VecDeque<P>)>,
    in_flight: HashMap<P, usize>,
    slots: HashMap<P, usize>,
    /// Where a task goes when every choice refused it (it waits there).
    fallback: P,
    started: HashMap<usize, VecDeque<P>>,
}

impl<P: Clone + Eq + Hash> Dispatch<P> {
    /// `plans`: each task's nodes, best first; `slots`: each node's compute
    /// slots (unknown nodes get one).
    pub fn new(plans: Vec<(usize, Vec<P>)>, slots: HashMap<P, usize>, fallback: P) -> Self {
        Self {
            waiting: plans.into_iter().map(|(i, order)| (i, order.into_iter().collect())).collect(),
            in_flight: HashMap::new(),
            slots,
            fallback,
            started: HashMap::new(),
        }
    }

    fn free(&self, peer: &P) -> bool {
        let limit = self.slots.get(peer).copied().unwrap_or(1).max(1);
        self.in_flight.get(peer).copied().unwrap_or(0) < limit
    }

    /// Tasks to start now, each with the node to ask and whether it is the
    /// fallback (which queues the task rather than refusing it).
    pub fn ready(&mut self) -> Vec<(usize, P, bool)> {
        let mut out = Vec::new();
        let mut still = VecDeque::new();
        while let Some((task, mut order)) = self.waiting.pop_front() {
            let next = order.front().cloned();
            match next {
                Some(peer) if self.free(&peer) => {
                    *self.in_flight.entry(peer.clone()).or_default() += 1;
                    order.pop_front();
                    self.started.insert(task, order);
                    out.push((task, peer, false));
                }
                Some(_) => still.push_back((task, order)),
                // Every choice refused it: it waits on this node's own queue.
                None => {
                    *self.in_flight.entry(self.fallback.clone()).or_default() += 1;
                    self.started.insert(task, VecDeque::new());
                    out.push((task, self.fallback.clone(), true));
                }
            }
        }
        self.waiting = still;
        out
    }

    /// `task` ended on `peer` (done, or failed for good).
    pub fn done(&mut self, task: usize, peer: &P) {
        if let Some(n) = self.in_flight.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
        self.started.remove(&task);
    }

    /// `peer` refused `task` (busy) or failed it: it moves to its next choice.
    pub fn refused(&mut self, task: usize, peer: &P) {
        if let Some(n) = self.in_flight.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
        let rest = self.started.remove(&task).unwrap_or_default();
        self.waiting.push_front((task, rest));
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.started.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_wait_for_their_first_choice_and_move_on_when_refused() {
        let plans =
            vec![(0, vec!["fast", "slow"]), (1, vec!["fast", "slow"]), (2, vec!["fast", "slow"]), (3, vec!["slow"])];
        let slots = HashMap::from([("fast", 2), ("slow", 1)]);
        let mut d = Dispatch::new(plans, slots, "self");
        assert_eq!(d.ready(), vec![(0, "fast", false), (1, "fast", false), (3, "slow", false)]);
        assert!(d.ready().is_empty(), "task 2 waits for a fast slot");
        d.done(0, &"fast");
        assert_eq!(d.ready(), vec![(2, "fast", false)]);
        d.refused(2, &"fast");
        d.done(3, &"slow");
        assert_eq!(d.ready(), vec![(2, "slow", false)]);
        d.refused(2, &"slow");
        assert_eq!(d.ready(), vec![(2, "self", true)], "refused everywhere: this node queues it");
        d.done(2, &"self");
        d.done(1, &"fast");
        assert!(d.is_idle());
    }
}

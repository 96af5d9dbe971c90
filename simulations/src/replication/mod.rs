//! The whole mesh keeping k copies of every blob, in simulated time.
//!
//! Every node runs the node's own rule, `mass_node::replication::plan`, on
//! each repair walk, over its own (stale, partial) view; homes come from the
//! node's rendezvous ranking. Messages are the node's: `Replicate` answered
//! `Has`, a possession check answered with a proof or not, a fetch answered
//! with the blob after a transfer time. The network delays, loses and
//! duplicates messages and splits into two sides that later heal; nodes crash
//! and restart keeping their disk, join, are destroyed with their disk, or
//! drain: leave their own view at once (as `mass node drain` does), keep
//! walking and answering, and leave the mesh, disk and all, on the first
//! walk that finds every blob they hold shown by its new homes.
//! All randomness comes from one seed: a run replays exactly.
//!
//! A run: blobs are put on random nodes and placed during a quiet warm-up;
//! then each epoch has a chaos phase (faults, at most k-1 nodes destroyed)
//! and a quiet phase (no loss, partition healed, every crashed node back).
//!
//! Invariants:
//! - **no loss**, after every step: every blob has a copy on some disk;
//! - **safe drops**, at every drop: the other disks holding the blob, plus
//!   the holders destroyed so far, number at least k (the top k holders a
//!   blob ever had never drop, so this holds whatever the views); a drained
//!   node's exit drops all its copies at once, each checked the same way;
//! - **convergence**, at the end of every quiet phase: every blob is on
//!   exactly its k homes over the live nodes;
//! - **serving** ([`requests`]): every prediction is answered or refused by
//!   its deadline, through chaos and quiet; at the end of every quiet phase
//!   every one is answered.
//!
//! # Layout
//! - [`views`]: membership snapshots, each node's view, blob candidates.
//! - [`mutants`]: planted bugs, to show the invariants catch them.

pub mod mutants;
pub mod requests;
pub mod views;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap},
    sync::Arc,
};

use mass_node::replication::{
    homes,
    plan::{self, Action, Confirmations},
};
use mass_protocol::ContentId;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IteratorRandom};

use self::{
    mutants::Tally,
    views::{Bits, History, Ranking, Snapshot},
};

/// Which replication rule the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The node's own `replication::plan`.
    Node,
    /// A planted bug: [`mutants::counts_answers`].
    CountsAnswers,
}

/// Parameters of one run. Times are simulated milliseconds.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: u32,
    pub blobs: u32,
    pub k: usize,
    pub epochs: u32,
    /// Repair walk interval of every node.
    pub walk_ms: u64,
    pub chaos_ms: u64,
    pub quiet_ms: u64,
    pub max_delay_ms: u64,
    /// Longest a blob takes to transfer (each blob draws its own).
    pub max_transfer_ms: u64,
    /// Longest a node's view lags behind the truth (each node draws its own).
    pub max_view_lag_ms: u64,
    /// Chance that a message is lost, and that it is delivered twice, during chaos.
    pub loss: f64,
    pub duplicate: f64,
    pub crashes_per_epoch: u32,
    pub max_down_ms: u64,
    pub joins_per_epoch: u32,
    /// Nodes destroyed with their disk per epoch (at most k-1 are).
    pub destroys_per_epoch: u32,
    /// Nodes drained (they hand off, then leave with their disk) per epoch.
    pub drains_per_epoch: u32,
    /// Whether each chaos phase splits the network in two for a while.
    pub partitions: bool,
    pub rule: Rule,
    /// Serving: each blob stands for a model version with this many replicas.
    pub replicas: usize,
    pub deadline_ms: u64,
    /// Longest a node takes to run a prediction it has loaded.
    pub max_serve_ms: u64,
    /// Predictions sent at random times in each epoch.
    pub requests_per_epoch: u32,
    /// Predictions (one per blob, at most this many) at each convergence check.
    pub requests_per_check: u32,
}

impl Scenario {
    /// A few dozen nodes: for the seed budget in CI.
    pub fn small(seed: u64) -> Self {
        Self {
            seed,
            nodes: 24,
            blobs: 30,
            k: 2,
            epochs: 2,
            walk_ms: 1000,
            chaos_ms: 15_000,
            // Long enough for lagging views, a slow transfer and the three
            // walks (ask, check, drop) a migration takes.
            quiet_ms: 25_000,
            max_delay_ms: 200,
            max_transfer_ms: 6_000,
            max_view_lag_ms: 2_000,
            loss: 0.1,
            duplicate: 0.02,
            crashes_per_epoch: 3,
            max_down_ms: 8_000,
            joins_per_epoch: 1,
            destroys_per_epoch: 1,
            drains_per_epoch: 1,
            partitions: true,
            rule: Rule::Node,
            replicas: 2,
            deadline_ms: 2000,
            max_serve_ms: 50,
            requests_per_epoch: 100,
            requests_per_check: 30,
        }
    }

    /// `nodes` nodes with `blobs` sampled blobs, k = 3, faults scaled to size.
    pub fn large(seed: u64, nodes: u32, blobs: u32) -> Self {
        Self {
            nodes,
            blobs,
            k: 3,
            epochs: 3,
            crashes_per_epoch: (nodes / 100).max(3),
            joins_per_epoch: (nodes / 500).max(1),
            destroys_per_epoch: 2,
            drains_per_epoch: (nodes / 500).max(1),
            requests_per_epoch: 1000,
            requests_per_check: 200,
            ..Self::small(seed)
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub nodes: u32,
    pub blobs: u32,
    /// Events processed; the invariants are checked after each.
    pub steps: u64,
    pub simulated_ms: u64,
    /// Copies created by fetches (repair and migration).
    pub copies_moved: u64,
    pub drops: u64,
    pub messages: u64,
    pub lost: u64,
    pub crashes: u64,
    pub joins: u64,
    pub destroys: u64,
    pub partitions: u64,
    /// Drains begun, and drained nodes that left.
    pub drains: u64,
    pub drained: u64,
    /// Predictions sent to running nodes, those answered, and the slowest answer.
    pub requests: u64,
    pub answered: u64,
    pub slowest_answer_ms: u64,
}

/// An invariant did not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed}: step {step} at {at_ms} ms: {what}")]
pub struct Violation {
    pub seed: u64,
    pub step: u64,
    pub at_ms: u64,
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Replicate { blob: u32 },
    Has { blob: u32, yes: bool },
    Prove { blob: u32 },
    Proof { blob: u32, shown: bool },
    Fetch { blob: u32 },
    Blob { blob: u32, found: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Put { blob: u32 },
    Walk { node: u32 },
    Deliver { from: u32, to: u32, msg: Msg },
    FetchTimeout { node: u32, blob: u32, fetch: u64 },
    Crash { node: u32 },
    Restart { node: u32 },
    Destroy,
    Drain,
    Join,
    Partition,
    Heal,
    Request { entry: u32, blob: u32 },
    Chaos,
    Quiet,
    Check,
}

/// An event due at `at`; `seq` orders events due at the same time.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    at: u64,
    seq: u64,
    event: Event,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Up,
    /// Leaving: out of everyone's view, its own included, still answering.
    Draining,
    Down,
    Destroyed,
    /// Drained and gone, with its disk.
    Left,
}

impl Status {
    /// Answers messages and walks.
    fn runs(self) -> bool {
        matches!(self, Status::Up | Status::Draining)
    }

    fn gone(self) -> bool {
        matches!(self, Status::Destroyed | Status::Left)
    }
}

/// What a node loses when it crashes.
#[derive(Debug, Default)]
struct Memory {
    /// The snapshot its view came from on its last walk.
    view: Option<usize>,
    evidence: BTreeMap<u32, Confirmations<u32>>,
    tallies: BTreeMap<u32, Tally>,
    /// Blobs being fetched, with the fetch's number.
    fetching: BTreeMap<u32, u64>,
    /// Set on a draining node's first walk once every view has seen it
    /// leave: its evidence from before is dropped then, and only what it
    /// gathers after counts towards leaving (`drain::Leaving::settled`).
    drain_settled: bool,
}

#[derive(Debug)]
struct Node {
    status: Status,
    disk: BTreeSet<u32>,
    memory: Memory,
    lag_ms: u64,
    /// When it began draining.
    draining_since: u64,
}

struct World {
    s: Scenario,
    rng: StdRng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Due>>,
    nodes: Vec<Node>,
    ranking: Ranking,
    history: History,
    live: Bits,
    minority: Option<Arc<Bits>>,
    chaos: bool,
    /// Non-destroyed disks holding each blob.
    holders: Vec<BTreeSet<u32>>,
    /// Holders of each blob destroyed so far.
    destroyed_holders: Vec<usize>,
    transfer_ms: Vec<u64>,
    next_fetch: u64,
    report: Report,
}

/// Runs a scenario, checking the invariants after every step.
pub fn run(s: &Scenario) -> Result<Report, Violation> {
    let mut world = World::new(s.clone());
    world.schedule_run();
    while let Some(Reverse(due)) = world.queue.pop() {
        world.now = due.at;
        world.report.steps += 1;
        world.step(due.event).map_err(|what| Violation {
            seed: s.seed,
            step: world.report.steps,
            at_ms: world.now,
            what,
        })?;
    }
    world.report.simulated_ms = world.now;
    Ok(world.report)
}

impl World {
    fn new(s: Scenario) -> Self {
        let mut rng = StdRng::seed_from_u64(s.seed);
        let ids: Vec<ContentId> =
            (0..s.blobs).map(|b| ContentId::of(&[s.seed.to_le_bytes(), u64::from(b).to_le_bytes()].concat())).collect();
        let ranking = Ranking::new(ids, s.nodes);
        let nodes = (0..s.nodes)
            .map(|_| Node {
                status: Status::Up,
                disk: BTreeSet::new(),
                memory: Memory::default(),
                lag_ms: rng.random_range(0..=s.max_view_lag_ms),
                draining_since: 0,
            })
            .collect();
        let mut live = Bits::default();
        for n in 0..s.nodes {
            live.set(n, true);
        }
        let transfer_ms = (0..s.blobs).map(|_| rng.random_range(0..=s.max_transfer_ms)).collect();
        let report = Report { nodes: s.nodes, blobs: s.blobs, ..Report::default() };
        let mut world = Self {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            ranking,
            history: History::default(),
            live,
            minority: None,
            chaos: false,
            holders: vec![BTreeSet::new(); s.blobs as usize],
            destroyed_holders: vec![0; s.blobs as usize],
            transfer_ms,
            next_fetch: 0,
            report,
            s,
        };
        world.snapshot();
        world
    }

    fn at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Due { at, seq: self.seq, event }));
    }

    /// Puts and walks, then per epoch: chaos (faults at random times), quiet, check.
    fn schedule_run(&mut self) {
        let s = self.s.clone();
        for blob in 0..s.blobs {
            let t = self.rng.random_range(0..s.walk_ms);
            self.at(t, Event::Put { blob });
        }
        for node in 0..s.nodes {
            let t = self.rng.random_range(0..s.walk_ms);
            self.at(t, Event::Walk { node });
        }
        let mut t = s.quiet_ms;
        self.at(t, Event::Check);
        for _ in 0..s.epochs {
            self.at(t, Event::Chaos);
            let random_time = |w: &mut Self| t + w.rng.random_range(0..s.chaos_ms);
            for _ in 0..s.crashes_per_epoch {
                let when = random_time(self);
                let node = self.rng.random_range(0..s.nodes);
                self.at(when, Event::Crash { node });
            }
            for _ in 0..s.joins_per_epoch {
                let when = random_time(self);
                self.at(when, Event::Join);
            }
            for _ in 0..s.destroys_per_epoch.min((s.k as u32).saturating_sub(1)) {
                let when = random_time(self);
                self.at(when, Event::Destroy);
            }
            for _ in 0..s.drains_per_epoch {
                let when = random_time(self);
                self.at(when, Event::Drain);
            }
            for _ in 0..s.requests_per_epoch {
                // Through chaos and the quiet phase after it.
                let when = t + self.rng.random_range(0..s.chaos_ms + s.quiet_ms);
                let (entry, blob) = (self.rng.random_range(0..s.nodes), self.rng.random_range(0..s.blobs));
                self.at(when, Event::Request { entry, blob });
            }
            if s.partitions {
                let (a, b) = (random_time(self), random_time(self));
                self.at(a.min(b), Event::Partition);
                self.at(a.max(b), Event::Heal);
            }
            t += s.chaos_ms;
            self.at(t, Event::Quiet);
            t += s.quiet_ms;
            self.at(t, Event::Check);
        }
    }

    /// Records the truth as it is now, for views to lag behind.
    fn snapshot(&mut self) {
        self.history.record(Snapshot { at_ms: self.now, live: self.live.clone(), minority: self.minority.clone() });
    }

    fn end_time(&self) -> u64 {
        self.s.quiet_ms + u64::from(self.s.epochs) * (self.s.chaos_ms + self.s.quiet_ms)
    }

    fn step(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Put { blob } => self.put(blob)?,
            Event::Walk { node } => self.walk(node)?,
            Event::Deliver { from, to, msg } => self.deliver(from, to, msg)?,
            Event::FetchTimeout { node, blob, fetch } => {
                let memory = &mut self.nodes[node as usize].memory;
                if memory.fetching.get(&blob) == Some(&fetch) {
                    memory.fetching.remove(&blob);
                }
            }
            Event::Crash { node } => {
                if self.nodes[node as usize].status.runs() {
                    self.crash(node);
                    let back = self.now + self.rng.random_range(1..=self.s.max_down_ms);
                    self.at(back, Event::Restart { node });
                }
            }
            Event::Restart { node } => self.restart(node),
            Event::Destroy => self.destroy()?,
            Event::Drain => self.drain(),
            Event::Join => self.join(),
            Event::Partition => self.partition(),
            Event::Heal => self.heal(),
            Event::Request { entry, blob } => {
                self.request(entry, blob)?;
            }
            Event::Chaos => self.chaos = true,
            Event::Quiet => {
                self.chaos = false;
                self.heal();
                for node in 0..self.nodes.len() as u32 {
                    self.restart(node);
                }
            }
            Event::Check => {
                self.check_converged()?;
                self.check_served()?;
            }
        }
        Ok(())
    }

    fn put(&mut self, blob: u32) -> Result<(), String> {
        let Some(node) =
            (0..self.nodes.len() as u32).filter(|n| self.nodes[*n as usize].status == Status::Up).choose(&mut self.rng)
        else {
            return Ok(());
        };
        self.nodes[node as usize].disk.insert(blob);
        self.holders[blob as usize].insert(node);
        // A client's put: the node tells the homes at once (`PlaceNew`).
        self.plan_blob(node, blob).map(|_| ())
    }

    /// One repair walk: the plan for every blob on this node's disk.
    fn walk(&mut self, node: u32) -> Result<(), String> {
        let status = self.nodes[node as usize].status;
        if !status.gone() && self.now < self.end_time() {
            // A draining node walks again as soon as it can (the actor
            // walks every 250 ms while draining).
            let next = if status == Status::Draining { self.s.walk_ms / 4 } else { self.s.walk_ms };
            self.at(self.now + next.max(1), Event::Walk { node });
        }
        if !status.runs() {
            return Ok(());
        }
        let view = self.history.at(self.now.saturating_sub(self.nodes[node as usize].lag_ms));
        let memory = &mut self.nodes[node as usize].memory;
        if memory.view != Some(view) {
            // As the actor does: after a view change every claim is asked again.
            memory.evidence.clear();
            memory.tallies.clear();
            memory.view = Some(view);
        }
        // Every view lags at most `max_view_lag_ms`: a peer that has not yet
        // seen this node leave may count it as a home and drop its own
        // copy, so what was shown before then proves nothing.
        let settle = self.s.max_view_lag_ms + self.s.max_delay_ms;
        let n = &mut self.nodes[node as usize];
        let settled = status == Status::Draining && self.now >= n.draining_since + settle;
        if settled && !n.memory.drain_settled {
            n.memory.evidence.clear();
            n.memory.drain_settled = true;
        }
        let blobs: Vec<u32> = self.nodes[node as usize].disk.iter().copied().collect();
        for blob in &blobs {
            self.nodes[node as usize].memory.evidence.entry(*blob).or_default().begin_walk();
        }
        let mut handed_off = 0;
        for &blob in &blobs {
            handed_off += usize::from(self.plan_blob(node, blob)?);
        }
        if settled && handed_off == blobs.len() {
            self.leave(node)?;
        }
        Ok(())
    }

    /// Runs the rule for one held blob and carries out its actions. Returns
    /// whether a draining node has handed the blob off (every new home
    /// showed it; the copy stays until the node leaves).
    fn plan_blob(&mut self, node: u32, blob: u32) -> Result<bool, String> {
        let view_id = self.history.at(self.now.saturating_sub(self.nodes[node as usize].lag_ms));
        let snapshot = self.history.get(view_id).clone();
        let mut view = self.ranking.candidates(view_id, &snapshot, node, blob, self.s.k + 2);
        let id = *self.ranking.id(blob);
        let draining = self.nodes[node as usize].status == Status::Draining;
        let memory = &mut self.nodes[node as usize].memory;
        let actions = match self.s.rule {
            // Draining runs the node's rule under either rule: the planted
            // bug is in ordinary walks.
            _ if draining => {
                // As the actor does: a draining node ranks without itself.
                view.retain(|n| *n != node);
                let homes = homes(&id, &view, self.s.k);
                let evidence = memory.evidence.entry(blob).or_default();
                let actions = plan::decide(&node, &homes, evidence);
                if matches!(actions.as_slice(), [Action::Drop { .. }]) {
                    return Ok(true);
                }
                evidence.clear_verified();
                plan::decide(&node, &homes, evidence)
            }
            Rule::Node => {
                let evidence = memory.evidence.entry(blob).or_default();
                let actions = plan::plan(&id, &node, &view, self.s.k, true, evidence);
                if matches!(actions.as_slice(), [Action::Drop { .. }]) {
                    actions
                } else {
                    // Proofs count for the round that gathered them, as in
                    // the actor's walk: a new round checks every home afresh.
                    evidence.clear_verified();
                    plan::plan(&id, &node, &view, self.s.k, true, evidence)
                }
            }
            Rule::CountsAnswers => {
                mutants::counts_answers(&id, node, &view, self.s.k, memory.tallies.entry(blob).or_default())
            }
        };
        for action in actions {
            match action {
                Action::AskHome(home) => self.send(node, home, Msg::Replicate { blob }),
                Action::Verify(home) => self.send(node, home, Msg::Prove { blob }),
                Action::Drop { .. } if draining => return Ok(true),
                Action::Drop { .. } => self.drop_copy(node, blob)?,
                Action::Keep(_) => {}
            }
        }
        Ok(false)
    }

    /// Drops a copy, first checking that the drop is safe.
    fn drop_copy(&mut self, node: u32, blob: u32) -> Result<(), String> {
        let others = self.holders[blob as usize].iter().filter(|h| **h != node).count();
        let destroyed = self.destroyed_holders[blob as usize];
        if others + destroyed < self.s.k {
            return Err(format!(
                "unsafe drop: node {node} dropped blob {blob} with {others} other copies and {destroyed} holders destroyed; k = {}",
                self.s.k
            ));
        }
        let n = &mut self.nodes[node as usize];
        n.disk.remove(&blob);
        n.memory.evidence.remove(&blob);
        n.memory.tallies.remove(&blob);
        self.holders[blob as usize].remove(&node);
        self.report.drops += 1;
        self.check_kept(blob)
    }

    /// No loss: the blob is on some disk.
    fn check_kept(&self, blob: u32) -> Result<(), String> {
        if self.holders[blob as usize].is_empty() {
            return Err(format!("blob {blob} lost: no disk holds it"));
        }
        Ok(())
    }

    /// Sends a message, which the network may lose, delay or duplicate.
    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        self.send_after(from, to, msg, 0);
    }

    fn send_after(&mut self, from: u32, to: u32, msg: Msg, extra_ms: u64) {
        self.report.messages += 1;
        if self.chaos && self.rng.random_bool(self.s.loss) {
            self.report.lost += 1;
            return;
        }
        let copies = if self.chaos && self.rng.random_bool(self.s.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.random_range(1..=self.s.max_delay_ms) + extra_ms;
            self.at(self.now + delay, Event::Deliver { from, to, msg });
        }
    }

    fn split(&self, a: u32, b: u32) -> bool {
        self.minority.as_ref().is_some_and(|m| m.get(a) != m.get(b))
    }

    fn deliver(&mut self, from: u32, to: u32, msg: Msg) -> Result<(), String> {
        if !self.nodes[to as usize].status.runs() || self.split(from, to) {
            self.report.lost += 1;
            return Ok(());
        }
        let n = &mut self.nodes[to as usize];
        match msg {
            Msg::Replicate { blob } => {
                let yes = n.disk.contains(&blob);
                if !yes && !n.memory.fetching.contains_key(&blob) {
                    // Pull it from the asker, as `ReplicateFrom` does.
                    self.next_fetch += 1;
                    let fetch = self.next_fetch;
                    n.memory.fetching.insert(blob, fetch);
                    let give_up = self.now + 2 * self.s.max_delay_ms + self.transfer_ms[blob as usize] + self.s.walk_ms;
                    self.at(give_up, Event::FetchTimeout { node: to, blob, fetch });
                    self.send(to, from, Msg::Fetch { blob });
                }
                self.send(to, from, Msg::Has { blob, yes });
            }
            Msg::Has { blob, yes } => {
                if yes && n.disk.contains(&blob) {
                    n.memory.evidence.entry(blob).or_default().claim(from);
                    n.memory.tallies.entry(blob).or_default().claims += 1;
                }
            }
            Msg::Prove { blob } => {
                let shown = n.disk.contains(&blob);
                self.send(to, from, Msg::Proof { blob, shown });
            }
            Msg::Proof { blob, shown } => {
                if n.disk.contains(&blob) {
                    let evidence = n.memory.evidence.entry(blob).or_default();
                    if shown {
                        evidence.verify(from);
                        n.memory.tallies.entry(blob).or_default().proofs += 1;
                    } else {
                        evidence.refute(&from);
                    }
                }
            }
            Msg::Fetch { blob } => {
                let found = n.disk.contains(&blob);
                let transfer = if found { self.transfer_ms[blob as usize] } else { 0 };
                self.send_after(to, from, Msg::Blob { blob, found }, transfer);
            }
            Msg::Blob { blob, found } => {
                n.memory.fetching.remove(&blob);
                if found && n.disk.insert(blob) {
                    self.holders[blob as usize].insert(to);
                    self.report.copies_moved += 1;
                }
            }
        }
        Ok(())
    }

    /// A crash loses memory and keeps the disk.
    fn crash(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        n.status = Status::Down;
        n.memory = Memory::default();
        self.live.set(node, false);
        self.report.crashes += 1;
        self.snapshot();
    }

    fn restart(&mut self, node: u32) {
        if self.nodes[node as usize].status != Status::Down {
            return;
        }
        self.nodes[node as usize].status = Status::Up;
        self.live.set(node, true);
        self.snapshot();
    }

    /// A node starts draining: it leaves the truth (so views, as they catch
    /// up, stop ranking it) and its own view at once.
    fn drain(&mut self) {
        let Some(node) =
            (0..self.nodes.len() as u32).filter(|n| self.nodes[*n as usize].status == Status::Up).choose(&mut self.rng)
        else {
            return;
        };
        self.nodes[node as usize].status = Status::Draining;
        self.nodes[node as usize].draining_since = self.now;
        self.live.set(node, false);
        self.report.drains += 1;
        self.snapshot();
    }

    /// A drained node leaves with its disk: each copy's drop must be safe.
    fn leave(&mut self, node: u32) -> Result<(), String> {
        let blobs: Vec<u32> = self.nodes[node as usize].disk.iter().copied().collect();
        for blob in blobs {
            self.drop_copy(node, blob)?;
        }
        let n = &mut self.nodes[node as usize];
        n.status = Status::Left;
        n.memory = Memory::default();
        self.report.drained += 1;
        Ok(())
    }

    /// A node and its disk are gone for good (at most k-1 per epoch).
    fn destroy(&mut self) -> Result<(), String> {
        let Some(node) =
            (0..self.nodes.len() as u32).filter(|n| !self.nodes[*n as usize].status.gone()).choose(&mut self.rng)
        else {
            return Ok(());
        };
        let n = &mut self.nodes[node as usize];
        n.status = Status::Destroyed;
        n.memory = Memory::default();
        let lost: Vec<u32> = std::mem::take(&mut n.disk).into_iter().collect();
        self.live.set(node, false);
        self.report.destroys += 1;
        self.snapshot();
        for blob in lost {
            self.holders[blob as usize].remove(&node);
            self.destroyed_holders[blob as usize] += 1;
            self.check_kept(blob)?;
        }
        Ok(())
    }

    fn join(&mut self) {
        let node = self.ranking.add_node();
        let lag_ms = self.rng.random_range(0..=self.s.max_view_lag_ms);
        self.nodes.push(Node {
            status: Status::Up,
            disk: BTreeSet::new(),
            memory: Memory::default(),
            lag_ms,
            draining_since: 0,
        });
        self.live.set(node, true);
        if let Some(minority) = &mut self.minority {
            // A newcomer lands on the majority side.
            Arc::make_mut(minority).set(node, false);
        }
        self.report.joins += 1;
        self.snapshot();
        let first = self.now + self.rng.random_range(1..=self.s.walk_ms);
        self.at(first, Event::Walk { node });
    }

    /// Splits the nodes: a quarter to a half of them on the minority side.
    fn partition(&mut self) {
        let share = self.rng.random_range(0.25..0.5);
        let mut minority = Bits::default();
        for node in 0..self.nodes.len() as u32 {
            minority.set(node, self.rng.random_bool(share));
        }
        self.minority = Some(Arc::new(minority));
        self.report.partitions += 1;
        self.snapshot();
    }

    fn heal(&mut self) {
        if self.minority.take().is_some() {
            self.snapshot();
        }
    }

    /// Convergence: after a quiet phase every blob is on exactly its homes.
    fn check_converged(&mut self) -> Result<(), String> {
        let truth = self.history.latest();
        let snapshot = self.history.get(truth).clone();
        let Some(observer) = (0..self.nodes.len() as u32).find(|n| self.nodes[*n as usize].status == Status::Up) else {
            return Ok(());
        };
        for blob in 0..self.s.blobs {
            let candidates = self.ranking.candidates(truth, &snapshot, observer, blob, self.s.k);
            let want: BTreeSet<u32> = homes(self.ranking.id(blob), &candidates, self.s.k).into_iter().collect();
            if self.holders[blob as usize] != want {
                return Err(format!(
                    "not converged: blob {blob} is on {:?}, its homes are {want:?}",
                    self.holders[blob as usize]
                ));
            }
        }
        Ok(())
    }
}

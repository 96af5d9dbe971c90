//! Membership under loss, delay, crashes and restarts.
//!
//! Every live node gossips an advert each interval; each copy reaches each
//! other node after a random delay unless lost. Nodes crash and restart on a
//! seeded schedule. Each node runs the real [`PeerTable`].
//!
//! Invariants, checked at every tick of every node:
//! - **no false accusation**: a node marks a peer down only if it has received
//!   nothing from that peer for `down_after`;
//! - **detection**: a crashed peer is marked down by every live node within
//!   `down_after + tick + max_delay` of its last delivered advert;
//! - **recovery**: a restarted peer is up again at every live node after its
//!   first advert arrives there.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    time::Duration,
};

use mass_node::membership::{Config, PeerTable, Transition};
use mass_protocol::api::PeerState;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: u32,
    pub duration_ms: u64,
    pub membership: Config,
    pub tick_ms: u64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Probability that one copy of an advert is lost.
    pub loss: f64,
    /// Nodes that crash, each at a random time, and restart later.
    pub crashes: u32,
    pub restart_after_ms: u64,
}

impl Scenario {
    pub fn small(seed: u64) -> Self {
        Self {
            seed,
            nodes: 60,
            duration_ms: 40_000,
            membership: Config {
                advert_interval: Duration::from_millis(1000),
                down_after: Duration::from_millis(4000),
                forget_after: Duration::from_millis(20_000),
                max_peers: 1024,
                ..Config::DEFAULT
            },
            tick_ms: 250,
            min_delay_ms: 1,
            max_delay_ms: 200,
            loss: 0.2,
            crashes: 6,
            restart_after_ms: 10_000,
        }
    }
}

/// What a run observed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub adverts_sent: u64,
    pub adverts_lost: u64,
    pub crashes: u64,
    /// (observer, crashed) pairs that detected the crash.
    pub detections: u64,
    pub max_detection_ms: u64,
    /// Live peers marked down because every advert in a window was lost.
    pub false_downs: u64,
    pub recoveries: u64,
}

/// An invariant did not hold.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: at {at_ms} ms: {what}")]
pub struct Violation {
    pub seed: u64,
    pub at_ms: u64,
    pub what: String,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Ordered by time, then kind, then ids: fully deterministic.
    Deliver {
        from: u32,
        to: u32,
    },
    Advertise {
        node: u32,
    },
    Tick {
        node: u32,
    },
    Crash {
        node: u32,
    },
    Restart {
        node: u32,
    },
}

struct Node {
    alive: bool,
    table: PeerTable<u32, ()>,
    /// Last time each peer's advert was delivered here.
    heard: BTreeMap<u32, u64>,
}

/// Runs a scenario, checking invariants at every step.
pub fn run(scenario: &Scenario) -> Result<Report, Violation> {
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let interval = scenario.membership.advert_interval.as_millis() as u64;
    let down_after = scenario.membership.down_after.as_millis() as u64;
    let mut nodes: Vec<Node> = (0..scenario.nodes)
        .map(|_| Node { alive: true, table: PeerTable::new(scenario.membership), heard: BTreeMap::new() })
        .collect();
    let mut queue: BinaryHeap<Reverse<(u64, Event)>> = BinaryHeap::new();
    for node in 0..scenario.nodes {
        queue.push(Reverse((rng.random_range(0..interval), Event::Advertise { node })));
        queue.push(Reverse((rng.random_range(0..scenario.tick_ms), Event::Tick { node })));
    }
    for _ in 0..scenario.crashes {
        let node = rng.random_range(0..scenario.nodes);
        let at = rng.random_range(interval * 5..scenario.duration_ms / 2);
        queue.push(Reverse((at, Event::Crash { node })));
    }
    // When each node last crashed, and its last advert delivery time anywhere.
    let mut crashed_at: BTreeMap<u32, u64> = BTreeMap::new();
    let mut report = Report::default();
    let violation = |at_ms, what: String| Violation { seed: scenario.seed, at_ms, what };

    while let Some(Reverse((now, event))) = queue.pop() {
        if now > scenario.duration_ms {
            break;
        }
        match event {
            Event::Advertise { node } => {
                if !nodes[node as usize].alive {
                    continue;
                }
                for to in (0..scenario.nodes).filter(|&to| to != node) {
                    report.adverts_sent += 1;
                    if rng.random_bool(scenario.loss) {
                        report.adverts_lost += 1;
                        continue;
                    }
                    let delay = rng.random_range(scenario.min_delay_ms..=scenario.max_delay_ms);
                    queue.push(Reverse((now + delay, Event::Deliver { from: node, to })));
                }
                queue.push(Reverse((now + interval, Event::Advertise { node })));
            }
            Event::Deliver { from, to } => {
                let receiver = &mut nodes[to as usize];
                if !receiver.alive {
                    continue;
                }
                receiver.heard.insert(from, now);
                if let Some(Transition::Recovered(_)) = receiver.table.observe_advert(from, (), now) {
                    report.recoveries += 1;
                }
            }
            Event::Tick { node } => {
                queue.push(Reverse((now + scenario.tick_ms, Event::Tick { node })));
                let observer = &mut nodes[node as usize];
                if !observer.alive {
                    continue;
                }
                for transition in observer.table.tick(now) {
                    let Transition::WentDown(peer) = transition else {
                        continue;
                    };
                    let heard = observer.heard.get(&peer).copied().unwrap_or(0);
                    if now.saturating_sub(heard) < down_after {
                        return Err(violation(
                            now,
                            format!("node {node} marked {peer} down {} ms after hearing it", now - heard),
                        ));
                    }
                    match crashed_at.get(&peer) {
                        Some(&at) if at <= now => {
                            report.detections += 1;
                            report.max_detection_ms = report.max_detection_ms.max(now - heard);
                        }
                        _ => report.false_downs += 1,
                    }
                }
                // Detection bound: a crashed peer is down here within
                // down_after + one tick of the last advert delivered here.
                let bound = down_after + scenario.tick_ms;
                for &peer in crashed_at.keys() {
                    let Some(&heard) = observer.heard.get(&peer) else {
                        continue;
                    };
                    if now > heard + bound && observer.table.get(&peer).is_some_and(|e| e.state == PeerState::Up) {
                        return Err(violation(
                            now,
                            format!("node {node} still has crashed {peer} up (last heard {heard} ms)"),
                        ));
                    }
                }
            }
            Event::Crash { node } => {
                let n = &mut nodes[node as usize];
                if !n.alive {
                    continue;
                }
                n.alive = false;
                report.crashes += 1;
                crashed_at.insert(node, now);
                queue.push(Reverse((now + scenario.restart_after_ms, Event::Restart { node })));
            }
            Event::Restart { node } => {
                // A restart loses the table (it lives in memory), keeps the id.
                nodes[node as usize] =
                    Node { alive: true, table: PeerTable::new(scenario.membership), heard: BTreeMap::new() };
                crashed_at.remove(&node);
                queue.push(Reverse((now + 1, Event::Advertise { node })));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariants_hold_across_seeds() {
        for seed in 0..4 {
            let scenario = Scenario::small(seed);
            let report = run(&scenario).unwrap_or_else(|v| panic!("{v}"));
            assert!(report.crashes > 0, "seed {seed}: the schedule crashed nobody");
            assert!(report.detections > 0, "seed {seed}: {report:?}");
        }
    }

    #[test]
    fn same_seed_same_run() {
        let scenario = Scenario::small(42);
        assert_eq!(run(&scenario).unwrap(), run(&scenario).unwrap());
    }

    #[test]
    fn without_loss_no_live_peer_is_ever_marked_down() {
        let mut scenario = Scenario::small(7);
        scenario.loss = 0.0;
        let report = run(&scenario).unwrap();
        assert_eq!(report.false_downs, 0, "{report:?}");
    }
}

//! When to hedge a forwarded prediction: a second replica is asked once the
//! first has taken longer than the recent 95th percentile of forwarded
//! answers for that model version, so one slow replica does not set the
//! tail, at about 5% more requests. A replica that lost a hedge (or did not
//! answer) is asked last for a few seconds, so a stalled one costs one
//! extra request per probe, not one per request. Pure: latencies and
//! outcomes in, a delay and an order out.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use libp2p::PeerId;
use mass_protocol::ContentId;

/// How long a replica that lost a hedge is asked last.
pub const SLOW_FOR: Duration = Duration::from_secs(5);
/// How long after a loss a replica stays suspect: the first time it is
/// asked first again and is slow, it is hedged without spending the budget
/// (a probe of a stalled replica must not wait out the whole deadline for
/// want of a token); that forgives it.
pub const SUSPECT_FOR: Duration = Duration::from_secs(20);
/// Hedges allowed per forwarded request, over time: the p95 alone would
/// hedge far more while load rises faster than the window follows.
pub const BUDGET_PER_REQUEST: f64 = 0.05;
/// Hedges that may be saved up for a burst.
pub const BUDGET_BURST: f64 = 2.0;

/// Answers remembered per version.
const WINDOW: usize = 200;
/// Answers needed before hedging: below it the p95 means little.
const WARM_UP: usize = 20;
/// Never hedge sooner than this: below it the second request costs more
/// than it can save.
const FLOOR: Duration = Duration::from_millis(1);
/// Versions tracked at most (past it, the oldest-seen is dropped).
const VERSIONS: usize = 1024;

/// The latest forwarded latencies of one model version.
#[derive(Debug, Default, Clone)]
pub struct Window {
    latencies: VecDeque<Duration>,
}

impl Window {
    pub fn record(&mut self, latency: Duration) {
        if self.latencies.len() == WINDOW {
            self.latencies.pop_front();
        }
        self.latencies.push_back(latency);
    }

    /// How long to wait for the first replica before asking a second:
    /// the 95th percentile of the window, once it has enough answers.
    pub fn hedge_after(&self) -> Option<Duration> {
        if self.latencies.len() < WARM_UP {
            return None;
        }
        let mut sorted: Vec<Duration> = self.latencies.iter().copied().collect();
        sorted.sort_unstable();
        let index = (sorted.len() * 95).div_ceil(100) - 1;
        Some(sorted[index].max(FLOOR))
    }
}

/// Every version's window, and the replicas found slow, shared by the
/// node's requests.
#[derive(Debug, Default)]
pub struct Hedging {
    windows: Mutex<HashMap<ContentId, Window>>,
    slow: Mutex<HashMap<PeerId, Instant>>,
    /// Hedges that may be sent now: each forwarded request adds
    /// [`BUDGET_PER_REQUEST`], up to [`BUDGET_BURST`]; a hedge spends one.
    budget: Mutex<f64>,
}

impl Hedging {
    /// A request is forwarded: it earns its share of a hedge.
    pub fn forwarded(&self) {
        if let Ok(mut budget) = self.budget.lock() {
            *budget = (*budget + BUDGET_PER_REQUEST).min(BUDGET_BURST);
        }
    }

    /// Whether a hedge may be sent now (spending it if so).
    pub fn spend(&self) -> bool {
        let Ok(mut budget) = self.budget.lock() else { return false };
        if *budget < 1.0 {
            return false;
        }
        *budget -= 1.0;
        true
    }

    /// `peer` lost a hedge or did not answer (at `now`).
    pub fn slow(&self, peer: PeerId, now: Instant) {
        let Ok(mut slow) = self.slow.lock() else { return };
        slow.retain(|_, since| now.duration_since(*since) < SUSPECT_FOR);
        if slow.len() < VERSIONS {
            slow.insert(peer, now);
        }
    }

    /// Whether `peer` is on probation: it lost a hedge between
    /// [`SLOW_FOR`] and [`SUSPECT_FOR`] ago, so it is asked first again only
    /// to see whether it recovered. Forgiven once asked (it must lose
    /// again to be suspect again). A replica asked first while still slow
    /// (every replica was) is not on probation.
    pub fn take_suspect(&self, peer: &PeerId, now: Instant) -> bool {
        let Ok(mut slow) = self.slow.lock() else { return false };
        let suspect = slow.get(peer).is_some_and(|since| (SLOW_FOR..SUSPECT_FOR).contains(&now.duration_since(*since)));
        if suspect {
            slow.remove(peer);
        }
        suspect
    }

    /// `candidates` with the replicas found slow lately moved last (the
    /// order kept otherwise); among those, the one that lost longest ago
    /// first (the likeliest to have recovered).
    pub fn order(&self, candidates: &mut [PeerId], now: Instant) {
        let Ok(slow) = self.slow.lock() else { return };
        let lost = |p: &PeerId| slow.get(p).copied().filter(|since| now.duration_since(*since) < SLOW_FOR);
        // `None` (not slow) sorts first; the sort is stable.
        candidates.sort_by_key(lost);
    }

    pub fn record(&self, version: ContentId, latency: Duration) {
        let Ok(mut windows) = self.windows.lock() else { return };
        if windows.len() >= VERSIONS && !windows.contains_key(&version) {
            windows.clear();
        }
        windows.entry(version).or_default().record(latency);
    }

    pub fn hedge_after(&self, version: &ContentId) -> Option<Duration> {
        self.windows.lock().ok()?.get(version)?.hedge_after()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_hedging_until_enough_answers_then_at_the_95th_percentile() {
        let mut window = Window::default();
        for ms in 1..WARM_UP as u64 {
            window.record(Duration::from_millis(ms));
        }
        assert_eq!(window.hedge_after(), None);
        let mut window = Window::default();
        for ms in 1..=100 {
            window.record(Duration::from_millis(ms));
        }
        assert_eq!(window.hedge_after(), Some(Duration::from_millis(95)));
    }

    #[test]
    fn the_window_forgets_old_answers_and_keeps_a_floor() {
        let mut window = Window::default();
        for _ in 0..WINDOW {
            window.record(Duration::from_secs(1));
        }
        for _ in 0..WINDOW {
            window.record(Duration::from_micros(10));
        }
        assert_eq!(window.hedge_after(), Some(FLOOR), "old slow answers are forgotten; the floor holds");
    }

    #[test]
    fn a_replica_that_lost_a_hedge_is_asked_last_for_a_while() {
        let hedging = Hedging::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        hedging.slow(a, now);
        let mut order = vec![a, b, c];
        hedging.order(&mut order, now + Duration::from_secs(1));
        assert_eq!(order, vec![b, c, a]);
        let mut order = vec![a, b, c];
        hedging.order(&mut order, now + SLOW_FOR);
        assert_eq!(order, vec![a, b, c], "asked first again once the while is over");
        hedging.slow(b, now + Duration::from_secs(2));
        hedging.slow(c, now + Duration::from_secs(1));
        let mut order = vec![a, b, c];
        hedging.order(&mut order, now + Duration::from_secs(3));
        assert_eq!(order, vec![a, c, b], "all slow: the one that lost longest ago first");
        assert!(!hedging.take_suspect(&b, now + SLOW_FOR));
        assert!(!hedging.take_suspect(&a, now + SLOW_FOR / 2), "still slow: not a probe");
        assert!(hedging.take_suspect(&a, now + SLOW_FOR), "a slow replica asked first again is suspect");
        assert!(!hedging.take_suspect(&a, now + SLOW_FOR), "once: then forgiven");
        hedging.slow(c, now);
        assert!(!hedging.take_suspect(&c, now + SUSPECT_FOR), "no longer suspect after a while");
    }

    #[test]
    fn hedges_stay_within_their_budget_of_requests() {
        let hedging = Hedging::default();
        assert!(!hedging.spend(), "no hedge before any request earned one");
        let mut hedges = 0;
        for _ in 0..1000 {
            hedging.forwarded();
            // Every request would like a hedge (a stalled replica, rising load).
            hedges += usize::from(hedging.spend());
        }
        assert_eq!(hedges, 50, "5% of requests");
        for _ in 0..1000 {
            hedging.forwarded();
        }
        let saved = (0..10).filter(|_| hedging.spend()).count();
        assert_eq!(saved, BUDGET_BURST as usize, "a quiet spell saves only a small burst");
    }

    #[test]
    fn versions_are_tracked_apart_and_bounded() {
        let hedging = Hedging::default();
        let (a, b) = (ContentId::of(b"a"), ContentId::of(b"b"));
        for _ in 0..WARM_UP {
            hedging.record(a, Duration::from_millis(5));
        }
        assert_eq!(hedging.hedge_after(&a), Some(Duration::from_millis(5)));
        assert_eq!(hedging.hedge_after(&b), None);
        for i in 0..VERSIONS as u64 + 5 {
            hedging.record(ContentId::of(&i.to_le_bytes()), Duration::from_millis(1));
        }
        assert!(hedging.windows.lock().unwrap().len() <= VERSIONS);
    }
}

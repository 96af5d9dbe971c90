//! When the GEMM is measured again. A node measured while other work ran
//! (at start everything starts at once) would advertise a fraction of its
//! capacity for ever, so it measures again; but each measurement takes
//! every core for 20 ms, and every node measuring every 5 s for ever put a
//! burst on the machine every 1.7 s with three nodes, and was half of an
//! idle node's CPU. So a measurement waits for this node to be idle, and
//! the gap between measurements doubles while they find nothing better.

use std::time::Duration;

/// The first gap, and the gap again after a measurement that raised the best.
pub const FIRST_GAP: Duration = Duration::from_secs(5);
/// The longest gap: a capacity that settled is still checked now and then.
pub const LONGEST_GAP: Duration = Duration::from_secs(600);
/// A measurement this much above the best counts as finding more.
const BETTER_BY: f32 = 1.05;

/// The schedule of measurements; pure, driven by the advertiser's ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct Remeasure {
    gap: Duration,
    since_last: Duration,
}

impl Default for Remeasure {
    fn default() -> Self {
        Self { gap: FIRST_GAP, since_last: Duration::ZERO }
    }
}

impl Remeasure {
    /// Whether to measure now, `tick` after the previous call, with this
    /// node `busy` (running or queueing compute work, or having finished
    /// some since the previous call). A measurement due while busy waits
    /// for the first idle tick.
    pub fn due(&mut self, tick: Duration, busy: bool) -> bool {
        self.since_last += tick;
        if busy || self.since_last < self.gap {
            return false;
        }
        self.since_last = Duration::ZERO;
        true
    }

    /// What a measurement found (`gflops`) against the best before it:
    /// more, and the next comes soon; no more, and the gap doubles.
    pub fn measured(&mut self, gflops: f32, best: f32) {
        self.gap = if gflops > best * BETTER_BY { FIRST_GAP } else { (self.gap * 2).min(LONGEST_GAP) };
    }

    /// The gap before the next measurement.
    pub fn gap(&self) -> Duration {
        self.gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_secs(1);

    /// Ticks until the next measurement, with the node idle throughout.
    fn ticks_to_next(r: &mut Remeasure) -> u32 {
        (1..=10_000).find(|_| r.due(TICK, false)).expect("a measurement within 10,000 ticks")
    }

    #[test]
    fn the_gap_doubles_while_nothing_better_is_found_up_to_the_longest() {
        let mut r = Remeasure::default();
        let mut gaps = vec![];
        for _ in 0..10 {
            gaps.push(ticks_to_next(&mut r));
            r.measured(100.0, 100.0);
        }
        assert_eq!(gaps, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    }

    #[test]
    fn a_better_measurement_brings_the_next_one_back_soon() {
        let mut r = Remeasure::default();
        for _ in 0..4 {
            ticks_to_next(&mut r);
            r.measured(100.0, 100.0);
        }
        assert_eq!(r.gap(), Duration::from_secs(80));
        // Within 5% is noise, not more capacity.
        r.measured(104.0, 100.0);
        assert_eq!(r.gap(), Duration::from_secs(160));
        r.measured(106.0, 100.0);
        assert_eq!(r.gap(), FIRST_GAP);
        assert_eq!(ticks_to_next(&mut r), 5);
    }

    #[test]
    fn a_busy_node_is_not_measured_until_it_is_idle() {
        let mut r = Remeasure::default();
        for _ in 0..30 {
            assert!(!r.due(TICK, true), "measured while busy");
        }
        assert!(r.due(TICK, false), "the overdue measurement runs at the first idle tick");
        assert_eq!(ticks_to_next(&mut r), 5, "and the gap counts from it");
    }
}

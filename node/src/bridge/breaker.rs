//! The circuit breaker in front of a bridge: pure, with time passed in
//! (milliseconds), so its rules are tested without a clock or a network.
//!
//! Closed, a bridge gets batches. A hard failure (unreachable, no answer
//! in time, an answer that breaks the protocol, a model the bridge no
//! longer holds) opens it at once: a dead or hung device costs every batch
//! its timeout, so one is enough. Soft failures (busy, a dropped deadline)
//! open it after [`SOFT_FAILURES_TO_OPEN`] in a row. Open, batches run on
//! the CPU and the bridge is re-probed (health and a test inference) after
//! a backoff that doubles up to [`MAX_BACKOFF_MS`]; a probe that passes
//! closes it. Batches never pay for a trial: only probes do.

use super::client::BridgeError;

pub const SOFT_FAILURES_TO_OPEN: u32 = 3;
pub const FIRST_BACKOFF_MS: u64 = 250;
pub const MAX_BACKOFF_MS: u64 = 5_000;

/// How much a failure says about the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Hard,
    Soft,
}

impl Failure {
    pub fn of(error: &BridgeError) -> Self {
        match error {
            // 503: busy; 504: the deadline passed there; 413: a batch or
            // model over its limits (the node's mistake, not the device's).
            BridgeError::Refused { status: 503 | 504 | 413, .. } => Failure::Soft,
            // 404 here means the bridge lost its models (a restart): the
            // probe after opening reloads them.
            BridgeError::Refused { .. }
            | BridgeError::Unreachable { .. }
            | BridgeError::Timeout { .. }
            | BridgeError::Protocol { .. } => Failure::Hard,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    open: Option<Open>,
    soft_failures: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct Open {
    reason: String,
    next_probe_ms: u64,
    backoff_ms: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self { open: None, soft_failures: 0 }
    }

    /// Opened from the start: for a bridge not yet probed.
    pub fn opened(reason: &str, now_ms: u64) -> Self {
        let mut breaker = Self::new();
        breaker.trip(reason, now_ms);
        breaker
    }

    /// Whether batches may go to the bridge.
    pub fn allows(&self) -> bool {
        self.open.is_none()
    }

    /// Why it is open.
    pub fn reason(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.reason.as_str())
    }

    pub fn succeeded(&mut self) {
        self.soft_failures = 0;
    }

    /// Records a failed batch; true when this failure opened the breaker.
    pub fn failed(&mut self, failure: Failure, reason: &str, now_ms: u64) -> bool {
        if self.open.is_some() {
            return false;
        }
        self.soft_failures += 1;
        if failure == Failure::Hard || self.soft_failures >= SOFT_FAILURES_TO_OPEN {
            self.trip(reason, now_ms);
            return true;
        }
        false
    }

    fn trip(&mut self, reason: &str, now_ms: u64) {
        self.soft_failures = 0;
        self.open = Some(Open {
            reason: reason.to_owned(),
            next_probe_ms: now_ms + FIRST_BACKOFF_MS,
            backoff_ms: FIRST_BACKOFF_MS,
        });
    }

    /// Whether an open breaker's bridge should be probed now.
    pub fn probe_due(&self, now_ms: u64) -> bool {
        self.open.as_ref().is_some_and(|o| now_ms >= o.next_probe_ms)
    }

    /// A probe failed: wait twice as long before the next (up to the most).
    pub fn probe_failed(&mut self, reason: &str, now_ms: u64) {
        match &mut self.open {
            Some(open) => {
                open.backoff_ms = (open.backoff_ms * 2).min(MAX_BACKOFF_MS);
                open.next_probe_ms = now_ms + open.backoff_ms;
                open.reason = reason.to_owned();
            }
            None => self.trip(reason, now_ms),
        }
    }

    /// A probe passed: batches go to the bridge again.
    pub fn probe_passed(&mut self) {
        self.open = None;
        self.soft_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_hard_failure_opens_soft_ones_need_a_run() {
        let mut b = Breaker::new();
        assert!(b.allows());
        assert!(!b.failed(Failure::Soft, "busy", 0));
        b.succeeded();
        assert!(!b.failed(Failure::Soft, "busy", 1));
        assert!(!b.failed(Failure::Soft, "busy", 2));
        assert!(b.failed(Failure::Soft, "busy", 3), "the third soft failure in a row opens");
        assert!(!b.allows());
        assert_eq!(b.reason(), Some("busy"));

        let mut b = Breaker::new();
        assert!(b.failed(Failure::Hard, "refused", 10));
        assert!(!b.failed(Failure::Hard, "again", 11), "already open");
        assert_eq!(b.reason(), Some("refused"));
    }

    #[test]
    fn an_open_breaker_is_probed_with_a_doubling_capped_backoff_and_closes_on_a_pass() {
        let mut b = Breaker::opened("not probed yet", 1_000);
        assert!(!b.probe_due(1_000 + FIRST_BACKOFF_MS - 1));
        assert!(b.probe_due(1_000 + FIRST_BACKOFF_MS));
        let mut now = 1_000 + FIRST_BACKOFF_MS;
        let mut waits = Vec::new();
        for _ in 0..8 {
            b.probe_failed("down", now);
            let mut t = now;
            while !b.probe_due(t) {
                t += 1;
            }
            waits.push(t - now);
            now = t;
        }
        assert_eq!(waits, [500, 1_000, 2_000, 4_000, 5_000, 5_000, 5_000, 5_000]);
        assert!(!b.allows());
        b.probe_passed();
        assert!(b.allows() && !b.probe_due(u64::MAX));
    }

    #[test]
    fn failures_are_sorted_by_what_they_say_about_the_device() {
        let refused = |status| BridgeError::Refused { endpoint: "e".into(), status, message: String::new() };
        assert_eq!(Failure::of(&refused(503)), Failure::Soft);
        assert_eq!(Failure::of(&refused(504)), Failure::Soft);
        assert_eq!(Failure::of(&refused(404)), Failure::Hard);
        assert_eq!(Failure::of(&BridgeError::Timeout { endpoint: "e".into(), after: Duration::ZERO }), Failure::Hard);
        assert_eq!(
            Failure::of(&BridgeError::Unreachable { endpoint: "e".into(), reason: "refused".into() }),
            Failure::Hard
        );
    }
}

//! Admission of predict requests at the HTTP edge.
//!
//! A node takes at most `max_in_flight` predict requests at once and holds
//! at most `max_in_flight_mib` of their bodies. Past either bound it refuses
//! before reading the body, so an overloaded node spends a refusal on each
//! extra request, not memory or a wait: the client learns at once to retry
//! later or elsewhere. The inference queue behind it has its own bound.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What a request is refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this node is answering {0} predict requests already (serving.max_in_flight); retry shortly")]
    Requests(usize),
    #[error("this node holds {0} MiB of predict bodies already (serving.max_in_flight_mib); retry shortly")]
    Bytes(usize),
}

/// The node's admission bounds for predict requests.
#[derive(Clone)]
pub struct Admission {
    requests: Arc<Semaphore>,
    /// Body bytes, counted in KiB so a 16 MiB body takes 16,384 permits.
    kib: Arc<Semaphore>,
    max_requests: usize,
    max_mib: usize,
}

/// Held while a request runs; its bounds are given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    _request: OwnedSemaphorePermit,
    _kib: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(max_requests: usize, max_mib: usize) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(max_requests)),
            kib: Arc::new(Semaphore::new(max_mib.saturating_mul(1024))),
            max_requests,
            max_mib,
        }
    }

    /// Admits a request whose body is `declared` bytes long (its
    /// Content-Length), or at most `largest` when it does not say.
    pub fn admit(&self, declared: Option<usize>, largest: usize) -> Result<Ticket, Refused> {
        let request = self.requests.clone().try_acquire_owned().map_err(|_| Refused::Requests(self.max_requests))?;
        let kib = declared.unwrap_or(largest).min(largest).div_ceil(1024).max(1);
        let kib = u32::try_from(kib).map_err(|_| Refused::Bytes(self.max_mib))?;
        let kib = self.kib.clone().try_acquire_many_owned(kib).map_err(|_| Refused::Bytes(self.max_mib))?;
        Ok(Ticket { _request: request, _kib: kib })
    }

    /// Predict requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.max_requests - self.requests.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_request_bound_and_admits_again_once_one_ends() {
        let admission = Admission::new(2, 64);
        let first = admission.admit(Some(100), 1 << 20).unwrap();
        let _second = admission.admit(Some(100), 1 << 20).unwrap();
        assert_eq!(admission.admit(Some(100), 1 << 20).unwrap_err(), Refused::Requests(2));
        assert_eq!(admission.in_flight(), 2);
        drop(first);
        assert!(admission.admit(Some(100), 1 << 20).is_ok());
    }

    #[test]
    fn refuses_past_the_byte_bound_and_counts_undeclared_bodies_at_the_largest() {
        let admission = Admission::new(100, 2);
        let big = admission.admit(Some(1536 * 1024), 16 << 20).unwrap();
        let refused = admission.admit(Some(600 * 1024), 16 << 20).unwrap_err();
        assert_eq!(refused, Refused::Bytes(2));
        // The refused request gave its request permit back.
        assert_eq!(admission.in_flight(), 1);
        drop(big);
        assert_eq!(admission.admit(None, 16 << 20).unwrap_err(), Refused::Bytes(2));
        assert!(admission.admit(None, 2 << 20).is_ok());
        assert!(refused.to_string().contains("serving.max_in_flight_mib"), "{refused}");
    }

    #[test]
    fn a_declared_length_above_the_largest_body_counts_as_the_largest() {
        let admission = Admission::new(4, 1);
        assert!(admission.admit(Some(usize::MAX), 1 << 20).is_ok());
    }
}

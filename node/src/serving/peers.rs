//! The live peers and their inference queue depths as a forwarded request
//! reads them: asked of the membership actor at most every [`FRESH_FOR`]
//! and shared until then. A forwarded prediction read them three times
//! from the actor (whether this node is a replica, which replicas, their
//! depths), each a hop to the actor's thread and back; adverts and
//! failure detection change them over seconds, not microseconds.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use libp2p::PeerId;

use super::INFERENCE_QUEUE;
use crate::{membership::GetQueueDepths, mesh::Mesh};

/// How long a read of the membership table is used.
pub const FRESH_FOR: Duration = Duration::from_millis(100);

/// The peers up and each one's advertised inference queue depth.
#[derive(Debug, Default)]
pub struct PeersSeen {
    pub depths: Vec<(PeerId, u32)>,
}

impl PeersSeen {
    /// The nodes placement ranks over: the peers up, and `local` unless it
    /// is leaving (as [`Mesh::placement_view`]).
    pub fn placement_view(&self, local: PeerId, leaving: bool) -> Vec<PeerId> {
        let mut view: Vec<PeerId> = self.depths.iter().map(|(p, _)| *p).collect();
        if !leaving {
            view.push(local);
        }
        view
    }

    pub fn depth(&self, peer: &PeerId) -> u32 {
        self.depths.iter().find(|(p, _)| p == peer).map_or(0, |(_, d)| *d)
    }
}

/// The last read of the table and when it was made.
#[derive(Clone, Default)]
pub struct PeerView {
    last: Arc<Mutex<Option<(Instant, Arc<PeersSeen>)>>>,
}

impl PeerView {
    /// The table as read within [`FRESH_FOR`], else read now.
    pub async fn get(&self, mesh: &Mesh) -> Arc<PeersSeen> {
        if let Some(seen) = self.fresh(Instant::now()) {
            return seen;
        }
        let depths = mesh.membership.send(GetQueueDepths(INFERENCE_QUEUE)).await.unwrap_or_default();
        let seen = Arc::new(PeersSeen { depths });
        *self.last.lock().expect("the peer view lock is never poisoned") = Some((Instant::now(), seen.clone()));
        seen
    }

    fn fresh(&self, now: Instant) -> Option<Arc<PeersSeen>> {
        let last = self.last.lock().expect("the peer view lock is never poisoned");
        last.as_ref().filter(|(at, _)| now.duration_since(*at) < FRESH_FOR).map(|(_, seen)| seen.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_used_while_fresh_and_not_after() {
        let view = PeerView::default();
        let now = Instant::now();
        assert!(view.fresh(now).is_none(), "nothing read yet");
        let peer = PeerId::random();
        *view.last.lock().unwrap() = Some((now, Arc::new(PeersSeen { depths: vec![(peer, 3)] })));
        let seen = view.fresh(now + FRESH_FOR / 2).expect("fresh");
        assert_eq!(seen.depth(&peer), 3);
        assert_eq!(seen.depth(&PeerId::random()), 0);
        assert!(view.fresh(now + FRESH_FOR).is_none(), "stale after FRESH_FOR");
        let local = PeerId::random();
        assert_eq!(seen.placement_view(local, false), vec![peer, local]);
        assert_eq!(seen.placement_view(local, true), vec![peer]);
    }
}

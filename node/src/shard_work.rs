//! Who takes the next piece of per-shard work this node hands out (a
//! shard's statistics, its judging): each node may hold as many pieces as
//! it has compute slots plus one waiting in its queue, and a piece goes to
//! the first of its shard's holders with room, this node first. A node
//! that finishes early so pulls the next piece. (Before, this node kept one
//! piece and queued every other at a peer, however long that queue.)

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::FutureExt;
use libp2p::PeerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pieces a node holds beyond its slots: one ready in its queue, so that
/// it never idles for a round trip.
const QUEUED: usize = 1;

#[derive(Default)]
pub struct ShardWork {
    room: Mutex<HashMap<PeerId, Arc<Semaphore>>>,
}

/// A piece's place on a node, held while the node works on it.
pub struct Place {
    pub node: PeerId,
    _permit: OwnedSemaphorePermit,
}

impl ShardWork {
    /// `node`'s room, made for its `slots` when first asked for.
    fn room(&self, node: PeerId, slots: usize) -> Arc<Semaphore> {
        let mut room = self.room.lock().expect("shard work's lock is never poisoned");
        room.entry(node).or_insert_with(|| Arc::new(Semaphore::new(slots.max(1) + QUEUED))).clone()
    }

    /// A place on the first of `holders` (each with its compute slots, in
    /// order of preference) to have room, waiting for one; `None` when
    /// there is no holder.
    pub async fn place(&self, holders: &[(PeerId, usize)]) -> Option<Place> {
        if holders.is_empty() {
            return None;
        }
        // Polled in order, so that a holder earlier in the list wins a tie.
        let waits = holders
            .iter()
            .map(|&(node, slots)| self.room(node, slots).acquire_owned().map(move |permit| (node, permit)).boxed());
        let ((node, permit), _, _) = futures::future::select_all(waits).await;
        Some(Place { node, _permit: permit.expect("shard work's semaphores are never closed") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pieces_go_to_the_first_holder_with_room_and_wait_for_one() {
        let work = ShardWork::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let holders = [(a, 1), (b, 1)];
        // One slot and one queued each: a, a, b, b.
        let mut held = Vec::new();
        for want in [a, a, b, b] {
            let place = work.place(&holders).await.unwrap();
            assert_eq!(place.node, want);
            held.push(place);
        }
        // Full: the next waits until a place frees, and goes there.
        let next = work.place(&holders);
        tokio::pin!(next);
        assert!(futures::poll!(next.as_mut()).is_pending());
        let freed = held.remove(2).node; // one of b's
        assert_eq!(next.await.unwrap().node, freed);
        assert!(work.place(&[]).await.is_none());
    }
}

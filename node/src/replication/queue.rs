//! Which fetches run, which wait, and which are refused: a pure state machine
//! the replication actor drives.
//!
//! Every `Replicate` from a peer can start a fetch, and a peer can send them
//! for any id (and stall the fetches it starts by answering slowly), so
//! fetches in flight are bounded three ways: at most `running` peer-asked
//! fetches at once, of which at most `running_per_peer` for one peer; at most
//! `per_peer` running or waiting for one peer; and a bounded queue. Local
//! readers (an HTTP GET) have slots of their own and jump the queue: a user
//! waits on them, while a home that fetches late is caught up by the next
//! repair walk.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

use mass_protocol::ContentId;

/// Who asked for a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin<P> {
    /// A reader on this node.
    Local,
    /// A peer that says this node is a home of the blob (it is tried first).
    Peer(P),
}

/// The bounds of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fetches asked by peers running at once.
    pub running: usize,
    /// Of those, asked by any one peer.
    pub running_per_peer: usize,
    /// Fetches for local readers running at once.
    pub local_running: usize,
    /// Fetches waiting for a slot.
    pub queued: usize,
    /// Fetches running or waiting on behalf of any one peer.
    pub per_peer: usize,
}

/// What became of a fetch asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission<P> {
    /// Start it now.
    Start(ContentId, Origin<P>),
    /// It waits for a free slot.
    Queued,
    /// The same blob is already being fetched or waits; the waiter joins it.
    Joined,
    /// Over a bound; the reason says which.
    Refused(String),
}

/// Fetches running and waiting, each with whoever waits for its outcome.
#[derive(Debug)]
pub struct FetchQueue<P, W> {
    limits: Limits,
    running: HashMap<ContentId, Entry<P, W>>,
    queue: VecDeque<ContentId>,
    waiting: HashMap<ContentId, Entry<P, W>>,
    /// Running or waiting, per peer; only peers with some are present.
    held: HashMap<P, usize>,
    /// Running, per peer; only peers with some are present.
    running_by_peer: HashMap<P, usize>,
    local_running: usize,
}

#[derive(Debug)]
struct Entry<P, W> {
    origin: Origin<P>,
    waiters: Vec<W>,
}

impl<P: Copy + Eq + Hash, W> FetchQueue<P, W> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            running: HashMap::new(),
            queue: VecDeque::new(),
            waiting: HashMap::new(),
            held: HashMap::new(),
            running_by_peer: HashMap::new(),
            local_running: 0,
        }
    }

    /// Asks for `id` on behalf of `origin`. `waiter`, if any, is handed back
    /// by [`Self::finish`], or at once with a refusal.
    pub fn admit(&mut self, id: ContentId, origin: Origin<P>, waiter: Option<W>) -> (Admission<P>, Option<W>) {
        if let Some(entry) = self.running.get_mut(&id) {
            entry.waiters.extend(waiter);
            return (Admission::Joined, None);
        }
        if let Some(entry) = self.waiting.get_mut(&id) {
            entry.waiters.extend(waiter);
            if origin == Origin::Local
                && let Some(at) = self.queue.iter().position(|queued| *queued == id)
            {
                // A reader now waits on it: it goes first.
                self.queue.remove(at);
                self.queue.push_front(id);
            }
            return (Admission::Joined, None);
        }
        if let Origin::Peer(peer) = origin {
            let held = count(&self.held, &peer);
            if held >= self.limits.per_peer {
                let reason = format!("this peer already has {held} fetches running or waiting here");
                return (Admission::Refused(reason), waiter);
            }
        }
        let entry = Entry { origin, waiters: waiter.into_iter().collect() };
        if self.can_start(origin) {
            self.start(id, entry);
            return (Admission::Start(id, origin), None);
        }
        if self.queue.len() >= self.limits.queued {
            let reason = format!("{} fetches are already waiting here", self.limits.queued);
            return (Admission::Refused(reason), entry.waiters.into_iter().next());
        }
        if let Origin::Peer(peer) = origin {
            add(&mut self.held, peer, 1);
        }
        match origin {
            Origin::Local => self.queue.push_front(id),
            Origin::Peer(_) => self.queue.push_back(id),
        }
        self.waiting.insert(id, entry);
        (Admission::Queued, None)
    }

    /// The fetch of `id` ended: returns its waiters and the fetches to start
    /// now, those waiting that the freed slot (or an earlier one a peer's
    /// share kept closed) lets in.
    pub fn finish(&mut self, id: &ContentId) -> (Vec<W>, Vec<(ContentId, Origin<P>)>) {
        let waiters = match self.running.remove(id) {
            Some(entry) => {
                match entry.origin {
                    Origin::Local => self.local_running -= 1,
                    Origin::Peer(peer) => {
                        add(&mut self.held, peer, -1);
                        add(&mut self.running_by_peer, peer, -1);
                    }
                }
                entry.waiters
            }
            None => Vec::new(),
        };
        let mut started = Vec::new();
        while let Some(at) =
            self.queue.iter().position(|queued| self.waiting.get(queued).is_some_and(|e| self.can_start(e.origin)))
        {
            let Some(next) = self.queue.remove(at) else { break };
            let Some(entry) = self.waiting.remove(&next) else { continue };
            let origin = entry.origin;
            if let Origin::Peer(peer) = origin {
                // `start` counts it as held again.
                add(&mut self.held, peer, -1);
            }
            self.start(next, entry);
            started.push((next, origin));
        }
        (waiters, started)
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn can_start(&self, origin: Origin<P>) -> bool {
        match origin {
            Origin::Local => self.local_running < self.limits.local_running,
            Origin::Peer(peer) => {
                let peers_running: usize = self.running_by_peer.values().sum();
                peers_running < self.limits.running
                    && count(&self.running_by_peer, &peer) < self.limits.running_per_peer
            }
        }
    }

    fn start(&mut self, id: ContentId, entry: Entry<P, W>) {
        match entry.origin {
            Origin::Local => self.local_running += 1,
            Origin::Peer(peer) => {
                add(&mut self.held, peer, 1);
                add(&mut self.running_by_peer, peer, 1);
            }
        }
        self.running.insert(id, entry);
    }
}

fn count<P: Eq + Hash>(map: &HashMap<P, usize>, peer: &P) -> usize {
    map.get(peer).copied().unwrap_or(0)
}

/// Adds `delta` to a peer's count, removing the peer at zero so the map
/// holds only peers with fetches.
fn add<P: Eq + Hash + Copy>(map: &mut HashMap<P, usize>, peer: P, delta: isize) {
    let n = map.entry(peer).or_insert(0);
    *n = n.saturating_add_signed(delta);
    if *n == 0 {
        map.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { running: 2, running_per_peer: 2, local_running: 1, queued: 3, per_peer: 3 };

    fn id(n: u8) -> ContentId {
        ContentId::of(&[n])
    }

    #[test]
    fn fetches_past_the_running_bound_wait_and_start_in_turn() {
        let mut q: FetchQueue<u8, &str> = FetchQueue::new(LIMITS);
        assert_eq!(q.admit(id(1), Origin::Peer(1), None).0, Admission::Start(id(1), Origin::Peer(1)));
        assert_eq!(q.admit(id(2), Origin::Peer(2), None).0, Admission::Start(id(2), Origin::Peer(2)));
        assert_eq!(q.admit(id(3), Origin::Peer(2), None).0, Admission::Queued);
        assert_eq!(q.admit(id(3), Origin::Local, Some("reader")).0, Admission::Joined);
        let (waiters, next) = q.finish(&id(1));
        assert!(waiters.is_empty());
        assert_eq!(next, vec![(id(3), Origin::Peer(2))]);
        let (waiters, next) = q.finish(&id(3));
        assert_eq!(waiters, vec!["reader"]);
        assert!(next.is_empty());
    }

    #[test]
    fn local_readers_have_slots_of_their_own_and_jump_the_queue() {
        let mut q: FetchQueue<u8, ()> = FetchQueue::new(LIMITS);
        q.admit(id(1), Origin::Peer(1), None);
        q.admit(id(2), Origin::Peer(2), None);
        assert!(
            matches!(q.admit(id(3), Origin::Local, Some(())).0, Admission::Start(..)),
            "peers' fetches do not block readers"
        );
        q.admit(id(4), Origin::Peer(3), None);
        q.admit(id(5), Origin::Local, Some(()));
        assert_eq!(q.finish(&id(3)).1, vec![(id(5), Origin::Local)]);
        assert_eq!(q.finish(&id(1)).1, vec![(id(4), Origin::Peer(3))]);
    }

    #[test]
    fn a_reader_joining_a_waiting_fetch_moves_it_first() {
        let mut q: FetchQueue<u8, ()> = FetchQueue::new(LIMITS);
        for n in 1..=4 {
            q.admit(id(n), Origin::Peer(n), None);
        }
        assert_eq!(q.admit(id(4), Origin::Local, Some(())).0, Admission::Joined);
        assert_eq!(q.finish(&id(1)).1, vec![(id(4), Origin::Peer(4))]);
    }

    #[test]
    fn one_peer_cannot_take_every_running_slot_or_fill_the_queue() {
        let limits = Limits { running: 4, running_per_peer: 2, local_running: 1, queued: 10, per_peer: 3 };
        let mut q: FetchQueue<u8, ()> = FetchQueue::new(limits);
        assert!(matches!(q.admit(id(0), Origin::Peer(9), None).0, Admission::Start(..)));
        assert!(matches!(q.admit(id(1), Origin::Peer(9), None).0, Admission::Start(..)));
        assert_eq!(q.admit(id(2), Origin::Peer(9), None).0, Admission::Queued, "its running share is used");
        assert!(matches!(q.admit(id(3), Origin::Peer(9), None).0, Admission::Refused(m) if m.contains("this peer")));
        assert!(matches!(q.admit(id(4), Origin::Peer(1), None).0, Admission::Start(..)), "others still start");
        // When one of its fetches ends, its waiting one takes the slot.
        assert_eq!(q.finish(&id(0)).1, vec![(id(2), Origin::Peer(9))]);
    }

    #[test]
    fn the_queue_is_bounded_and_a_refused_waiter_comes_back() {
        let mut q: FetchQueue<u8, &str> = FetchQueue::new(LIMITS);
        for n in 0..5 {
            q.admit(id(n), Origin::Peer(n), None);
        }
        q.admit(id(50), Origin::Local, Some("first reader"));
        assert_eq!((q.running(), q.queued()), (3, 3));
        let (admission, waiter) = q.admit(id(99), Origin::Local, Some("reader"));
        assert!(matches!(admission, Admission::Refused(m) if m.contains("already waiting")));
        assert_eq!(waiter, Some("reader"));
    }

    #[test]
    fn finishing_everything_leaves_no_counts() {
        let limits = Limits { running: 4, running_per_peer: 2, local_running: 2, queued: 100, per_peer: 5 };
        let mut q: FetchQueue<u32, ()> = FetchQueue::new(limits);
        let mut started: Vec<ContentId> = Vec::new();
        for n in 0..50u32 {
            let origin = if n % 5 == 0 { Origin::Local } else { Origin::Peer(n % 7) };
            if let (Admission::Start(id, _), _) = q.admit(ContentId::of(&n.to_le_bytes()), origin, None) {
                started.push(id);
            }
        }
        while let Some(id) = started.pop() {
            started.extend(q.finish(&id).1.into_iter().map(|(next, _)| next));
        }
        assert_eq!((q.running(), q.queued()), (0, 0));
        assert!(q.held.is_empty() && q.running_by_peer.is_empty());
        assert_eq!(q.local_running, 0);
    }
}

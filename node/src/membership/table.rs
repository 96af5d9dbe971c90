//! The peer table: a pure state machine over observations and time.
//!
//! Time is milliseconds from any monotonic origin, passed in by the caller.
//! The table is generic over the peer key and the payload a peer advertises,
//! so the node stores libp2p peer ids with hardware while simulations store
//! integers with nothing.

use std::collections::BTreeMap;

use mass_protocol::api::PeerState;

use super::Config;

/// One peer as this node believes it to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<P> {
    /// Latest advertised payload; `None` until the first advert arrives.
    pub info: Option<P>,
    pub state: PeerState,
    /// When the peer was last heard from (advert, ping, direct reply).
    pub last_seen_ms: u64,
}

/// A change in a peer's state, reported so the caller can log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition<K> {
    Joined(K),
    Recovered(K),
    WentDown(K),
    Forgotten(K),
    /// The table was full of peers up: a new peer was not listed.
    Refused(K),
}

/// Peers by key, with liveness.
#[derive(Debug, Clone)]
pub struct PeerTable<K, P> {
    config: Config,
    peers: BTreeMap<K, Entry<P>>,
}

impl<K: Ord + Clone, P> PeerTable<K, P> {
    pub fn new(config: Config) -> Self {
        Self { config, peers: BTreeMap::new() }
    }

    /// A peer told us about itself: it is alive and this is what it has.
    /// A new peer in a full table replaces the peer down the longest; with
    /// every peer up it is refused (the peers already known keep their place:
    /// a flood of fresh ids cannot push out the mesh).
    pub fn observe_advert(&mut self, peer: K, info: P, now_ms: u64) -> Option<Transition<K>> {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.info = Some(info);
            return Self::refresh(entry, peer, now_ms);
        }
        if self.peers.len() >= self.config.max_peers {
            let longest_down = self
                .peers
                .iter()
                .filter(|(_, e)| e.state == PeerState::Down)
                .min_by_key(|(_, e)| e.last_seen_ms)
                .map(|(k, _)| k.clone());
            match longest_down {
                Some(evicted) => {
                    self.peers.remove(&evicted);
                }
                None => return Some(Transition::Refused(peer)),
            }
        }
        let entry = Entry { info: Some(info), state: PeerState::Up, last_seen_ms: now_ms };
        self.peers.insert(peer.clone(), entry);
        Some(Transition::Joined(peer))
    }

    /// A known peer answered something (a ping): it is alive. Unknown peers are
    /// not added, since only an advert says a peer is a Mass node.
    pub fn observe_alive(&mut self, peer: &K, now_ms: u64) -> Option<Transition<K>> {
        let entry = self.peers.get_mut(peer)?;
        Self::refresh(entry, peer.clone(), now_ms)
    }

    /// The peer's latest advert says whether it is leaving: a draining peer
    /// stays listed (it is alive, and still answers) but is not [`Self::up`],
    /// so nothing new is placed on it. A peer down stays down until heard.
    /// Returns whether its state changed.
    pub fn set_draining(&mut self, peer: &K, draining: bool) -> bool {
        let Some(entry) = self.peers.get_mut(peer) else { return false };
        let before = entry.state;
        entry.state = match (before, draining) {
            (PeerState::Up, true) => PeerState::Draining,
            (PeerState::Draining, false) => PeerState::Up,
            (state, _) => state,
        };
        entry.state != before
    }

    fn refresh(entry: &mut Entry<P>, peer: K, now_ms: u64) -> Option<Transition<K>> {
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        if entry.state == PeerState::Down {
            entry.state = PeerState::Up;
            return Some(Transition::Recovered(peer));
        }
        None
    }

    /// Applies timeouts: silent peers go down, long-down peers are forgotten.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Transition<K>> {
        let down_after = self.config.down_after.as_millis() as u64;
        let forget_after = self.config.forget_after.as_millis() as u64;
        let mut transitions = Vec::new();
        self.peers.retain(|peer, entry| {
            let silent_for = now_ms.saturating_sub(entry.last_seen_ms);
            // A draining peer that went quiet has left on purpose, with its
            // work handed off: it no longer counts in the mesh's size.
            let left = entry.state == PeerState::Draining && silent_for >= down_after;
            if silent_for >= forget_after || left {
                transitions.push(Transition::Forgotten(peer.clone()));
                return false;
            }
            if silent_for >= down_after && entry.state != PeerState::Down {
                entry.state = PeerState::Down;
                transitions.push(Transition::WentDown(peer.clone()));
            }
            true
        });
        transitions
    }

    pub fn get(&self, peer: &K) -> Option<&Entry<P>> {
        self.peers.get(peer)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &Entry<P>)> {
        self.peers.iter()
    }

    /// Peers currently believed alive, in key order.
    pub fn up(&self) -> impl Iterator<Item = &K> {
        self.peers.iter().filter(|(_, e)| e.state == PeerState::Up).map(|(k, _)| k)
    }

    pub fn count(&self, state: PeerState) -> usize {
        self.peers.values().filter(|e| e.state == state).count()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn table() -> PeerTable<u32, &'static str> {
        PeerTable::new(Config {
            advert_interval: Duration::from_millis(100),
            down_after: Duration::from_millis(300),
            forget_after: Duration::from_millis(1000),
            max_peers: 3,
            ..Config::DEFAULT
        })
    }

    #[test]
    fn a_full_table_replaces_the_longest_down_peer_and_refuses_when_all_are_up() {
        let mut t = table();
        for peer in 1..=3 {
            t.observe_advert(peer, "a", 0);
        }
        assert_eq!(t.observe_advert(4, "new", 10), Some(Transition::Refused(4)));
        assert_eq!(t.len(), 3);
        // 1 and 2 go quiet; 3 keeps advertising; 1 has been down longest.
        t.observe_advert(2, "a", 50);
        t.observe_advert(3, "a", 300);
        t.tick(360);
        assert_eq!(t.count(PeerState::Down), 2);
        assert_eq!(t.observe_advert(4, "new", 370), Some(Transition::Joined(4)));
        assert!(t.get(&1).is_none(), "the peer down the longest made room");
        assert!(t.get(&2).is_some() && t.get(&3).is_some());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ever_new_peer_ids_never_grow_the_table_past_its_bound() {
        let mut t = table();
        for (i, peer) in (0..10_000u32).enumerate() {
            t.observe_advert(peer, "spam", i as u64);
            t.tick(i as u64);
            assert!(t.len() <= 3);
        }
    }

    #[test]
    fn a_draining_peer_is_listed_but_not_up_and_forgotten_once_silent() {
        let mut t = table();
        t.observe_advert(1, "a", 0);
        t.observe_advert(2, "b", 0);
        assert!(t.set_draining(&1, true));
        assert_eq!(t.get(&1).unwrap().state, PeerState::Draining);
        assert_eq!(t.up().copied().collect::<Vec<_>>(), vec![2]);
        // Still heard from: still draining, not recovered.
        assert_eq!(t.observe_advert(1, "a", 100), None);
        assert!(!t.set_draining(&1, true));
        assert_eq!(t.get(&1).unwrap().state, PeerState::Draining);
        t.observe_advert(2, "b", 350);
        // Gone quiet: it left, and is forgotten at once rather than counted
        // as a member down.
        assert_eq!(t.tick(400), vec![Transition::Forgotten(1)]);
        assert_eq!(t.len(), 1);
        // A node restarted on the same identity joins again.
        assert_eq!(t.observe_advert(1, "a", 500), Some(Transition::Joined(1)));
        assert!(!t.set_draining(&1, false));
        assert_eq!(t.get(&1).unwrap().state, PeerState::Up);
        assert!(!t.set_draining(&3, true));
        assert!(t.get(&3).is_none());
    }

    #[test]
    fn advert_adds_a_peer_up() {
        let mut t = table();
        assert_eq!(t.observe_advert(1, "gpu", 0), Some(Transition::Joined(1)));
        assert_eq!(t.get(&1).unwrap().state, PeerState::Up);
        assert_eq!(t.observe_advert(1, "gpu", 50), None);
    }

    #[test]
    fn ping_from_unknown_peer_adds_nothing() {
        let mut t = table();
        assert_eq!(t.observe_alive(&9, 0), None);
        assert!(t.is_empty());
    }

    #[test]
    fn silent_peer_goes_down_then_is_forgotten() {
        let mut t = table();
        t.observe_advert(1, "a", 0);
        assert!(t.tick(299).is_empty());
        assert_eq!(t.tick(300), vec![Transition::WentDown(1)]);
        assert!(t.tick(500).is_empty(), "down is reported once");
        assert_eq!(t.tick(1000), vec![Transition::Forgotten(1)]);
        assert!(t.is_empty());
    }

    #[test]
    fn down_peer_recovers_on_any_sign_of_life() {
        let mut t = table();
        t.observe_advert(1, "a", 0);
        t.tick(400);
        assert_eq!(t.observe_alive(&1, 450), Some(Transition::Recovered(1)));
        assert_eq!(t.count(PeerState::Up), 1);
    }

    #[test]
    fn late_observation_never_moves_last_seen_back() {
        let mut t = table();
        t.observe_advert(1, "a", 200);
        t.observe_alive(&1, 100);
        assert_eq!(t.get(&1).unwrap().last_seen_ms, 200);
    }
}

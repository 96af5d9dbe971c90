//! Dialing peers that went down, so a mesh heals after a partition.
//!
//! Peers find each other by gossip: an advert names its sender's addresses
//! and a node dials what it learns. After a partition long enough for the
//! connections to close, neither side hears the other's adverts, so nothing
//! would ever dial across again. Every few advert intervals a node dials a
//! few of the peers its table lists as down (not yet forgotten), at the
//! addresses they advertised; a peer that answers is up again, and its
//! adverts and refs flow as before.

use std::time::Duration;

use actix::Addr;
use libp2p::Multiaddr;
use mass_protocol::api::{PeerState, PeerView};
use tracing::debug;

use super::{GetPeers, MembershipActor};
use crate::net::NetClient;

/// Down peers dialed per round, at most: a node that lost half a large mesh
/// reaches it again over several rounds rather than in one burst.
pub const PER_ROUND: usize = 8;
/// How long one dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The addresses to dial this round: the first parseable address of each
/// down peer, starting at `round * PER_ROUND` so every down peer gets a turn.
pub fn to_dial(peers: &[PeerView], round: usize) -> Vec<Multiaddr> {
    let down: Vec<Multiaddr> = peers
        .iter()
        .filter(|p| !p.is_self && p.state == PeerState::Down)
        .filter_map(|p| p.addresses.iter().find_map(|a| a.parse().ok()))
        .collect();
    if down.is_empty() {
        return down;
    }
    let start = (round * PER_ROUND) % down.len();
    down.iter().cycle().skip(start).take(PER_ROUND.min(down.len())).cloned().collect()
}

/// Runs the redial rounds, every `interval`, for the life of the node.
pub fn spawn(membership: Addr<MembershipActor>, net: NetClient, interval: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        for round in 0.. {
            ticks.tick().await;
            let Ok(peers) = membership.send(GetPeers).await else { return };
            for addr in to_dial(&peers, round) {
                let net = net.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(DIAL_TIMEOUT, net.dial(addr.clone())).await {
                        Ok(Ok(peer)) => debug!(%peer, %addr, "redialed a peer that was down"),
                        Ok(Err(e)) => debug!(%addr, "redial failed: {e}"),
                        Err(_) => debug!(%addr, "redial timed out"),
                    }
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8, state: PeerState, is_self: bool) -> PeerView {
        PeerView {
            peer_id: format!("p{n}"),
            is_self,
            addresses: vec!["not an address".into(), format!("/ip4/10.0.0.{n}/tcp/4000")],
            http_addr: None,
            state,
            last_seen: 0,
            hardware: None,
            load: None,
        }
    }

    #[test]
    fn dials_only_down_peers_at_their_first_valid_address() {
        let peers = [peer(0, PeerState::Down, true), peer(1, PeerState::Up, false), peer(2, PeerState::Down, false)];
        assert_eq!(to_dial(&peers, 0), vec!["/ip4/10.0.0.2/tcp/4000".parse::<Multiaddr>().unwrap()]);
        assert!(to_dial(&peers[..2], 0).is_empty());
    }

    #[test]
    fn rounds_take_turns_when_more_peers_are_down_than_a_round_dials() {
        let peers: Vec<PeerView> = (1..=20).map(|n| peer(n, PeerState::Down, false)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..3 {
            let dialed = to_dial(&peers, round);
            assert_eq!(dialed.len(), PER_ROUND);
            seen.extend(dialed);
        }
        assert_eq!(seen.len(), 20, "three rounds of eight reach all twenty");
    }
}

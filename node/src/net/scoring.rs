//! gossipsub v1.1 peer scoring for the three Mass topics.
//!
//! The point is to make invalid messages expensive: every message is
//! validated by the node (decode, signature, bounds) and a rejected one
//! costs its sender P4, squared per topic, so a few forged ref updates or
//! undecodable adverts put a peer below the graylist threshold, after which
//! this node ignores everything it gossips. Rewards for good behaviour (P1
//! time in mesh, P2 first deliveries) are small and capped, so a peer cannot
//! bank credit before an attack. Mesh-delivery penalties (P3, P3b) are off:
//! Mass topics are sparse (an advert every few seconds, refs on writes), and
//! a quiet honest peer would be penalized for having nothing to say.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams, score_parameter_decay};

/// Penalty weight of one invalid message, before squaring: 1 costs 10,
/// 2 cost 40, 3 cost 90 (graylisted, whatever credit the peer had).
const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// Invalid-message counters fall to a tenth in this time: an attacker stays
/// graylisted for a long while, an honest peer that once sent a stale entry
/// recovers.
const INVALID_MESSAGE_MEMORY: Duration = Duration::from_secs(3600);
/// Most a peer's topic score can add; below any penalty of two invalid messages.
const TOPIC_SCORE_CAP: f64 = 10.0;

/// The weight of each topic: refs move the mesh's state, so forging them
/// costs most; adverts are the membership; progress is advisory.
pub fn topic_weights(adverts: TopicHash, refs: TopicHash, progress: TopicHash) -> [(TopicHash, f64); 3] {
    [(adverts, 0.5), (refs, 1.0), (progress, 0.25)]
}

fn topic(weight: f64) -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: weight,
        // P1: up to +1 per topic after ten minutes in the mesh.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(6),
        time_in_mesh_cap: 100.0,
        // P2: first deliveries, a small reward that fades in minutes.
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: score_parameter_decay(Duration::from_secs(300)),
        first_message_deliveries_cap: 50.0,
        // P3 and P3b off (see the module comment).
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // P4: what validation rejects.
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: score_parameter_decay(INVALID_MESSAGE_MEMORY),
        ..TopicScoreParams::default()
    }
}

/// Score parameters for `topics` (from [`topic_weights`]).
pub fn params(topics: [(TopicHash, f64); 3]) -> PeerScoreParams {
    // Several nodes on one machine (tests, a workstation) share an address;
    // that is no sign of a Sybil attack.
    let loopback: HashSet<IpAddr> = ["127.0.0.1", "::1"].iter().map(|a| a.parse().expect("literal")).collect();
    PeerScoreParams {
        topics: topics.into_iter().map(|(hash, weight)| (hash, topic(weight))).collect(),
        topic_score_cap: TOPIC_SCORE_CAP,
        // P5 unused: the node sets no application score.
        app_specific_weight: 0.0,
        ip_colocation_factor_whitelist: loopback,
        ..PeerScoreParams::default()
    }
}

/// Below `gossip`, no gossip to or from the peer; below `publish`, this
/// node's messages are not sent to it; below `graylist`, all it sends is
/// ignored. One invalid ref costs 10, so an honest slip stays above all three.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -20.0,
        publish_threshold: -40.0,
        graylist_threshold: -70.0,
        // Peer exchange is off; no score grants it.
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes() -> [(TopicHash, f64); 3] {
        topic_weights(TopicHash::from_raw("a"), TopicHash::from_raw("r"), TopicHash::from_raw("p"))
    }

    #[test]
    fn parameters_pass_gossipsubs_own_validation() {
        params(hashes()).validate().unwrap();
        thresholds().validate().unwrap();
    }

    #[test]
    fn three_forged_refs_graylist_a_peer_even_with_full_credit() {
        let refs = params(hashes()).topics[&TopicHash::from_raw("r")].clone();
        let penalty = |n: f64| n * n * refs.invalid_message_deliveries_weight * refs.topic_weight;
        let t = thresholds();
        assert!(penalty(1.0) > t.gossip_threshold, "one slip is forgiven");
        assert!(penalty(3.0) + TOPIC_SCORE_CAP < t.graylist_threshold);
    }
}

//! Membership: who is in the mesh, what they have, and whether they are alive.
//!
//! [`table`] is the logic, free of I/O and clocks so that `simulations/` can
//! drive thousands of tables deterministically; [`actor`] is the shell the node
//! runs, fed by the network task; [`redial`] dials peers that went down, so
//! a mesh heals after a partition.

pub mod actor;
pub mod redial;
pub mod table;

use std::time::Duration;

pub use actor::{GetLivePeers, GetPeers, GetQueueDepths, GetUpPeers, MembershipActor};
pub use table::{PeerTable, Transition};

/// Liveness timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How often a node publishes its advert.
    pub advert_interval: Duration,
    /// A peer not heard from for this long is marked down.
    pub down_after: Duration,
    /// A peer down for this long is dropped from the table.
    pub forget_after: Duration,
    /// Peers the table holds at most: adverts from ever new peer ids must not
    /// grow it without bound. When full, a newcomer takes the place of the
    /// peer down the longest, or is not listed while every peer is up.
    pub max_peers: usize,
    /// How long a draining node (SIGTERM, `mass node drain`) hands its work
    /// off before it exits anyway.
    pub drain_timeout: Duration,
}

impl Config {
    pub const DEFAULT: Self = Self {
        advert_interval: Duration::from_secs(2),
        down_after: Duration::from_secs(8),
        forget_after: Duration::from_secs(600),
        max_peers: 1024,
        drain_timeout: Duration::from_secs(60),
    };

    pub fn validate(&self) -> Result<(), String> {
        if self.max_peers == 0 {
            return Err("membership.max_peers must be at least 1".into());
        }
        if self.advert_interval.is_zero() {
            return Err("membership.advert_interval must be greater than zero".into());
        }
        if self.down_after < self.advert_interval * 2 {
            return Err(format!(
                "membership.down_after ({}) must be at least twice membership.advert_interval ({}), or one lost advert marks a live peer down",
                humantime::format_duration(self.down_after),
                humantime::format_duration(self.advert_interval)
            ));
        }
        if self.forget_after < self.down_after {
            return Err(format!(
                "membership.forget_after ({}) must not be shorter than membership.down_after ({})",
                humantime::format_duration(self.forget_after),
                humantime::format_duration(self.down_after)
            ));
        }
        Ok(())
    }
}

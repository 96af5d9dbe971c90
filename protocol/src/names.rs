//! Protocol names, gossip topics and the version of the protocol.
//!
//! An incompatible change to a message gets a new name (`/1` -> `/2`), so that
//! old and new nodes fail to negotiate instead of misreading each other.

/// Version of the Mass protocol spoken by this build; carried in adverts.
pub const PROTOCOL_VERSION: u16 = 5;
/// identify's protocol version string; peers that differ are not Mass peers.
pub const IDENTIFY_PROTOCOL: &str = "/mass/1.0.0";
/// Node-to-node request-response protocol.
pub const RPC_PROTOCOL: &str = "/mass/rpc/5";
/// Long-lived streams that carry many forwarded predictions at once, each
/// frame tagged with its call's number (see the node's `net::lanes`).
pub const LANE_PROTOCOL: &str = "/mass/predict-lane/3";
/// Kademlia protocol name (kept apart from the public IPFS DHT).
pub const KAD_PROTOCOL: &str = "/mass/kad/1";
/// Gossip topic carrying hardware and load adverts.
pub const ADVERT_TOPIC: &str = "/mass/adverts/2";
/// Gossip topic carrying ref updates.
pub const REF_TOPIC: &str = "/mass/refs/1";
/// Gossip topic carrying training progress (epoch and loss of running tasks).
pub const PROGRESS_TOPIC: &str = "/mass/progress/1";

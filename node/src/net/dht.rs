//! What this node accepts into its part of the DHT.
//!
//! Kademlia runs with `StoreInserts::FilterBoth`: peers' records and provider
//! announcements come to the network task as events, and only those that pass
//! here are stored. Mass uses the DHT for one thing, "who holds blob X"
//! (provider records keyed by a [`ContentId`]); it stores no value records, so
//! every inbound value record is refused by kind. The store itself is bounded
//! ([`store_config`]), and provider keys announced by peers are counted apart
//! from this node's own ([`ProviderLedger`]), so peers filling the DHT cannot
//! stop this node from announcing its own blobs.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use libp2p::{
    PeerId,
    kad::{ProviderRecord, Record, RecordKey, store::MemoryStoreConfig},
};
use mass_protocol::ContentId;

use super::Config;

/// Value records kept (Mass writes none; the bound is for the store's sake).
pub const MAX_RECORDS: usize = 256;
/// Largest value record kept.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Addresses a provider record may carry (a node listens on a few).
pub const MAX_PROVIDER_ADDRS: usize = 16;
/// Longest address in a provider record, in bytes.
pub const MAX_ADDR_BYTES: usize = 256;
/// Provider keys this node may announce itself, beyond peers' ones: the
/// store's cap must not refuse a node's own blobs.
const OWN_PROVIDED_KEYS: usize = 1 << 20;
/// How often the ledger looks for expired peers' records when it is full.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Why an inbound record or announcement was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("the key is not a content id (32 bytes)")]
    KeyShape,
    #[error("the record is larger than this node keeps")]
    TooLarge,
    #[error("Mass keeps no value records in the DHT")]
    Kind,
    #[error("this node already keeps as many peers' provider keys as it allows")]
    Full,
}

impl Refusal {
    /// Label for the refusal counter.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::KeyShape => "key_shape",
            Refusal::TooLarge => "too_large",
            Refusal::Kind => "kind",
            Refusal::Full => "full",
        }
    }
}

/// The bounds of the node's Kademlia store.
pub fn store_config(config: &Config) -> MemoryStoreConfig {
    MemoryStoreConfig {
        max_records: MAX_RECORDS,
        max_value_bytes: MAX_VALUE_BYTES,
        max_providers_per_key: config.dht_max_providers_per_key,
        max_provided_keys: config.dht_max_provider_keys + OWN_PROVIDED_KEYS,
    }
}

/// Checks a peer's "I hold this" announcement. (Kademlia itself already
/// drops announcements whose provider is not the sender.)
pub fn check_provider(record: &ProviderRecord) -> Result<(), Refusal> {
    if record.key.as_ref().len() != 32 {
        return Err(Refusal::KeyShape);
    }
    if record.addresses.len() > MAX_PROVIDER_ADDRS || record.addresses.iter().any(|a| a.len() > MAX_ADDR_BYTES) {
        return Err(Refusal::TooLarge);
    }
    Ok(())
}

/// Checks a peer's value record: refused, since Mass stores none; the shape
/// and size are checked first so the counter says what was wrong with it.
pub fn check_record(record: &Record) -> Result<(), Refusal> {
    if record.key.as_ref().len() != 32 {
        return Err(Refusal::KeyShape);
    }
    if record.value.len() > MAX_VALUE_BYTES {
        return Err(Refusal::TooLarge);
    }
    Err(Refusal::Kind)
}

/// The DHT key of a blob.
pub fn key_of(id: &ContentId) -> RecordKey {
    RecordKey::new(id.as_bytes())
}

/// The provider keys peers announced to this node, at most `limit`.
#[derive(Debug)]
pub struct ProviderLedger {
    limit: usize,
    keys: HashSet<RecordKey>,
    last_prune: Option<Instant>,
}

impl ProviderLedger {
    pub fn new(limit: usize) -> Self {
        Self { limit, keys: HashSet::new(), last_prune: None }
    }

    /// Whether a peer's record for `key` may be stored. When the ledger is
    /// full it first forgets keys whose peers' records all expired
    /// (`expired(key)` removes them from the store and says whether any
    /// peer's record is left), at most every [`PRUNE_EVERY`].
    pub fn admit(&mut self, key: &RecordKey, now: Instant, mut still_held: impl FnMut(&RecordKey) -> bool) -> bool {
        if self.keys.contains(key) {
            return true;
        }
        if self.keys.len() >= self.limit && self.last_prune.is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY) {
            self.last_prune = Some(now);
            self.keys.retain(|k| still_held(k));
        }
        if self.keys.len() >= self.limit {
            return false;
        }
        self.keys.insert(key.clone());
        true
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Removes the expired records peers announced under `key` from `store`;
/// returns whether a live record of another peer is left.
pub fn prune_key(store: &mut libp2p::kad::store::MemoryStore, key: &RecordKey, local: &PeerId, now: Instant) -> bool {
    use libp2p::kad::store::RecordStore;
    let mut held = false;
    for record in store.providers(key) {
        if record.provider == *local {
            continue;
        }
        if record.is_expired(now) {
            store.remove_provider(key, &record.provider);
        } else {
            held = true;
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(key: &[u8], addrs: usize) -> ProviderRecord {
        ProviderRecord {
            key: RecordKey::new(&key),
            provider: PeerId::random(),
            expires: None,
            addresses: (0..addrs).map(|i| format!("/ip4/10.0.0.1/tcp/{}", 4000 + i).parse().unwrap()).collect(),
        }
    }

    #[test]
    fn provider_records_must_name_a_content_id_and_stay_small() {
        let id = ContentId::of(b"blob");
        assert_eq!(check_provider(&provider(id.as_bytes(), 2)), Ok(()));
        assert_eq!(check_provider(&provider(b"model/x", 2)), Err(Refusal::KeyShape));
        assert_eq!(check_provider(&provider(id.as_bytes(), MAX_PROVIDER_ADDRS + 1)), Err(Refusal::TooLarge));
    }

    #[test]
    fn value_records_are_refused_and_the_reason_is_the_first_fault() {
        let id = ContentId::of(b"blob");
        assert_eq!(check_record(&Record::new(id.as_bytes().to_vec(), vec![1])), Err(Refusal::Kind));
        assert_eq!(check_record(&Record::new(b"junk".to_vec(), vec![1])), Err(Refusal::KeyShape));
        let big = Record::new(id.as_bytes().to_vec(), vec![0; MAX_VALUE_BYTES + 1]);
        assert_eq!(check_record(&big), Err(Refusal::TooLarge));
    }

    #[test]
    fn the_ledger_holds_at_most_its_limit_and_frees_expired_keys() {
        let mut ledger = ProviderLedger::new(3);
        let keys: Vec<RecordKey> = (0u8..5).map(|i| key_of(&ContentId::of(&[i]))).collect();
        let start = Instant::now();
        for key in &keys[..3] {
            assert!(ledger.admit(key, start, |_| true));
        }
        assert!(ledger.admit(&keys[0], start, |_| true), "a known key is always admitted");
        assert!(!ledger.admit(&keys[3], start, |_| true), "full while every record lives");
        // Within the prune interval nothing is looked at again.
        assert!(!ledger.admit(&keys[3], start + Duration::from_secs(1), |_| false));
        // Later, expired keys make room.
        let later = start + PRUNE_EVERY;
        assert!(ledger.admit(&keys[3], later, |k| *k == keys[1]));
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn pruning_removes_only_expired_records_of_peers() {
        use libp2p::kad::store::{MemoryStore, RecordStore};
        let local = PeerId::random();
        let mut store = MemoryStore::new(local);
        let key = key_of(&ContentId::of(b"x"));
        let now = Instant::now();
        let mut stale = provider(key.as_ref(), 1);
        stale.expires = Some(now - Duration::from_secs(1));
        let fresh = provider(key.as_ref(), 1);
        store.add_provider(stale.clone()).unwrap();
        assert!(!prune_key(&mut store, &key, &local, now));
        assert!(store.providers(&key).is_empty());
        store.add_provider(fresh).unwrap();
        assert!(prune_key(&mut store, &key, &local, now));
    }
}

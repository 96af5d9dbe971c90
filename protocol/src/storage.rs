//! Stored artifacts: blob layouts and refs. Shared by nodes (on disk and on the
//! wire) and clients (as JSON).

use serde::{Deserialize, Serialize};

use crate::ContentId;

/// How a blob is laid out in chunks (see [`crate::chunking`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    pub id: ContentId,
    pub size: u64,
    /// Chunk keys in order: `[id]` for a one-chunk blob, else the chunk CVs.
    pub chunks: Vec<[u8; 32]>,
}

impl BlobMeta {
    /// Checks that the layout hashes to the id, before any chunk is trusted.
    pub fn is_consistent(&self) -> bool {
        let expected = crate::chunking::chunk_count(self.size) as usize;
        if self.chunks.len() != expected {
            return false;
        }
        match self.chunks.as_slice() {
            [only] => only == self.id.as_bytes(),
            cvs => crate::chunking::root_of(cvs) == Some(self.id),
        }
    }

    /// Expected length of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> usize {
        let start = index as u64 * crate::chunking::CHUNK_SIZE as u64;
        (self.size.saturating_sub(start)).min(crate::chunking::CHUNK_SIZE as u64) as usize
    }

    /// Whether `bytes` is chunk `index` of this blob.
    pub fn verify_chunk(&self, index: usize, bytes: &[u8]) -> bool {
        if index >= self.chunks.len() || bytes.len() != self.chunk_len(index) {
            return false;
        }
        if self.chunks.len() == 1 {
            ContentId::of(bytes) == self.id
        } else {
            crate::chunking::chunk_cv(index as u64, bytes) == self.chunks[index]
        }
    }
}

/// What a blob holds, as told by whatever stored it: for accounting only
/// (`mass_blob_bytes{kind}`), never trusted for anything else. Kept beside
/// the layout in the node's store and asked of a peer when a blob is
/// fetched from it ([`crate::rpc::Request::GetBlobKind`]).
///
/// Append only: the variant order is the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BlobKind {
    /// Stored before kinds were recorded, or fetched from a peer that did
    /// not say.
    Unknown,
    /// Dataset shards and manifests.
    Dataset,
    /// Model manifests and their parts: members' weights, trees, the
    /// training requests kept with them.
    Model,
    /// Fitted feature pipelines.
    Pipeline,
    /// Job and study specs and their checkpointed records.
    Checkpoint,
    /// Batch prediction results (CSV).
    Prediction,
    /// Anything else, such as blobs put through `PUT /v1/blobs`.
    Other,
}

impl BlobKind {
    /// Every kind, in wire order.
    pub const ALL: [BlobKind; 7] = [
        BlobKind::Unknown,
        BlobKind::Dataset,
        BlobKind::Model,
        BlobKind::Pipeline,
        BlobKind::Checkpoint,
        BlobKind::Prediction,
        BlobKind::Other,
    ];

    /// The lowercase name used as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            BlobKind::Unknown => "unknown",
            BlobKind::Dataset => "dataset",
            BlobKind::Model => "model",
            BlobKind::Pipeline => "pipeline",
            BlobKind::Checkpoint => "checkpoint",
            BlobKind::Prediction => "prediction",
            BlobKind::Other => "other",
        }
    }
}

/// One version of a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEntry {
    /// Versions count up per name; the highest wins.
    pub version: u64,
    /// What the ref points at; `None` deletes it.
    pub target: Option<ContentId>,
    /// Lamport clock of the setting node when it wrote this entry.
    pub clock: u64,
    /// Peer id of the node that wrote it; breaks ties deterministically.
    pub origin: String,
    /// Wall-clock time of the write, Unix milliseconds (informational).
    pub set_at: u64,
    /// The origin's signature over [`RefEntry::signed_bytes`]: a peer cannot
    /// write under another's name, on any path (gossip, sync, anti-entropy).
    #[serde(with = "serde_bytes", default)]
    pub signature: Vec<u8>,
}

/// Versions a ref may jump ahead of the highest one known when an entry
/// arrives: enough for any honest history, and a version of u64::MAX cannot
/// freeze a ref.
pub const MAX_VERSION_JUMP: u64 = 1 << 20;
/// Lamport clock values an entry may be ahead of this node's clock.
pub const MAX_CLOCK_JUMP: u64 = 1 << 40;

impl RefEntry {
    /// What the origin signs: the ref's name and every field but the signature.
    pub fn signed_bytes(&self, name: &str) -> Vec<u8> {
        crate::codec::encode(&(name, self.version, self.target, self.clock, &self.origin, self.set_at))
            .expect("ref entries encode")
    }

    /// Whether the entry stays within the jump bounds of a record whose
    /// highest version is `known_version`, on a node whose clock is `clock`.
    pub fn within_bounds(&self, known_version: u64, clock: u64) -> Result<(), String> {
        if self.version > known_version.saturating_add(MAX_VERSION_JUMP) {
            return Err(format!(
                "version {} jumps more than {MAX_VERSION_JUMP} past the highest known, {known_version}",
                self.version
            ));
        }
        if self.clock > clock.saturating_add(MAX_CLOCK_JUMP) {
            return Err(format!("clock {} jumps more than {MAX_CLOCK_JUMP} past this node's {clock}", self.clock));
        }
        Ok(())
    }

    /// Total order of entries: version, then clock, then origin.
    pub fn order_key(&self) -> (u64, u64, &str) {
        (self.version, self.clock, &self.origin)
    }
}

/// Refs under this prefix pin a blob: `pin/<id>`.
pub const PIN_PREFIX: &str = "pin/";

/// Who may write what, beyond the signature (which proves the origin):
/// a pin names its blob, so it can point at nothing else; and deleting a
/// ref or unpinning a blob (an entry with no target), the one write that
/// can lead GC to remove data, is an admin's act when the mesh names its
/// ref admins (`storage.ref_admins`; none named: every member is one).
/// Moving a ref to a new target stays open to every member: retraining
/// and driver takeover write `model/` and `job/` refs from whichever peer
/// runs them, and the history keeps every earlier target alive and
/// restorable.
pub fn check_writer(name: &str, target: Option<ContentId>, origin: &str, admins: &[String]) -> Result<(), String> {
    if let Some(pinned) = name.strip_prefix(PIN_PREFIX) {
        let id: ContentId = pinned.parse().map_err(|_| format!("pin '{name}' does not name a blob id"))?;
        if target.is_some_and(|t| t != id) {
            return Err(format!("pin '{name}' may only point at {id}"));
        }
    }
    if target.is_none() && !admins.is_empty() && !admins.iter().any(|a| a == origin) {
        return Err(format!(
            "only the mesh's ref admins (storage.ref_admins) may delete or unpin '{name}'; peer {origin} is not one"
        ));
    }
    Ok(())
}

/// A ref with its whole history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    pub name: String,
    pub history: Vec<RefEntry>,
}

impl RefRecord {
    /// The winning entry: the greatest by [`RefEntry::order_key`].
    pub fn current(&self) -> Option<&RefEntry> {
        self.history.iter().max_by(|a, b| a.order_key().cmp(&b.order_key()))
    }

    /// Adds an entry if it is new; returns whether anything changed.
    /// Merging is commutative and idempotent, so gossip converges.
    pub fn merge(&mut self, entry: RefEntry) -> bool {
        if self.history.iter().any(|e| e.version == entry.version && e.origin == entry.origin && e.clock == entry.clock)
        {
            return false;
        }
        let at = self.history.partition_point(|e| e.order_key() < entry.order_key());
        self.history.insert(at, entry);
        true
    }
}

/// Checks a ref name: `kind/name` made of letters, digits and `-_.:/`.
pub fn validate_ref_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 {
        return Err(format!("ref name '{name}' must be 1 to 256 characters"));
    }
    if !name.contains('/') || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err(format!("ref name '{name}' must look like kind/name, e.g. model/digits"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.:/".contains(*c))) {
        return Err(format!("ref name '{name}' contains '{bad}'; use letters, digits and - _ . : /"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64, clock: u64, origin: &str) -> RefEntry {
        RefEntry {
            version,
            target: Some(ContentId::of(origin.as_bytes())),
            clock,
            origin: origin.into(),
            set_at: 0,
            signature: vec![],
        }
    }

    #[test]
    fn merge_order_does_not_matter() {
        let entries = [entry(1, 1, "a"), entry(2, 5, "b"), entry(2, 5, "c"), entry(2, 3, "z")];
        let mut forward = RefRecord { name: "model/x".into(), history: vec![] };
        let mut backward = forward.clone();
        for e in entries.iter().cloned() {
            forward.merge(e);
        }
        for e in entries.iter().rev().cloned() {
            backward.merge(e.clone());
            backward.merge(e);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.current().unwrap().origin, "c");
        assert_eq!(forward.history.len(), 4);
    }

    #[test]
    fn huge_jumps_are_out_of_bounds() {
        assert!(entry(5, 9, "a").within_bounds(4, 8).is_ok());
        assert!(entry(u64::MAX, 1, "a").within_bounds(4, 8).unwrap_err().contains("version"));
        assert!(entry(5, u64::MAX, "a").within_bounds(4, 8).unwrap_err().contains("clock"));
        assert!(entry(u64::MAX, 1, "a").within_bounds(u64::MAX, 8).is_ok(), "saturating, not overflowing");
        assert_ne!(entry(5, 9, "a").signed_bytes("model/x"), entry(5, 9, "a").signed_bytes("model/y"));
    }

    #[test]
    fn pins_name_their_blob_and_only_admins_delete() {
        let id = ContentId::of(b"kept");
        let pin = format!("{PIN_PREFIX}{id}");
        let mut write = entry(2, 2, "member");
        write.target = Some(id);
        let open: &[String] = &[];
        let admins = ["admin".to_owned()];
        assert!(check_writer(&pin, write.target, &write.origin, &admins).is_ok(), "anyone may pin");
        write.target = Some(ContentId::of(b"other"));
        assert!(check_writer(&pin, write.target, &write.origin, open).unwrap_err().contains("may only point at"));
        assert!(
            check_writer("pin/not-an-id", write.target, &write.origin, open)
                .unwrap_err()
                .contains("does not name a blob id")
        );
        write.target = None;
        assert!(check_writer(&pin, write.target, &write.origin, open).is_ok(), "no admins named: every member is one");
        assert!(
            check_writer(&pin, write.target, &write.origin, &admins).unwrap_err().contains("peer member is not one")
        );
        assert!(
            check_writer("model/x", write.target, &write.origin, &admins).is_err(),
            "deleting any ref is an admin's act"
        );
        write.origin = "admin".into();
        assert!(check_writer(&pin, write.target, &write.origin, &admins).is_ok());
        let mut retrain = entry(3, 3, "member");
        retrain.target = Some(ContentId::of(b"v3"));
        assert!(check_writer("model/x", retrain.target, &retrain.origin, &admins).is_ok(), "moving a ref stays open");
    }

    #[test]
    fn ref_names_are_checked() {
        assert!(validate_ref_name("model/digits").is_ok());
        assert!(validate_ref_name("dataset/mnist/v1").is_ok());
        for bad in ["", "model", "/x", "x/", "a//b", "model/ bad", "model/é"] {
            assert!(validate_ref_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inconsistent_layouts_are_caught() {
        let data = vec![7u8; 10];
        let id = ContentId::of(&data);
        let meta = BlobMeta { id, size: 10, chunks: vec![*id.as_bytes()] };
        assert!(meta.is_consistent() && meta.verify_chunk(0, &data));
        assert!(!meta.verify_chunk(0, &data[..9]));
        let lying = BlobMeta { id, size: 10, chunks: vec![[0; 32]] };
        assert!(!lying.is_consistent());
        let wrong_size = BlobMeta { id, size: 5_000_000, chunks: vec![*id.as_bytes()] };
        assert!(!wrong_size.is_consistent());
    }
}

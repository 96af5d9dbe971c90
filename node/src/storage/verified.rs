//! Chunks verified recently, so that a hot blob (a dataset shard read by
//! every training task, a model's weights, a pipeline) is not hashed again
//! on every read: for a chunk whose bytes were hashed and found right less
//! than a window ago, a read skips BLAKE3. A chunk read again within the
//! window is hot: it is hashed once more and its bytes kept, while they fit
//! a byte budget, and later reads copy them, skipping RocksDB too. A chunk
//! read once keeps no bytes, so a big blob streamed through fills no memory.
//!
//! Kept bytes are always right (they hashed to their key); what they can
//! hide, for at most the window, is damage to the copy on disk since. A
//! trusted check without bytes still reads from RocksDB, which then checks
//! its own checksums (a CRC32C per BlobDB record, where chunks of 4 KiB and
//! more live, and per block in SST files; a read whose bytes are hashed
//! skips them, the hash catching all they would), so bit rot on the disk
//! is still an error, not wrong bytes; what it gives up is catching, for at
//! most the window, bytes changed under a chunk key by a write RocksDB
//! accepts as valid. Every write this node makes under a chunk key is of
//! bytes hashed to that key, so that takes a bug or a hand writing into the
//! live database. Hence a short window: the record is memory only (a
//! restart starts empty), a hit never extends it (a hot chunk is read from
//! disk and hashed again once per window), and [`super::Store::verify`],
//! what checks a whole copy, never trusts it.
//!
//! The logic here is pure: the caller passes the clock in.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use mass_protocol::storage::BlobMeta;

/// How long a check of a chunk is trusted.
pub const WINDOW: Duration = Duration::from_secs(30);
/// Chunks recorded at most (up to 16 GiB of 1 MiB chunks, about 1 MiB of
/// memory).
pub const CAPACITY: usize = 16_384;
/// Bytes of chunks kept in memory at most.
pub const KEPT_BYTES: usize = 32 << 20;

/// What hashing chunk `index` of a blob proved, besides its key: the bytes
/// stored under the key hash to it at that position in a blob of several
/// chunks, or (`whole`) to the id of a one-chunk blob.
#[derive(Debug, Clone)]
struct Proof {
    index: u64,
    whole: bool,
    at: Instant,
    /// The bytes hashed, while they fit the budget.
    bytes: Option<Arc<[u8]>>,
}

impl Proof {
    /// Whether this stands, at `now`, for the check of chunk `index`.
    fn proves(&self, index: u64, whole: bool, now: Instant, window: Duration) -> bool {
        self.index == index && self.whole == whole && now.saturating_duration_since(self.at) < window
    }
}

/// What a record says of a chunk about to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fresh {
    /// Not checked within the window: hash what is read.
    No,
    /// Checked within the window: what RocksDB returns need not be hashed.
    Checked,
    /// Checked within the window, and these are the bytes that hashed right.
    Kept(Arc<[u8]>),
}

/// Chunk keys hashed and found right recently, with when (and some bytes).
#[derive(Debug)]
pub struct Verified {
    window: Duration,
    capacity: usize,
    budget: usize,
    kept: usize,
    /// No later than the oldest check whose bytes are kept.
    oldest_kept: Option<Instant>,
    checked: HashMap<[u8; 32], Proof>,
}

/// The chunk key read for chunk `index` of `meta`, and what its check
/// proves; `None` when no record may stand in for the hash.
fn claim(meta: &BlobMeta, index: usize) -> Option<([u8; 32], u64, bool)> {
    let key = *meta.chunks.get(index)?;
    let whole = meta.chunks.len() == 1;
    // A one-chunk blob is stored under its id and checked against it; a
    // layout that says otherwise is not one the store writes: always hashed.
    if whole && key != *meta.id.as_bytes() {
        return None;
    }
    Some((key, index as u64, whole))
}

impl Verified {
    /// Trusts a check for `window` (zero: never), for at most `capacity`
    /// chunks, keeping the bytes of those that fit in `budget` bytes.
    pub fn new(window: Duration, capacity: usize, budget: usize) -> Self {
        Self { window, capacity, budget, kept: 0, oldest_kept: None, checked: HashMap::new() }
    }

    /// Whether chunk `index` of `meta` was hashed and found right less than
    /// the window before `now`, and its bytes if kept. A chunk read again
    /// within the window is hot: it is [`Fresh::No`] once more, so that it
    /// is hashed and [`Verified::note`] keeps its bytes, if they fit.
    pub fn fresh(&mut self, meta: &BlobMeta, index: usize, now: Instant) -> Fresh {
        let len = meta.chunk_len(index);
        let Some((key, index, whole)) = claim(meta, index) else { return Fresh::No };
        let bytes = match self.checked.get(&key) {
            Some(proof) if proof.proves(index, whole, now, self.window) => proof.bytes.clone(),
            _ => return Fresh::No,
        };
        match bytes {
            Some(bytes) => Fresh::Kept(bytes),
            None if self.room(len, now) => Fresh::No,
            None => Fresh::Checked,
        }
    }

    /// Whether a check of chunk `index` of `meta` within the window stands,
    /// bytes kept or not.
    pub fn trusts(&self, meta: &BlobMeta, index: usize, now: Instant) -> bool {
        claim(meta, index).is_some_and(|(key, index, whole)| {
            self.checked.get(&key).is_some_and(|proof| proof.proves(index, whole, now, self.window))
        })
    }

    /// Records that `bytes`, read at `now` as chunk `index` of `meta`,
    /// hashed right; keeps a copy if it was checked within the window
    /// already (it is hot) and the budget allows.
    pub fn note(&mut self, meta: &BlobMeta, index: usize, now: Instant, bytes: &[u8]) {
        self.record(meta, index, now, Some(bytes));
    }

    /// Records that chunk `index` of `meta`, read at `now`, hashed right,
    /// keeping no bytes (a check of a whole copy, not a hot read).
    pub fn note_checked(&mut self, meta: &BlobMeta, index: usize, now: Instant) {
        self.record(meta, index, now, None);
    }

    fn record(&mut self, meta: &BlobMeta, index: usize, now: Instant, bytes: Option<&[u8]>) {
        let Some((key, index, whole)) = claim(meta, index) else { return };
        if self.window.is_zero() || self.capacity == 0 {
            return;
        }
        let hot = self.checked.get(&key).is_some_and(|proof| proof.proves(index, whole, now, self.window));
        self.forget(&key);
        if self.checked.len() >= self.capacity {
            self.drop_expired(now);
            if self.checked.len() >= self.capacity {
                // All fresh: start over rather than track which is oldest.
                self.clear();
            }
        }
        // First come, first kept: past the budget a hot chunk is recorded
        // without its bytes, until expiries make room.
        let kept = bytes.filter(|bytes| hot && self.room(bytes.len(), now)).map(Arc::<[u8]>::from);
        if let Some(bytes) = &kept {
            self.kept += bytes.len();
            self.oldest_kept = Some(self.oldest_kept.map_or(now, |oldest| oldest.min(now)));
        }
        self.checked.insert(key, Proof { index, whole, at: now, bytes: kept });
    }

    /// Whether `len` more bytes fit the budget, once expired ones are
    /// dropped (swept only when some kept bytes may have expired).
    fn room(&mut self, len: usize, now: Instant) -> bool {
        if self.budget == 0 {
            return false;
        }
        if self.kept + len > self.budget
            && self.oldest_kept.is_some_and(|oldest| now.saturating_duration_since(oldest) >= self.window)
        {
            self.drop_expired(now);
        }
        self.kept + len <= self.budget
    }

    fn drop_expired(&mut self, now: Instant) {
        let window = self.window;
        let mut freed = 0;
        let mut oldest: Option<Instant> = None;
        self.checked.retain(|_, proof| {
            let fresh = now.saturating_duration_since(proof.at) < window;
            if let Some(bytes) = &proof.bytes {
                if fresh {
                    oldest = Some(oldest.map_or(proof.at, |o| o.min(proof.at)));
                } else {
                    freed += bytes.len();
                }
            }
            fresh
        });
        self.kept = self.kept.saturating_sub(freed);
        self.oldest_kept = oldest;
    }

    /// Drops the record of a chunk key (its blob was removed, its chunk
    /// deleted, or a read of it failed).
    pub fn forget(&mut self, key: &[u8; 32]) {
        if let Some(proof) = self.checked.remove(key) {
            self.kept = self.kept.saturating_sub(proof.bytes.map_or(0, |b| b.len()));
        }
    }

    /// Drops every record.
    pub fn clear(&mut self) {
        self.checked.clear();
        self.kept = 0;
        self.oldest_kept = None;
    }

    /// Chunks recorded.
    pub fn len(&self) -> usize {
        self.checked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }

    /// Bytes of chunks kept.
    pub fn kept_bytes(&self) -> usize {
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use mass_protocol::{ContentId, chunking};

    use super::*;

    fn one_chunk(data: &[u8]) -> BlobMeta {
        let id = ContentId::of(data);
        BlobMeta { id, size: data.len() as u64, chunks: vec![*id.as_bytes()] }
    }

    fn two_chunks(seed: u8) -> BlobMeta {
        let data = vec![seed; chunking::CHUNK_SIZE + 10];
        let cvs: Vec<_> =
            data.chunks(chunking::CHUNK_SIZE).enumerate().map(|(i, c)| chunking::chunk_cv(i as u64, c)).collect();
        BlobMeta { id: chunking::root_of(&cvs).unwrap(), size: data.len() as u64, chunks: cvs }
    }

    fn checked(verified: &mut Verified, meta: &BlobMeta, index: usize, now: Instant) -> bool {
        verified.trusts(meta, index, now)
    }

    #[test]
    fn a_check_is_trusted_for_the_window_and_a_hit_does_not_extend_it() {
        let t0 = Instant::now();
        let mut verified = Verified::new(Duration::from_secs(30), 10, 0);
        let meta = two_chunks(1);
        assert_eq!(verified.fresh(&meta, 0, t0), Fresh::No, "never checked");
        verified.note(&meta, 0, t0, b"");
        assert_eq!(verified.fresh(&meta, 0, t0 + Duration::from_secs(29)), Fresh::Checked);
        assert!(!checked(&mut verified, &meta, 1, t0), "only the chunk checked");
        assert!(!checked(&mut verified, &meta, 0, t0 + Duration::from_secs(30)), "expired");
        // A clock read on another thread a little before the check: still fresh.
        verified.note(&meta, 1, t0 + Duration::from_secs(5), b"");
        assert!(checked(&mut verified, &meta, 1, t0));
    }

    #[test]
    fn a_zero_window_trusts_nothing() {
        let t0 = Instant::now();
        let mut verified = Verified::new(Duration::ZERO, 10, 1 << 20);
        let meta = one_chunk(b"bytes");
        verified.note(&meta, 0, t0, b"bytes");
        assert_eq!(verified.fresh(&meta, 0, t0), Fresh::No);
        assert!(verified.is_empty());
        assert_eq!(verified.kept_bytes(), 0);
    }

    #[test]
    fn a_record_stands_only_for_the_same_check() {
        let t0 = Instant::now();
        let mut verified = Verified::new(Duration::from_secs(30), 10, 0);
        let meta = two_chunks(2);
        verified.note(&meta, 1, t0, b"");
        // The same key asked for at another position proves nothing there.
        let moved = BlobMeta { chunks: vec![meta.chunks[1], meta.chunks[0]], ..meta.clone() };
        assert!(!checked(&mut verified, &moved, 0, t0));
        // Nor as a whole blob.
        let whole = BlobMeta { id: ContentId::from_bytes(meta.chunks[1]), size: 10, chunks: vec![meta.chunks[1]] };
        assert!(!checked(&mut verified, &whole, 0, t0));
        // A one-chunk layout not stored under its id is never trusted, nor recorded.
        let odd = BlobMeta { id: ContentId::of(b"other"), size: 5, chunks: vec![*ContentId::of(b"bytes").as_bytes()] };
        verified.note(&odd, 0, t0, b"bytes");
        assert!(!checked(&mut verified, &odd, 0, t0));
        assert_eq!(verified.len(), 1);
        // An index past the layout: nothing.
        assert!(!checked(&mut verified, &meta, 7, t0));
    }

    /// Reads a chunk as the store does: hashed (noted) unless fresh.
    fn read(verified: &mut Verified, meta: &BlobMeta, now: Instant, bytes: &[u8]) -> Fresh {
        let fresh = verified.fresh(meta, 0, now);
        if fresh == Fresh::No {
            verified.note(meta, 0, now, bytes);
        }
        fresh
    }

    fn kept(bytes: &[u8]) -> Fresh {
        Fresh::Kept(Arc::from(bytes))
    }

    #[test]
    fn a_chunk_read_again_within_the_window_is_kept_first_come_first_kept() {
        let t0 = Instant::now();
        let mut verified = Verified::new(Duration::from_secs(30), 10, 10);
        let (a, b, c) = (one_chunk(b"aaaaaa"), one_chunk(b"bbbbbb"), one_chunk(b"cccc"));
        for (meta, bytes) in [(&a, b"aaaaaa".as_slice()), (&b, b"bbbbbb"), (&c, b"cccc")] {
            assert_eq!(read(&mut verified, meta, t0, bytes), Fresh::No, "first read: hashed");
        }
        assert_eq!(verified.kept_bytes(), 0, "read once: nothing kept");
        // Read again: hashed once more, and kept while they fit.
        assert_eq!(read(&mut verified, &a, t0, b"aaaaaa"), Fresh::No);
        assert_eq!(read(&mut verified, &b, t0, b"bbbbbb"), Fresh::Checked, "no room: trusted, not kept");
        assert_eq!(read(&mut verified, &c, t0, b"cccc"), Fresh::No);
        assert_eq!(verified.fresh(&a, 0, t0), kept(b"aaaaaa"));
        assert_eq!(verified.fresh(&c, 0, t0), kept(b"cccc"));
        assert_eq!(verified.kept_bytes(), 10);

        // Forgetting frees its bytes.
        verified.forget(&a.chunks[0]);
        assert_eq!(verified.kept_bytes(), 4);
        // Expiry frees them when room is needed.
        let later = t0 + Duration::from_secs(31);
        let d = one_chunk(b"ddddddd");
        read(&mut verified, &d, later, b"ddddddd");
        assert_eq!(read(&mut verified, &d, later, b"ddddddd"), Fresh::No, "c has expired: room for d");
        assert_eq!(verified.fresh(&d, 0, later), kept(b"ddddddd"));
        assert_eq!(verified.kept_bytes(), 7);
        read(&mut verified, &b, later, b"bbbbbb");
        assert_eq!(read(&mut verified, &b, later, b"bbbbbb"), Fresh::Checked, "d fills the budget");
        // Noting a chunk again replaces its record, counting its bytes once.
        verified.note(&d, 0, later, b"ddddddd");
        assert_eq!(verified.kept_bytes(), 7);
        // A check of a whole copy keeps no bytes, even of a hot chunk.
        verified.note_checked(&d, 0, later);
        assert_eq!(verified.fresh(&d, 0, later), Fresh::No, "hot, room again: hash to keep");
        assert_eq!(verified.kept_bytes(), 0);
    }

    #[test]
    fn forgetting_a_key_drops_its_record() {
        let t0 = Instant::now();
        let mut verified = Verified::new(Duration::from_secs(30), 10, 100);
        let meta = one_chunk(b"bytes");
        verified.note(&meta, 0, t0, b"bytes");
        verified.forget(&meta.chunks[0]);
        assert_eq!(verified.fresh(&meta, 0, t0), Fresh::No);
        assert_eq!(verified.kept_bytes(), 0);
    }

    #[test]
    fn the_record_is_bounded_expired_checks_going_first() {
        let t0 = Instant::now();
        let mut verified = Verified::new(Duration::from_secs(30), 4, 100);
        let metas: Vec<_> = (0..6u8).map(|i| one_chunk(&[i])).collect();
        for (i, meta) in metas[..3].iter().enumerate() {
            verified.note(meta, 0, t0, &[i as u8]);
            verified.note(meta, 0, t0, &[i as u8]);
        }
        assert_eq!(verified.kept_bytes(), 3);
        let later = t0 + Duration::from_secs(40);
        verified.note(&metas[3], 0, later, &[3]);
        // Full: the expired three make room, the fresh one stays.
        verified.note(&metas[4], 0, later, &[4]);
        assert_eq!((verified.len(), verified.kept_bytes()), (2, 0));
        assert!(checked(&mut verified, &metas[3], 0, later) && checked(&mut verified, &metas[4], 0, later));
        // Full of fresh checks: it starts over, and never grows past its bound.
        for (i, meta) in metas.iter().enumerate() {
            verified.note(meta, 0, later, &[i as u8]);
            assert!(verified.len() <= 4);
            assert!(verified.kept_bytes() <= verified.len());
        }
        assert!(checked(&mut verified, &metas[5], 0, later));
    }
}

//! Blobs and refs in RocksDB.
//!
//! Column families:
//! - `meta`: blob id -> [`Stored`] (layout, when it was stored, and its
//!   [`BlobKind`]). Written last, synced: a blob exists exactly when its
//!   meta does.
//! - `chunks`: chunk key -> bytes. A key is the blob id (one-chunk blobs) or the
//!   chunk's BLAKE3 chaining value, so identical chunks at the same offset are
//!   stored once.
//! - `staging`: chunk key -> time written, for chunks of uploads not yet
//!   committed; GC removes those abandoned past the grace period.
//! - `refs`: ref name -> [`RefRecord`] with history.
//! - `state`: small node state (the Lamport clock of ref writes).
//!
//! Every read of a chunk is verified against the blob's layout; a mismatch is
//! an [`StoreError::Integrity`] naming the blob, never wrong bytes. A chunk
//! hashed and found right within the last [`verified::WINDOW`] is read
//! without hashing it again (see [`super::verified`] for why that is safe
//! enough); [`Store::verify`] always hashes.
//!
//! [`Usage`] counts the blobs held and their bytes by kind: once from `meta`
//! when the store opens, then as blobs are committed and removed.

use std::{
    collections::HashSet,
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use mass_protocol::{
    ContentId,
    chunking::{self, CHUNK_SIZE},
    codec,
    storage::{BlobKind, BlobMeta, RefEntry, RefRecord},
};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::verified::{self, Fresh, Verified};

pub const CF_META: &str = "meta";
pub const CF_CHUNKS: &str = "chunks";
pub const CF_STAGING: &str = "staging";
pub const CF_REFS: &str = "refs";
pub const CF_STATE: &str = "state";
const CLOCK_KEY: &[u8] = b"ref-clock";
/// Largest stored record other than a chunk.
const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("storage I/O failed: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("integrity error for blob {id}: {detail}")]
    Integrity { id: ContentId, detail: String },
    #[error("blob {0} is not stored on this node")]
    NotFound(ContentId),
    #[error("chunk {index} of {size}-byte upload is {len} bytes; chunks are {CHUNK_SIZE} bytes")]
    BadChunk { index: u64, size: u64, len: usize },
    #[error("the uploaded chunks hash to {actual}, not the expected {expected}")]
    Mismatch { expected: ContentId, actual: ContentId },
    #[error("upload incomplete: chunk {index} is missing")]
    MissingChunk { index: usize },
    #[error("stored record '{key}' is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{0}")]
    Forbidden(String),
}

/// What `meta` holds for a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub meta: BlobMeta,
    /// When this node stored it, Unix milliseconds.
    pub stored_at: u64,
    /// What the writer (or the peer it was fetched from) said it is.
    /// Appended: records written before it read as [`BlobKind::Unknown`].
    pub kind: BlobKind,
}

/// The `meta` record as nodes wrote it before kinds were kept.
#[derive(Deserialize)]
struct StoredWithoutKind {
    meta: BlobMeta,
    stored_at: u64,
}

/// Decodes a `meta` record of either layout. The layouts cannot be
/// confused: the older one is the newer one without its last field, so
/// each is refused by the other's decoder (short input, trailing bytes).
fn decode_stored(bytes: &[u8]) -> Result<Stored, codec::DecodeError> {
    codec::decode::<Stored>(bytes, MAX_RECORD).or_else(|e| {
        codec::decode::<StoredWithoutKind>(bytes, MAX_RECORD)
            .map(|old| Stored { meta: old.meta, stored_at: old.stored_at, kind: BlobKind::Unknown })
            .map_err(|_| e)
    })
}

/// Blobs held and their bytes (the sum of their sizes), by kind. A chunk
/// shared by two blobs counts in both; a removed blob's chunks stay on
/// disk until GC but count no more.
#[derive(Debug, Default)]
pub struct Usage {
    blobs: [AtomicU64; BlobKind::ALL.len()],
    bytes: [AtomicU64; BlobKind::ALL.len()],
}

impl Usage {
    fn add(&self, kind: BlobKind, size: u64) {
        self.blobs[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.bytes[kind as usize].fetch_add(size, Ordering::Relaxed);
    }

    fn remove(&self, kind: BlobKind, size: u64) {
        // Never below zero, whatever the interleaving of a racing reader.
        let _ =
            self.blobs[kind as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        let _ = self.bytes[kind as usize]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(size)));
    }

    /// (kind, blobs, bytes) for every kind, zeros included.
    pub fn by_kind(&self) -> Vec<(BlobKind, u64, u64)> {
        BlobKind::ALL
            .into_iter()
            .map(|k| {
                (k, self.blobs[k as usize].load(Ordering::Relaxed), self.bytes[k as usize].load(Ordering::Relaxed))
            })
            .collect()
    }
}

/// Locks serializing the writes and removals of one blob's `meta`, so that
/// [`Usage`] counts a blob committed twice at once (two fetches, two
/// uploads) once. Striped by id: different blobs rarely wait on each other.
const META_LOCKS: usize = 64;

/// The store. Cheap to share: RocksDB synchronizes internally.
pub struct Store {
    db: DB,
    usage: Arc<Usage>,
    meta_locks: Vec<Mutex<()>>,
    verified: Mutex<Verified>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

impl Store {
    /// Opens (or creates) the store under `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        let mut chunk_options = Options::default();
        // Chunks are large and often incompressible; keep them out of the LSM
        // (BlobDB files) and bound the memtable so a big upload cannot hold
        // hundreds of MiB in memory.
        chunk_options.set_enable_blob_files(true);
        chunk_options.set_min_blob_size(4096);
        chunk_options.set_write_buffer_size(16 << 20);
        chunk_options.set_max_write_buffer_number(2);
        chunk_options.set_compression_type(rocksdb::DBCompressionType::None);
        let mut small = Options::default();
        small.set_write_buffer_size(4 << 20);
        small.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let families = vec![
            ColumnFamilyDescriptor::new(CF_META, small.clone()),
            ColumnFamilyDescriptor::new(CF_CHUNKS, chunk_options),
            ColumnFamilyDescriptor::new(CF_STAGING, small.clone()),
            ColumnFamilyDescriptor::new(CF_REFS, small.clone()),
            ColumnFamilyDescriptor::new(CF_STATE, small),
        ];
        let db = DB::open_cf_descriptors(&options, path, families)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        let store = Self {
            db,
            usage: Arc::default(),
            meta_locks: (0..META_LOCKS).map(|_| Mutex::new(())).collect(),
            verified: Mutex::new(Verified::new(verified::WINDOW, verified::CAPACITY, verified::KEPT_BYTES)),
        };
        store.count_usage()?;
        Ok(store)
    }

    /// Trusts a chunk's check for `window` instead of [`verified::WINDOW`]
    /// (zero: every read reads and hashes every chunk), keeping up to
    /// `kept_bytes` of chunks in memory instead of [`verified::KEPT_BYTES`].
    pub fn with_verified_window(self, window: Duration, kept_bytes: usize) -> Self {
        Self { verified: Mutex::new(Verified::new(window, verified::CAPACITY, kept_bytes)), ..self }
    }

    /// The record of chunks verified recently. A panic while it was held
    /// may have left it half-written: it is dropped, not trusted.
    fn verified(&self) -> MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(|poisoned| {
            let mut verified = poisoned.into_inner();
            verified.clear();
            self.verified.clear_poison();
            verified
        })
    }

    /// Counts what `meta` holds, once at open (one pass over the layouts,
    /// as GC and the repair walk make). A record that does not decode is
    /// not counted; reading that blob reports it.
    fn count_usage(&self) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (_, value) = item?;
            if let Ok(stored) = decode_stored(&value) {
                self.usage.add(stored.kind, stored.meta.size);
            }
        }
        Ok(())
    }

    /// Before the process exits: flushes the memtables and stops RocksDB's
    /// background work, waiting for a running flush or compaction. The
    /// storage actor then drops the store, closing RocksDB
    /// ([`super::Storage::quiesce`]): a background job or timer still
    /// running when the process exits aborts it ("pthread lock: Invalid
    /// argument": its mutexes are destroyed under it).
    pub fn quiesce(&self) {
        if let Err(e) = self.db.flush() {
            tracing::warn!("flush before exit failed: {e}");
        }
        self.db.cancel_all_background_work(true);
    }

    /// Blobs and bytes held now, by kind.
    pub fn usage(&self) -> Arc<Usage> {
        self.usage.clone()
    }

    fn meta_lock(&self, id: &ContentId) -> MutexGuard<'_, ()> {
        let lock = &self.meta_locks[id.as_bytes()[0] as usize % META_LOCKS];
        // The lock guards no data of its own: a panic while holding it leaves nothing torn.
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `meta` record of a blob as stored, not checked against its id.
    fn record(&self, id: &ContentId) -> Result<Option<Stored>, StoreError> {
        let Some(bytes) = self.db.get_pinned_cf(self.cf(CF_META), id.as_bytes())? else {
            return Ok(None);
        };
        decode_stored(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Integrity { id: *id, detail: format!("unreadable layout: {e}") })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    /// Stores a blob of at most one chunk in one synced write. A blob
    /// already held keeps its kind, unless that was unknown.
    pub fn put_small(&self, bytes: &[u8], kind: BlobKind) -> Result<BlobMeta, StoreError> {
        if bytes.len() > CHUNK_SIZE {
            return Err(StoreError::BadChunk { index: 0, size: bytes.len() as u64, len: bytes.len() });
        }
        let id = ContentId::of(bytes);
        let _meta_lock = self.meta_lock(&id);
        if let Some(stored) = self.stored(&id)? {
            if stored.kind == BlobKind::Unknown && kind != BlobKind::Unknown {
                self.learn_kind(stored.clone(), kind)?;
            }
            return Ok(stored.meta);
        }
        let meta = BlobMeta { id, size: bytes.len() as u64, chunks: vec![*id.as_bytes()] };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_CHUNKS), id.as_bytes(), bytes);
        let kind = self.put_meta(&mut batch, &meta, kind, None);
        self.db.write_opt(batch, &synced())?;
        self.count(&meta, kind, None);
        Ok(meta)
    }

    /// Records the kind of a blob held as unknown (stored before kinds
    /// were kept, or fetched from a peer that did not say), once something
    /// that knows stores it again. Not synced: if lost, it stays unknown.
    fn learn_kind(&self, stored: Stored, kind: BlobKind) -> Result<(), StoreError> {
        let size = stored.meta.size;
        let record = Stored { kind, ..stored };
        self.db.put_cf(self.cf(CF_META), record.meta.id.as_bytes(), codec::encode(&record).expect("meta encodes"))?;
        self.usage.remove(BlobKind::Unknown, size);
        self.usage.add(kind, size);
        Ok(())
    }

    /// Stores chunk `index` of a multi-chunk blob being uploaded; returns its
    /// chaining value. Not synced: [`Store::commit`] syncs the whole upload.
    pub fn put_chunk(&self, index: u64, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
        if bytes.is_empty() || bytes.len() > CHUNK_SIZE {
            return Err(StoreError::BadChunk { index, size: 0, len: bytes.len() });
        }
        let cv = chunking::chunk_cv(index, bytes);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_CHUNKS), cv, bytes);
        batch.put_cf(self.cf(CF_STAGING), cv, now_ms().to_be_bytes());
        self.db.write(batch)?;
        Ok(cv)
    }

    /// Makes an uploaded multi-chunk blob visible: checks the chunk list hashes
    /// to the blob's id and every chunk is present, then writes its meta with
    /// a synced write (which also makes the earlier chunk writes durable).
    /// A blob already held keeps its kind, unless that was unknown.
    pub fn commit(
        &self,
        size: u64,
        cvs: Vec<[u8; 32]>,
        expected: Option<ContentId>,
        kind: BlobKind,
    ) -> Result<BlobMeta, StoreError> {
        let id = chunking::root_of(&cvs).ok_or(StoreError::BadChunk { index: 0, size, len: 0 })?;
        if let Some(expected) = expected
            && expected != id
        {
            return Err(StoreError::Mismatch { expected, actual: id });
        }
        let meta = BlobMeta { id, size, chunks: cvs };
        if !meta.is_consistent() {
            return Err(StoreError::BadChunk { index: meta.chunks.len() as u64, size, len: 0 });
        }
        for (index, cv) in meta.chunks.iter().enumerate() {
            if self.db.get_pinned_cf(self.cf(CF_CHUNKS), cv)?.is_none() {
                return Err(StoreError::MissingChunk { index });
            }
        }
        let _meta_lock = self.meta_lock(&id);
        // Committing a blob held already writes its meta again (a new
        // stored_at); an unreadable old record is simply replaced.
        let prior = self.record(&id).ok().flatten();
        let mut batch = WriteBatch::default();
        let kind = self.put_meta(&mut batch, &meta, kind, prior.as_ref());
        for cv in &meta.chunks {
            batch.delete_cf(self.cf(CF_STAGING), cv);
        }
        self.db.write_opt(batch, &synced())?;
        self.count(&meta, kind, prior.as_ref());
        Ok(meta)
    }

    /// Adds the write of `meta` to `batch`, replacing `prior` (whose kind
    /// it keeps unless unknown); returns the kind written. Call with the
    /// blob's meta lock held, and [`Store::count`] once the batch is written.
    fn put_meta(&self, batch: &mut WriteBatch, meta: &BlobMeta, kind: BlobKind, prior: Option<&Stored>) -> BlobKind {
        let kind = match prior {
            Some(prior) if prior.kind != BlobKind::Unknown => prior.kind,
            _ => kind,
        };
        let stored = Stored { meta: meta.clone(), stored_at: now_ms(), kind };
        batch.put_cf(self.cf(CF_META), meta.id.as_bytes(), codec::encode(&stored).expect("meta encodes"));
        kind
    }

    /// Counts a blob whose meta was written, in place of `prior`.
    fn count(&self, meta: &BlobMeta, kind: BlobKind, prior: Option<&Stored>) {
        if let Some(prior) = prior {
            self.usage.remove(prior.kind, prior.meta.size);
        }
        self.usage.add(kind, meta.size);
    }

    /// The stored record of a blob, checked for consistency.
    pub fn stored(&self, id: &ContentId) -> Result<Option<Stored>, StoreError> {
        let Some(stored) = self.record(id)? else {
            return Ok(None);
        };
        if stored.meta.id != *id || !stored.meta.is_consistent() {
            return Err(StoreError::Integrity { id: *id, detail: "layout does not hash to the id".into() });
        }
        Ok(Some(stored))
    }

    pub fn meta(&self, id: &ContentId) -> Result<Option<BlobMeta>, StoreError> {
        Ok(self.stored(id)?.map(|s| s.meta))
    }

    /// The kind of a blob held here.
    pub fn kind(&self, id: &ContentId) -> Result<Option<BlobKind>, StoreError> {
        Ok(self.stored(id)?.map(|s| s.kind))
    }

    /// Reads and verifies chunk `index` of a blob (not hashing it again if
    /// it was hashed within the window; a copy of the bytes hashed then, if
    /// kept).
    pub fn chunk(&self, meta: &BlobMeta, index: usize) -> Result<Vec<u8>, StoreError> {
        self.read_chunk(meta, index, true)
    }

    /// Reads and verifies a whole blob into one buffer, each chunk as
    /// [`Self::chunk`] reads it. Chunk by chunk, each came in a buffer of
    /// its own and was copied again into the blob's (4% of a scoring
    /// node's samples, with the copy out of RocksDB's pinned block 4% more).
    pub fn whole(&self, meta: &BlobMeta) -> Result<Vec<u8>, StoreError> {
        // A size its chunks cannot hold (a damaged record) reserves no more than they can.
        let mut out = Vec::with_capacity((meta.size as usize).min(meta.chunks.len() * CHUNK_SIZE));
        for index in 0..meta.chunks.len() {
            self.read_chunk_with(meta, index, true, |bytes| out.extend_from_slice(bytes))?;
        }
        Ok(out)
    }

    /// Reads chunk `index` of a blob and checks it; `trust_recent`: a
    /// check within the window stands in for hashing it. Any failure drops
    /// the chunk's record.
    fn read_chunk(&self, meta: &BlobMeta, index: usize, trust_recent: bool) -> Result<Vec<u8>, StoreError> {
        self.read_chunk_with(meta, index, trust_recent, <[u8]>::to_vec)
    }

    /// [`Self::read_chunk`], handing the checked bytes to `take` where they
    /// lie (RocksDB's pinned block, or the copy kept when they were hashed).
    fn read_chunk_with<R>(
        &self,
        meta: &BlobMeta,
        index: usize,
        trust_recent: bool,
        take: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, StoreError> {
        let key = meta.chunks.get(index).ok_or(StoreError::MissingChunk { index })?;
        // Read before the bytes are: the window runs from no later than the
        // moment they were read.
        let now = Instant::now();
        let fresh = if trust_recent { self.verified().fresh(meta, index, now) } else { Fresh::No };
        if let Fresh::Kept(bytes) = &fresh
            && bytes.len() == meta.chunk_len(index)
        {
            return Ok(take(bytes));
        }
        let failed = |detail: String| {
            self.verified().forget(key);
            StoreError::Integrity { id: meta.id, detail }
        };
        // Bytes about to be hashed need no CRC from RocksDB as well (a
        // software CRC32C in this build: 12% of a scoring node's samples);
        // bytes trusted without hashing keep it, as the module says.
        let mut options = rocksdb::ReadOptions::default();
        options.set_verify_checksums(fresh != Fresh::No);
        let bytes = match self.db.get_pinned_cf_opt(self.cf(CF_CHUNKS), key, &options) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(failed(format!("chunk {index} is missing"))),
            // RocksDB's own checksums catch some corruption before we do.
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                return Err(failed(format!("chunk {index}: {e}")));
            }
            Err(e) => return Err(e.into()),
        };
        if fresh != Fresh::No && bytes.len() == meta.chunk_len(index) {
            return Ok(take(&bytes));
        }
        if !meta.verify_chunk(index, &bytes) {
            return Err(failed(format!("chunk {index} does not match its hash")));
        }
        if trust_recent {
            self.verified().note(meta, index, now, &bytes);
        } else {
            self.verified().note_checked(meta, index, now);
        }
        Ok(take(&bytes))
    }

    /// Reads and hashes every chunk, trusting no earlier check: whether
    /// the whole copy is good.
    pub fn verify(&self, id: &ContentId) -> Result<BlobMeta, StoreError> {
        let meta = self.meta(id)?.ok_or(StoreError::NotFound(*id))?;
        for index in 0..meta.chunks.len() {
            self.read_chunk(&meta, index, false)?;
        }
        Ok(meta)
    }

    pub fn has(&self, id: &ContentId) -> Result<bool, StoreError> {
        Ok(self.db.get_pinned_cf(self.cf(CF_META), id.as_bytes())?.is_some())
    }

    /// Every blob stored here, in id order.
    pub fn list(&self) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (key, value) = item?;
            let stored = decode_stored(&value)
                .map_err(|e| StoreError::Corrupt { key: hex::encode(&key), reason: e.to_string() })?;
            out.push(stored);
        }
        Ok(out)
    }

    /// Removes this node's copy of a blob (its chunks go at the next GC).
    /// Returns whether there was one.
    pub fn remove(&self, id: &ContentId) -> Result<bool, StoreError> {
        let _meta_lock = self.meta_lock(id);
        let existed = self.has(id)?;
        let prior = self.record(id).ok().flatten();
        self.db.delete_cf_opt(self.cf(CF_META), id.as_bytes(), &synced())?;
        {
            // A copy removed (often for being damaged) is hashed afresh if
            // it comes back. A one-chunk blob's key is its id, whatever its
            // record says.
            let mut verified = self.verified();
            verified.forget(id.as_bytes());
            for key in prior.iter().flat_map(|p| &p.meta.chunks) {
                verified.forget(key);
            }
        }
        if let Some(prior) = prior {
            self.usage.remove(prior.kind, prior.meta.size);
        }
        Ok(existed)
    }

    /// Deletes blobs that no ref protects (and older than `grace_ms`), then
    /// chunks that no blob uses and no recent upload is writing.
    pub fn gc(&self, protected: &HashSet<ContentId>, grace_ms: u64) -> Result<GcReport, StoreError> {
        let now = now_ms();
        let mut report = GcReport::default();
        let mut live_chunks = HashSet::new();
        for stored in self.list()? {
            if protected.contains(&stored.meta.id) || now.saturating_sub(stored.stored_at) < grace_ms {
                live_chunks.extend(stored.meta.chunks.iter().copied());
            } else {
                self.remove(&stored.meta.id)?;
                report.blobs += 1;
            }
        }
        let mut batch = WriteBatch::default();
        let mut deleted = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_CHUNKS), IteratorMode::Start) {
            let (key, value) = item?;
            let Ok(chunk_key) = <[u8; 32]>::try_from(key.as_ref()) else { continue };
            if live_chunks.contains(&chunk_key) {
                continue;
            }
            let staged_at = self
                .db
                .get_pinned_cf(self.cf(CF_STAGING), chunk_key)?
                .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes));
            if staged_at.is_some_and(|at| now.saturating_sub(at) < grace_ms) {
                continue;
            }
            batch.delete_cf(self.cf(CF_CHUNKS), chunk_key);
            batch.delete_cf(self.cf(CF_STAGING), chunk_key);
            deleted.push(chunk_key);
            report.chunks += 1;
            report.bytes += value.len() as u64;
        }
        self.db.write_opt(batch, &synced())?;
        let mut verified = self.verified();
        for key in &deleted {
            verified.forget(key);
        }
        Ok(report)
    }

    /// The record of a ref, if known.
    pub fn get_ref(&self, name: &str) -> Result<Option<RefRecord>, StoreError> {
        let Some(bytes) = self.db.get_pinned_cf(self.cf(CF_REFS), name.as_bytes())? else {
            return Ok(None);
        };
        codec::decode(&bytes, MAX_RECORD)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { key: format!("ref {name}"), reason: e.to_string() })
    }

    /// Every ref, in name order.
    pub fn refs(&self) -> Result<Vec<RefRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_REFS), IteratorMode::Start) {
            let (key, value) = item?;
            out.push(codec::decode(&value, MAX_RECORD).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into(),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Merges an entry (local or gossiped) into a ref; synced. Returns the
    /// record when it changed.
    pub fn merge_ref(&self, name: &str, entry: RefEntry) -> Result<Option<RefRecord>, StoreError> {
        // Entries from peers are bounds-checked first (RefEntry::within_bounds);
        // a clock near u64::MAX still must not overflow what this node writes next.
        let clock = self.clock()?.max(entry.clock.min(u64::MAX / 2));
        let mut record =
            self.get_ref(name)?.unwrap_or_else(|| RefRecord { name: name.to_owned(), history: Vec::new() });
        let changed = record.merge(entry);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_STATE), CLOCK_KEY, clock.to_be_bytes());
        if changed {
            batch.put_cf(self.cf(CF_REFS), name.as_bytes(), codec::encode(&record).expect("ref encodes"));
        }
        self.db.write_opt(batch, &synced())?;
        Ok(changed.then_some(record))
    }

    /// Writes a new version of a ref on this node: one past the highest
    /// version known, stamped with the next Lamport clock.
    pub fn set_ref(
        &self,
        name: &str,
        target: Option<ContentId>,
        origin: &str,
        sign: &dyn Fn(&[u8]) -> Vec<u8>,
    ) -> Result<RefEntry, StoreError> {
        let version = self.get_ref(name)?.and_then(|r| r.current().map(|c| c.version)).unwrap_or(0).saturating_add(1);
        let mut entry = RefEntry {
            version,
            target,
            clock: self.clock()?.saturating_add(1),
            origin: origin.to_owned(),
            set_at: now_ms(),
            signature: vec![],
        };
        entry.signature = sign(&entry.signed_bytes(name));
        self.merge_ref(name, entry.clone())?;
        Ok(entry)
    }

    /// The highest version of a ref known here (0 when unknown), and this
    /// node's clock: what entries from peers are bounds-checked against.
    pub fn ref_bounds(&self, name: &str) -> Result<(u64, u64), StoreError> {
        let version = self.get_ref(name)?.and_then(|r| r.history.iter().map(|e| e.version).max()).unwrap_or(0);
        Ok((version, self.clock()?))
    }

    fn clock(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_STATE), CLOCK_KEY)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Blobs that refs keep alive: every current target, and every target in
    /// the history of refs other than pins (history is what rollback needs).
    pub fn protected(&self) -> Result<HashSet<ContentId>, StoreError> {
        let mut ids = HashSet::new();
        for record in self.refs()? {
            if let Some(target) = record.current().and_then(|c| c.target) {
                ids.insert(target);
            }
            if !record.name.starts_with(PIN_PREFIX) {
                ids.extend(record.history.iter().filter_map(|e| e.target));
            }
        }
        Ok(ids)
    }
}

pub use mass_protocol::storage::PIN_PREFIX;

/// The pin ref of a blob.
pub fn pin_name(id: &ContentId) -> String {
    format!("{PIN_PREFIX}{id}")
}

/// What a GC pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub blobs: u64,
    pub chunks: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn upload(store: &Store, data: &[u8]) -> BlobMeta {
        if data.len() <= CHUNK_SIZE {
            return store.put_small(data, BlobKind::Other).unwrap();
        }
        let cvs = data.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| store.put_chunk(i as u64, c).unwrap()).collect();
        store.commit(data.len() as u64, cvs, None, BlobKind::Other).unwrap()
    }

    fn read_all(store: &Store, id: &ContentId) -> Vec<u8> {
        let meta = store.meta(id).unwrap().unwrap();
        (0..meta.chunks.len()).flat_map(|i| store.chunk(&meta, i).unwrap()).collect()
    }

    #[test]
    fn blobs_of_every_shape_round_trip_under_their_blake3_id() {
        let (_dir, store) = store();
        for len in [0usize, 1, 4096, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let meta = upload(&store, &data);
            assert_eq!(meta.id, ContentId::of(&data), "len {len}");
            assert_eq!(read_all(&store, &meta.id), data, "len {len}");
            assert_eq!(store.whole(&meta).unwrap(), data, "len {len}, read whole");
        }
        assert_eq!(store.list().unwrap().len(), 6);
    }

    #[test]
    fn reopening_keeps_committed_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let id = Store::open(dir.path()).unwrap().put_small(b"durable", BlobKind::Other).unwrap().id;
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(read_all(&store, &id), b"durable");
    }

    #[test]
    fn commit_refuses_missing_chunks_and_wrong_ids() {
        let (_dir, store) = store();
        let data = vec![1u8; CHUNK_SIZE + 10];
        let cv0 = store.put_chunk(0, &data[..CHUNK_SIZE]).unwrap();
        let cv1 = chunking::chunk_cv(1, &data[CHUNK_SIZE..]);
        assert!(matches!(
            store.commit(data.len() as u64, vec![cv0, cv1], None, BlobKind::Other),
            Err(StoreError::MissingChunk { index: 1 })
        ));
        store.put_chunk(1, &data[CHUNK_SIZE..]).unwrap();
        let wrong = ContentId::of(b"other");
        assert!(matches!(
            store.commit(data.len() as u64, vec![cv0, cv1], Some(wrong), BlobKind::Other),
            Err(StoreError::Mismatch { .. })
        ));
        assert!(!store.has(&ContentId::of(&data)).unwrap(), "nothing is visible before a good commit");
    }

    #[test]
    fn a_flipped_byte_is_an_integrity_error_naming_the_blob() {
        let (_dir, store) = store();
        let meta = store.put_small(b"precious bytes", BlobKind::Other).unwrap();
        store.db.put_cf(store.cf(CF_CHUNKS), meta.id.as_bytes(), b"precious bytez").unwrap();
        let err = store.chunk(&meta, 0).unwrap_err();
        assert!(matches!(err, StoreError::Integrity { id, .. } if id == meta.id), "{err}");
        assert!(err.to_string().contains(&meta.id.to_string()));
        assert!(matches!(store.whole(&meta), Err(StoreError::Integrity { id, .. }) if id == meta.id));
    }

    /// Overwrites a chunk's bytes in the live database, as no write of the
    /// store ever does (RocksDB takes it as valid).
    fn flip(store: &Store, key: &[u8; 32]) {
        let mut bytes = store.db.get_cf(store.cf(CF_CHUNKS), key).unwrap().unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        store.db.put_cf(store.cf(CF_CHUNKS), key, bytes).unwrap();
    }

    #[test]
    fn a_read_within_the_window_skips_the_hash_and_verify_never_does() {
        let (_dir, store) = store();
        let data: Vec<u8> = (0..2 * CHUNK_SIZE + 5).map(|i| (i % 251) as u8).collect();
        let meta = upload(&store, &data);
        assert_eq!(read_all(&store, &meta.id), data);
        let now = Instant::now();
        assert!((0..3).all(|i| store.verified().trusts(&meta, i, now)), "a good read is recorded");
        assert_eq!(store.verified().kept_bytes(), 0, "read once: no bytes kept");
        assert_eq!(read_all(&store, &meta.id), data);
        assert_eq!(store.verified().kept_bytes(), data.len(), "read twice: hot, kept");
        assert_eq!(store.whole(&meta).unwrap(), data, "read whole from the kept bytes");

        // The trade the window makes: bytes changed under a key by a write
        // RocksDB accepts are not seen by a read within it (it serves the
        // bytes kept, or skips the hash)...
        flip(&store, &meta.chunks[1]);
        assert_eq!(store.chunk(&meta, 1).unwrap(), data[CHUNK_SIZE..2 * CHUNK_SIZE], "the kept bytes");
        // ...but a check of the whole copy hashes every chunk, and the
        // failure drops the record: every read sees it from then on.
        let err = store.verify(&meta.id).unwrap_err();
        assert!(matches!(&err, StoreError::Integrity { id, .. } if *id == meta.id), "{err}");
        assert!(matches!(store.chunk(&meta, 1), Err(StoreError::Integrity { .. })));
        assert!(store.chunk(&meta, 0).is_ok(), "the good chunks stay readable");
    }

    #[test]
    fn with_no_window_every_read_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().with_verified_window(Duration::ZERO, 1 << 20);
        let meta = store.put_small(b"precious bytes", BlobKind::Other).unwrap();
        assert_eq!(store.chunk(&meta, 0).unwrap(), b"precious bytes");
        flip(&store, &meta.chunks[0]);
        assert!(matches!(store.chunk(&meta, 0), Err(StoreError::Integrity { .. })));
    }

    #[test]
    fn without_kept_bytes_a_read_within_the_window_still_reads_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().with_verified_window(verified::WINDOW, 0);
        let meta = store.put_small(b"precious bytes", BlobKind::Other).unwrap();
        store.chunk(&meta, 0).unwrap();
        assert_eq!(store.verified().fresh(&meta, 0, Instant::now()), Fresh::Checked);
        // Read from RocksDB, not hashed: a write it accepts goes unseen...
        flip(&store, &meta.chunks[0]);
        assert_eq!(store.chunk(&meta, 0).unwrap(), b"preciouS bytes");
        // ...until the whole copy is checked.
        assert!(store.verify(&meta.id).is_err());
        assert!(matches!(store.chunk(&meta, 0), Err(StoreError::Integrity { .. })));
    }

    #[test]
    fn a_chunk_of_the_wrong_length_is_refused_even_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().with_verified_window(verified::WINDOW, 0);
        let meta = store.put_small(b"precious bytes", BlobKind::Other).unwrap();
        store.chunk(&meta, 0).unwrap();
        store.db.put_cf(store.cf(CF_CHUNKS), meta.chunks[0], b"precious").unwrap();
        let err = store.chunk(&meta, 0).unwrap_err();
        assert!(matches!(&err, StoreError::Integrity { id, .. } if *id == meta.id), "{err}");
        assert!(store.verified().is_empty(), "the failure dropped the record");
    }

    #[test]
    fn removing_a_blob_or_collecting_its_chunks_drops_their_records() {
        let (_dir, store) = store();
        let small = store.put_small(b"small", BlobKind::Other).unwrap();
        let big = upload(&store, &vec![3u8; CHUNK_SIZE + 1]);
        for meta in [&small, &big] {
            for index in 0..meta.chunks.len() {
                store.chunk(meta, index).unwrap();
            }
        }
        assert_eq!(store.verified().len(), 3);
        assert!(store.remove(&small.id).unwrap());
        assert_eq!(store.verified().len(), 2);
        assert!(!store.verified().trusts(&small, 0, Instant::now()));

        // Read again by someone holding the old layout, between the removal
        // and GC: hashed, so recorded again; GC deleting the chunks drops it.
        assert!(store.remove(&big.id).unwrap());
        store.chunk(&big, 0).unwrap();
        assert_eq!(store.verified().len(), 1);
        store.gc(&HashSet::new(), 0).unwrap();
        assert!(store.verified().is_empty());
        assert!(matches!(store.chunk(&big, 0), Err(StoreError::Integrity { .. })), "deleted chunks are missing");
    }

    #[test]
    fn gc_keeps_referenced_pinned_and_young_blobs() {
        let (_dir, store) = store();
        let kept = store.put_small(b"referenced", BlobKind::Other).unwrap().id;
        let pinned = store.put_small(b"pinned", BlobKind::Other).unwrap().id;
        let garbage = upload(&store, &vec![9u8; CHUNK_SIZE * 2]).id;
        store.set_ref("model/a", Some(kept), "me", &|_| vec![]).unwrap();
        store.set_ref(&pin_name(&pinned), Some(pinned), "me", &|_| vec![]).unwrap();
        // With a grace period, nothing young goes.
        assert_eq!(store.gc(&store.protected().unwrap(), 60_000).unwrap().blobs, 0);
        let report = store.gc(&store.protected().unwrap(), 0).unwrap();
        assert_eq!((report.blobs, report.chunks), (1, 2));
        assert!(store.has(&kept).unwrap() && store.has(&pinned).unwrap() && !store.has(&garbage).unwrap());
        // Unpinning (a tombstone) releases the blob.
        store.set_ref(&pin_name(&pinned), None, "me", &|_| vec![]).unwrap();
        store.gc(&store.protected().unwrap(), 0).unwrap();
        assert!(!store.has(&pinned).unwrap());
    }

    fn held(store: &Store, kind: BlobKind) -> (u64, u64) {
        store.usage().by_kind().into_iter().find(|(k, ..)| *k == kind).map(|(_, n, bytes)| (n, bytes)).unwrap()
    }

    #[test]
    fn usage_counts_blobs_and_bytes_by_kind_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shard = store.put_small(&[1u8; 1000], BlobKind::Dataset).unwrap();
        // Stored again, by anyone: counted once, and it stays a dataset.
        store.put_small(&[1u8; 1000], BlobKind::Other).unwrap();
        let big = vec![2u8; CHUNK_SIZE + 10];
        let cvs: Vec<_> =
            big.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| store.put_chunk(i as u64, c).unwrap()).collect();
        let model = store.commit(big.len() as u64, cvs.clone(), None, BlobKind::Model).unwrap();
        store.commit(big.len() as u64, cvs, None, BlobKind::Other).unwrap();
        assert_eq!(held(&store, BlobKind::Dataset), (1, 1000));
        assert_eq!(held(&store, BlobKind::Model), (1, big.len() as u64));
        assert_eq!(held(&store, BlobKind::Other), (0, 0));
        assert_eq!(store.kind(&shard.id).unwrap(), Some(BlobKind::Dataset));

        // Reopening counts the same from disk.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(held(&store, BlobKind::Dataset), (1, 1000));
        assert_eq!(held(&store, BlobKind::Model), (1, big.len() as u64));

        assert!(store.remove(&model.id).unwrap());
        assert!(!store.remove(&model.id).unwrap());
        assert_eq!(held(&store, BlobKind::Model), (0, 0));
        store.set_ref("dataset/d", Some(shard.id), "me", &|_| vec![]).unwrap();
        store.put_small(b"garbage", BlobKind::Other).unwrap();
        assert_eq!(held(&store, BlobKind::Other), (1, 7));
        store.gc(&store.protected().unwrap(), 0).unwrap();
        assert_eq!(held(&store, BlobKind::Other), (0, 0), "GC removed it");
        assert_eq!(held(&store, BlobKind::Dataset), (1, 1000));
    }

    #[test]
    fn a_meta_record_from_before_kinds_loads_as_unknown_until_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let meta = store.put_small(b"written by an older node", BlobKind::Dataset).unwrap();
        // Rewrite its meta as nodes did before kinds were kept.
        #[derive(Serialize)]
        struct Old {
            meta: BlobMeta,
            stored_at: u64,
        }
        let old = codec::encode(&Old { meta: meta.clone(), stored_at: 5 }).unwrap();
        store.db.put_cf(store.cf(CF_META), meta.id.as_bytes(), old).unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let stored = store.stored(&meta.id).unwrap().unwrap();
        assert_eq!((stored.meta, stored.stored_at, stored.kind), (meta.clone(), 5, BlobKind::Unknown));
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(read_all(&store, &meta.id), b"written by an older node");
        assert_eq!(held(&store, BlobKind::Unknown), (1, meta.size));
        // Something that knows stores it again: now it has a kind.
        store.put_small(b"written by an older node", BlobKind::Pipeline).unwrap();
        assert_eq!(store.kind(&meta.id).unwrap(), Some(BlobKind::Pipeline));
        assert_eq!(held(&store, BlobKind::Unknown), (0, 0));
        assert_eq!(held(&store, BlobKind::Pipeline), (1, meta.size));
        assert_eq!(store.stored(&meta.id).unwrap().unwrap().stored_at, 5, "learning a kind keeps stored_at");
    }

    #[test]
    fn one_blob_stored_by_many_threads_at_once_counts_once() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.put_small(b"raced", BlobKind::Checkpoint).unwrap())
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(held(&store, BlobKind::Checkpoint), (1, 5));
    }

    #[test]
    fn ref_versions_count_up_and_history_is_kept() {
        let (_dir, store) = store();
        let a = ContentId::of(b"a");
        let b = ContentId::of(b"b");
        assert_eq!(store.set_ref("model/m", Some(a), "me", &|_| vec![]).unwrap().version, 1);
        assert_eq!(store.set_ref("model/m", Some(b), "me", &|_| vec![]).unwrap().version, 2);
        let record = store.get_ref("model/m").unwrap().unwrap();
        assert_eq!(record.current().unwrap().target, Some(b));
        assert_eq!(record.history.len(), 2);
        // A gossiped entry with a later clock from elsewhere is merged.
        let remote =
            RefEntry { version: 3, target: Some(a), clock: 10, origin: "peer".into(), set_at: 0, signature: vec![] };
        assert!(store.merge_ref("model/m", remote.clone()).unwrap().is_some());
        assert!(store.merge_ref("model/m", remote).unwrap().is_none(), "merging twice changes nothing");
        assert_eq!(
            store.set_ref("model/m", Some(b), "me", &|_| vec![]).unwrap().clock,
            11,
            "the Lamport clock moved past the peer's"
        );
    }
}

//! The storage actor: a pool of threads (`SyncArbiter`) that own all blocking
//! RocksDB and hashing work, and [`Storage`], the async handle everyone uses.

use std::sync::{Arc, RwLock};

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use mass_protocol::{
    ContentId,
    storage::{BlobKind, BlobMeta, RefEntry, RefRecord},
};

use super::store::{GcReport, Store, StoreError, Stored, Usage};
use crate::metrics::Metrics;

/// Runs one store operation on a storage thread.
pub struct Run<T>(Box<dyn FnOnce(&Store) -> T + Send>);

impl<T: Send + 'static> Message for Run<T> {
    type Result = T;
}

pub struct StorageActor {
    /// Shared by the pool's threads; `None` once [`Close`]d.
    store: Arc<RwLock<Option<Store>>>,
}

/// Quiesces and closes the store: see [`Storage::quiesce`].
struct Close;

impl Message for Close {
    type Result = ();
}

impl Handler<Close> for StorageActor {
    type Result = ();

    fn handle(&mut self, _: Close, _: &mut Self::Context) {
        let mut store = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = store.take() {
            open.quiesce();
            // Dropped here, RocksDB closes: its background threads and timers
            // stop now, not under the process's exit.
            drop(open);
        }
    }
}

impl Actor for StorageActor {
    type Context = SyncContext<Self>;
}

impl<T: Send + 'static> Handler<Run<T>> for StorageActor {
    type Result = actix::MessageResult<Run<T>>;

    fn handle(&mut self, Run(op): Run<T>, _: &mut Self::Context) -> Self::Result {
        // A call that panicked left the store as RocksDB keeps it: usable.
        let store = self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        match store.as_ref() {
            Some(open) => actix::MessageResult(op(open)),
            None => {
                // Closed: the process is exiting. The caller waits for good.
                drop(store);
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

/// Async, cloneable handle to the storage actor.
#[derive(Clone)]
pub struct Storage {
    actor: Addr<StorageActor>,
    metrics: Metrics,
    sign: Signer,
    refs: Arc<RefCache>,
    usage: Arc<Usage>,
    /// Names of refs written here (by this node or merged from a peer), for
    /// drivers that wait on records instead of polling them.
    ref_writes: tokio::sync::broadcast::Sender<String>,
}

/// Ref writes a slow listener may fall behind by before it hears that it
/// lagged (and then reads what it waits for, as after any write).
const REF_WRITES_BUFFER: usize = 256;

/// Waits up to `within` for a write of a ref `wanted` names (heard from
/// [`Storage::ref_writes`]); returns early too when writes were missed. The
/// caller reads what it waits for either way: the bound covers a write
/// this node never sees (gossip is best effort).
pub async fn ref_written(
    writes: &mut tokio::sync::broadcast::Receiver<String>,
    within: std::time::Duration,
    wanted: impl Fn(&str) -> bool,
) {
    use tokio::sync::broadcast::error::RecvError;
    let _ = tokio::time::timeout(within, async {
        loop {
            match writes.recv().await {
                Ok(name) if wanted(&name) => return,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return,
                // No more writes: the bound ends the wait.
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
}

/// Ref records read recently, so a hot name (a served model, read on every
/// prediction) costs no storage round trip. Every ref write on this node
/// goes through [`Storage::set_ref`] or [`Storage::merge_ref`] (gossip,
/// sync and the API alike), which drop the name here; a read that began
/// before a write does not put back what it read (the generation moved).
#[derive(Default)]
struct RefCache {
    records: std::sync::RwLock<std::collections::HashMap<String, RefRecord>>,
    generation: std::sync::atomic::AtomicU64,
}

/// Names a cache holds at most: past it, the cache starts over.
const REF_CACHE_NAMES: usize = 4096;

impl RefCache {
    fn get(&self, name: &str) -> Option<RefRecord> {
        self.records.read().ok()?.get(name).cloned()
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Keeps `record` unless a write happened since `generation` was read.
    fn keep(&self, generation: u64, record: &RefRecord) {
        let Ok(mut records) = self.records.write() else { return };
        if self.generation() != generation {
            return;
        }
        if records.len() >= REF_CACHE_NAMES {
            records.clear();
        }
        records.insert(record.name.clone(), record.clone());
    }

    fn forget(&self, name: &str) {
        if let Ok(mut records) = self.records.write() {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            records.remove(name);
        }
    }
}

/// Signs this node's ref entries (with its identity key).
pub type Signer = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

impl Storage {
    /// Starts `threads` storage threads over an opened store.
    /// `sign` signs this node's ref entries.
    pub fn start(store: Store, threads: usize, metrics: Metrics, sign: Signer) -> Self {
        let usage = store.usage();
        let store = Arc::new(RwLock::new(Some(store)));
        let actor = SyncArbiter::start(threads, move || StorageActor { store: store.clone() });
        let (ref_writes, _) = tokio::sync::broadcast::channel(REF_WRITES_BUFFER);
        Self { actor, metrics, sign, refs: Arc::default(), usage, ref_writes }
    }

    /// Readies the store for the process to exit: once the calls in
    /// progress are over, flushes it ([`Store::quiesce`]) and closes
    /// RocksDB; calls made after it never return. RocksDB left open at exit
    /// aborted the process now and then ("pthread lock: Invalid argument":
    /// its threads ran on while the exit tore its statics down), even after
    /// a flush and with its background work cancelled: two of eight nodes
    /// stopped after a load test here did.
    pub async fn quiesce(&self) {
        let _ = self.actor.send(Close).await;
    }

    /// Blobs and bytes held now, by kind (atomics: no storage round trip).
    pub fn usage(&self) -> Vec<(BlobKind, u64, u64)> {
        self.usage.by_kind()
    }

    async fn run<T: Send + 'static>(&self, op: impl FnOnce(&Store) -> T + Send + 'static) -> T {
        self.actor.send(Run(Box::new(op))).await.expect("the storage actor lives as long as the node")
    }

    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Integrity { id, detail }) = &result {
            tracing::error!(%id, "integrity failure: {detail}");
            self.metrics.integrity_failure();
        }
        result
    }

    pub async fn put_small(&self, bytes: Vec<u8>, kind: BlobKind) -> Result<BlobMeta, StoreError> {
        let meta = self.run(move |s| s.put_small(&bytes, kind)).await?;
        self.metrics.stored(meta.size);
        Ok(meta)
    }

    pub async fn put_chunk(&self, index: u64, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
        self.run(move |s| s.put_chunk(index, &bytes)).await
    }

    pub async fn commit(
        &self,
        size: u64,
        cvs: Vec<[u8; 32]>,
        expected: Option<ContentId>,
        kind: BlobKind,
    ) -> Result<BlobMeta, StoreError> {
        let meta = self.run(move |s| s.commit(size, cvs, expected, kind)).await?;
        self.metrics.stored(meta.size);
        Ok(meta)
    }

    pub async fn meta(&self, id: ContentId) -> Result<Option<BlobMeta>, StoreError> {
        let result = self.run(move |s| s.meta(&id)).await;
        self.observe(result)
    }

    /// The kind of a blob held here.
    pub async fn kind(&self, id: ContentId) -> Result<Option<BlobKind>, StoreError> {
        self.observe(self.run(move |s| s.kind(&id)).await)
    }

    /// A whole blob held here, read and checked in one visit to the store.
    pub async fn whole(&self, meta: BlobMeta) -> Result<Vec<u8>, StoreError> {
        let result = self.run(move |s| s.whole(&meta)).await;
        self.observe(result)
    }

    pub async fn chunk(&self, meta: BlobMeta, index: usize) -> Result<Vec<u8>, StoreError> {
        let result = self.run(move |s| s.chunk(&meta, index)).await;
        self.observe(result)
    }

    pub async fn verify(&self, id: ContentId) -> Result<BlobMeta, StoreError> {
        let result = self.run(move |s| s.verify(&id)).await;
        self.observe(result)
    }

    pub async fn has(&self, id: ContentId) -> Result<bool, StoreError> {
        self.run(move |s| s.has(&id)).await
    }

    pub async fn list(&self) -> Result<Vec<Stored>, StoreError> {
        self.run(|s| s.list()).await
    }

    pub async fn remove(&self, id: ContentId) -> Result<bool, StoreError> {
        self.run(move |s| s.remove(&id)).await
    }

    pub async fn gc(&self, grace_ms: u64) -> Result<GcReport, StoreError> {
        self.run(move |s| s.gc(&s.protected()?, grace_ms)).await
    }

    pub async fn get_ref(&self, name: String) -> Result<Option<RefRecord>, StoreError> {
        if let Some(record) = self.refs.get(&name) {
            return Ok(Some(record));
        }
        let generation = self.refs.generation();
        let record = self.run(move |s| s.get_ref(&name)).await?;
        if let Some(record) = &record {
            self.refs.keep(generation, record);
        }
        Ok(record)
    }

    pub async fn refs(&self) -> Result<Vec<RefRecord>, StoreError> {
        self.run(|s| s.refs()).await
    }

    pub async fn set_ref(
        &self,
        name: String,
        target: Option<ContentId>,
        origin: String,
    ) -> Result<RefEntry, StoreError> {
        let sign = self.sign.clone();
        let refs = self.refs.clone();
        self.run(move |s| {
            // Forgotten on the storage thread, around the write: no reader
            // can keep what it read before the write once the write is seen.
            refs.forget(&name);
            let written = s.set_ref(&name, target, &origin, &*sign);
            refs.forget(&name);
            written.map(|entry| (entry, name))
        })
        .await
        .map(|(entry, name)| {
            let _ = self.ref_writes.send(name);
            entry
        })
    }

    pub async fn merge_ref(&self, name: String, entry: RefEntry) -> Result<Option<RefRecord>, StoreError> {
        let refs = self.refs.clone();
        self.run(move |s| {
            refs.forget(&name);
            let merged = s.merge_ref(&name, entry);
            refs.forget(&name);
            merged.map(|record| (record, name))
        })
        .await
        .map(|(record, name)| {
            if record.is_some() {
                let _ = self.ref_writes.send(name);
            }
            record
        })
    }

    /// Hears the names of refs written here from now on.
    pub fn ref_writes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.ref_writes.subscribe()
    }

    /// The highest version of a ref known here, and this node's clock.
    pub async fn ref_bounds(&self, name: String) -> Result<(u64, u64), StoreError> {
        self.run(move |s| s.ref_bounds(&name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_on_a_wanted_write_or_lag_and_else_at_its_bound() {
        use std::time::{Duration, Instant};
        let (writes, mut heard) = tokio::sync::broadcast::channel(4);
        let wanted = |name: &str| name.starts_with("job/");
        writes.send("model/a".to_string()).unwrap();
        writes.send("job/1".to_string()).unwrap();
        let started = Instant::now();
        ref_written(&mut heard, Duration::from_secs(5), wanted).await;
        assert!(started.elapsed() < Duration::from_secs(1), "a wanted write did not end the wait");

        writes.send("model/b".to_string()).unwrap();
        let started = Instant::now();
        ref_written(&mut heard, Duration::from_millis(100), wanted).await;
        assert!(started.elapsed() >= Duration::from_millis(100), "an unwanted write ended the wait");

        for i in 0..8 {
            writes.send(format!("model/{i}")).unwrap();
        }
        let started = Instant::now();
        ref_written(&mut heard, Duration::from_secs(5), wanted).await;
        assert!(started.elapsed() < Duration::from_secs(1), "missed writes did not end the wait");
    }

    #[test]
    fn quiescing_closes_the_store_and_no_call_reaches_it_after() {
        use std::time::Duration;
        actix::System::new().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let storage = Storage::start(store, 2, Metrics::new().0, Arc::new(|b: &[u8]| b.to_vec()));
            let kept = storage.put_small(b"before".to_vec(), BlobKind::Other).await.unwrap();
            storage.quiesce().await;
            let after = storage.meta(kept.id);
            let waited = tokio::time::timeout(Duration::from_millis(300), after).await;
            assert!(waited.is_err(), "a call after quiesce reached the store: {waited:?}");
            // Closed: RocksDB's lock on the directory is released.
            let reopened = Store::open(dir.path()).unwrap();
            assert!(reopened.meta(&kept.id).unwrap().is_some(), "the blob written before is there");
        });
    }

    fn record(name: &str) -> RefRecord {
        RefRecord { name: name.into(), history: vec![] }
    }

    #[test]
    fn a_read_from_before_a_write_is_not_kept() {
        let cache = RefCache::default();
        let before = cache.generation();
        cache.forget("model/a");
        cache.keep(before, &record("model/a"));
        assert!(cache.get("model/a").is_none(), "a stale read was kept after a write");
        cache.keep(cache.generation(), &record("model/a"));
        assert_eq!(cache.get("model/a"), Some(record("model/a")));
        cache.forget("model/a");
        assert!(cache.get("model/a").is_none());
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_names() {
        let cache = RefCache::default();
        for i in 0..REF_CACHE_NAMES + 10 {
            cache.keep(cache.generation(), &record(&format!("n/{i}")));
        }
        assert!(cache.records.read().unwrap().len() <= REF_CACHE_NAMES);
    }
}

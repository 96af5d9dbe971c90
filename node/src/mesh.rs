//! What a piece of work running on this node can reach: its storage, its
//! peers, and the mesh-wide names. Cheap to clone into tasks.

use std::sync::Arc;

use actix::Addr;
use libp2p::PeerId;
use mass_protocol::{
    ContentId, codec,
    dataset::{DatasetManifest, Schema, Shard, Split},
    features::{DataSummary, FittedPipeline, Moments, PipelineSpec},
    rpc::{RefUpdate, Request, Response},
    storage::{BlobKind, BlobMeta, RefEntry, check_writer, validate_ref_name},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{debug, warn};

use crate::{
    datasets::{
        REF_PREFIX,
        service::{read_blob, read_manifest, read_shard, write_blob},
    },
    membership::{GetUpPeers, MembershipActor},
    net::NetClient,
    replication::{FetchBlob, PlaceNew, ReplicationActor, homes},
    storage::{Storage, StoreError, store::pin_name},
};

/// Why a peer's ref entry was not merged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcceptRefError {
    /// The entry is invalid (bad name, forged or unsigned, out of bounds):
    /// the peer that sent it is to blame.
    #[error("{0}")]
    Refused(String),
    /// This node could not check or store it; nobody is to blame.
    #[error("{0}")]
    Store(String),
}

/// How long a checkpoint waits for a copy on another node, at most.
pub const CHECKPOINT_HOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
#[derive(Clone)]
pub struct Mesh {
    pub peer_id: String,
    pub storage: Storage,
    pub replication: Addr<ReplicationActor>,
    pub membership: Addr<MembershipActor>,
    pub net: NetClient,
    pub progress: crate::jobs::progress::ProgressBoard,
    pub boost: crate::jobs::boost::BoostSessions,
    pub compute: crate::compute::Compute,
    /// The GPU training may use, once hardware detection opened one.
    pub gpu: crate::hardware::Gpu,
    pub metrics: crate::metrics::Metrics,
    pub serving: crate::serving::Serving,
    /// Who may delete refs and unpin blobs (`storage.ref_admins`).
    pub ref_admins: Arc<[String]>,
    /// Nodes that hold a ref entry before its write is acknowledged
    /// (`storage.replication`).
    pub ref_copies: usize,
    /// Set while this node drains: it places nothing new on itself.
    pub leaving: crate::drain::Leaving,
    /// Fault injection for tests: the lie this node tells as a
    /// data-parallel worker (`MASS_FAULT_BYZANTINE`), if any.
    pub byzantine: Option<crate::jobs::byzantine::Lie>,
}

impl Mesh {
    /// A verified local copy of `id`, fetched from peers if needed.
    pub async fn ensure_local(&self, id: ContentId) -> Result<BlobMeta, String> {
        match self.storage.meta(id).await {
            Ok(Some(meta)) => return Ok(meta),
            Ok(None) => {}
            Err(StoreError::Integrity { .. }) => {
                let _ = self.storage.remove(id).await;
            }
            Err(e) => return Err(e.to_string()),
        }
        match self.replication.send(FetchBlob(id)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("replication unavailable: {e}")),
        }
    }

    /// Reads and decodes a stored value, fetching it if needed.
    pub async fn load<T: DeserializeOwned>(&self, id: ContentId) -> Result<T, String> {
        let meta = self.ensure_local(id).await?;
        let bytes = read_blob(&self.storage, &meta).await.map_err(|e| e.to_string())?;
        codec::decode(&bytes, codec::MAX_RECORD).map_err(|e| format!("{id}: {e}"))
    }

    /// A model manifest, in today's layout or an older node's
    /// ([`ModelManifest::decode`]).
    pub async fn load_model(&self, id: ContentId) -> Result<mass_protocol::jobs::ModelManifest, String> {
        let bytes = self.load_bytes(id, codec::MAX_RECORD as u64).await?;
        mass_protocol::jobs::ModelManifest::decode(&bytes).map_err(|e| format!("{id}: {e}"))
    }

    /// A stored blob's bytes, fetching it if needed; refused past `limit` bytes.
    pub async fn load_bytes(&self, id: ContentId, limit: u64) -> Result<Vec<u8>, String> {
        let meta = self.ensure_local(id).await?;
        if meta.size > limit {
            return Err(format!("blob {id} holds {} bytes, more than the {limit} allowed", meta.size));
        }
        read_blob(&self.storage, &meta).await.map_err(|e| e.to_string())
    }

    /// A stored shard, checked: every column one value per row.
    pub async fn load_shard(&self, id: ContentId) -> Result<Shard, String> {
        let shard: Shard = self.load(id).await?;
        shard.validate().map_err(|e| format!("{id}: {e}"))?;
        Ok(shard)
    }

    /// A stored fitted pipeline, checked: indices within its columns and
    /// widths within bounds.
    pub async fn load_pipeline(&self, id: ContentId) -> Result<FittedPipeline, String> {
        let pipeline: FittedPipeline = self.load(id).await?;
        pipeline.validate().map_err(|e| format!("pipeline {id}: {e}"))?;
        Ok(pipeline)
    }

    /// Encodes and stores a value as a blob of `kind`, and sends it to its homes.
    pub async fn save<T: Serialize>(&self, value: &T, kind: BlobKind) -> Result<ContentId, String> {
        let bytes = codec::encode(value).map_err(|e| e.to_string())?;
        self.save_bytes(&bytes, kind).await
    }

    /// Encodes and stores a value, and pins it mesh-wide. The parts of
    /// models and jobs (weights, pipelines, trees) are named by no ref of
    /// their own; without the pin, GC would collect them once they are
    /// older than its grace period.
    pub async fn save_kept<T: Serialize>(&self, value: &T, kind: BlobKind) -> Result<ContentId, String> {
        let id = self.save(value, kind).await?;
        self.write_ref(pin_name(&id), Some(id)).await.map_err(|e| format!("cannot pin {id}: {e}"))?;
        Ok(id)
    }

    /// Stores a checkpoint (a job's record, a study's journal) and waits,
    /// up to [`CHECKPOINT_HOLD_WAIT`], until another node holds it: a
    /// driver stalled or killed right after a checkpoint must not leave the
    /// ref naming a record only its own disk has, which the next driver
    /// cannot read (and which fencing then reads as the newest record).
    pub async fn save_checkpoint<T: Serialize>(&self, value: &T) -> Result<ContentId, String> {
        let id = self.save(value, BlobKind::Checkpoint).await?;
        let local = self.net.local_peer_id();
        let others: Vec<PeerId> =
            homes(&id, &self.placement_view().await, self.ref_copies).into_iter().filter(|p| *p != local).collect();
        let started = tokio::time::Instant::now();
        let deadline = started + CHECKPOINT_HOLD_WAIT;
        'homes: for home in others {
            // The home answers once its fetch is over: no polling.
            let asked = self.net.request_within(home, Request::HoldNow { id }, CHECKPOINT_HOLD_WAIT).await;
            if matches!(asked, Ok(Response::Has(true))) {
                debug!(%id, %home, waited = ?started.elapsed(), "checkpoint held by a second node");
                break 'homes;
            }
            // A home built before `HoldNow` (or one that could not fetch in
            // time): ask as before until it holds the record.
            while tokio::time::Instant::now() < deadline {
                let asked = self.net.request_within(home, Request::Replicate { id }, CHECKPOINT_HOLD_WAIT).await;
                if matches!(asked, Ok(Response::Has(true))) {
                    debug!(%id, %home, waited = ?started.elapsed(), "checkpoint held by a second node (polled)");
                    break 'homes;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        Ok(id)
    }

    /// Stores bytes as a blob of `kind`, and sends it to its homes.
    pub async fn save_bytes(&self, bytes: &[u8], kind: BlobKind) -> Result<ContentId, String> {
        let meta = write_blob(&self.storage, bytes, kind).await.map_err(|e| e.to_string())?;
        self.replication.do_send(PlaceNew(meta.id));
        Ok(meta.id)
    }

    /// Writes a ref on this node and gossips it; refused here, by name, when
    /// peers would refuse it ([`check_writer`]).
    pub async fn write_ref(&self, name: String, target: Option<ContentId>) -> Result<RefEntry, StoreError> {
        check_writer(&name, target, &self.peer_id, &self.ref_admins).map_err(StoreError::Forbidden)?;
        let entry = self.storage.set_ref(name.clone(), target, self.peer_id.clone()).await?;
        let held = crate::shared_refs::spread(self, &name, &entry, self.ref_copies).await;
        if held < self.ref_copies {
            debug!(name, held, wanted = self.ref_copies, "a ref write is held by fewer nodes than asked");
        }
        if let Err(e) = self.net.publish_ref(RefUpdate { name, entry: entry.clone() }).await {
            warn!("ref not gossiped: {e}");
        }
        Ok(entry)
    }

    /// Merges a ref entry a peer sent (by gossip or in its ref list), once
    /// checked: a valid name, signed by its origin, and within the version
    /// and clock bounds. Returns whether the ref changed.
    pub async fn accept_ref(&self, name: &str, entry: RefEntry) -> Result<bool, AcceptRefError> {
        let refused = |reason: String| {
            self.metrics.ref_refused();
            AcceptRefError::Refused(reason)
        };
        let store = |e: StoreError| AcceptRefError::Store(e.to_string());
        validate_ref_name(name).map_err(refused)?;
        crate::net::identity::verify_ref_entry(name, &entry).map_err(refused)?;
        check_writer(name, entry.target, &entry.origin, &self.ref_admins).map_err(refused)?;
        let (version, clock) = self.storage.ref_bounds(name.to_owned()).await.map_err(store)?;
        entry.within_bounds(version, clock).map_err(refused)?;
        let changed = self.storage.merge_ref(name.to_owned(), entry).await.map_err(store)?;
        Ok(changed.is_some())
    }

    /// What a checkpoint ref names, decoded: its current target or, when
    /// that blob cannot be had (its writer died before it reached another
    /// node), the newest earlier target that can. Drivers checkpoint
    /// deterministic work, so resuming one step back redoes that step.
    /// `None` when the ref is deleted or unknown here and to the peers asked.
    pub async fn load_checkpoint<T: codec::Stored>(&self, name: &str) -> Result<Option<(ContentId, T)>, String> {
        let Some(record) = crate::shared_refs::find(self, name).await? else {
            return Ok(None);
        };
        if record.current().is_none_or(|c| c.target.is_none()) {
            return Ok(None);
        }
        let mut entries: Vec<&RefEntry> = record.history.iter().collect();
        entries.sort_by(|a, b| b.order_key().cmp(&a.order_key()));
        let mut newest_error = None;
        for target in entries.iter().filter_map(|e| e.target) {
            let loaded = self.load_bytes(target, codec::MAX_RECORD as u64).await;
            match loaded.and_then(|bytes| T::decode_stored(&bytes).map_err(|e| format!("{target}: {e}"))) {
                Ok(value) => {
                    if let Some(e) = &newest_error {
                        warn!(name, %target, "newest checkpoint unavailable ({e}); resuming from an earlier one");
                    }
                    return Ok(Some((target, value)));
                }
                Err(e) => {
                    newest_error.get_or_insert(e);
                }
            }
        }
        Err(newest_error.unwrap_or_else(|| format!("{name} names nothing loadable")))
    }

    /// The current target of a ref.
    pub async fn resolve(&self, name: &str) -> Result<Option<ContentId>, String> {
        Ok(self
            .storage
            .get_ref(name.to_owned())
            .await
            .map_err(|e| e.to_string())?
            .and_then(|r| r.current().and_then(|c| c.target)))
    }

    /// A dataset's manifest id and manifest.
    pub async fn dataset(&self, name: &str) -> Result<(ContentId, DatasetManifest), String> {
        let record = crate::shared_refs::find(self, &format!("{REF_PREFIX}{name}")).await?;
        let id = record
            .and_then(|r| r.current().and_then(|c| c.target))
            .ok_or_else(|| format!("no dataset named '{name}'"))?;
        let meta = self.ensure_local(id).await?;
        let manifest = read_manifest(&self.storage, &meta).await.map_err(|e| e.to_string())?;
        Ok((id, manifest))
    }

    pub async fn up_peers(&self) -> Vec<PeerId> {
        self.membership.send(GetUpPeers).await.unwrap_or_default()
    }

    /// The nodes placement ranks over: the peers up, and this node unless
    /// it is leaving.
    pub async fn placement_view(&self) -> Vec<PeerId> {
        let mut view = self.up_peers().await;
        if !self.leaving.is_set() {
            view.push(self.net.local_peer_id());
        }
        view
    }

    /// Peers that should hold `id`, most likely first (this node excluded).
    pub async fn likely_holders(&self, id: &ContentId) -> Vec<PeerId> {
        let local = self.net.local_peer_id();
        let mut view = self.up_peers().await;
        view.push(local);
        let mut ranked = homes(id, &view, view.len());
        ranked.retain(|p| *p != local);
        ranked
    }

    /// Computes something of shard `shard` where it lives: on `first` if
    /// given, by asking it with `request` and reading its answer with
    /// `answer`; else here with `local` if this node holds the shard and has
    /// a free compute slot; else by asking the other holders; else here once
    /// a slot frees. Returns who computed it.
    async fn where_held<T: Send + 'static>(
        &self,
        piece: ShardPiece<impl FnOnce(Shard) -> Result<T, String> + Send + 'static>,
        first: Option<PeerId>,
        answer: &impl Fn(Response) -> Option<T>,
    ) -> Result<(String, T), String> {
        let ShardPiece { shard, request, local } = piece;
        let mut failures = Vec::new();
        let ask = async |peer: PeerId, failures: &mut Vec<String>| {
            match self.net.request_within(peer, request.clone(), crate::net::client::WORK_TIMEOUT).await {
                Ok(Response::Error(e)) => failures.push(format!("{peer}: {e}")),
                Ok(response) => match answer(response) {
                    Some(value) => return Some((peer.to_string(), value)),
                    None => failures.push(format!("{peer}: unexpected answer")),
                },
                Err(e) => failures.push(e.to_string()),
            }
            None
        };
        if let Some(peer) = first
            && let Some(done) = ask(peer, &mut failures).await
        {
            return Ok(done);
        }
        let held = matches!(self.storage.meta(shard).await, Ok(Some(_)));
        if held && let Some(slot) = self.compute.try_reserve() {
            return self.compute_here(shard, Some(slot), local).await;
        }
        for peer in self.likely_holders(&shard).await {
            if Some(peer) != first
                && let Some(done) = ask(peer, &mut failures).await
            {
                return Ok(done);
            }
        }
        if held {
            // Every holder is busy or gone: wait for a slot here.
            return self.compute_here(shard, None, local).await;
        }
        Err(format!("no node could read shard {shard}: {}", failures.join("; ")))
    }

    /// Runs one piece of work per shard where the shards live and returns
    /// the results in shard order, each with who computed it. Each live
    /// node takes the next piece of a shard it holds whenever it has a free
    /// place ([`crate::shard_work`]); a piece its node could not compute
    /// goes on to the shard's other holders ([`Mesh::where_held`]).
    pub(crate) async fn per_shard<T: Send + 'static, L: FnOnce(Shard) -> Result<T, String> + Send + 'static>(
        &self,
        pieces: Vec<ShardPiece<L>>,
        answer: impl Fn(Response) -> Option<T>,
    ) -> Vec<Result<(String, T), String>> {
        use futures::StreamExt;
        let me = self.net.local_peer_id();
        let mut nodes = vec![me];
        nodes.extend(self.up_peers().await);
        let slots = self.slots_by_peer().await;
        let places = nodes
            .iter()
            .map(|node| match node == &me {
                true => self.compute.config().slots,
                false => slots.get(node).copied().unwrap_or(1) + crate::shard_work::QUEUED_AT_PEER,
            })
            .collect();
        let mut holders = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            let mut held_by = Vec::new();
            if matches!(self.storage.meta(piece.shard).await, Ok(Some(_))) {
                held_by.push(0);
            }
            for home in homes(&piece.shard, &nodes, self.ref_copies.max(1)) {
                if home != me {
                    held_by.extend(nodes.iter().position(|node| *node == home));
                }
            }
            holders.push(held_by);
        }
        let mut dealer = crate::shard_work::Dealer::new(holders, places);
        let mut waiting: Vec<Option<ShardPiece<L>>> = pieces.into_iter().map(Some).collect();
        let mut results: Vec<Option<Result<(String, T), String>>> = waiting.iter().map(|_| None).collect();
        let mut running = futures::stream::FuturesUnordered::new();
        loop {
            while let Some((index, node)) = dealer.deal() {
                let piece = waiting[index].take().expect("the dealer deals each piece once");
                let first = (node != 0).then(|| nodes[node]);
                let answer = &answer;
                running.push(async move {
                    let (shard, started) = (piece.shard, std::time::Instant::now());
                    let result = self.where_held(piece, first, answer).await;
                    let by = result.as_ref().map_or("nobody", |(peer, _)| peer.as_str());
                    debug!(%shard, by, ms = started.elapsed().as_millis() as u64, "shard work done");
                    (index, node, result)
                });
            }
            match running.next().await {
                Some((index, node, result)) => {
                    dealer.finished(node);
                    results[index] = Some(result);
                }
                None => break,
            }
        }
        results.into_iter().map(|result| result.expect("every piece is dealt and run")).collect()
    }

    /// Each peer's compute slots, from its advert (at most
    /// [`crate::compute::MAX_SLOTS`]: a peer claiming a million would be
    /// dealt every piece and handed every task at once).
    pub(crate) async fn slots_by_peer(&self) -> std::collections::HashMap<PeerId, usize> {
        let views = self.membership.send(crate::membership::GetPeers).await.unwrap_or_default();
        views
            .iter()
            .filter_map(|view| {
                let id = view.peer_id.parse::<PeerId>().ok()?;
                let queues = &view.load.as_ref()?.queues;
                let slots = queues.iter().find(|q| q.name == crate::compute::SLOTS_QUEUE)?.depth;
                Some((id, (slots as usize).clamp(1, crate::compute::MAX_SLOTS)))
            })
            .collect()
    }

    /// Runs `local` on shard `shard` here, on `slot` or the next free one.
    async fn compute_here<T: Send + 'static>(
        &self,
        shard: ContentId,
        slot: Option<crate::compute::Reserved>,
        local: impl FnOnce(Shard) -> Result<T, String> + Send + 'static,
    ) -> Result<(String, T), String> {
        let meta = self.storage.meta(shard).await.map_err(|e| e.to_string())?.ok_or("the shard went away")?;
        let rows = read_shard(&self.storage, &meta).await.map_err(|e| e.to_string())?;
        let kind = crate::compute::Work::Statistics;
        let value = match slot {
            Some(slot) => self.compute.run_reserved(kind, slot, move || local(rows)).await?,
            None => self.compute.run_waiting(kind, move || local(rows)).await?,
        };
        Ok((self.peer_id.clone(), value))
    }

    /// Fits a pipeline from statistics computed where each shard lives (and,
    /// for principal components, a second pass for the moments of the
    /// fitted numeric features). Returns it with the merged statistics and
    /// the peer that summarized each shard.
    pub async fn fit_pipeline(
        &self,
        manifest: &DatasetManifest,
        spec: &PipelineSpec,
    ) -> Result<(FittedPipeline, DataSummary, Vec<String>), FitFailure> {
        let pieces = manifest.shards.iter().map(|shard| {
            let (schema, spec) = (manifest.schema.clone(), spec.clone());
            let request = Request::SummarizeShard { shard: shard.id, schema: schema.clone(), spec: spec.clone() };
            ShardPiece { shard: shard.id, request, local: move |rows: Shard| summarize_rows(&rows, &schema, &spec) }
        });
        let summaries =
            self.per_shard(pieces.collect(), |r| if let Response::Summary(s) = r { Some(s) } else { None }).await;
        let mut merged = DataSummary::default();
        let mut summarized_by = Vec::new();
        for result in summaries {
            let (peer, summary) = result.map_err(FitFailure::Unavailable)?;
            mass_kernels::features::merge(&mut merged, &summary);
            summarized_by.push(peer);
        }
        let mut pipeline = mass_kernels::features::fit(spec, &manifest.schema, &merged)
            .map_err(|e| FitFailure::Invalid(e.to_string()))?;
        if let Some(components) = spec.pca {
            let features = mass_kernels::features::derived::numeric_features(&pipeline);
            let pieces = manifest.shards.iter().map(|shard| {
                let (base, wanted) = (pipeline.clone(), features.clone());
                let request = Request::ShardMoments {
                    shard: shard.id,
                    pipeline: Box::new(base.clone()),
                    features: wanted.clone(),
                };
                ShardPiece { shard: shard.id, request, local: move |rows: Shard| moments_of(&rows, &base, &wanted) }
            });
            let parts =
                self.per_shard(pieces.collect(), |r| if let Response::Moments(m) = r { Some(m) } else { None }).await;
            let mut moments = Moments::default();
            for result in parts {
                let (_, part) = result.map_err(FitFailure::Unavailable)?;
                mass_kernels::features::derived::merge_moments(&mut moments, &part);
            }
            mass_kernels::features::fit::fit_projection(&mut pipeline, &moments, components)
                .map_err(|e| FitFailure::Invalid(e.to_string()))?;
        }
        Ok((pipeline, merged, summarized_by))
    }
}

/// Statistics of a shard's training rows (checked against the schema first).
pub fn summarize_rows(rows: &Shard, schema: &Schema, spec: &PipelineSpec) -> Result<DataSummary, String> {
    // The schema comes from a peer's request.
    schema.validate().map_err(|e| e.to_string())?;
    if rows.columns.len() != schema.columns.len() {
        return Err(format!(
            "the shard has {} columns but the schema has {}",
            rows.columns.len(),
            schema.columns.len()
        ));
    }
    Ok(mass_kernels::features::summarize(rows, schema, spec))
}

/// Moments of `features` of a shard's training rows through `pipeline`.
pub fn moments_of(rows: &Shard, pipeline: &FittedPipeline, features: &[usize]) -> Result<Moments, String> {
    // The pipeline comes from a peer's request: checked before it sizes a
    // matrix or indexes the shard.
    pipeline.validate().map_err(|e| format!("pipeline: {e}"))?;
    let x = mass_kernels::features::transform(pipeline, rows).map_err(|e| e.to_string())?;
    if features.iter().any(|f| *f >= x.ncols()) {
        return Err("a feature asked for is outside the pipeline's output".into());
    }
    let train: Vec<usize> = (0..rows.rows()).filter(|&r| rows.splits[r] == Split::Train).collect();
    let x = x.select(ndarray::Axis(0), &train);
    Ok(mass_kernels::features::derived::moments(x.view(), features))
}

/// A piece of per-shard work: what to compute on shard `shard`, as a
/// request to a peer that holds it and as `local`, run here on its rows.
pub(crate) struct ShardPiece<L> {
    pub shard: ContentId,
    pub request: Request,
    pub local: L,
}

/// Why a pipeline could not be fitted.
#[derive(Debug, Clone)]
pub enum FitFailure {
    /// Some shard could not be summarized anywhere.
    Unavailable(String),
    /// The data cannot fit this spec.
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use mass_protocol::{
        dataset::ShardColumn,
        features::{ColumnTransform, Cross},
        jobs::Task,
    };

    use super::*;

    /// Fuzz regression: `ShardMoments` carries a peer's pipeline; one with a
    /// hashed cross of 2^32 buckets had the node allocate rows × 2^32
    /// floats before reading a row.
    #[test]
    fn moments_refuse_a_pipeline_too_wide_to_hold() {
        let shard = Shard {
            first_row: 0,
            columns: vec![ShardColumn::Numeric(vec![1.0, 2.0]), ShardColumn::Numeric(vec![0.0, 1.0])],
            splits: vec![Split::Train, Split::Train],
        };
        let pipeline = FittedPipeline {
            spec: PipelineSpec::default(),
            columns: vec!["x".into(), "label".into()],
            transforms: vec![ColumnTransform::Numeric { fill: 0.0, offset: 0.0, scale: 1.0 }, ColumnTransform::Drop],
            label: 1,
            classes: vec![],
            features: 1,
            task: Task::Regression,
            target: None,
            crosses: vec![],
            projection: None,
        };
        assert!(moments_of(&shard, &pipeline, &[0]).is_ok());
        let wide = FittedPipeline { crosses: vec![Cross::Hashed { a: 0, b: 0, buckets: u32::MAX }], ..pipeline };
        let err = moments_of(&shard, &wide, &[0]).unwrap_err();
        assert!(err.contains("more than the 1048576 allowed"), "{err}");
    }
}

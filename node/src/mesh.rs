//! What a piece of work running on this node can reach: its storage, its
//! peers, and the mesh-wide names. Cheap to clone into tasks.

use actix::Addr;
use libp2p::PeerId;
use mass_protocol::{
    ContentId, codec,
    dataset::DatasetManifest,
    features::{DataSummary, FittedPipeline, PipelineSpec},
    rpc::{RefUpdate, Request, Response},
    storage::{BlobMeta, RefEntry},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::warn;

use crate::{
    datasets::{
        REF_PREFIX,
        service::{read_blob, read_manifest, summarize_shard, write_blob},
    },
    membership::{GetUpPeers, MembershipActor},
    net::NetClient,
    replication::{FetchBlob, PlaceNew, ReplicationActor, homes},
    storage::{Storage, StoreError, store::pin_name},
};

#[derive(Clone)]
pub struct Mesh {
    pub peer_id: String,
    pub storage: Storage,
    pub replication: Addr<ReplicationActor>,
    pub membership: Addr<MembershipActor>,
    pub net: NetClient,
    pub progress: crate::jobs::progress::ProgressBoard,
    pub boost: crate::jobs::boost::BoostSessions,
    pub serving: crate::serving::Serving,
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

    /// Encodes and stores a value as a blob, and sends it to its homes.
    pub async fn save<T: Serialize>(&self, value: &T) -> Result<ContentId, String> {
        let bytes = codec::encode(value).map_err(|e| e.to_string())?;
        self.save_bytes(&bytes).await
    }

    /// Encodes and stores a value, and pins it mesh-wide. The parts of
    /// models and jobs (weights, pipelines, trees) are named by no ref of
    /// their own; without the pin, GC would collect them once they are
    /// older than its grace period.
    pub async fn save_kept<T: Serialize>(&self, value: &T) -> Result<ContentId, String> {
        let id = self.save(value).await?;
        self.write_ref(pin_name(&id), Some(id)).await.map_err(|e| format!("cannot pin {id}: {e}"))?;
        Ok(id)
    }

    /// Stores bytes as a blob, and sends it to its homes.
    pub async fn save_bytes(&self, bytes: &[u8]) -> Result<ContentId, String> {
        let meta = write_blob(&self.storage, bytes).await.map_err(|e| e.to_string())?;
        self.replication.do_send(PlaceNew(meta.id));
        Ok(meta.id)
    }

    /// Writes a ref on this node and gossips it.
    pub async fn write_ref(&self, name: String, target: Option<ContentId>) -> Result<RefEntry, StoreError> {
        let entry = self.storage.set_ref(name.clone(), target, self.peer_id.clone()).await?;
        if let Err(e) = self.net.publish_ref(RefUpdate { name, entry: entry.clone() }).await {
            warn!("ref not gossiped: {e}");
        }
        Ok(entry)
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
        let id =
            self.resolve(&format!("{REF_PREFIX}{name}")).await?.ok_or_else(|| format!("no dataset named '{name}'"))?;
        let meta = self.ensure_local(id).await?;
        let manifest = read_manifest(&self.storage, &meta).await.map_err(|e| e.to_string())?;
        Ok((id, manifest))
    }

    pub async fn up_peers(&self) -> Vec<PeerId> {
        self.membership.send(GetUpPeers).await.unwrap_or_default()
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

    /// Summarizes one shard here if this node holds it, else on a node that does.
    async fn summarize(
        &self,
        manifest: &DatasetManifest,
        shard: ContentId,
        spec: &PipelineSpec,
    ) -> Result<(String, DataSummary), String> {
        if let Ok(Some(meta)) = self.storage.meta(shard).await {
            let summary = summarize_shard(&self.storage, &meta, manifest.schema.clone(), spec.clone())
                .await
                .map_err(|e| e.to_string())?;
            return Ok((self.peer_id.clone(), summary));
        }
        let mut failures = Vec::new();
        for peer in self.likely_holders(&shard).await {
            let request = Request::SummarizeShard { shard, schema: manifest.schema.clone(), spec: spec.clone() };
            match self.net.request(peer, request).await {
                Ok(Response::Summary(summary)) => return Ok((peer.to_string(), summary)),
                Ok(Response::Error(e)) => failures.push(format!("{peer}: {e}")),
                Ok(_) => failures.push(format!("{peer}: unexpected answer")),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(format!("no node could summarize shard {shard}: {}", failures.join("; ")))
    }

    /// Fits a pipeline from statistics computed where each shard lives.
    /// Returns it with the merged statistics and the peer that summarized
    /// each shard.
    pub async fn fit_pipeline(
        &self,
        manifest: &DatasetManifest,
        spec: &PipelineSpec,
    ) -> Result<(FittedPipeline, DataSummary, Vec<String>), FitFailure> {
        let jobs = manifest.shards.iter().map(|shard| self.summarize(manifest, shard.id, spec));
        let mut merged = DataSummary::default();
        let mut summarized_by = Vec::new();
        for result in futures::future::join_all(jobs).await {
            let (peer, summary) = result.map_err(FitFailure::Unavailable)?;
            mass_kernels::features::merge(&mut merged, &summary);
            summarized_by.push(peer);
        }
        let pipeline = mass_kernels::features::fit(spec, &manifest.schema, &merged)
            .map_err(|e| FitFailure::Invalid(e.to_string()))?;
        Ok((pipeline, merged, summarized_by))
    }
}

/// Why a pipeline could not be fitted.
#[derive(Debug, Clone)]
pub enum FitFailure {
    /// Some shard could not be summarized anywhere.
    Unavailable(String),
    /// The data cannot fit this spec.
    Invalid(String),
}

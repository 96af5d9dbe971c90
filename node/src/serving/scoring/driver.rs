//! Driving one scoring job from its record to the result: scores the
//! shards its record does not list, where they live, a few at once;
//! checkpoints the record every few seconds; puts the parts together.

use futures::StreamExt;
use mass_protocol::{
    ContentId,
    dataset::DatasetManifest,
    serving::{ScoredShard, ScoringRecord, ScoringState},
    storage::BlobKind,
};
use tracing::{info, warn};

use super::{checkpoint, plan, record};
use crate::{
    jobs::checkpoint_due,
    mesh::Mesh,
    serving::batch::{self, ShardScores},
};

/// Drives scoring job `id` until it is over; `Err` (a drive stopped short,
/// counted in the record) has the watcher retry.
pub async fn drive(mesh: Mesh, id: ContentId) -> Result<(), String> {
    let mut record = record(&mesh, id).await?.ok_or_else(|| format!("no record for scoring job {id}"))?;
    if record.state.is_over() {
        return Ok(());
    }
    if record.drivers.last() != Some(&mesh.peer_id) {
        record.drivers.push(mesh.peer_id.clone());
        checkpoint(&mesh, &record).await?;
        let (scored, shards) = plan::progress(&record);
        info!(%id, scored, shards, "driving scoring job");
    }
    match score(&mesh, &mut record).await {
        Ok(()) => Ok(()),
        Err(reason) => {
            warn!(%id, "scoring stopped short: {reason}");
            plan::stopped_short(&mut record, &reason);
            checkpoint(&mesh, &record).await?;
            Err(reason)
        }
    }
}

async fn score(mesh: &Mesh, record: &mut ScoringRecord) -> Result<(), String> {
    let data: DatasetManifest = mesh.load(record.spec.dataset_manifest).await?;
    if let Err(reason) = plan::check(record, record.id, data.shards.len()) {
        record.state = ScoringState::Failed(reason);
        return checkpoint(mesh, record).await;
    }
    let (manifest, extend) = (record.spec.manifest, record.spec.into.is_some());
    let mut scoring = futures::stream::iter(plan::left(record))
        .map(|i| {
            let shard = data.shards[i].id;
            async move { (i, score_shard(mesh, manifest, shard, extend).await) }
        })
        .buffer_unordered(mesh.serving.config.scoring_parallel);
    let mut checkpointed = std::time::Instant::now();
    let mut failure = None;
    while let Some((i, result)) = scoring.next().await {
        match result {
            Ok(part) => plan::scored(record, i, part)?,
            Err(e) => {
                failure.get_or_insert(format!("shard {i}: {e}"));
            }
        }
        if checkpoint_due(checkpointed.elapsed(), false) {
            checkpoint(mesh, record).await?;
            checkpointed = std::time::Instant::now();
        }
    }
    if let Some(reason) = failure {
        return Err(reason);
    }
    let (mut parts, mut peers) = (Vec::new(), Vec::new());
    for part in record.shards.iter().flatten() {
        parts.push(mesh.load::<ShardScores>(part.blob).await?);
        peers.push(part.peer.clone());
    }
    let result = batch::finish(mesh, &record.spec, &data, parts, peers).await.map_err(|e| e.to_string())?;
    info!(id = %record.id, blob = %result.blob, "scoring job completed");
    (record.result, record.state) = (Some(result), ScoringState::Completed);
    checkpoint(mesh, record).await
}

/// Scores one shard where it lives and stores its scores (kept: the job's
/// record names them until it is over, and they are its sharded result).
async fn score_shard(mesh: &Mesh, manifest: ContentId, shard: ContentId, extend: bool) -> Result<ScoredShard, String> {
    let (peer, scores) = batch::shard_somewhere(mesh, manifest, shard, extend).await?;
    let blob = mesh.save_kept(&scores, BlobKind::Prediction).await?;
    Ok(ScoredShard { blob, peer })
}

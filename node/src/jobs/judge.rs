//! Judging a model where its rows live: each shard's holder tallies the
//! model on its own rows ([`evaluate::shard_evaluation`]) and the driver
//! adds the tallies, in shard order, so no node loads the whole split.

use std::sync::Arc;

use mass_kernels::models::{Member, Mlp};
use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Shard},
    evaluation::{EvaluateShard, EvaluationRows, ShardEvaluation},
    features::FittedPipeline,
    jobs::{Combine, Task},
    rpc::{Request, Response},
};

use super::evaluate;
use crate::mesh::{Mesh, ShardPiece};

/// A model as its blobs name it, with its parts loaded here.
pub struct Judged {
    pub pipeline_id: ContentId,
    pub pipeline: Arc<FittedPipeline>,
    pub member_ids: Vec<ContentId>,
    pub members: Arc<Vec<Member>>,
    pub meta_id: Option<ContentId>,
    pub meta: Arc<Option<Mlp>>,
    pub combine: Combine,
}

/// The model's tallies over every shard of `manifest` (`rows` of each),
/// each shard judged by a node that holds it (this one when it does and has
/// room, or when no holder answers). Fails, naming the shard, when no node
/// can read one.
pub async fn across_shards(
    mesh: &Mesh,
    manifest: &DatasetManifest,
    model: &Judged,
    rows: EvaluationRows,
    report: bool,
) -> Result<ShardEvaluation, String> {
    let classes = match model.pipeline.task {
        Task::Classification => model.pipeline.classes.len(),
        Task::Regression => 0,
    };
    let count = model.members.len();
    let pieces = manifest.shards.iter().map(|info| {
        let request = Request::EvaluateShard(Box::new(EvaluateShard {
            shard: info.id,
            pipeline: model.pipeline_id,
            members: model.member_ids.clone(),
            meta: model.meta_id,
            combine: model.combine.clone(),
            rows,
            report,
        }));
        let (pipeline, members, meta, combine) =
            (model.pipeline.clone(), model.members.clone(), model.meta.clone(), model.combine.clone());
        let metrics = mesh.metrics.clone();
        let local = move |shard: Shard| {
            metrics.shard_judged();
            evaluate::shard_evaluation(&pipeline, &members, &combine, meta.as_ref().as_ref(), &shard, rows, report)
        };
        ShardPiece { shard: info.id, request, local }
    });
    let judged = mesh
        .per_shard(pieces.collect(), move |response| match response {
            Response::Evaluated(answer) if answer.check(classes, count).is_ok() => Some(*answer),
            _ => None,
        })
        .await;
    let parts = manifest
        .shards
        .iter()
        .zip(judged)
        .map(|(info, result)| result.map(|(_, part)| part).map_err(|e| format!("judging shard {}: {e}", info.id)))
        .collect::<Result<Vec<_>, _>>()?;
    ShardEvaluation::sum(parts)?.ok_or_else(|| "the dataset has no shards to evaluate on".into())
}

/// The parts of the model a peer asks this node to judge (from this node
/// or the mesh).
pub async fn parts(mesh: &Mesh, ask: &EvaluateShard) -> Result<(FittedPipeline, Vec<Member>, Option<Mlp>), String> {
    ask.check()?;
    let pipeline = mesh.load_pipeline(ask.pipeline).await?;
    let (members, meta) = members(mesh, &ask.members, ask.meta).await?;
    Ok((pipeline, members, meta))
}

/// A model's members and meta-model (a network, when there is one) from
/// their blobs.
pub async fn members(
    mesh: &Mesh,
    ids: &[ContentId],
    meta: Option<ContentId>,
) -> Result<(Vec<Member>, Option<Mlp>), String> {
    let mut members = Vec::with_capacity(ids.len());
    for id in ids {
        members.push(mesh.load::<Member>(*id).await?);
    }
    let meta = match meta {
        Some(id) => match mesh.load::<Member>(id).await? {
            Member::Mlp(meta) => Some(meta),
            other => return Err(format!("meta-model {id} is {}, not a network", other.kind())),
        },
        None => None,
    };
    Ok((members, meta))
}

//! What arrives over the network: request-response messages (decoded with
//! the RPC bound) and gossip (with the gossip bound).

use mass_kernels::features::{derived, fit, fit::fit_projection, merge};
use mass_protocol::{
    Advert, codec,
    features::{DataSummary, Moments},
    jobs::TrainingProgress,
    rpc::{RefUpdate, Request, Response},
    storage::{RefEntry, RefRecord, validate_ref_name},
};

use super::{boost::boost_reply, boost::boost_request, fixture::fixture, serve::predict};
use crate::{
    jobs::{evaluate, learners, progress::ProgressBoard},
    mesh::{moments_of, summarize_rows},
    serving::batch::{ShardScores, test_metrics},
};

/// A request from a peer, answered as `ServiceActor` answers it, on the
/// fixture's shard.
pub fn rpc_request(data: &[u8]) {
    let Ok(request) = codec::decode::<Request>(data, codec::MAX_RPC_MESSAGE) else { return };
    let f = fixture();
    match request {
        Request::SummarizeShard { schema, spec, .. } => {
            let _ = summarize_rows(&f.shards[0], &schema, &spec);
        }
        Request::ShardMoments { pipeline, features, .. } => {
            let _ = moments_of(&f.shards[0], &pipeline, &features);
        }
        Request::Predict(call) => predict(&f.model, &call.rows, call.allow_missing),
        Request::TrainTask(work) => {
            if work.spec.validate().is_ok() {
                let _ = learners::estimate_bytes(&work.spec, f.manifest.rows, f.pipeline.features as u64, 3);
            }
        }
        Request::Boost(bytes) => boost_request(&bytes),
        Request::EvaluateShard(ask) => {
            // The holder runs its own copies of the model the ids name.
            let (shard, rows) = (&f.shards[0], ask.rows);
            let _ = evaluate::shard_evaluation(&f.pipeline, &f.members, &ask.combine, None, shard, rows, ask.report);
        }
        Request::HoldRef { name, entry } => accept_ref(&mut RefRecord { name, history: vec![] }, entry),
        Request::GetRef { name } => {
            let _ = validate_ref_name(&name);
        }
        Request::GetAdvert
        | Request::GetBlobMeta { .. }
        | Request::GetBlobKind { .. }
        | Request::GetChunk { .. }
        | Request::Replicate { .. }
        | Request::HoldNow { .. }
        | Request::HasBlob { .. }
        | Request::ListRefs
        | Request::PredictShard { .. } => {}
    }
}

/// A peer's answer, used as the node uses each kind of answer.
pub fn rpc_response(data: &[u8]) {
    let Ok(response) = codec::decode::<Response>(data, codec::MAX_RPC_MESSAGE) else { return };
    let f = fixture();
    match response {
        Response::Advert(advert) => on_advert(*advert),
        Response::BlobMeta(Some(meta)) => {
            // Replication trusts no chunk before the layout hashes to the id.
            if meta.is_consistent() {
                for index in 0..meta.chunks.len().min(4) {
                    meta.verify_chunk(index, &vec![0; meta.chunk_len(index)]);
                }
            }
        }
        Response::Refs(records) => {
            for record in records {
                let mut local = RefRecord { name: record.name.clone(), history: vec![] };
                for entry in record.history {
                    accept_ref(&mut local, entry);
                }
            }
        }
        Response::Summary(summary) => {
            // `Mesh::fit_pipeline` merges every holder's summary, then fits.
            for (first, second) in [(&summary, &f.summary), (&f.summary, &summary)] {
                let mut merged = DataSummary::default();
                merge(&mut merged, first);
                merge(&mut merged, second);
                let _ = fit::fit(&f.spec, f.schema(), &merged);
            }
        }
        Response::Moments(part) => {
            let mut moments = Moments::default();
            derived::merge_moments(&mut moments, &part);
            let mut pipeline = f.pipeline.clone();
            let _ = fit_projection(&mut pipeline, &moments, 2);
        }
        Response::Predicted(prediction) => {
            let _ = serde_json::to_vec(&prediction);
        }
        Response::ShardPredicted { csv, test, values, .. } => {
            let scores = ShardScores { csv, classes: test, values, extended: None };
            let _ = test_metrics(&scores, f.model_manifest.classes.len());
        }
        Response::Boost(bytes) => boost_reply(&bytes),
        Response::Evaluated(answer) => {
            // The driver checks a holder's tallies, then adds them to its own.
            let classes = f.pipeline.classes.len();
            if answer.check(classes, answer.members.len()).is_ok() {
                let mut merged = (*answer).clone();
                let _ = merged.merge(&answer).map(|_| merged.evaluation("test"));
            }
        }
        Response::BlobMeta(None)
        | Response::BlobKind(_)
        | Response::Chunk(_)
        | Response::Error(_)
        | Response::Has(_)
        | Response::Trained { .. } => {}
    }
}

/// A gossiped advert.
pub fn advert(data: &[u8]) {
    if let Ok(advert) = codec::decode::<Advert>(data, codec::MAX_GOSSIP_MESSAGE) {
        on_advert(advert);
    }
}

/// What the network task, the membership table and job placement do with
/// an advert.
fn on_advert(advert: Advert) {
    let _: Vec<libp2p::Multiaddr> = advert.listen_addrs.iter().filter_map(|a| a.parse().ok()).collect();
    let _ = advert.load.total_queued();
    let hardware = &advert.hardware;
    let capacity = if hardware.capacity_gflops > 0.0 { hardware.capacity_gflops } else { hardware.gemm_gflops };
    let depth = advert.load.queues.first().map_or(0, |q| q.depth);
    let workers = [
        crate::placement::Worker { id: 0u8, capacity: f64::from(capacity), load: f64::from(depth) },
        crate::placement::Worker { id: 1u8, capacity: 1.0, load: 0.0 },
    ];
    let tasks =
        [crate::placement::Task { cost: 2.0, homes: vec![0u8] }, crate::placement::Task { cost: 1.0, homes: vec![1] }];
    let _ = crate::placement::plan_by_capacity(&tasks, &workers, false);
    let mut table = crate::membership::table::PeerTable::new(crate::membership::Config::DEFAULT);
    table.observe_advert(0u8, Box::new(advert), 0);
    let _ = table.tick(60_000);
}

/// A gossiped ref update.
pub fn ref_update(data: &[u8]) {
    let Ok(update) = codec::decode::<RefUpdate>(data, codec::MAX_GOSSIP_MESSAGE) else { return };
    let mut local = RefRecord { name: update.name, history: vec![] };
    accept_ref(&mut local, update.entry);
}

/// `Mesh::accept_ref` without storage: the checks, then the merge into
/// the record held (empty, or with one entry of the same name).
pub(super) fn accept_ref(local: &mut RefRecord, entry: RefEntry) {
    // A node refuses entries that fail these two checks. Fuzzed entries
    // are never signed, so the bounds and the merge run either way.
    let _ = validate_ref_name(&local.name);
    let _ = crate::net::identity::verify_ref_entry(&local.name, &entry);
    let known = local.current().map_or(0, |c| c.version);
    let clock = local.current().map_or(0, |c| c.clock);
    if entry.within_bounds(known, clock).is_ok() {
        let before = local.history.clone();
        let key = |e: &RefEntry| (e.version, e.clock, e.origin.clone());
        let old = local.current().map(key);
        local.merge(entry.clone());
        // Stored refs are never lost: merging keeps every entry held, moves
        // the winner only forward, and is idempotent (so gossip converges).
        assert!(!local.merge(entry), "merging an entry twice changed ref '{}'", local.name);
        assert!(before.iter().all(|e| local.history.contains(e)), "a merge dropped an entry of '{}'", local.name);
        let new = local.current().map(key);
        assert!(new >= old, "a merge moved ref '{}' back", local.name);
    }
}

/// Gossiped training progress, recorded and shown.
pub fn progress(data: &[u8]) {
    let Ok(progress) = codec::decode::<TrainingProgress>(data, codec::MAX_GOSSIP_MESSAGE) else { return };
    let board = ProgressBoard::default();
    let job = progress.job;
    board.record("peer".into(), progress);
    let _ = serde_json::to_vec(&board.of(&job));
}

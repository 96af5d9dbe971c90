//! Fuzz targets: one function per decoder of outside input. Each decodes
//! bytes as the node does and, when they decode, does with the value what
//! the node does next that could panic (checks, then the pure work that
//! reads it: statistics, transforms, predictions, tree growing), against
//! the small dataset and model of [`fixture`]. A target returns normally on
//! any input; a panic (or an abort, or a runaway allocation) is a bug.
//!
//! Run under cargo-fuzz from `fuzz/` (see `fuzz/README.md`), and on stable
//! as a bounded randomized run over the seed corpus in `fuzz/corpus/`
//! ([`tests`]), which CI runs.
//!
//! Built for the node's tests and with the `fuzzing` feature only.

pub mod fixture;
#[cfg(test)]
mod tests;

use mass_kernels::{
    features::{derived, fit, fit::fit_projection, merge},
    models::{
        Member,
        ensemble::{argmax_rows, average},
        gbdt::{
            Gbdt,
            histogram::BinSum,
            split::{Candidate, better},
            tree::{Grower, Tree},
        },
    },
};
use mass_protocol::{
    Advert, ContentId, codec,
    dataset::{DatasetManifest, Schema, Shard},
    features::{DataSummary, FittedPipeline, Moments, PipelineSpec},
    jobs::{JobRecord, Learner, ModelManifest, Task, TrainingProgress, resolve_task},
    rpc::{RefUpdate, Request, Response},
    serving::{Cell, Predicted, Row},
    storage::{RefEntry, RefRecord, validate_ref_name},
};

use crate::{
    datasets::{ingest, npy::ingest_npy},
    jobs::{
        boost::{
            messages::{self, BoostReply, BoostRequest, MergeItem, SliceItem},
            session::{Owned, Plan, Rows},
        },
        driver::pipeline_spec,
        learners,
        progress::ProgressBoard,
        task::rows_where,
    },
    mesh::{moments_of, summarize_rows},
    serving::{
        batch::{ShardScores, score_shard, test_metrics},
        model::LoadedModel,
        rows::{concat, to_shard},
    },
};
use fixture::fixture;

/// A fuzz target: any bytes in, no panic out.
pub type Target = fn(&[u8]);

/// Every target by name: the names of `fuzz/fuzz_targets/*.rs` and of the
/// corpus folders.
pub const TARGETS: &[(&str, Target)] = &[
    ("rpc_request", rpc_request),
    ("rpc_response", rpc_response),
    ("advert", advert),
    ("ref_update", ref_update),
    ("progress", progress),
    ("boost_request", boost_request),
    ("boost_reply", boost_reply),
    ("job_record", job_record),
    ("dataset_manifest", dataset_manifest),
    ("model_manifest", model_manifest),
    ("pipeline", pipeline),
    ("shard", shard),
    ("member", member),
    ("boost_setup", boost_setup),
    ("trees", trees),
    ("ref_record", ref_record),
    ("csv", csv),
    ("npy", npy),
    ("predict_json", predict_json),
];

/// Stored records are decoded with the record bound, as `Mesh::load` does.
fn record<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    codec::decode(data, codec::MAX_RECORD).ok()
}

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
        Request::GetAdvert
        | Request::GetBlobMeta { .. }
        | Request::GetChunk { .. }
        | Request::Replicate { .. }
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
        Response::BlobMeta(None)
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
    let tasks = [crate::placement::Task { cost: 2.0, homes: vec![0u8] }, crate::placement::Task { cost: 1.0, homes: vec![1] }];
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
fn accept_ref(local: &mut RefRecord, entry: RefEntry) {
    // A node refuses entries that fail these two checks. Fuzzed entries
    // are never signed, so the bounds and the merge run either way.
    let _ = validate_ref_name(&local.name);
    let _ = crate::net::identity::verify_ref_entry(&local.name, &entry);
    let known = local.current().map_or(0, |c| c.version);
    let clock = local.current().map_or(0, |c| c.clock);
    if entry.within_bounds(known, clock).is_ok() {
        local.merge(entry.clone());
        local.merge(entry);
        let _ = local.current().map(|c| c.target);
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

/// A boosted job's request to this node as a worker or owner, answered as
/// `sessions::handle` answers it, on a session holding the fixture's rows
/// with round 0 started.
pub fn boost_request(data: &[u8]) {
    let Ok(request) = messages::decode::<BoostRequest>(data) else { return };
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    let mut rows = f.rows(&plan);
    let roots = rows.start_round(&plan, 0);
    match request {
        BoostRequest::Open { slice, .. } => {
            let slice = slice.0 as usize..slice.1 as usize;
            if slice.start > slice.end || slice.end > plan.layout.features() {
                return;
            }
            let plan = Plan { slice, ..plan };
            merge_roots(&plan, &mut rows, &roots);
        }
        BoostRequest::StartRound { round, .. } => {
            rows.start_round(&plan, round);
        }
        BoostRequest::Slices { features, items, .. } => {
            let features = features.0 as usize..features.1 as usize;
            if features.start > features.end || features.end > plan.layout.features() {
                return;
            }
            rows.slices(&plan, features, &items);
        }
        BoostRequest::Merge { items, .. } => {
            let wanted: Vec<SliceItem> =
                items.iter().map(|i| SliceItem { output: i.output, order: i.order, node: i.small }).collect();
            let parts = vec![rows.slices(&plan, plan.slice.clone(), &wanted)];
            Owned::default().merge(&plan, 0, &items, &parts);
        }
        BoostRequest::EndRound { trees, .. } => {
            let outputs = plan.setup.objective.scores_per_row();
            if trees.len() == outputs && trees.iter().all(|t| t.validate(plan.layout.features()).is_ok()) {
                rows.end_round(&trees);
            }
        }
        BoostRequest::Close { .. } => {}
    }
}

/// The roots' merge of one step: every worker's root histograms over
/// `plan`'s slice, merged by its owner.
fn merge_roots(plan: &Plan, rows: &mut Rows, roots: &[BinSum]) -> Vec<(u32, u32, Option<Candidate>)> {
    let items = root_items(plan, roots);
    let wanted: Vec<SliceItem> = items.iter().map(|i| SliceItem { output: i.output, order: None, node: 0 }).collect();
    let parts = vec![rows.slices(plan, plan.slice.clone(), &wanted)];
    Owned::default().merge(plan, 0, &items, &parts)
}

fn root_items(plan: &Plan, roots: &[BinSum]) -> Vec<MergeItem> {
    roots
        .iter()
        .enumerate()
        .map(|(k, root)| MergeItem {
            output: k as u32,
            order: None,
            small: 0,
            small_sum: *root,
            want_small: plan.setup.splittable(root.n),
            large: None,
        })
        .collect()
}

/// A worker's or owner's answer, used as the boosting driver uses it.
pub fn boost_reply(data: &[u8]) {
    let Ok(reply) = messages::decode::<BoostReply>(data) else { return };
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    let outputs = plan.setup.objective.scores_per_row();
    match reply {
        BoostReply::Roots(sums) => {
            // `run_rounds` adds every worker's root sums.
            let mut roots = vec![BinSum::default(); outputs];
            for (total, part) in roots.iter_mut().zip(sums) {
                *total += part;
            }
            let growers: Vec<Grower> = roots.iter().map(|r| Grower::new(plan.setup.params.shape, *r)).collect();
            let _: Vec<Tree> = growers.into_iter().map(|g| plan.setup.finish_tree(g)).collect();
        }
        BoostReply::Best(found) => {
            // `grow_round` offers the best of the owners' answers, then
            // splits; the trees go to the workers, which check them.
            let mut rows = f.rows(&plan);
            let roots = rows.start_round(&plan, 0);
            let mut growers: Vec<Grower> = roots.iter().map(|r| Grower::new(plan.setup.params.shape, *r)).collect();
            let mut best: std::collections::BTreeMap<(u32, u32), Option<Candidate>> = Default::default();
            for (output, node, candidate) in found {
                let slot = best.entry((output, node)).or_insert(None);
                *slot = better(*slot, candidate);
            }
            for ((output, node), candidate) in best {
                if let Some(grower) = growers.get_mut(output as usize) {
                    grower.offer(node, candidate);
                }
            }
            for grower in &mut growers {
                if let Some(order) = grower.next() {
                    let (small, large) = order.children();
                    grower.offer(small, None);
                    grower.offer(large, None);
                }
            }
            let trees: Vec<Tree> = growers.into_iter().map(|g| plan.setup.finish_tree(g)).collect();
            if trees.iter().all(|t| t.validate(plan.layout.features()).is_ok()) {
                rows.end_round(&trees);
            }
        }
        BoostReply::Slices(slices) => {
            // An owner merges a worker's slices of the roots.
            let mut rows = f.rows(&plan);
            let roots = rows.start_round(&plan, 0);
            let items = root_items(&plan, &roots);
            if slices.len() == items.len() {
                Owned::default().merge(&plan, 0, &items, &[slices]);
            }
        }
        BoostReply::Losses { train, validation } => {
            let sum = |v: &[(f64, u64)]| v.iter().fold((0.0, 0u64), |(l, n), (a, b)| (l + a, n.saturating_add(*b)));
            let _ = (sum(&train), sum(&validation));
        }
        BoostReply::Opened { .. } | BoostReply::Closed => {}
    }
}

/// A stored job record, as a driver (or one taking over) reads it.
pub fn job_record(data: &[u8]) {
    let Some(record) = record::<JobRecord>(data) else { return };
    if record.validate().is_err() {
        return;
    }
    let f = fixture();
    let label = &f.schema().columns[f.schema().label];
    let Ok(task) = record
        .task
        .map_or_else(|| resolve_task(record.spec.task, &label.name, label.kind, f.manifest.label_histogram()), Ok)
    else {
        return;
    };
    let spec = pipeline_spec(&record.spec, task);
    let Some((pipeline, summary)) = fit_pipeline(f.schema(), &f.shards, &spec) else { return };
    if let Learner::Gbdt(trees) = &record.spec.spec.learner {
        let _ = learners::boost_setup(&record.spec.spec, trees, &pipeline, &summary, record.spec.seed);
    }
    let _ = learners::estimate_bytes(&record.spec.spec, f.manifest.rows, pipeline.features as u64, 3);
}

/// `Mesh::fit_pipeline` on shards held here.
fn fit_pipeline(schema: &Schema, shards: &[Shard], spec: &PipelineSpec) -> Option<(FittedPipeline, DataSummary)> {
    let mut summary = DataSummary::default();
    for shard in shards {
        merge(&mut summary, &summarize_rows(shard, schema, spec).ok()?);
    }
    let mut pipeline = fit::fit(spec, schema, &summary).ok()?;
    if let Some(components) = spec.pca {
        let features = derived::numeric_features(&pipeline);
        let mut moments = Moments::default();
        for shard in shards {
            derived::merge_moments(&mut moments, &moments_of(shard, &pipeline, &features).ok()?);
        }
        fit_projection(&mut pipeline, &moments, components).ok()?;
    }
    Some((pipeline, summary))
}

/// A stored dataset manifest, read (and checked) as `read_manifest` does,
/// then fitted on the fixture's shards as a job on it would be.
pub fn dataset_manifest(data: &[u8]) {
    let Some(manifest) = record::<DatasetManifest>(data) else { return };
    if manifest.validate().is_err() {
        return;
    }
    let label = &manifest.schema.columns[manifest.schema.label];
    let task = resolve_task(None, &label.name, label.kind, manifest.label_histogram()).unwrap_or(Task::Classification);
    let _ = serde_json::to_vec(&manifest);
    let spec = PipelineSpec { task, ..fixture().spec.clone() };
    fit_pipeline(&manifest.schema, &fixture().shards, &spec);
}

/// A stored model manifest, loaded with the fixture's pipeline and
/// members (or, composed, with the fixture's model as every part).
pub fn model_manifest(data: &[u8]) {
    let Some(manifest) = record::<ModelManifest>(data) else { return };
    let f = fixture();
    let id = ContentId::of(data);
    let loaded = if manifest.parts.is_empty() {
        let members = f.members.iter().cycle().take(manifest.members.len().min(8)).cloned().collect();
        let meta = manifest.meta.and_then(|_| match &f.members[0] {
            Member::Mlp(m) => Some(m.clone()),
            Member::Gbdt(_) => None,
        });
        LoadedModel::trained(id, manifest, f.schema().clone(), f.pipeline.clone(), members, meta)
    } else {
        let parts = vec![f.model.clone(); manifest.parts.len().min(8)];
        LoadedModel::composed(id, manifest, f.schema().clone(), parts)
    };
    if let Ok(model) = loaded {
        use_model(&model);
    }
}

/// A stored fitted pipeline: read by a trainer, and loaded with a model.
pub fn pipeline(data: &[u8]) {
    let Some(pipeline) = record::<FittedPipeline>(data) else { return };
    let f = fixture();
    for shard in &f.shards {
        let _ = rows_where(&pipeline, shard, |_, _| true);
        let _ = moments_of(shard, &pipeline, &derived::numeric_features(&pipeline));
    }
    let loaded = LoadedModel::trained(
        ContentId::of(data),
        f.model_manifest.clone(),
        f.schema().clone(),
        pipeline,
        f.members.clone(),
        None,
    );
    if let Ok(model) = loaded {
        use_model(&model);
    }
}

/// A stored shard, read by every node that computes on it.
pub fn shard(data: &[u8]) {
    let Some(shard) = record::<Shard>(data) else { return };
    on_shard(&shard);
}

/// What statistics, training, serving and batch prediction do with a shard
/// of the fixture's dataset.
fn on_shard(shard: &Shard) {
    let f = fixture();
    let _ = summarize_rows(shard, f.schema(), &f.spec);
    let _ = moments_of(shard, &f.pipeline, &derived::numeric_features(&f.pipeline));
    if let Ok(rows) = rows_where(&f.pipeline, shard, |_, _| true) {
        let plan = f.plan(f.setup.clone());
        let mut held = Rows::new(&plan, &[rows], &[], &[]);
        let roots = held.start_round(&plan, 0);
        merge_roots(&plan, &mut held, &roots);
    }
    let _ = f.model.predict(shard);
    let _ = score_shard(&f.model, shard);
    let _ = f.model.predict(&concat(vec![f.shards[0].clone(), shard.clone()]));
}

/// A stored member (trained weights), loaded beside the fixture's members
/// and averaged as data-parallel training averages members.
pub fn member(data: &[u8]) {
    let Some(member) = record::<Member>(data) else { return };
    let f = fixture();
    if let Member::Mlp(m) = &member {
        let _ = average(&[(m, 1.0), (m, 3.0)]);
    }
    let loaded = LoadedModel::trained(
        ContentId::of(data),
        f.model_manifest.clone(),
        f.schema().clone(),
        f.pipeline.clone(),
        vec![member, f.members[0].clone()],
        None,
    );
    if let Ok(model) = loaded {
        use_model(&model);
    }
}

/// A stored boosting setup, as `BoostRequest::Open` uses it: one whole
/// round grown on the fixture's rows.
pub fn boost_setup(data: &[u8]) {
    let Some(setup) = record::<mass_kernels::models::gbdt::BoostSetup>(data) else { return };
    let f = fixture();
    if setup.bins.len() != f.pipeline.features {
        return;
    }
    let plan = f.plan(setup);
    let mut rows = f.rows(&plan);
    grow_round(&plan, &mut rows);
}

/// One round as the driver, the workers and the owners grow it, in one
/// process: each step merges the smaller children's histograms, offers
/// the best splits and asks for the next.
fn grow_round(plan: &Plan, rows: &mut Rows) {
    let roots = rows.start_round(plan, 0);
    let mut growers: Vec<Grower> = roots.iter().map(|r| Grower::new(plan.setup.params.shape, *r)).collect();
    let mut items = root_items(plan, &roots);
    let mut owned = Owned::default();
    // Each step splits a leaf; a tree has fewer leaves than rows.
    for _ in 0..=rows.rows() * growers.len() {
        for item in &items {
            let grower = &mut growers[item.output as usize];
            if !item.want_small {
                grower.offer(item.small, None);
            }
            if let Some((large, _, false)) = item.large {
                grower.offer(large, None);
            }
        }
        let asked: Vec<MergeItem> = items.iter().copied().filter(|i| i.want_small || i.large.is_some_and(|l| l.2)).collect();
        let wanted: Vec<SliceItem> =
            asked.iter().map(|i| SliceItem { output: i.output, order: i.order, node: i.small }).collect();
        let parts = vec![rows.slices(plan, plan.slice.clone(), &wanted)];
        for (output, node, candidate) in owned.merge(plan, 0, &asked, &parts) {
            if let Some(grower) = growers.get_mut(output as usize) {
                grower.offer(node, candidate);
            }
        }
        items.clear();
        for (k, grower) in growers.iter_mut().enumerate() {
            while let Some(order) = grower.next() {
                let (small, large) = order.children();
                let sum_of = |node| if node == order.left { order.left_sum } else { order.right_sum };
                let want = |node: u32, grower: &Grower| grower.may_split(node) && plan.setup.splittable(sum_of(node).n);
                let (want_small, want_large) = (want(small, grower), want(large, grower));
                if !want_small && !want_large {
                    grower.offer(small, None);
                    grower.offer(large, None);
                    continue;
                }
                items.push(MergeItem {
                    output: k as u32,
                    order: Some(order),
                    small,
                    small_sum: sum_of(small),
                    want_small,
                    large: Some((large, sum_of(large), want_large)),
                });
                break;
            }
        }
        if items.is_empty() {
            break;
        }
    }
    let trees: Vec<Tree> = growers.into_iter().map(|g| plan.setup.finish_tree(g)).collect();
    if trees.iter().all(|t| t.validate(plan.layout.features()).is_ok()) {
        rows.end_round(&trees);
    }
}

/// A stored round of trees: checked against the fixture's features, added
/// to a worker's rows, and served inside a boosted member.
pub fn trees(data: &[u8]) {
    let Some(trees) = record::<Vec<Tree>>(data) else { return };
    let f = fixture();
    let plan = f.plan(f.setup.clone());
    if trees.iter().any(|t| t.validate(plan.layout.features()).is_err()) {
        return;
    }
    let mut rows = f.rows(&plan);
    rows.start_round(&plan, 0);
    if trees.len() == plan.setup.objective.scores_per_row() {
        rows.end_round(&trees);
    }
    let setup = &f.setup;
    let gbdt = Gbdt { bins: setup.bins.clone(), objective: setup.objective, init: setup.init.clone(), trees };
    let member = Member::Gbdt(gbdt);
    if member.validate(f.pipeline.features, f.pipeline.classes.len()).is_ok()
        && let Ok(model) = LoadedModel::trained(
            ContentId::of(data),
            f.model_manifest.clone(),
            f.schema().clone(),
            f.pipeline.clone(),
            vec![member, f.members[0].clone()],
            None,
        )
    {
        use_model(&model);
    }
}

/// A stored ref record (also what a peer's ref list holds), read and
/// merged into.
pub fn ref_record(data: &[u8]) {
    let Some(record) = record::<RefRecord>(data) else { return };
    let _ = record.current();
    let mut local = RefRecord { name: record.name.clone(), history: vec![] };
    for entry in record.history.iter().cloned() {
        accept_ref(&mut local, entry);
    }
    let mut merged = record;
    let next = merged.current().map_or(1, |c| c.version.saturating_add(1));
    merged.merge(RefEntry {
        version: next,
        target: None,
        clock: 1,
        origin: "here".into(),
        set_at: 0,
        signature: vec![],
    });
}

/// A CSV upload, ingested to the end into memory; what ingest accepts must
/// be a valid manifest that a job can fit a pipeline on.
pub fn csv(data: &[u8]) {
    let mut shards = Vec::new();
    let Ok(manifest) = ingest(data, &fixture::ingest_options(), |shard| store(&mut shards, shard)) else { return };
    after_ingest(&manifest, &shards);
}

/// A NumPy upload (labels then features), likewise.
pub fn npy(data: &[u8]) {
    let mut shards = Vec::new();
    let Ok(manifest) = ingest_npy(data, &fixture::ingest_options(), |shard| store(&mut shards, shard)) else {
        return;
    };
    after_ingest(&manifest, &shards);
}

fn store(shards: &mut Vec<Shard>, shard: &Shard) -> Result<ContentId, crate::datasets::DataError> {
    let bytes = codec::encode(shard).map_err(|e| crate::datasets::DataError::Store(e.to_string()))?;
    shards.push(shard.clone());
    Ok(ContentId::of(&bytes))
}

fn after_ingest(manifest: &DatasetManifest, shards: &[Shard]) {
    if let Err(e) = manifest.validate() {
        panic!("ingest accepted a dataset whose manifest is invalid: {e}");
    }
    let label = &manifest.schema.columns[manifest.schema.label];
    let Ok(task) = resolve_task(None, &label.name, label.kind, manifest.label_histogram()) else { return };
    let spec = PipelineSpec { task, ..fixture().spec.clone() };
    if let Some((pipeline, _)) = fit_pipeline(&manifest.schema, shards, &spec) {
        for shard in shards {
            let _ = rows_where(&pipeline, shard, |_, _| true);
        }
    }
}

/// A predict body, read as `POST /v1/models/{name}/predict` reads it and
/// answered by the fixture's model.
pub fn predict_json(data: &[u8]) {
    if let Ok((rows, allow_missing)) = crate::http::models::parse_predict(data) {
        predict(&fixture().model, &rows, allow_missing);
    }
}

/// What the inference batcher and the router do with rows: checked into a
/// shard, run in a batch beside another request's rows (alone when the
/// batch fails), answered as classes.
fn predict(model: &LoadedModel, rows: &[Row], allow_missing: bool) {
    let Ok(shard) = to_shard(&model.schema, rows, allow_missing) else { return };
    let other = [Row::Values(vec![
        Cell::Number(1.0),
        Cell::Number(0.5),
        Cell::Text("red".into()),
        Cell::Text("fast red car".into()),
    ])];
    let batch = concat(vec![to_shard(&model.schema, &other, false).expect("the fixture's row fits"), shard.clone()]);
    match model.predict(&batch) {
        Ok(outputs) => answer(model, &outputs),
        Err(_) => model.predict(&shard).map(|outputs| answer(model, &outputs)).unwrap_or_default(),
    };
}

/// A loaded model in use: predictions on the fixture's rows, and batch
/// scoring of its shards.
fn use_model(model: &LoadedModel) {
    for shard in &fixture().shards {
        if let Ok(outputs) = model.predict(shard) {
            answer(model, &outputs);
        }
        let _ = score_shard(model, shard);
    }
}

/// `serve_local`'s answer: the class of each row, or its value.
fn answer(model: &LoadedModel, outputs: &ndarray::Array2<f64>) -> Vec<Predicted> {
    match model.manifest.task {
        Task::Classification => argmax_rows(&outputs.mapv(|p| p as f32))
            .into_iter()
            .map(|c| Predicted::Class(model.manifest.classes.get(c).cloned().unwrap_or_default()))
            .collect(),
        Task::Regression => outputs.column(0).iter().map(|v| Predicted::Value(*v)).collect(),
    }
}

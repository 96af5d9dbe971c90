//! Stored records: what a node reads back from blobs any peer may have
//! written, decoded with the record bound and checked as the node checks
//! them before use.

use mass_kernels::{
    features::{derived, fit, fit::fit_projection, merge},
    models::{Member, ensemble::average},
};
use mass_protocol::{
    ContentId,
    dataset::{DatasetManifest, Schema, Shard},
    features::{DataSummary, FittedPipeline, Moments, PipelineSpec},
    jobs::{JobRecord, Learner, ModelManifest, Task, resolve_task},
    storage::{RefEntry, RefRecord},
};

use super::{boost::merge_roots, fixture::fixture, record, serve::use_model, wire::accept_ref};
use crate::{
    jobs::{boost::session::Rows, driver::pipeline_spec, learners, task::rows_where},
    mesh::{moments_of, summarize_rows},
    serving::{batch::score_shard, model::LoadedModel, rows::concat},
};

/// A stored job record, as a driver (or one taking over) reads it.
pub fn job_record(data: &[u8]) {
    let Ok(record) = JobRecord::decode(data) else { return };
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
        let setup = learners::boost_setup(&record.spec.spec, trees, &pipeline, &summary, record.spec.seed);
        if let Some(Err(e)) = setup.ok().map(|s| s.check(&pipeline)) {
            panic!("a fitted boosting setup fails its own check: {e}");
        }
    }
    let _ = learners::estimate_bytes(&record.spec.spec, f.manifest.rows, pipeline.features as u64, 3);
}

/// `Mesh::fit_pipeline` on shards held here.
pub(super) fn fit_pipeline(
    schema: &Schema,
    shards: &[Shard],
    spec: &PipelineSpec,
) -> Option<(FittedPipeline, DataSummary)> {
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
    // What a node fits, every node must accept when it reads it back.
    if let Err(e) = pipeline.validate() {
        panic!("a fitted pipeline fails its own check: {e}");
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
    // As a node reads it: today's layout or an older node's.
    let Ok(manifest) = ModelManifest::decode(data) else { return };
    let f = fixture();
    let id = ContentId::of(data);
    let loaded = if manifest.parts.is_empty() {
        let members = f.members.iter().cycle().take(manifest.members.len().min(8)).cloned().collect();
        let meta = manifest.meta.and_then(|_| match &f.members[0] {
            Member::Mlp(m) => Some(m.clone()),
            _ => None,
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
    // `Mesh::load_pipeline` checks every pipeline it reads.
    if pipeline.validate().is_err() {
        return;
    }
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
    if shard.validate().is_ok() {
        on_shard(&shard);
    }
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

//! HTTP bodies: dataset uploads (CSV, JSON Lines, Parquet, NumPy), job specs and predict
//! requests, read as their routes read them.

use mass_protocol::{
    ContentId, codec,
    dataset::{DatasetManifest, Shard},
    features::PipelineSpec,
    jobs::{JobSpec, Learner, resolve_task},
    storage::validate_ref_name,
};

use super::{fixture, fixture::fixture, records::fit_pipeline, serve::predict};
use crate::{
    datasets::{ingest, ingest_jsonl, ingest_parquet_bytes, npy::ingest_npy},
    jobs::{driver::pipeline_spec, learners, submit, task::rows_where},
};

/// A CSV upload, ingested to the end into memory; what ingest accepts must
/// be a valid manifest that a job can fit a pipeline on.
pub fn csv(data: &[u8]) {
    let mut shards = Vec::new();
    let Ok(manifest) = ingest(data, &fixture::ingest_options(), |shard| store(&mut shards, shard)) else { return };
    after_ingest(&manifest, &shards);
}

/// A JSON Lines upload, likewise.
pub fn jsonl(data: &[u8]) {
    let mut shards = Vec::new();
    let Ok(manifest) = ingest_jsonl(data, &fixture::ingest_options(), |shard| store(&mut shards, shard)) else {
        return;
    };
    after_ingest(&manifest, &shards);
}

/// A Parquet upload, likewise (read from memory: the node spools it to a
/// file first, which changes nothing the reader sees).
pub fn parquet(data: &[u8]) {
    let mut shards = Vec::new();
    let bytes = bytes::Bytes::copy_from_slice(data);
    let Ok(manifest) = ingest_parquet_bytes(bytes, &fixture::ingest_options(), |shard| store(&mut shards, shard))
    else {
        return;
    };
    after_ingest(&manifest, &shards);
}

/// A NumPy upload (labels then features), likewise.
pub fn npy(data: &[u8]) {
    // The same bytes as a binary prediction body (one matrix).
    if let Ok(rows) = crate::http::models::parse_npy(data) {
        crate::fuzz::serve::predict(&crate::fuzz::fixture::fixture().model, &rows, true);
    }
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

/// What ingest accepts, every reader must accept too: the manifest and
/// shards pass the checks made on every read, and a job fits on them.
fn after_ingest(manifest: &DatasetManifest, shards: &[Shard]) {
    if let Err(e) = manifest.validate() {
        panic!("ingest accepted a dataset whose manifest is invalid: {e}");
    }
    for shard in shards {
        if let Err(e) = shard.validate() {
            panic!("ingest wrote a shard its readers refuse: {e}");
        }
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
        predict(&fixture().model, &rows.into(), allow_missing);
    }
}

/// An Arrow IPC stream predict body, read as `POST .../predict` reads it.
pub fn predict_arrow(data: &[u8]) {
    if let Ok(rows) = crate::http::arrow::parse(data, crate::serving::rows::MAX_ROWS) {
        predict(&fixture().model, &rows, true);
    }
}

/// A job spec, read as `POST /v1/jobs` reads it and checked as
/// `jobs::submit` checks it against the fixture's dataset; an accepted one
/// is sized, and its pipeline (and trees' setup) fitted as its driver would.
pub fn job_spec_json(data: &[u8]) {
    let Ok(spec) = serde_json::from_slice::<JobSpec>(data) else { return };
    let checked = validate_ref_name(&format!("model/{}", spec.model))
        .and_then(|()| spec.spec.validate())
        .and_then(|()| spec.ensemble.validate());
    if checked.is_err() {
        return;
    }
    let f = fixture();
    let Ok(task) = submit::runnable(&spec, &f.manifest) else { return };
    let features = submit::feature_bound(&spec, &f.manifest);
    let _ = learners::estimate_bytes(&spec.spec, f.manifest.rows, features, 3);
    let Some((pipeline, summary)) = fit_pipeline(f.schema(), &f.shards, &pipeline_spec(&spec, task)) else { return };
    if let Learner::Gbdt(trees) = &spec.spec.learner
        && let Ok(setup) = learners::boost_setup(&spec.spec, trees, &pipeline, &summary, spec.seed)
        && let Err(e) = setup.check(&pipeline)
    {
        panic!("a fitted boosting setup fails its own check: {e}");
    }
}

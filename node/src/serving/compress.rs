//! Compression: a new version of a model made smaller or faster from one
//! of its versions, by int8 quantization, magnitude pruning (with optional
//! fine-tuning) or distillation into one network. Like a retrain, the new
//! version becomes the one served; `mass models promote` (or rollback) goes
//! back. Its manifest names its parent and records its size and latency
//! beside the parent's, measured on the same node, and its test figures.
//!
//! Where it runs: distillation where the shards live ([`super::distill`]);
//! the variant is judged on each shard's test rows by a node holding it
//! ([`judge::across_shards`]), and its latency measured here on one shard's
//! test rows. Quantizing and pruning run here; fine-tuning a pruned network
//! reads every shard's training rows here.
//!
//! A distilled student reads its rows through the pipeline a network of the
//! parent's job would have had: a tree teacher's pipeline leaves values
//! missing and unscaled and categories as indices, which a network cannot
//! learn from, so the student's is fitted anew from the job's pipeline
//! settings (and stored with the variant).

use std::{sync::Arc, time::Instant};

use mass_kernels::models::{
    Member, Mlp, Target,
    distill::check_student,
    ensemble::combine,
    quantized::QuantizedMlp,
    sparse::{self, SparseMlp},
};
use mass_protocol::{
    codec,
    dataset::{DatasetManifest, Shard, Split},
    evaluation::EvaluationRows,
    features::{FittedPipeline, PipelineSpec},
    jobs::{Combine, CompressMethod, Compression, EnsembleSpec, Latency, Learner, ModelManifest, ModelSpec},
    serving::{CompressRequest, ModelVersion},
    storage::BlobKind,
};
use ndarray::{Array2, ArrayView2, Axis, s};

use super::{
    distill::{self, Distillation},
    registry,
    router::ServeError,
};
use crate::{
    compute::Work,
    datasets::service::read_manifest,
    jobs::{
        MODEL_PREFIX, evaluate, judge,
        learners::{self, Labels, RowSet},
        task::rows_of,
    },
    mesh::{FitFailure, Mesh},
};

/// Rows in the batch whose latency is measured.
const BATCH_ROWS: usize = 1_000;
/// Single rows timed (the median is kept).
const SINGLE_ROWS: usize = 100;

/// A parent model as compression reads it.
pub struct Parent {
    pub name: String,
    pub version: u64,
    pub pipeline: FittedPipeline,
    pub members: Vec<Member>,
    pub meta: Option<Mlp>,
    pub combine: Combine,
    pub spec: ModelSpec,
    pub seed: u64,
}

/// What compression made: the new members and how they combine.
pub struct Made {
    pub members: Vec<Member>,
    pub meta: Option<Mlp>,
    pub combine: Combine,
    pub curve: Vec<f64>,
    pub sparsity: Option<f64>,
}

/// Checks the method's settings before anything is loaded.
pub fn check(method: &CompressMethod) -> Result<(), String> {
    match method {
        CompressMethod::Int8 => Ok(()),
        CompressMethod::Prune { sparsity, .. } => sparse::check_sparsity(*sparsity).map_err(|e| e.to_string()),
        CompressMethod::Distill { hidden } => check_student(hidden).map_err(|e| e.to_string()),
    }
}

/// Whether `method` takes this parent's members, checked before anything
/// is stored: int8 and pruning take networks, distillation anything but
/// one plain network.
pub fn refuse(parent: &Parent, method: &CompressMethod) -> Result<(), String> {
    match method {
        CompressMethod::Int8 => networks(parent, "int8").map(drop),
        CompressMethod::Prune { .. } => networks(parent, "pruning").map(drop),
        CompressMethod::Distill { .. } => {
            if parent.members.len() == 1 && matches!(parent.members[0], Member::Mlp(_)) && parent.meta.is_none() {
                return Err(format!(
                    "model '{}' v{} is one network already; distillation takes an ensemble (prune or quantize this one)",
                    parent.name, parent.version
                ));
            }
            Ok(())
        }
    }
}

/// The networks of `parent` for int8 or pruning; anything else is refused
/// by name (a pruned network is densified first, so it can be quantized).
fn networks(parent: &Parent, method: &str) -> Result<Vec<Mlp>, String> {
    parent
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Member::Mlp(n) => Ok(n.clone()),
            Member::Sparse(s) if method == "int8" => Ok(s.to_dense()),
            other => Err(format!(
                "model '{}' v{}: member {i} is {} and {method} compresses networks (distill it into one first)",
                parent.name,
                parent.version,
                other.kind()
            )),
        })
        .collect()
}

/// The training rows of every shard.
fn training_rows(pipeline: &FittedPipeline, shards: &[Shard]) -> Result<RowSet, String> {
    let mut parts = Vec::new();
    for shard in shards {
        parts.push(rows_of(pipeline, shard, Split::Train)?);
    }
    RowSet::concat(parts, pipeline.task, pipeline.features)
}

fn values(labels: &Labels) -> Array2<f32> {
    match labels {
        Labels::Values(v) => Array2::from_shape_vec((v.len(), 1), v.clone()).expect("one value per row"),
        Labels::Classes(_) => Array2::zeros((0, 1)),
    }
}

/// Quantizes or prunes the parent (pure: the parent and, for fine-tuning,
/// its shards in, the new members out). Distillation is not made here.
pub fn shrink(parent: &Parent, method: &CompressMethod, shards: &[Shard]) -> Result<Made, String> {
    check(method)?;
    let pipeline = &parent.pipeline;
    match method {
        CompressMethod::Int8 => {
            let quantized = networks(parent, "int8")?
                .iter()
                .map(|n| QuantizedMlp::quantize(n).map(Member::Int8).map_err(|e| format!("int8: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Made {
                members: quantized,
                meta: parent.meta.clone(),
                combine: parent.combine.clone(),
                curve: vec![],
                sparsity: None,
            })
        }
        CompressMethod::Prune { sparsity, fine_tune_epochs } => {
            let networks = networks(parent, "pruning")?;
            let train = if *fine_tune_epochs > 0 { Some(training_rows(pipeline, shards)?) } else { None };
            if train.as_ref().is_some_and(|t| t.rows() == 0) {
                return Err("fine-tuning found no training rows".into());
            }
            let mut pruned = Vec::new();
            let mut zeros = (0usize, 0usize);
            for (i, network) in networks.iter().enumerate() {
                let (mut network, mask) = sparse::prune(network, *sparsity).map_err(|e| e.to_string())?;
                if let Some(train) = &train {
                    let config =
                        learners::mlp_config(&parent.spec, &[], pipeline.task, train.rows(), parent.seed + i as u64);
                    let targets = values(&train.labels);
                    let y = match &train.labels {
                        Labels::Classes(c) => Target::Classes { labels: c, classes: pipeline.classes.len() },
                        Labels::Values(_) => Target::Values(targets.view()),
                    };
                    network =
                        sparse::fine_tune(network, &mask, train.x().view(), y, &config, *fine_tune_epochs as usize)
                            .map_err(|e| format!("member {i}: {e}"))?;
                }
                let stored = SparseMlp::from_dense(&network);
                let total: usize = stored.layers.iter().map(|l| l.inputs * l.outputs).sum();
                zeros =
                    (zeros.0 + total - stored.layers.iter().map(|l| l.values.len()).sum::<usize>(), zeros.1 + total);
                pruned.push(Member::Sparse(stored));
            }
            let sparsity = zeros.0 as f64 / zeros.1.max(1) as f64;
            Ok(Made {
                members: pruned,
                meta: parent.meta.clone(),
                combine: parent.combine.clone(),
                curve: vec![],
                sparsity: Some(sparsity),
            })
        }
        CompressMethod::Distill { .. } => Err("distillation is trained where the shards live, not here".into()),
    }
}

/// Bytes of the members and meta-model as stored (encoded).
fn stored_bytes(members: &[Member], meta: Option<&Mlp>) -> Result<u64, String> {
    let mut total = 0;
    for member in members {
        total += codec::encode(member).map_err(|e| e.to_string())?.len() as u64;
    }
    if let Some(meta) = meta {
        total += codec::encode(&Member::Mlp(meta.clone())).map_err(|e| e.to_string())?.len() as u64;
    }
    Ok(total)
}

/// Latency of the members and their combination on featurized rows `x`
/// (repeated to make a batch of [`BATCH_ROWS`] when fewer).
fn measure(members: &[Member], rule: &Combine, meta: Option<&Mlp>, x: ArrayView2<'_, f32>) -> Latency {
    let run = |rows: ArrayView2<'_, f32>| {
        let outputs: Vec<Array2<f32>> = members.iter().map(|m| m.predict(rows)).collect();
        std::hint::black_box(combine(&outputs, rule, meta));
    };
    if x.nrows() == 0 {
        return Latency { one_row_us: f64::NAN, thousand_rows_ms: f64::NAN };
    }
    let picked: Vec<usize> = (0..BATCH_ROWS).map(|r| r % x.nrows()).collect();
    let batch = x.select(Axis(0), &picked);
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    // Warm-up: caches made on first use (packed or dequantized weights, the
    // int8 path chosen for large batches) are not part of the latency.
    run(x.slice(s![..1, ..]));
    run(batch.view());
    let mut single: Vec<f64> =
        (0..SINGLE_ROWS.min(x.nrows())).map(|r| time(&|| run(x.slice(s![r..r + 1, ..])))).collect();
    let mut batches: Vec<f64> = (0..5).map(|_| time(&|| run(batch.view()))).collect();
    single.sort_by(f64::total_cmp);
    batches.sort_by(f64::total_cmp);
    Latency { one_row_us: single[single.len() / 2] * 1e6, thousand_rows_ms: batches[batches.len() / 2] * 1e3 }
}

/// The variant's and the parent's latency on the test rows of the first
/// shard that has any (each through its own pipeline).
async fn latencies(
    mesh: &Mesh,
    data: &DatasetManifest,
    variant: (Arc<FittedPipeline>, Arc<Made>),
    parent: Arc<Parent>,
) -> Result<(Latency, Latency), ServeError> {
    for info in &data.shards {
        let shard = mesh.load_shard(info.id).await.map_err(ServeError::Unavailable)?;
        if !shard.splits.contains(&Split::Test) {
            continue;
        }
        let (own, made) = variant.clone();
        let parent = parent.clone();
        let measured = mesh
            .compute
            .run_waiting(Work::Evaluation, move || -> Result<_, String> {
                let test = rows_of(&own, &shard, Split::Test)?;
                let parent_test = rows_of(&parent.pipeline, &shard, Split::Test)?;
                Ok((
                    measure(&made.members, &made.combine, made.meta.as_ref(), test.x().view()),
                    measure(&parent.members, &parent.combine, parent.meta.as_ref(), parent_test.x().view()),
                ))
            })
            .await;
        return measured.map_err(ServeError::Unavailable);
    }
    let none = Latency { one_row_us: f64::NAN, thousand_rows_ms: f64::NAN };
    Ok((none.clone(), none))
}

/// Compresses version `request.version` (the current one when not given)
/// of model `name` into a new version, which becomes the one served.
pub async fn compress(mesh: &Mesh, name: &str, request: CompressRequest) -> Result<ModelVersion, ServeError> {
    let method = request.method().map_err(ServeError::BadInput)?;
    check(&method).map_err(ServeError::BadInput)?;
    let (versions, current) = registry::versions(mesh, name).await?;
    let chosen = match request.version {
        None => current,
        Some(v) => versions.iter().find(|c| c.version == v).cloned().ok_or_else(|| {
            ServeError::NotFound(format!("model '{name}' has no version {v} (versions 1 to {})", versions.len()))
        })?,
    };
    let manifest = mesh.load_model(chosen.manifest).await.map_err(ServeError::Unavailable)?;
    if !manifest.parts.is_empty() {
        return Err(ServeError::BadInput(format!(
            "model '{name}' v{} is composed of other models; compress its parts instead",
            chosen.version
        )));
    }
    let pipeline = mesh.load_pipeline(manifest.pipeline).await.map_err(ServeError::Unavailable)?;
    let (members, meta) =
        judge::members(mesh, &manifest.members, manifest.meta).await.map_err(ServeError::Unavailable)?;
    let parent = Arc::new(Parent {
        name: name.to_owned(),
        version: chosen.version,
        pipeline,
        members,
        meta,
        combine: manifest.combine.clone(),
        spec: manifest.spec.spec.clone(),
        seed: manifest.spec.seed,
    });
    refuse(&parent, &method).map_err(ServeError::BadInput)?;
    let dataset = mesh.ensure_local(manifest.dataset_manifest).await.map_err(ServeError::Unavailable)?;
    let data = read_manifest(&mesh.storage, &dataset).await.map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let job = mesh.save_kept(&request, BlobKind::Model).await.map_err(ServeError::Unavailable)?;

    let (made, own, trained_on) = match &method {
        CompressMethod::Distill { hidden } => {
            let student_pipeline = student_pipeline(mesh, &data, &manifest.spec.pipeline, &parent.pipeline).await?;
            let own = match student_pipeline {
                Some(fitted) => {
                    let id = mesh.save_kept(&fitted, BlobKind::Pipeline).await.map_err(ServeError::Unavailable)?;
                    (id, fitted)
                }
                None => (manifest.pipeline, parent.pipeline.clone()),
            };
            let asked = Distillation {
                job,
                teacher: chosen.manifest,
                pipeline: own.0,
                data: &data,
                spec: ModelSpec::of(Learner::Mlp { hidden: hidden.clone() }),
                seed: manifest.spec.seed,
            };
            let student = distill::distill(mesh, asked).await?;
            let made = Made {
                members: vec![Member::Mlp(student.network)],
                meta: None,
                combine: Combine::Mean,
                curve: student.curve,
                sparsity: None,
            };
            (made, own, student.trained_on)
        }
        _ => {
            let fine_tuned = matches!(method, CompressMethod::Prune { fine_tune_epochs, .. } if fine_tune_epochs > 0);
            let mut shards = Vec::new();
            for info in data.shards.iter().filter(|_| fine_tuned) {
                shards.push(mesh.load_shard(info.id).await.map_err(ServeError::Unavailable)?);
            }
            let (from, asked) = (parent.clone(), method.clone());
            let made = mesh.compute.run_waiting(Work::Evaluation, move || shrink(&from, &asked, &shards)).await;
            let made = made.map_err(ServeError::BadInput)?;
            (made, (manifest.pipeline, parent.pipeline.clone()), manifest.trained_on.clone())
        }
    };

    let mut member_ids = Vec::with_capacity(made.members.len());
    for member in &made.members {
        member_ids.push(mesh.save_kept(member, BlobKind::Model).await.map_err(ServeError::Unavailable)?);
    }
    // Int8 and pruning keep the parent's meta-model; a student has none.
    let meta_id = if matches!(method, CompressMethod::Distill { .. }) { None } else { manifest.meta };
    let bytes = stored_bytes(&made.members, made.meta.as_ref()).map_err(ServeError::Unavailable)?;
    let parent_bytes = stored_bytes(&parent.members, parent.meta.as_ref()).map_err(ServeError::Unavailable)?;
    let (own_id, own) = (own.0, Arc::new(own.1));
    let made = Arc::new(made);
    let judged = judge::Judged {
        pipeline_id: own_id,
        pipeline: own.clone(),
        member_ids: member_ids.clone(),
        members: Arc::new(made.members.clone()),
        meta_id,
        meta: Arc::new(made.meta.clone()),
        combine: made.combine.clone(),
    };
    let tallies = judge::across_shards(mesh, &data, &judged, EvaluationRows::Split(Split::Test), true)
        .await
        .map_err(ServeError::Unavailable)?;
    let (evaluation, _) = tallies.evaluation(&evaluate::what(Split::Test)).map_err(ServeError::BadInput)?;
    let (latency, parent_latency) = latencies(mesh, &data, (own, made.clone()), parent.clone()).await?;

    let distilled = matches!(method, CompressMethod::Distill { .. });
    let mut spec = manifest.spec.clone();
    if let CompressMethod::Distill { hidden } = &method {
        spec.spec = ModelSpec::of(Learner::Mlp { hidden: hidden.clone() });
        spec.ensemble = EnsembleSpec::Single;
    }
    let variant = ModelManifest {
        name: name.to_owned(),
        job,
        spec,
        dataset_manifest: manifest.dataset_manifest,
        pipeline: own_id,
        members: member_ids,
        meta: meta_id,
        curves: if distilled { vec![made.curve.clone()] } else { manifest.curves.clone() },
        classes: manifest.classes.clone(),
        evaluation,
        trained_on,
        task: manifest.task,
        combine: made.combine.clone(),
        parts: vec![],
        study: None,
        compression: Some(Compression {
            parent: chosen.manifest,
            parent_version: chosen.version,
            method,
            bytes,
            parent_bytes,
            latency,
            parent_latency,
            measured_on: mesh.peer_id.clone(),
            sparsity: made.sparsity,
        }),
        // The parent's folds judged the parent's learner, not this variant.
        cross_validation: None,
    };
    let id = mesh.save(&variant, BlobKind::Model).await.map_err(ServeError::Unavailable)?;
    mesh.write_ref(format!("{MODEL_PREFIX}{name}"), Some(id))
        .await
        .map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let (versions, _) = registry::versions(mesh, name).await?;
    Ok(versions.into_iter().find(|v| v.manifest == id).expect("just published"))
}

/// The pipeline a network trained by the parent's job would read (the
/// job's own settings, for its task), fitted on the dataset where its
/// shards live; `None` when that is the parent's already.
async fn student_pipeline(
    mesh: &Mesh,
    data: &DatasetManifest,
    asked: &PipelineSpec,
    parent: &FittedPipeline,
) -> Result<Option<FittedPipeline>, ServeError> {
    let spec = PipelineSpec { task: parent.task, ..asked.clone() };
    if spec == parent.spec {
        return Ok(None);
    }
    match mesh.fit_pipeline(data, &spec).await {
        Ok((fitted, _, _)) => Ok(Some(fitted)),
        Err(FitFailure::Unavailable(e)) => Err(ServeError::Unavailable(format!("the student's pipeline: {e}"))),
        Err(FitFailure::Invalid(e)) => Err(ServeError::BadInput(format!("the student's pipeline: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Result<CompressMethod, String> {
        let request: CompressRequest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let method = request.method()?;
        check(&method)?;
        Ok(method)
    }

    #[test]
    fn requests_are_read_or_refused_by_name() {
        assert_eq!(request(r#"{"quantize": "int8"}"#).unwrap(), CompressMethod::Int8);
        assert_eq!(
            request(r#"{"prune": 0.8, "fine_tune_epochs": 2, "version": 1}"#).unwrap(),
            CompressMethod::Prune { sparsity: 0.8, fine_tune_epochs: 2 }
        );
        assert_eq!(request(r#"{"distill": "mlp:64,32"}"#).unwrap(), CompressMethod::Distill { hidden: vec![64, 32] });
        let refused = |text: &str| request(text).unwrap_err();
        assert!(refused(r#"{"prune": 1.0}"#).contains("sparsity 1 is impossible"));
        assert!(refused(r#"{"prune": 0}"#).contains("sparsity 0 is impossible"));
        assert!(refused(r#"{"prune": -0.5}"#).contains("sparsity -0.5 is impossible"));
        assert!(refused(r#"{"distill": "mlp:0"}"#).contains("student mlp:0 does not fit: a layer of 0 units"));
        assert!(refused(r#"{"distill": "mlp:8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8"}"#).contains("17 hidden layers"));
        assert!(refused(r#"{"distill": "gbdt"}"#).contains("the student must be a network"));
        assert!(refused(r#"{"distill": "mlp:x"}"#).contains("'x' is not a layer width"));
        assert!(refused(r#"{"quantize": "int4"}"#).contains("quantize 'int4': only int8"));
        assert!(refused(r#"{"quantize": "int8", "prune": 0.5}"#).contains("exactly one"));
        assert!(refused(r#"{}"#).contains("exactly one"));
        assert!(refused(r#"{"quantize": "int8", "fine_tune_epochs": 3}"#).contains("fine_tune_epochs goes with prune"));
        assert!(refused(r#"{"quantise": "int8"}"#).contains("unknown field"));
    }
}

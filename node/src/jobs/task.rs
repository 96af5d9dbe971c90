//! One sub-model: read the training rows of some shards through a fitted
//! pipeline and train on them, off the event loop.

use std::collections::HashMap;

use mass_kernels::{
    features::{reads_matrix, summarize::label_text, transform},
    models::{Member, Mlp, boosting, ensemble::argmax_rows, gbdt::BoostSetup},
};
use mass_protocol::{
    ContentId,
    dataset::{Shard, ShardColumn, Split},
    evaluation::in_fold,
    features::{ColumnTransform, FittedPipeline},
    jobs::{Assignment, Learner, MAX_FOLDS, Task, TrainingProgress, held_out_for_stacking},
    storage::BlobKind,
};
use ndarray::{Array2, Axis};

use super::{
    byzantine::{self, Lie},
    learners::{self, ByteRows, Features, Labels, RowSet},
    teacher::{self, Teacher},
};
use crate::{
    compute::{Busy, Work},
    mesh::Mesh,
};

/// Features and targets of the rows of `shard` in `split`.
pub fn rows_of(pipeline: &FittedPipeline, shard: &Shard, split: Split) -> Result<RowSet, String> {
    rows_where(pipeline, shard, |s, _| s == split)
}

/// Features and targets of the rows of `shard` for which
/// `keep(split, global row number)` holds. Rows without a usable label (a
/// class never seen in training, a missing value) are left out.
pub fn rows_where(
    pipeline: &FittedPipeline,
    shard: &Shard,
    keep: impl Fn(Split, u64) -> bool,
) -> Result<RowSet, String> {
    rows_from(pipeline, shard, &mut None, keep, false)
}

/// The rows of `shard` to train on (those `train` keeps) and the
/// validation rows, from one pass of the pipeline; with `bytes` (for a
/// linear model), as bytes where every feature is a column of bytes scaled
/// ([`Features::Bytes`]), without a pass.
pub fn training_rows(
    pipeline: &FittedPipeline,
    shard: &Shard,
    train: impl Fn(Split, u64) -> bool,
    bytes: bool,
) -> Result<(RowSet, RowSet), String> {
    let mut features = None;
    let train = rows_from(pipeline, shard, &mut features, train, bytes)?;
    let validation = rows_from(pipeline, shard, &mut features, |s, _| s == Split::Validation, bytes)?;
    Ok((train, validation))
}

/// [`rows_where`], as bytes if `bytes` and they can be. The shard's
/// `features` are made on first need: a shard without a row kept (8 of
/// MNIST's 10 when judging on its test rows), or whose rows are bytes, is
/// not put through the pipeline.
fn rows_from(
    pipeline: &FittedPipeline,
    shard: &Shard,
    features: &mut Option<Array2<f32>>,
    keep: impl Fn(Split, u64) -> bool,
    bytes: bool,
) -> Result<RowSet, String> {
    if shard.columns.len() != pipeline.transforms.len() {
        return Err(format!(
            "the shard has {} columns, the pipeline {}",
            shard.columns.len(),
            pipeline.transforms.len()
        ));
    }
    let mut rows = Vec::new();
    let wanted = (0..shard.rows()).filter(|&r| keep(shard.splits[r], shard.first_row + r as u64));
    let labels = match (pipeline.task, pipeline.target) {
        (Task::Regression, Some(scale)) => {
            let Some(values) = shard.columns.get(pipeline.label).and_then(ShardColumn::as_numbers) else {
                return Err("the label column is not numeric; it cannot be regressed".into());
            };
            let mut targets = Vec::new();
            for r in wanted {
                if !values[r].is_nan() {
                    rows.push(r);
                    targets.push(scale.scale(values[r]) as f32);
                }
            }
            Labels::Values(targets)
        }
        _ => {
            let classes: HashMap<&str, usize> =
                pipeline.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
            let mut labels = Vec::new();
            for r in wanted {
                if let Some(&class) = label_text(shard, pipeline.label, r).as_deref().and_then(|l| classes.get(l)) {
                    rows.push(r);
                    labels.push(class);
                }
            }
            Labels::Classes(labels)
        }
    };
    let global_rows = rows.iter().map(|&r| shard.first_row + r as u64).collect();
    let features = match bytes.then(|| byte_rows(pipeline, shard, &rows)).flatten() {
        Some(bytes) => Features::Bytes(bytes),
        None if rows.is_empty() => Features::Floats(Array2::zeros((0, pipeline.features))),
        None => Features::Floats(match features {
            Some(features) => features.select(Axis(0), &rows),
            // Every row (a split cut out for judging): the pass itself,
            // not a copy (each a fresh 4.4 MB, faulted in page by page, on
            // a shard of MNIST's test rows).
            None if rows.len() == shard.rows() => transform(pipeline, shard).map_err(|e| e.to_string())?,
            None => features.insert(transform(pipeline, shard).map_err(|e| e.to_string())?).select(Axis(0), &rows),
        }),
    };
    Ok(RowSet { features, labels, global_rows })
}

/// Rows `rows` of `shard` as bytes with each feature's scaling, where every
/// feature is a column of bytes (none missing) scaled and nothing else.
fn byte_rows(pipeline: &FittedPipeline, shard: &Shard, rows: &[usize]) -> Option<ByteRows> {
    if !reads_matrix(pipeline) || pipeline.projection.is_some() {
        return None;
    }
    let (mut columns, mut shift, mut scale) = (Vec::new(), Vec::new(), Vec::new());
    for (transform, column) in pipeline.transforms.iter().zip(&shard.columns) {
        match (transform, column) {
            (ColumnTransform::Drop, _) => {}
            (ColumnTransform::Numeric { offset, scale: by, .. }, ShardColumn::Bytes { values, missing })
                if missing.is_empty() && values.len() == shard.rows() =>
            {
                columns.push(values);
                shift.push(*offset);
                scale.push(*by);
            }
            _ => return None,
        }
    }
    // Rows a block at a time, so that the block being written (50 KB for
    // MNIST) stays in cache while every column is read into it; a column
    // at a time wrote all rows with a stride each time.
    const BLOCK: usize = 64;
    let width = columns.len();
    if width == 0 {
        return None;
    }
    let mut values = vec![0u8; rows.len() * width];
    for (block, picked) in values.chunks_mut(BLOCK * width).zip(rows.chunks(BLOCK)) {
        for (c, column) in columns.iter().enumerate() {
            for (out, &r) in block[c..].iter_mut().step_by(width).zip(picked) {
                *out = column[r];
            }
        }
    }
    let values = Array2::from_shape_vec((rows.len(), width), values).ok()?;
    Some(ByteRows { values, shift, scale })
}

/// The row-weighted average of stored weights: the all-reduce step of
/// data-parallel training, computed by whoever needs it from the blobs.
pub async fn average(mesh: &Mesh, weights: &[(ContentId, u64)]) -> Result<Mlp, String> {
    let mut models = Vec::new();
    for (id, rows) in weights {
        match mesh.load::<Member>(*id).await? {
            Member::Mlp(m) => models.push((m, *rows as f64)),
            other => {
                return Err(format!(
                    "{} members cannot be averaged; data-parallel training needs a network",
                    other.kind()
                ));
            }
        }
    }
    let refs: Vec<(&Mlp, f64)> = models.iter().map(|(m, w)| (m, *w)).collect();
    // A worker's weights and row count are its word: the robust average
    // drops a model far from the others whole and caps every row count at
    // the median's, so one liar in five cannot steer the average.
    let trim = mass_kernels::models::ensemble::trim_for(refs.len());
    mass_kernels::models::ensemble::robust_average(&refs, trim).map_err(|e| e.to_string())
}

/// The rows a boosted member trains on, given the members before it: the
/// same rows with the residuals they leave (regression), or rows drawn by
/// SAMME's weights (classification; validation rows, without a seed, stay
/// as they are).
fn boosted_rows(rows: RowSet, previous: &[(Member, f64)], seed: Option<u64>) -> RowSet {
    if rows.rows() == 0 {
        return rows;
    }
    let outputs_of = |rows: &RowSet| {
        let x = rows.x(); // bytes decoded once, not per member
        previous.iter().map(|(m, w)| (m.predict(x.view()), *w)).collect::<Vec<_>>()
    };
    match &rows.labels {
        Labels::Values(targets) => {
            let left = boosting::residuals(targets, &outputs_of(&rows));
            RowSet { labels: Labels::Values(left), ..rows }
        }
        Labels::Classes(_) if seed.is_none() => rows,
        Labels::Classes(truth) => {
            let votes: Vec<_> = outputs_of(&rows).iter().map(|(out, a)| (argmax_rows(out), *a)).collect();
            let weights = boosting::row_weights(truth, &votes);
            let drawn = boosting::resample(&weights, rows.rows(), seed.unwrap_or(0));
            rows.select(&drawn)
        }
    }
}

/// What a trainer reports back.
pub struct Trained {
    pub weights: ContentId,
    pub rows: u64,
    /// Training loss after each epoch.
    pub curve: Vec<f64>,
    /// The backend that trained it ("cpu", "wgpu:<adapter>").
    pub backend: String,
}

/// Whether training waits for a compute slot or is refused when none is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The last resort for work no node took: wait for a slot here.
    Wait,
    /// A peer's request: a node without a free slot says so at once, and the
    /// driver asks another.
    Now,
}

/// Why a sub-model was not trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The node drains ([`crate::drain`]): another node takes the task.
    #[error("this node is draining and takes no new work; another node will")]
    Leaving,
    #[error("{0}")]
    Failed(String),
}

impl From<String> for TrainError {
    fn from(message: String) -> Self {
        TrainError::Failed(message)
    }
}

/// How often a task's progress is gossiped, at most (the first and last
/// epochs always are). Every epoch, a small model's epochs (1.5 ms) sent
/// hundreds of signed messages a second, which both nodes' cores paid.
const PROGRESS_GOSSIP_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Trains one sub-model on the training rows of its shards (fetched if this
/// node lacks them), starting from the average of `start` when given, and
/// stores it. Every epoch is reported on the progress board, and gossiped
/// every [`PROGRESS_GOSSIP_EVERY`], so any node can show how the job is going.
pub async fn train(mesh: &Mesh, work: Assignment, admission: Admission) -> Result<Trained, TrainError> {
    if mesh.leaving.is_set() {
        return Err(TrainError::Leaving);
    }
    if admission == Admission::Now && !mesh.compute.has_room() {
        // Refuse before fetching anything: another home may have a free slot.
        return Err(TrainError::Busy(Busy { slots: mesh.compute.config().slots, waiting: 0 }));
    }
    // Peers send specs too; a trainer checks what it is asked to do.
    work.spec.validate()?;
    if let Some((fold, folds)) = work.fold
        && (!(2..=MAX_FOLDS).contains(&folds) || fold >= folds)
    {
        return Err(TrainError::Failed(format!("fold {fold} of {folds}: folds must be 2 to {MAX_FOLDS}")));
    }
    if work.teacher.is_some() && (!work.boost_from.is_empty() || work.setup.is_some()) {
        return Err(TrainError::Failed("a student learns its teacher's outputs; it is not boosted".into()));
    }
    // Fault injection for tests: `None` unless the node was started lying.
    let lie = byzantine::lie_for(mesh, &work).await;
    let began = std::time::Instant::now();
    let start = if work.start.is_empty() { None } else { Some(average(mesh, &work.start).await?) };
    let pipeline = mesh.load_pipeline(work.pipeline).await?;
    let setup: Option<BoostSetup> = match work.setup {
        Some(id) => {
            let setup: BoostSetup = mesh.load(id).await?;
            setup.check(&pipeline).map_err(|e| format!("boosting setup {id}: {e}"))?;
            Some(setup)
        }
        None => None,
    };
    let mut loaded = Vec::new();
    for id in &work.shards {
        loaded.push(mesh.load_shard(*id).await?);
    }
    let mut previous = Vec::new();
    for (id, weight) in &work.boost_from {
        previous.push((mesh.load::<Member>(*id).await?, *weight));
    }
    let teacher = match work.teacher {
        Some(id) => Some(Teacher::load(mesh, id, &pipeline).await?),
        None => None,
    };
    let (net, board, peer) = (mesh.net.clone(), mesh.progress.clone(), mesh.peer_id.clone());
    let gpu = mesh.gpu.clone();
    let (job, task) = (work.job, work.task);
    let loaded_in = began.elapsed();
    let training = move || -> Result<(Member, u64, Vec<f64>, String, std::time::Duration), String> {
        let rows_began = std::time::Instant::now();
        let (holdout, fold) = (work.holdout, work.fold);
        let training_row = |s: Split, row: u64| {
            s == Split::Train
                && !(holdout && held_out_for_stacking(row))
                && fold.is_none_or(|(fold, folds)| in_fold(row, folds) != fold)
        };
        let validation_row = |s: Split, _| s == Split::Validation;
        let linear = matches!(work.spec.learner, Learner::Linear);
        let (mut train, mut valid) = (Vec::new(), Vec::new());
        for shard in &loaded {
            let (t, v) = training_rows(&pipeline, shard, training_row, linear)?;
            train.push(t);
            valid.push(v);
        }
        let mut train = RowSet::concat(train, pipeline.task, pipeline.features)?;
        let mut valid = RowSet::concat(valid, pipeline.task, pipeline.features)?;
        if !previous.is_empty() {
            train = boosted_rows(train, &previous, Some(work.seed));
            valid = boosted_rows(valid, &previous, None);
        }
        if lie == Some(Lie::LabelFlip) {
            byzantine::flip_labels(&mut train.labels, pipeline.classes.len());
            byzantine::flip_labels(&mut valid.labels, pipeline.classes.len());
        }
        let mut published: Option<std::time::Instant> = None;
        let mut report = |epoch: usize, epochs: usize, loss: f64| {
            let progress = TrainingProgress {
                job: work.job,
                task: work.task,
                epoch: epoch as u32 + 1,
                epochs: epochs as u32,
                loss,
            };
            board.record(peer.clone(), progress.clone());
            if epoch + 1 == epochs || published.is_none_or(|at| at.elapsed() >= PROGRESS_GOSSIP_EVERY) {
                published = Some(std::time::Instant::now());
                net.publish_progress(progress);
            }
        };
        let trained_rows = train.rows() as u64;
        let rows_in = rows_began.elapsed();
        let fitted = match &teacher {
            Some(teacher) => {
                let train = teacher.teach(&loaded, training_row, train)?;
                let valid = teacher.teach(&loaded, validation_row, valid)?;
                teacher::fit_student(&work.spec, pipeline.task, &train, &valid, start, work.seed, &mut report)?
            }
            None => learners::fit(
                &work.spec,
                pipeline.task,
                pipeline.classes.len(),
                &train,
                Some(&valid),
                start,
                setup.as_ref(),
                work.seed,
                Some(&gpu),
                &mut report,
            )?,
        };
        let (member, rows) = match lie {
            Some(lie) => byzantine::falsify(lie, fitted.member, trained_rows),
            None => (fitted.member, trained_rows),
        };
        Ok((member, rows, fitted.curve, fitted.backend, rows_in))
    };
    let (member, rows, curve, backend, rows_in) = match admission {
        Admission::Wait => mesh.compute.run_waiting(Work::Training, training).await?,
        Admission::Now => mesh.compute.run_now(Work::Training, training).await??,
    };
    let fitted_in = began.elapsed();
    let weights = mesh.save_kept(&member, BlobKind::Model).await?;
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let fit_ms = ms(fitted_in.saturating_sub(loaded_in + rows_in));
    let (load_ms, save_ms) = (ms(loaded_in), ms(began.elapsed() - fitted_in));
    let rows_ms = ms(rows_in);
    tracing::debug!(%job, task, load_ms, rows_ms, fit_ms, save_ms, "task trained");
    Ok(Trained { weights, rows, curve, backend })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mass_protocol::features::PipelineSpec;

    use super::*;
    use crate::{
        datasets::{IngestOptions, SplitChoice},
        fuzz::fixture::ingested_and_fitted,
    };

    /// `csv` ingested and a default pipeline fitted on it.
    fn ingested(csv: &str) -> (FittedPipeline, Vec<Shard>) {
        let options = IngestOptions {
            name: "pixels".into(),
            label: "label".into(),
            kinds: BTreeMap::new(),
            shard_rows: 40,
            split: SplitChoice::Seeded { seed: 1, validation: 0.0, test: 0.25 },
            threads: 1,
        };
        let (_, shards, _, pipeline) = ingested_and_fitted(csv, &options, &PipelineSpec::default());
        (pipeline, shards)
    }

    fn pixels(missing_at: Option<usize>) -> String {
        let mut csv = String::from("a,b,c,label\n");
        for r in 0..100usize {
            let a = if missing_at == Some(r) { String::new() } else { ((r * 37) % 256).to_string() };
            csv.push_str(&format!("{a},{},{},{}\n", (r * 11) % 200, 255 - r % 256, r % 3));
        }
        csv
    }

    #[test]
    fn scaled_bytes_stand_for_exactly_the_features_of_their_rows() {
        let (pipeline, shards) = ingested(&pixels(None));
        for shard in &shards {
            let (rows, validation) = training_rows(&pipeline, shard, |s, _| s == Split::Train, true).unwrap();
            let Features::Bytes(bytes) = &rows.features else { panic!("columns of bytes, none missing") };
            assert!(matches!(validation.features, Features::Bytes(_)));
            // Decoded, they are the pipeline's features of the same rows, bit for bit.
            let floats = rows_of(&pipeline, shard, Split::Train).unwrap();
            let Features::Floats(want) = &floats.features else { panic!("judging rows are f32") };
            assert_eq!(floats.global_rows, rows.global_rows);
            assert_eq!(bytes.values.dim(), want.dim());
            let decoded = rows.x();
            assert!(decoded.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits()));
            // Picked rows keep their bytes; sets of bytes concatenate as bytes.
            let picked = rows.select(&[2, 0, 2]);
            let Features::Bytes(picked_bytes) = &picked.features else { panic!("picked rows stay bytes") };
            assert_eq!(picked_bytes.values.row(1), bytes.values.row(0));
            let both = RowSet::concat(vec![picked.clone(), picked], pipeline.task, pipeline.features).unwrap();
            assert!(matches!(&both.features, Features::Bytes(b) if b.values.nrows() == 6));
        }
    }

    #[test]
    fn a_missing_cell_leaves_the_rows_as_f32_features() {
        let (pipeline, shards) = ingested(&pixels(Some(5)));
        let with_hole = training_rows(&pipeline, &shards[0], |s, _| s == Split::Train, true).unwrap().0;
        assert!(
            matches!(with_hole.features, Features::Floats(_)),
            "a missing byte has no byte to stand for its feature"
        );
        let whole = training_rows(&pipeline, &shards[1], |s, _| s == Split::Train, true).unwrap().0;
        assert!(matches!(whole.features, Features::Bytes(_)));
        // A set of bytes and one of f32 concatenate as f32, rows in order.
        let mixed = RowSet::concat(vec![with_hole.clone(), whole.clone()], pipeline.task, pipeline.features).unwrap();
        let Features::Floats(x) = &mixed.features else { panic!("mixed parts are f32") };
        assert_eq!(x.nrows(), with_hole.rows() + whole.rows());
        assert_eq!(x.row(with_hole.rows()), whole.x().row(0));
        assert!(matches!(rows_of(&pipeline, &shards[1], Split::Train).unwrap().features, Features::Floats(_)));
    }
}

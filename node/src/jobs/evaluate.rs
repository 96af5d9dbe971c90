//! Judging a trained model on test rows, and fitting stacking's meta-model
//! on held-out rows. Pure: shards in, figures out.

use mass_kernels::models::{
    Member, Mlp,
    ensemble::{self, argmax_rows},
    metrics,
};
use mass_protocol::{
    dataset::{Shard, Split},
    features::FittedPipeline,
    jobs::{Combine, Evaluation, RobustnessCheck, Task, held_out_for_stacking},
};
use ndarray::{Array2, Axis};

use super::{
    learners::{Labels, RowSet},
    robustness,
    task::{rows_of, rows_where},
};

/// The model's figures on the rows of `split` (the test rows; a study's
/// trials use the validation rows), and each member's alone (accuracy, or
/// R2 for a regressor).
pub fn evaluate(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
    split: Split,
) -> Result<(Evaluation, Vec<f64>), String> {
    let mut parts = Vec::new();
    for shard in shards {
        parts.push(rows_of(pipeline, shard, split)?);
    }
    let test = RowSet::concat(parts, pipeline.task, pipeline.features)?;
    if test.rows() == 0 {
        return Err(format!("the dataset has no {split:?} rows to evaluate on").to_lowercase());
    }
    let outputs: Vec<Array2<f32>> = members.iter().map(|m| m.predict(test.x.view())).collect();
    let combined = ensemble::combine(&outputs, combine, meta);
    Ok(match &test.labels {
        Labels::Classes(truth) => {
            let classes = pipeline.classes.len();
            let predicted = argmax_rows(&combined);
            let probabilities: Vec<Vec<f64>> =
                combined.rows().into_iter().map(|r| r.iter().map(|v| f64::from(*v)).collect()).collect();
            let mut evaluation = Evaluation::classification(
                truth.len() as u64,
                metrics::accuracy(truth, &predicted),
                metrics::class_scores(truth, &predicted, classes).macro_f1,
                metrics::log_loss(truth, &probabilities),
                metrics::confusion_matrix(truth, &predicted, classes),
            );
            evaluation.roc_auc = metrics::roc_auc_classes(truth, &probabilities, classes);
            evaluation.calibration_error = Some(metrics::calibration_error(truth, &probabilities));
            let each = outputs.iter().map(|o| metrics::accuracy(truth, &argmax_rows(o))).collect();
            (evaluation, each)
        }
        Labels::Values(scaled) => {
            let scale = pipeline.target.ok_or("a regression pipeline without its target scale")?;
            let truth: Vec<f64> = scaled.iter().map(|v| scale.unscale(f64::from(*v))).collect();
            let answers = |out: &Array2<f32>| -> Vec<f64> {
                out.column(0).iter().map(|v| scale.unscale(f64::from(*v))).collect()
            };
            let (rmse, mae, r2) = metrics::regression(&truth, &answers(&combined));
            let evaluation = Evaluation::regression(truth.len() as u64, rmse, mae, r2);
            let each = outputs.iter().map(|o| metrics::regression(&truth, &answers(o)).2).collect();
            (evaluation, each)
        }
    })
}

/// [`evaluate`], with the robustness report: what a registered model carries.
pub fn evaluate_and_report(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
) -> Result<Evaluation, String> {
    let (mut evaluation, _) = evaluate(pipeline, members, combine, meta, shards, Split::Test)?;
    report(&mut evaluation, pipeline, members, combine, meta, shards);
    Ok(evaluation)
}

/// Adds what a registered model's test figures come with: the robustness
/// report, and the validation figure when there are validation rows.
pub fn report(
    evaluation: &mut Evaluation,
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
) {
    evaluation.robustness = robustness(pipeline, members, combine, meta, shards, Split::Test);
    evaluation.validation = headline(pipeline, members, combine, meta, shards, Split::Validation).ok();
}

/// The robustness report: the headline metric (accuracy, or R2) on the
/// rows of `split` degraded each way of [`robustness::REPORT`] that
/// applies to the pipeline. A model that cannot answer degraded input (a
/// one-hot pipeline that refuses unseen categories) gets a note instead.
/// One seed for every report: the same model on the same rows gets the
/// same report however it was made (trained, imported, compressed).
pub fn robustness(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
    split: Split,
) -> Vec<RobustnessCheck> {
    let seed = robustness::REPORT_SEED;
    let mut checks = Vec::new();
    for perturbation in robustness::REPORT {
        if !shards.iter().any(|s| perturbation.applies_to(pipeline, s)) {
            continue;
        }
        let degraded: Vec<Shard> = shards.iter().map(|s| perturbation.apply(pipeline, s, seed)).collect();
        let (metric, note) = match headline(pipeline, members, combine, meta, &degraded, split) {
            Ok(value) => (Some(value), None),
            Err(e) => (None, Some(e)),
        };
        checks.push(RobustnessCheck { perturbation: perturbation.describe(), metric, note });
    }
    checks
}

/// Accuracy, or R2, of the model on the rows of `split`.
fn headline(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
    split: Split,
) -> Result<f64, String> {
    let (evaluation, _) = evaluate(pipeline, members, combine, meta, shards, split)?;
    evaluation.accuracy.or(evaluation.r2).ok_or_else(|| "no metric".into())
}

/// Fits stacking's meta-model on the members' outputs for the training rows
/// they were all trained without: a softmax regression over classes, ridge
/// over values.
pub fn fit_meta(pipeline: &FittedPipeline, members: &[Member], shards: &[Shard], seed: u64) -> Result<Mlp, String> {
    let mut parts = Vec::new();
    for shard in shards {
        parts.push(rows_where(pipeline, shard, |s, row| s == Split::Train && held_out_for_stacking(row))?);
    }
    let held = RowSet::concat(parts, pipeline.task, pipeline.features)?;
    if held.rows() == 0 {
        return Err("stacking found no held-out training rows to fit its meta-model on".into());
    }
    let outputs: Vec<Array2<f32>> = members.iter().map(|m| m.predict(held.x.view())).collect();
    match (&held.labels, pipeline.task) {
        (Labels::Classes(labels), Task::Classification) => {
            Ok(ensemble::fit_meta(&outputs, labels, pipeline.classes.len(), seed))
        }
        (Labels::Values(values), _) => {
            let targets = ndarray::Array1::from(values.clone()).insert_axis(Axis(1));
            ensemble::fit_meta_regressor(&outputs, targets.view())
        }
        _ => Err("held-out labels do not match the task".into()),
    }
}

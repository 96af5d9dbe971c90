//! Judging a trained model on test rows, and fitting stacking's meta-model
//! on held-out rows. Pure: shards in, tallies and figures out. Each shard
//! is tallied alone ([`shard_evaluation`]), so a holder can judge its own
//! shards and the driver only adds the tallies up.

use mass_kernels::models::{Member, Mlp, ensemble};
use mass_protocol::{
    dataset::{Shard, Split},
    evaluation::{EvaluationRows, ShardEvaluation, Tally, in_fold},
    features::FittedPipeline,
    jobs::{Combine, Evaluation, Task, held_out_for_stacking},
};
use ndarray::{Array2, Axis};

use super::{
    learners::{Labels, RowSet},
    robustness,
    task::{rows_of, rows_where},
};

/// The model's figures on the test rows, with the robustness report and
/// the validation figure (what a registered model carries), from shards
/// loaded here: the shards' tallies, added in shard order.
pub fn evaluate_and_report(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
) -> Result<Evaluation, String> {
    let rows = EvaluationRows::Split(Split::Test);
    Ok(merged(pipeline, members, combine, meta, shards, rows, true)?.evaluation("test")?.0)
}

/// How a split's rows are named in messages.
pub fn what(split: Split) -> String {
    format!("{split:?}").to_lowercase()
}

fn merged(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shards: &[Shard],
    rows: EvaluationRows,
    report: bool,
) -> Result<ShardEvaluation, String> {
    let parts = shards
        .iter()
        .map(|shard| shard_evaluation(pipeline, members, combine, meta, shard, rows, report))
        .collect::<Result<Vec<_>, _>>()?;
    ShardEvaluation::sum(parts)?.ok_or_else(|| "the dataset has no shards to evaluate on".into())
}

/// One shard's tallies of the model on `rows`, and with `report` on its
/// degraded copies ([`robustness::REPORT`]) and its validation rows. What a
/// holder answers [`mass_protocol::rpc::Request::EvaluateShard`] with; the
/// model comes from a peer, so its shape is checked before it runs.
pub fn shard_evaluation(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shard: &Shard,
    rows: EvaluationRows,
    report: bool,
) -> Result<ShardEvaluation, String> {
    check_model(pipeline, members, combine, meta)?;
    let whole = shard;
    // Judging transforms (and the report perturbs) every row it is given;
    // the test split is a fifth of a shard, so it is cut out first.
    let part;
    let shard = match rows {
        EvaluationRows::Split(split) => {
            part = rows_in(whole, split);
            &part
        }
        EvaluationRows::Fold { .. } => whole,
    };
    let (model, each) = tallies(pipeline, members, combine, meta, shard, rows, true)?;
    let mut evaluation = ShardEvaluation { model, members: each, robustness: vec![], validation: None };
    if report {
        for (what, degraded) in robustness::report(pipeline, shard, robustness::REPORT_SEED) {
            let result = tallies(pipeline, members, combine, meta, &degraded, rows, false).map(|(t, _)| t);
            evaluation.robustness.push((what, result));
        }
        let validation = EvaluationRows::Split(Split::Validation);
        evaluation.validation =
            tallies(pipeline, members, combine, meta, &rows_in(whole, Split::Validation), validation, false)
                .ok()
                .map(|(t, _)| t);
    }
    Ok(evaluation)
}

/// The rows of `shard` in `split`, as a shard. Its rows are no longer
/// consecutive, so it is only for judging a split (folds need row numbers).
fn rows_in(shard: &Shard, split: Split) -> Shard {
    let keep: Vec<usize> = (0..shard.rows()).filter(|&r| shard.splits[r] == split).collect();
    let columns = shard.columns.iter().map(|column| column.select(&keep)).collect();
    Shard { first_row: shard.first_row, columns, splits: vec![split; keep.len()] }
}

/// Whether the members, rule and meta-model fit the pipeline and each other
/// (so combining their outputs cannot fail).
pub(crate) fn check_model(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
) -> Result<(), String> {
    if members.is_empty() {
        return Err("a model without members".into());
    }
    let outputs = outputs_of(pipeline);
    for (index, member) in members.iter().enumerate() {
        member.validate(pipeline.features, outputs).map_err(|e| format!("sub-model {index}: {e}"))?;
    }
    match combine {
        Combine::WeightedMean(w) | Combine::WeightedSum(w) if w.len() != members.len() => {
            return Err(format!("{} weights for {} members", w.len(), members.len()));
        }
        Combine::WeightedMean(w) | Combine::WeightedSum(w) if w.iter().any(|w| !w.is_finite()) => {
            return Err("a member weight that is not finite".into());
        }
        _ => {}
    }
    if let (Combine::Stacked, Some(meta)) = (combine, meta) {
        Member::Mlp(meta.clone())
            .validate(members.len() * outputs, outputs)
            .map_err(|e| format!("the meta-model: {e}"))?;
    }
    Ok(())
}

fn outputs_of(pipeline: &FittedPipeline) -> usize {
    match pipeline.task {
        Task::Classification => pipeline.classes.len(),
        Task::Regression => 1,
    }
}

/// The model's tally on `rows` of `shard` (`full`: with calibration and
/// AUC), and each member's headline tally.
fn tallies(
    pipeline: &FittedPipeline,
    members: &[Member],
    combine: &Combine,
    meta: Option<&Mlp>,
    shard: &Shard,
    rows: EvaluationRows,
    full: bool,
) -> Result<(Tally, Vec<Tally>), String> {
    let set = match rows {
        EvaluationRows::Split(split) => rows_of(pipeline, shard, split)?,
        EvaluationRows::Fold { fold, folds } => {
            rows_where(pipeline, shard, |s, row| s == Split::Train && in_fold(row, folds) == fold)?
        }
    };
    let outputs: Vec<Array2<f32>> = if set.rows() == 0 {
        vec![Array2::zeros((0, outputs_of(pipeline))); members.len()]
    } else {
        let x = set.x();
        members.iter().map(|m| m.predict(x.view())).collect()
    };
    let combined = ensemble::combine(&outputs, combine, meta);
    Ok(match &set.labels {
        Labels::Classes(truth) => {
            let classes = pipeline.classes.len();
            let tally = |out: &Array2<f32>, full| {
                let out = out.as_standard_layout();
                Tally::classes(truth, out.as_slice().expect("standard layout"), classes, full)
            };
            (tally(&combined, full), outputs.iter().map(|o| tally(o, false)).collect())
        }
        Labels::Values(scaled) => {
            let scale = pipeline.target.ok_or("a regression pipeline without its target scale")?;
            let truth: Vec<f64> = scaled.iter().map(|v| scale.unscale(f64::from(*v))).collect();
            let answers = |out: &Array2<f32>| -> Vec<f64> {
                out.column(0).iter().map(|v| scale.unscale(f64::from(*v))).collect()
            };
            (
                Tally::values(&truth, &answers(&combined)),
                outputs.iter().map(|o| Tally::values(&truth, &answers(o))).collect(),
            )
        }
    })
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
    let outputs: Vec<Array2<f32>> = members.iter().map(|m| m.predict(held.x().view())).collect();
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

#[cfg(test)]
mod tests {
    use mass_kernels::models::{ensemble::argmax_rows, metrics};

    use super::*;
    use crate::fuzz::fixture::fixture;

    #[test]
    fn added_shard_tallies_give_the_figures_of_all_test_rows_at_once() {
        let f = fixture();
        let evaluation = evaluate_and_report(&f.pipeline, &f.members, &Combine::Mean, None, &f.shards).unwrap();
        let parts: Vec<RowSet> = f.shards.iter().map(|s| rows_of(&f.pipeline, s, Split::Test).unwrap()).collect();
        let test = RowSet::concat(parts, f.pipeline.task, f.pipeline.features).unwrap();
        let Labels::Classes(truth) = &test.labels else { panic!("the fixture classifies") };
        let outputs: Vec<Array2<f32>> = f.members.iter().map(|m| m.predict(test.x().view())).collect();
        let combined = ensemble::combine(&outputs, &Combine::Mean, None);
        let probabilities: Vec<Vec<f64>> =
            combined.rows().into_iter().map(|r| r.iter().map(|v| f64::from(*v)).collect()).collect();
        let predicted = argmax_rows(&combined);
        let classes = f.pipeline.classes.len();
        assert_eq!(evaluation.rows, truth.len() as u64);
        assert_eq!(evaluation.accuracy, Some(metrics::accuracy(truth, &predicted)));
        assert_eq!(evaluation.confusion, metrics::confusion_matrix(truth, &predicted, classes));
        assert_eq!(evaluation.macro_f1, Some(metrics::class_scores(truth, &predicted, classes).macro_f1));
        assert!((evaluation.log_loss.unwrap() - metrics::log_loss(truth, &probabilities)).abs() < 1e-9);
        let ece = metrics::calibration_error(truth, &probabilities);
        assert!((evaluation.calibration_error.unwrap() - ece).abs() < 1e-9);
        let exact = metrics::roc_auc_classes(truth, &probabilities, classes).unwrap();
        assert!((evaluation.roc_auc.unwrap() - exact).abs() < 0.01, "{:?} vs {exact}", evaluation.roc_auc);
        assert!(!evaluation.robustness.is_empty(), "the report has its degradations");
        assert!(evaluation.validation.is_some(), "the fixture has validation rows");
    }

    #[test]
    fn a_model_that_does_not_fit_is_refused_with_a_reason_not_run() {
        let f = fixture();
        let shard = &f.shards[0];
        let test = EvaluationRows::Split(Split::Test);
        let judge = |members: &[Member], combine: &Combine| {
            shard_evaluation(&f.pipeline, members, combine, None, shard, test, false).unwrap_err()
        };
        assert!(judge(&[], &Combine::Mean).contains("without members"));
        let weights = Combine::WeightedMean(vec![1.0; f.members.len() + 1]);
        assert!(judge(&f.members, &weights).contains("weights for"), "{}", judge(&f.members, &weights));
        let nan = Combine::WeightedSum(vec![f64::NAN; f.members.len()]);
        assert!(judge(&f.members, &nan).contains("not finite"));
        let folds = EvaluationRows::Fold { fold: 1, folds: 3 };
        let fold = shard_evaluation(&f.pipeline, &f.members, &Combine::Mean, None, shard, folds, false).unwrap();
        let train = shard
            .splits
            .iter()
            .enumerate()
            .filter(|(r, s)| **s == Split::Train && in_fold(shard.first_row + *r as u64, 3) == 1);
        assert_eq!(fold.model.rows(), train.count() as u64, "a fold is its share of the training rows");
    }
}

//! Mergeable evaluation: what some rows say about a model, as sums that add
//! up across shards into the figures a manifest carries. Each shard is
//! judged where it lives; the driver only adds tallies, in shard order, so
//! the figures are the same wherever each shard was judged.

use serde::{Deserialize, Serialize};

use crate::{
    ContentId,
    dataset::Split,
    jobs::{Combine, Evaluation, RobustnessCheck},
};

/// Bins of the expected calibration error (equal width in probability).
pub const CALIBRATION_BINS: usize = 15;
/// Bins of each class's score histogram, from which ROC AUC is read.
pub const AUC_BINS: usize = 2048;
/// Scores are binned by log-odds in ±this: fine near 0 and 1, where a good
/// model's scores crowd, so few positive-negative pairs share a bin.
const AUC_LOGIT_RANGE: f64 = 16.0;

/// Which rows of a shard to judge a model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvaluationRows {
    /// The rows of one split (the test rows; a study's trials: validation).
    Split(Split),
    /// The training rows of cross-validation fold `fold` of `folds`
    /// ([`in_fold`]): the rows that fold's model was trained without.
    Fold { fold: u32, folds: u32 },
}

/// Cross-validation fold of a training row (by global row number): rows
/// are dealt to folds in turn, so every fold sees every shard.
pub fn in_fold(row: u64, folds: u32) -> u32 {
    (row % u64::from(folds.max(1))) as u32
}

/// What a holder is asked to judge: a model (by the blobs it is made of)
/// on some rows of one shard it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateShard {
    pub shard: ContentId,
    pub pipeline: ContentId,
    pub members: Vec<ContentId>,
    pub meta: Option<ContentId>,
    pub combine: Combine,
    pub rows: EvaluationRows,
    /// Also judge the model on degraded input and on the validation rows
    /// (what a registered model's report holds).
    pub report: bool,
}

/// Members a model judged for a peer may have (a job has at most 4,096
/// tasks).
pub const MAX_MEMBERS: usize = 4096;

impl EvaluateShard {
    /// Whether a peer's request is within bounds, before anything it names
    /// is fetched.
    pub fn check(&self) -> Result<(), String> {
        if self.members.is_empty() || self.members.len() > MAX_MEMBERS {
            return Err(format!("{} members; a model has 1 to {MAX_MEMBERS}", self.members.len()));
        }
        if let EvaluationRows::Fold { fold, folds } = self.rows
            && (!(2..=crate::jobs::MAX_FOLDS).contains(&folds) || fold >= folds)
        {
            return Err(format!("fold {fold} of {folds}: folds must be 2 to {}", crate::jobs::MAX_FOLDS));
        }
        Ok(())
    }
}

/// One shard's tallies of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEvaluation {
    /// The model, on the asked rows (calibration and AUC included).
    pub model: Tally,
    /// Each member alone, headline only.
    pub members: Vec<Tally>,
    /// Per degradation (by description): the model on the degraded rows, or
    /// why it could not answer. Empty unless a report was asked.
    pub robustness: Vec<(String, Result<Tally, String>)>,
    /// The model on the shard's validation rows, when a report was asked.
    pub validation: Option<Tally>,
}

/// Sums of a model's answers against the truth on some rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Tally {
    Classes(ClassTally),
    Values(ValueTally),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassTally {
    /// `confusion[truth][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Sum over rows of -ln p(true class), p clipped to [1e-15, 1].
    pub log_loss: f64,
    /// Per bin of the top class's probability: rows, sum of that
    /// probability, rows where the top class was right. Empty when not kept.
    pub calibration: Vec<(u64, f64, u64)>,
    /// Per scored class (the second when there are two, else each), per
    /// log-odds bin of its probability: (rows of the class, other rows).
    /// Empty when not kept.
    pub auc: Vec<Vec<(u64, u64)>>,
}

/// Moments of regression errors and targets (the targets' mean and sum of
/// squared deviations merge by Chan's rule, which stays exact for large
/// means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueTally {
    pub rows: u64,
    pub squared_error: f64,
    pub absolute_error: f64,
    pub mean: f64,
    pub m2: f64,
}

impl Tally {
    /// The tally of class probabilities (`probabilities`: rows x classes,
    /// row-major) against true classes; `full` keeps what the headline
    /// does not need (calibration, AUC).
    pub fn classes(truth: &[usize], probabilities: &[f32], classes: usize, full: bool) -> Tally {
        let mut tally = ClassTally::empty(classes, full);
        for (row, &t) in truth.iter().enumerate() {
            let p = &probabilities[row * classes..(row + 1) * classes];
            let (top, confidence) = p.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (c, &v)| {
                if f64::from(v) > best.1 { (c, f64::from(v)) } else { best }
            });
            if t < classes {
                tally.confusion[t][top] += 1;
                tally.log_loss -= f64::from(p[t]).clamp(1e-15, 1.0).ln();
            }
            if full {
                let confidence = confidence.clamp(0.0, 1.0);
                let bin = ((confidence * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
                let slot = &mut tally.calibration[bin];
                (slot.0, slot.1, slot.2) = (slot.0 + 1, slot.1 + confidence, slot.2 + u64::from(top == t));
                for (scored, histogram) in tally.auc.iter_mut().enumerate() {
                    let class = scored_class(scored, classes);
                    let bin = auc_bin(f64::from(p[class]));
                    if t == class { histogram[bin].0 += 1 } else { histogram[bin].1 += 1 }
                }
            }
        }
        Tally::Classes(tally)
    }

    /// The tally of predicted values against true ones.
    pub fn values(truth: &[f64], predicted: &[f64]) -> Tally {
        let rows = truth.len() as u64;
        let mean = if truth.is_empty() { 0.0 } else { truth.iter().sum::<f64>() / truth.len() as f64 };
        Tally::Values(ValueTally {
            rows,
            squared_error: truth.iter().zip(predicted).map(|(t, p)| (t - p).powi(2)).sum(),
            absolute_error: truth.iter().zip(predicted).map(|(t, p)| (t - p).abs()).sum(),
            mean,
            m2: truth.iter().map(|t| (t - mean).powi(2)).sum(),
        })
    }

    pub fn rows(&self) -> u64 {
        match self {
            Tally::Classes(c) => c.confusion.iter().flatten().sum(),
            Tally::Values(v) => v.rows,
        }
    }

    /// Adds `other`'s rows; tallies of different shapes (another task or
    /// class count, or kept parts that differ) do not add.
    pub fn merge(&mut self, other: &Tally) -> Result<(), String> {
        match (self, other) {
            (Tally::Classes(a), Tally::Classes(b)) => a.merge(b),
            (Tally::Values(a), Tally::Values(b)) => {
                a.merge(b);
                Ok(())
            }
            _ => Err("a classification tally and a regression tally do not add".into()),
        }
    }

    /// Whether a tally from a peer has the shape a model with `classes`
    /// classes (0: a regressor) gives, with finite sums.
    pub fn check(&self, classes: usize) -> Result<(), String> {
        match self {
            Tally::Classes(c) => c.check(classes),
            Tally::Values(v) if classes == 0 => {
                let sums = [v.squared_error, v.absolute_error, v.mean, v.m2];
                if sums.iter().all(|s| s.is_finite()) && v.squared_error >= 0.0 && v.m2 >= 0.0 {
                    Ok(())
                } else {
                    Err("a regression tally with sums that are not finite or negative".into())
                }
            }
            Tally::Values(_) => Err(format!("a regression tally for a model of {classes} classes")),
        }
    }

    /// Accuracy, or R2: what early stopping, studies and reports judge by.
    pub fn headline(&self) -> Option<f64> {
        if self.rows() == 0 {
            return None;
        }
        let evaluation = self.evaluation();
        evaluation.accuracy.or(evaluation.r2)
    }

    /// The figures of these rows.
    pub fn evaluation(&self) -> Evaluation {
        match self {
            Tally::Classes(c) => c.evaluation(),
            Tally::Values(v) => {
                let n = v.rows.max(1) as f64;
                let r2 = if v.m2 == 0.0 { 0.0 } else { 1.0 - v.squared_error / v.m2 };
                Evaluation::regression(v.rows, (v.squared_error / n).sqrt(), v.absolute_error / n, r2)
            }
        }
    }
}

/// The class whose scores histogram `scored` holds.
fn scored_class(scored: usize, classes: usize) -> usize {
    if classes == 2 { 1 } else { scored }
}

fn auc_bin(p: f64) -> usize {
    let p = if p.is_nan() { 0.0 } else { p.clamp(1e-300, 1.0) };
    let logit = (p.ln() - (-p).ln_1p()).clamp(-AUC_LOGIT_RANGE, AUC_LOGIT_RANGE);
    (((logit + AUC_LOGIT_RANGE) / (2.0 * AUC_LOGIT_RANGE) * AUC_BINS as f64) as usize).min(AUC_BINS - 1)
}

impl ClassTally {
    fn empty(classes: usize, full: bool) -> Self {
        let scored = if classes == 2 { 1 } else { classes };
        ClassTally {
            confusion: vec![vec![0; classes]; classes],
            log_loss: 0.0,
            calibration: if full { vec![(0, 0.0, 0); CALIBRATION_BINS] } else { vec![] },
            auc: if full { vec![vec![(0, 0); AUC_BINS]; scored] } else { vec![] },
        }
    }

    fn merge(&mut self, other: &ClassTally) -> Result<(), String> {
        let shape = |t: &ClassTally| (t.confusion.len(), t.calibration.len(), t.auc.len());
        if shape(self) != shape(other) {
            return Err("class tallies of different shapes do not add".into());
        }
        for (a, b) in self.confusion.iter_mut().zip(&other.confusion) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.checked_add(*y).ok_or("a confusion count overflowed")?;
            }
        }
        self.log_loss += other.log_loss;
        for (a, b) in self.calibration.iter_mut().zip(&other.calibration) {
            *a = (a.0.saturating_add(b.0), a.1 + b.1, a.2.saturating_add(b.2));
        }
        for (a, b) in self.auc.iter_mut().zip(&other.auc) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = (x.0.saturating_add(y.0), x.1.saturating_add(y.1));
            }
        }
        Ok(())
    }

    fn check(&self, classes: usize) -> Result<(), String> {
        let scored = if classes == 2 { 1 } else { classes };
        if self.confusion.len() != classes || self.confusion.iter().any(|r| r.len() != classes) {
            return Err(format!("a confusion matrix that is not {classes} x {classes}"));
        }
        if !(self.calibration.is_empty() || self.calibration.len() == CALIBRATION_BINS) {
            return Err(format!("{} calibration bins, not {CALIBRATION_BINS}", self.calibration.len()));
        }
        if !(self.auc.is_empty() || (self.auc.len() == scored && self.auc.iter().all(|h| h.len() == AUC_BINS))) {
            return Err(format!("score histograms that are not {scored} x {AUC_BINS}"));
        }
        let rows = self.confusion.iter().flatten().try_fold(0u64, |a, b| a.checked_add(*b));
        if rows.is_none() || !self.log_loss.is_finite() || self.log_loss < 0.0 {
            return Err("a class tally with overflowing counts or a log-loss that is not finite".into());
        }
        if self.calibration.iter().any(|b| !b.1.is_finite()) {
            return Err("calibration sums that are not finite".into());
        }
        Ok(())
    }

    fn evaluation(&self) -> Evaluation {
        let classes = self.confusion.len();
        let rows: u64 = self.confusion.iter().flatten().sum();
        let right: u64 = (0..classes).map(|c| self.confusion[c][c]).sum();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let f1: Vec<f64> = (0..classes)
            .map(|c| {
                let predicted: u64 = self.confusion.iter().map(|r| r[c]).sum();
                let actual: u64 = self.confusion[c].iter().sum();
                let (p, r) = (ratio(self.confusion[c][c], predicted), ratio(self.confusion[c][c], actual));
                if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
            })
            .collect();
        let macro_f1 = if f1.is_empty() { 0.0 } else { f1.iter().sum::<f64>() / f1.len() as f64 };
        let mut evaluation = Evaluation::classification(
            rows,
            ratio(right, rows),
            macro_f1,
            self.log_loss / rows.max(1) as f64,
            self.confusion.clone(),
        );
        if !self.calibration.is_empty() {
            let n = rows.max(1) as f64;
            evaluation.calibration_error = Some(
                self.calibration.iter().map(|&(_, confidence, right)| (confidence - right as f64).abs() / n).sum(),
            );
        }
        let each: Vec<f64> = self.auc.iter().filter_map(|h| auc_of(h)).collect();
        evaluation.roc_auc = (!each.is_empty()).then(|| each.iter().sum::<f64>() / each.len() as f64);
        evaluation
    }
}

/// ROC AUC from a histogram of scores ascending: the chance a positive
/// outscores a negative, pairs in one bin counted half.
fn auc_of(histogram: &[(u64, u64)]) -> Option<f64> {
    let positives: u64 = histogram.iter().map(|b| b.0).sum();
    let negatives: u64 = histogram.iter().map(|b| b.1).sum();
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut below = 0.0;
    let mut wins = 0.0;
    for &(pos, neg) in histogram {
        wins += pos as f64 * (below + neg as f64 / 2.0);
        below += neg as f64;
    }
    Some(wins / (positives as f64 * negatives as f64))
}

impl ValueTally {
    fn merge(&mut self, other: &ValueTally) {
        let (n_a, n_b) = (self.rows as f64, other.rows as f64);
        let n = n_a + n_b;
        if n > 0.0 {
            let delta = other.mean - self.mean;
            self.m2 += other.m2 + delta * delta * n_a * n_b / n;
            self.mean += delta * n_b / n;
        }
        self.rows = self.rows.saturating_add(other.rows);
        self.squared_error += other.squared_error;
        self.absolute_error += other.absolute_error;
    }
}

impl ShardEvaluation {
    /// Whether a peer's answer fits a model of `classes` classes (0: a
    /// regressor) with `members` members.
    pub fn check(&self, classes: usize, members: usize) -> Result<(), String> {
        self.model.check(classes)?;
        if self.members.len() != members {
            return Err(format!("{} member tallies for {members} members", self.members.len()));
        }
        self.members.iter().try_for_each(|m| m.check(classes))?;
        for (_, result) in &self.robustness {
            if let Ok(tally) = result {
                tally.check(classes)?;
            }
        }
        self.validation.as_ref().map_or(Ok(()), |t| t.check(classes))
    }

    /// The tallies of `parts` added in their order; `None` when there are
    /// none.
    pub fn sum(parts: impl IntoIterator<Item = ShardEvaluation>) -> Result<Option<ShardEvaluation>, String> {
        let mut total: Option<ShardEvaluation> = None;
        for part in parts {
            match &mut total {
                Some(total) => total.merge(&part)?,
                None => total = Some(part),
            }
        }
        Ok(total)
    }

    /// Adds another shard's tallies.
    pub fn merge(&mut self, other: &ShardEvaluation) -> Result<(), String> {
        self.model.merge(&other.model)?;
        if self.members.len() != other.members.len() {
            return Err("shard evaluations of different member counts do not add".into());
        }
        for (a, b) in self.members.iter_mut().zip(&other.members) {
            a.merge(b)?;
        }
        for (name, result) in &other.robustness {
            let Some((_, slot)) = self.robustness.iter_mut().find(|(n, _)| n == name) else {
                self.robustness.push((name.clone(), result.clone()));
                continue;
            };
            // A degradation the model could not answer on one shard has no figure.
            match result {
                Err(e) if slot.is_ok() => *slot = Err(e.clone()),
                Ok(theirs) => {
                    if let Ok(mine) = slot {
                        mine.merge(theirs)?;
                    }
                }
                Err(_) => {}
            }
        }
        match (&mut self.validation, &other.validation) {
            (Some(a), Some(b)) => a.merge(b)?,
            (mine @ None, Some(b)) => *mine = Some(b.clone()),
            _ => {}
        }
        Ok(())
    }

    /// The figures of all the rows tallied; an error when there were none.
    pub fn evaluation(&self, what: &str) -> Result<(Evaluation, Vec<f64>), String> {
        if self.model.rows() == 0 {
            return Err(format!("the dataset has no {what} rows to evaluate on"));
        }
        let mut evaluation = self.model.evaluation();
        evaluation.robustness = self
            .robustness
            .iter()
            .map(|(perturbation, result)| {
                let (metric, note) = match result {
                    Ok(tally) => match tally.headline() {
                        Some(value) => (Some(value), None),
                        None => (None, Some(format!("no {what} rows to evaluate on"))),
                    },
                    Err(e) => (None, Some(e.clone())),
                };
                RobustnessCheck { perturbation: perturbation.clone(), metric, note }
            })
            .collect();
        evaluation.validation = self.validation.as_ref().and_then(Tally::headline);
        let each = self.members.iter().map(|m| m.headline().unwrap_or(0.0)).collect();
        Ok((evaluation, each))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(rows: &[[f32; 3]]) -> Vec<f32> {
        rows.iter().flatten().copied().collect()
    }

    #[test]
    fn shards_added_give_the_figures_of_all_rows_at_once() {
        let truth = [0, 1, 2, 1, 0, 2, 2];
        let probabilities = flat(&[
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.3, 0.4],
            [0.5, 0.4, 0.1],
            [0.6, 0.1, 0.3],
            [0.2, 0.2, 0.6],
            [0.1, 0.6, 0.3],
        ]);
        let whole = Tally::classes(&truth, &probabilities, 3, true);
        let mut added = Tally::classes(&truth[..3], &probabilities[..9], 3, true);
        added.merge(&Tally::classes(&truth[3..], &probabilities[9..], 3, true)).unwrap();
        assert_eq!(added.rows(), 7);
        let (a, b) = (whole.evaluation(), added.evaluation());
        assert_eq!(a.confusion, b.confusion);
        assert_eq!(a.accuracy, Some(5.0 / 7.0));
        assert!((a.log_loss.unwrap() - b.log_loss.unwrap()).abs() < 1e-12);
        assert!((a.calibration_error.unwrap() - b.calibration_error.unwrap()).abs() < 1e-12);
        assert_eq!(a.roc_auc, b.roc_auc);
    }

    #[test]
    fn auc_from_histograms_matches_ranks_when_scores_fall_in_distinct_bins() {
        // Binary: the second class's probability; one misordered pair of four.
        let truth = [0, 1, 0, 1];
        let probabilities: Vec<f32> = [0.2, 0.5, 0.6, 0.9].iter().flat_map(|p| [1.0 - p, *p]).collect();
        let tally = Tally::classes(&truth, &probabilities, 2, true);
        assert_eq!(tally.evaluation().roc_auc, Some(0.75));
        // Confident scores near 1 still land in distinct bins.
        let near_one: Vec<f32> = [0.9990, 0.9999].iter().flat_map(|p| [1.0 - p, *p]).collect();
        let tally = Tally::classes(&[0, 1], &near_one, 2, true);
        assert_eq!(tally.evaluation().roc_auc, Some(1.0));
    }

    #[test]
    fn regression_moments_merge_exactly_even_with_a_large_mean() {
        let truth: Vec<f64> = (0..100).map(|i| 1e9 + f64::from(i)).collect();
        let predicted: Vec<f64> = truth.iter().map(|t| t + 0.5).collect();
        let whole = Tally::values(&truth, &predicted);
        let mut added = Tally::values(&truth[..37], &predicted[..37]);
        added.merge(&Tally::values(&truth[37..], &predicted[37..])).unwrap();
        let (a, b) = (whole.evaluation(), added.evaluation());
        assert_eq!(a.rows, b.rows);
        assert!((a.r2.unwrap() - b.r2.unwrap()).abs() < 1e-9, "{a:?} {b:?}");
        assert!((b.rmse.unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn tallies_of_other_shapes_are_refused_not_added() {
        let mut three = Tally::classes(&[0], &[1.0, 0.0, 0.0], 3, true);
        let two = Tally::classes(&[0], &[1.0, 0.0], 2, true);
        assert!(three.merge(&two).is_err());
        assert!(three.merge(&Tally::values(&[1.0], &[1.0])).is_err());
        assert!(two.check(3).is_err());
        assert!(three.check(3).is_ok());
        let Tally::Classes(mut forged) = three.clone() else { unreachable!() };
        forged.log_loss = f64::NAN;
        assert!(Tally::Classes(forged).check(3).is_err());
    }

    #[test]
    fn a_degradation_one_shard_could_not_answer_has_no_figure() {
        let tally = Tally::values(&[1.0, 2.0], &[1.0, 2.0]);
        let shard = |result: Result<Tally, String>| ShardEvaluation {
            model: tally.clone(),
            members: vec![tally.clone()],
            robustness: vec![("unseen categories".into(), result)],
            validation: None,
        };
        let mut merged = shard(Ok(tally.clone()));
        merged.merge(&shard(Err("category 'x' was not seen".into()))).unwrap();
        merged.merge(&shard(Ok(tally.clone()))).unwrap();
        let (evaluation, members) = merged.evaluation("test").unwrap();
        assert_eq!(evaluation.robustness[0].metric, None);
        assert_eq!(evaluation.robustness[0].note.as_deref(), Some("category 'x' was not seen"));
        assert_eq!(members, vec![1.0]);
        assert_eq!(evaluation.rows, 6);
    }

    #[test]
    fn a_peer_request_out_of_bounds_is_refused_before_any_fetch() {
        let ask = |members: usize, rows| EvaluateShard {
            shard: ContentId::of(b"s"),
            pipeline: ContentId::of(b"p"),
            members: vec![ContentId::of(b"m"); members],
            meta: None,
            combine: Combine::Mean,
            rows,
            report: false,
        };
        let test = EvaluationRows::Split(Split::Test);
        assert!(ask(1, test).check().is_ok());
        assert!(ask(0, test).check().unwrap_err().contains("0 members"));
        assert!(ask(MAX_MEMBERS + 1, test).check().is_err());
        assert!(ask(1, EvaluationRows::Fold { fold: 2, folds: 5 }).check().is_ok());
        assert!(ask(1, EvaluationRows::Fold { fold: 5, folds: 5 }).check().is_err());
        assert!(ask(1, EvaluationRows::Fold { fold: 0, folds: 0 }).check().is_err());
    }

    #[test]
    fn folds_deal_rows_in_turn() {
        let counts = (0..100u64).fold([0; 5], |mut c, r| {
            c[in_fold(r, 5) as usize] += 1;
            c
        });
        assert_eq!(counts, [20; 5]);
    }
}

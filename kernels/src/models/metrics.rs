//! Metrics of predictions against truth.

/// Fraction of predictions equal to the truth.
pub fn accuracy(truth: &[usize], predicted: &[usize]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    truth.iter().zip(predicted).filter(|(t, p)| t == p).count() as f64 / truth.len() as f64
}

/// `matrix[t][p]`: rows with truth `t` predicted as `p`.
pub fn confusion_matrix(truth: &[usize], predicted: &[usize], classes: usize) -> Vec<Vec<u64>> {
    let mut matrix = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        if t < classes && p < classes {
            matrix[t][p] += 1;
        }
    }
    matrix
}

/// Per-class precision, recall and F1, and their unweighted (macro) means.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f1: Vec<f64>,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
}

pub fn class_scores(truth: &[usize], predicted: &[usize], classes: usize) -> ClassScores {
    let m = confusion_matrix(truth, predicted, classes);
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut precision = Vec::new();
    let mut recall = Vec::new();
    let mut f1 = Vec::new();
    for (c, row) in m.iter().enumerate() {
        let tp = row[c];
        let predicted_c: u64 = m.iter().map(|r| r[c]).sum();
        let actual_c: u64 = row.iter().sum();
        let (p, r) = (ratio(tp, predicted_c), ratio(tp, actual_c));
        precision.push(p);
        recall.push(r);
        f1.push(if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) });
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    ClassScores {
        macro_precision: mean(&precision),
        macro_recall: mean(&recall),
        macro_f1: mean(&f1),
        precision,
        recall,
        f1,
    }
}

/// Mean negative log-likelihood of the true class; probabilities are clipped
/// to [1e-15, 1] as scikit-learn does.
pub fn log_loss(truth: &[usize], probabilities: &[Vec<f64>]) -> f64 {
    let total: f64 = truth.iter().zip(probabilities).map(|(&t, p)| -p[t].clamp(1e-15, 1.0).ln()).sum();
    total / truth.len().max(1) as f64
}

/// Area under the ROC curve of scores for the positive class (ties counted
/// half), via the rank-sum statistic.
pub fn roc_auc(positive: &[bool], scores: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[order[k]] = rank;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = positive.iter().zip(&ranks).filter(|(p, _)| **p).map(|(_, r)| r).sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// ROC AUC of class probabilities: the second class's when there are two
/// classes, else the mean over classes of each against the rest (classes
/// absent from `truth` left out, as scikit-learn's `ovr` macro average).
pub fn roc_auc_classes(truth: &[usize], probabilities: &[Vec<f64>], classes: usize) -> Option<f64> {
    let of_class = |c: usize| {
        let positive: Vec<bool> = truth.iter().map(|&t| t == c).collect();
        let scores: Vec<f64> = probabilities.iter().map(|p| p[c]).collect();
        roc_auc(&positive, &scores)
    };
    if classes == 2 {
        return of_class(1);
    }
    let each: Vec<f64> = (0..classes).filter_map(of_class).collect();
    (!each.is_empty()).then(|| each.iter().sum::<f64>() / each.len() as f64)
}

/// Bins of the expected calibration error.
pub const CALIBRATION_BINS: usize = 15;

/// Expected calibration error: rows binned by the top class's probability
/// (15 equal-width bins), the gap between each bin's mean confidence and
/// its accuracy, weighted by the bin's share of the rows.
pub fn calibration_error(truth: &[usize], probabilities: &[Vec<f64>]) -> f64 {
    let mut bins = [(0usize, 0.0f64, 0usize); CALIBRATION_BINS];
    for (&t, p) in truth.iter().zip(probabilities) {
        let (top, confidence) =
            p.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (c, &v)| if v > best.1 { (c, v) } else { best });
        let confidence = confidence.clamp(0.0, 1.0);
        let bin = ((confidence * CALIBRATION_BINS as f64) as usize).min(CALIBRATION_BINS - 1);
        bins[bin].0 += 1;
        bins[bin].1 += confidence;
        bins[bin].2 += usize::from(top == t);
    }
    let n = truth.len().max(1) as f64;
    bins.iter().filter(|b| b.0 > 0).map(|&(_, confidence, correct)| (confidence - correct as f64).abs() / n).sum()
}

/// Root mean squared error, mean absolute error and R².
pub fn regression(truth: &[f64], predicted: &[f64]) -> (f64, f64, f64) {
    let n = truth.len().max(1) as f64;
    let mse = truth.iter().zip(predicted).map(|(t, p)| (t - p).powi(2)).sum::<f64>() / n;
    let mae = truth.iter().zip(predicted).map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
    let mean = truth.iter().sum::<f64>() / n;
    let total = truth.iter().map(|t| (t - mean).powi(2)).sum::<f64>();
    let r2 = if total == 0.0 { 0.0 } else { 1.0 - mse * n / total };
    (mse.sqrt(), mae, r2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_error_is_the_weighted_gap_between_confidence_and_accuracy() {
        // Four rows at confidence 0.9 (bin 13), three of them right: gap 0.15.
        let probabilities = vec![vec![0.9, 0.1]; 4];
        assert!((calibration_error(&[0, 0, 0, 1], &probabilities) - 0.15).abs() < 1e-12);
        // Perfectly calibrated: confidence 1.0, always right.
        assert_eq!(calibration_error(&[1, 0], &[vec![0.0, 1.0], vec![1.0, 0.0]]), 0.0);
    }

    #[test]
    fn auc_of_classes_is_binary_or_one_against_the_rest() {
        let probabilities = vec![vec![0.8, 0.2], vec![0.3, 0.7], vec![0.6, 0.4], vec![0.1, 0.9]];
        assert_eq!(roc_auc_classes(&[0, 1, 0, 1], &probabilities, 2), Some(1.0));
        assert_eq!(roc_auc_classes(&[1, 0, 1, 0], &probabilities, 2), Some(0.0));
        let three = vec![vec![0.7, 0.2, 0.1], vec![0.1, 0.8, 0.1], vec![0.2, 0.2, 0.6]];
        assert_eq!(roc_auc_classes(&[0, 1, 2], &three, 3), Some(1.0));
        assert_eq!(roc_auc_classes(&[0, 0, 0], &three, 3), None, "one class only: no curve");
    }

    #[test]
    fn classification_metrics_match_hand_computed_values() {
        let truth = [0, 0, 1, 1, 2];
        let predicted = [0, 1, 1, 1, 0];
        assert_eq!(accuracy(&truth, &predicted), 0.6);
        assert_eq!(confusion_matrix(&truth, &predicted, 3), vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        let s = class_scores(&truth, &predicted, 3);
        assert_eq!(s.precision, vec![0.5, 2.0 / 3.0, 0.0]);
        assert_eq!(s.recall, vec![0.5, 1.0, 0.0]);
        assert!((s.f1[1] - 0.8).abs() < 1e-12);
    }

    #[test]
    fn log_loss_and_auc() {
        let p = vec![vec![0.9, 0.1], vec![0.2, 0.8]];
        assert!((log_loss(&[0, 1], &p) - (-(0.9f64.ln() + 0.8f64.ln()) / 2.0)).abs() < 1e-12);
        assert_eq!(roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]), Some(0.75));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[false, true], &[0.5, 0.5]), Some(0.5));
    }

    #[test]
    fn regression_metrics() {
        let (rmse, mae, r2) = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]);
        assert!((rmse - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((mae - 1.0 / 3.0).abs() < 1e-12);
        assert!((r2 - 0.5).abs() < 1e-12);
    }
}

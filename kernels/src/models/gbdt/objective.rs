//! What boosting minimizes: squared error, logistic loss, softmax loss;
//! their gradients and hessians, starting scores and output transforms.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{
    histogram::{GradPair, Quantizer},
    par,
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Regression: half squared error on (scaled) targets.
    Squared,
    /// Two classes: one score per row, the log-odds of class 1.
    Logistic,
    /// Several classes: one score (and one tree per round) per class.
    Softmax { classes: usize },
}

/// The target of each row.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    Classes(Vec<u32>),
    Values(Vec<f64>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets of `parts`, one after the other.
    pub fn concat(parts: &[Targets]) -> Targets {
        match parts.first() {
            Some(Targets::Values(_)) => Targets::Values(
                parts.iter().flat_map(|p| if let Targets::Values(v) = p { v.clone() } else { vec![] }).collect(),
            ),
            _ => Targets::Classes(
                parts.iter().flat_map(|p| if let Targets::Classes(c) = p { c.clone() } else { vec![] }).collect(),
            ),
        }
    }
}

fn sigmoid(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

impl Objective {
    /// The objective for a task: regression, or classification into `classes`.
    pub fn for_task(classes: Option<usize>) -> Self {
        match classes {
            None => Objective::Squared,
            Some(k) if k <= 2 => Objective::Logistic,
            Some(k) => Objective::Softmax { classes: k },
        }
    }

    /// Scores (and trees per round) per row.
    pub fn scores_per_row(&self) -> usize {
        match self {
            Objective::Softmax { classes } => *classes,
            _ => 1,
        }
    }

    /// Starting scores: the mean target, or the log-odds / log-priors of
    /// the classes' training counts.
    pub fn initial_scores(&self, class_counts: &[u64], mean: f64) -> Vec<f64> {
        let total = class_counts.iter().sum::<u64>().max(1) as f64;
        let prior = |c: usize| (class_counts.get(c).copied().unwrap_or(0) as f64 / total).clamp(1e-6, 1.0 - 1e-6);
        match self {
            Objective::Squared => vec![mean],
            Objective::Logistic => vec![(prior(1) / (1.0 - prior(1))).ln()],
            Objective::Softmax { classes } => (0..*classes).map(|c| prior(c).ln()).collect(),
        }
    }

    /// Quantization scales: gradients of the classification losses are
    /// within [-1, 1]; squared error's within `value_bound` (saturating).
    pub fn quantizer(&self, value_bound: f64) -> Quantizer {
        match self {
            Objective::Squared => Quantizer::new(value_bound, 1.0),
            Objective::Logistic => Quantizer::new(1.0, 0.25),
            Objective::Softmax { classes } => Quantizer::new(1.0, 0.25 * self.softmax_factor(*classes)),
        }
    }

    /// LightGBM's hessian factor for softmax, K / (K - 1).
    fn softmax_factor(&self, classes: usize) -> f64 {
        classes as f64 / (classes.max(2) - 1) as f64
    }

    /// Quantized gradients of every row for output `k`, from the rows'
    /// scores (`rows x scores_per_row`, row-major).
    pub fn gradients(&self, scores: &[f64], targets: &Targets, k: usize, q: &Quantizer, out: &mut Vec<GradPair>) {
        let width = self.scores_per_row();
        let mut all = vec![Vec::new(); width];
        self.all_gradients(scores, targets, q, &mut all, 1);
        *out = std::mem::take(&mut all[k]);
    }

    /// Quantized gradients of every row for every output (`out[k]` for
    /// output `k`), on up to `threads` threads (each takes a range of rows).
    pub fn all_gradients(
        &self,
        scores: &[f64],
        targets: &Targets,
        q: &Quantizer,
        out: &mut [Vec<GradPair>],
        threads: usize,
    ) {
        self.gradients_into(scores, targets, None, q, out, threads);
    }

    /// [`Objective::all_gradients`] from the terms [`Objective::loss_keeping_terms`]
    /// kept for the same scores (the same gradients, without computing the
    /// exponentials again).
    pub(super) fn gradients_from_terms(
        &self,
        scores: &[f64],
        targets: &Targets,
        terms: &[f64],
        q: &Quantizer,
        out: &mut [Vec<GradPair>],
        threads: usize,
    ) {
        assert_eq!(terms.len(), targets.len() * self.terms_per_row(), "terms of every row");
        self.gradients_into(scores, targets, Some(terms), q, out, threads);
    }

    fn gradients_into(
        &self,
        scores: &[f64],
        targets: &Targets,
        terms: Option<&[f64]>,
        q: &Quantizer,
        out: &mut [Vec<GradPair>],
        threads: usize,
    ) {
        let rows = targets.len();
        for o in out.iter_mut() {
            o.clear();
            o.resize(rows, GradPair::default());
        }
        // An exp and a few divisions per row and output: tens of nanoseconds.
        let parts = par::threads_for(rows * out.len() * 32, threads);
        let size = rows.div_ceil(parts).max(1);
        let mut pieces: Vec<(usize, Vec<&mut [GradPair]>)> = (0..parts).map(|p| (p * size, Vec::new())).collect();
        for o in out.iter_mut() {
            for (piece, chunk) in pieces.iter_mut().zip(o.chunks_mut(size)) {
                piece.1.push(chunk);
            }
        }
        par::for_each(pieces, |(first, mut outs)| self.gradients_from(scores, targets, terms, q, first, &mut outs));
    }

    /// Values per row that both a row's loss and its gradients start from:
    /// logistic, the probability; softmax, `exp(s_k - max)` of every score
    /// and their sum; squared error, none.
    fn terms_per_row(&self) -> usize {
        match self {
            Objective::Squared => 0,
            Objective::Logistic => 1,
            Objective::Softmax { classes } => classes + 1,
        }
    }

    /// The terms of a row with scores `row` into `out`.
    fn row_terms(&self, row: &[f64], out: &mut [f64]) {
        match self {
            Objective::Squared => {}
            Objective::Logistic => out[0] = sigmoid(row[0]),
            Objective::Softmax { .. } => {
                let (exp, sum) = out.split_at_mut(row.len());
                sum[0] = softmax_terms(row, exp);
            }
        }
    }

    /// Row `r`'s terms: from `terms` (every row's) when given, else
    /// computed into `own`.
    fn terms_at<'t>(&self, scores: &[f64], terms: Option<&'t [f64]>, r: usize, own: &'t mut [f64]) -> &'t [f64] {
        let per_row = own.len();
        match terms {
            Some(t) => &t[r * per_row..(r + 1) * per_row],
            None => {
                let width = self.scores_per_row();
                self.row_terms(&scores[r * width..(r + 1) * width], own);
                own
            }
        }
    }

    /// Gradients of rows `first..` (as many as `out[0]` holds) into `out`,
    /// from `terms` (every row's) when given.
    fn gradients_from(
        &self,
        scores: &[f64],
        targets: &Targets,
        terms: Option<&[f64]>,
        q: &Quantizer,
        first: usize,
        out: &mut [&mut [GradPair]],
    ) {
        let Some(rows) = out.first().map(|o| o.len()) else { return };
        let width = self.scores_per_row();
        let per_row = self.terms_per_row();
        let mut own = vec![0.0; per_row];
        match (self, targets) {
            (Objective::Squared, Targets::Values(y)) => {
                for (i, gp) in out[0].iter_mut().enumerate() {
                    let r = first + i;
                    *gp = q.quantize(scores[r] - y[r], 1.0);
                }
            }
            (Objective::Logistic, Targets::Classes(c)) => {
                for (i, gp) in out[0].iter_mut().enumerate() {
                    let r = first + i;
                    let p = self.terms_at(scores, terms, r, &mut own)[0];
                    *gp = q.quantize(p - f64::from(u8::from(c[r] == 1)), p * (1.0 - p));
                }
            }
            (Objective::Softmax { classes }, Targets::Classes(c)) => {
                let factor = self.softmax_factor(*classes);
                for i in 0..rows {
                    let r = first + i;
                    let t = self.terms_at(scores, terms, r, &mut own);
                    let (exp, sum) = (&t[..width], t[width]);
                    for (k, o) in out.iter_mut().enumerate() {
                        let p = exp[k] / sum;
                        let y = f64::from(u8::from(c[r] as usize == k));
                        o[i] = q.quantize(p - y, factor * p * (1.0 - p));
                    }
                }
            }
            _ => panic!("targets do not match the objective"),
        }
    }

    /// The summed loss of rows with these scores.
    pub fn loss(&self, scores: &[f64], targets: &Targets) -> f64 {
        self.loss_of_rows(scores, targets, 0..targets.len(), 1)
    }

    /// The summed loss of rows `rows` (of all rows' `scores` and
    /// `targets`): each row's loss on up to `threads` threads, summed in
    /// row order (so the sum is the same however many threads).
    pub fn loss_of_rows(&self, scores: &[f64], targets: &Targets, rows: Range<usize>, threads: usize) -> f64 {
        self.row_losses(scores, targets, rows, threads, &mut []).iter().sum()
    }

    /// Each row's loss, keeping each row's terms in `terms` for
    /// [`Objective::gradients_from_terms`]. Summed in row order they are
    /// [`Objective::loss`].
    pub(super) fn losses_keeping_terms(
        &self,
        scores: &[f64],
        targets: &Targets,
        threads: usize,
        terms: &mut Vec<f64>,
    ) -> Vec<f64> {
        terms.clear();
        terms.resize(targets.len() * self.terms_per_row(), 0.0);
        self.row_losses(scores, targets, 0..targets.len(), threads, terms)
    }

    /// The loss of each row of `rows`, keeping their terms in `terms`
    /// unless it is empty.
    pub(super) fn row_losses(
        &self,
        scores: &[f64],
        targets: &Targets,
        rows: Range<usize>,
        threads: usize,
        terms: &mut [f64],
    ) -> Vec<f64> {
        let per_row = if terms.is_empty() { 0 } else { self.terms_per_row() };
        let mut losses = vec![0.0; rows.len()];
        let parts = par::threads_for(rows.len() * self.scores_per_row() * 32, threads);
        let size = rows.len().div_ceil(parts).max(1);
        let mut term_pieces: Vec<&mut [f64]> =
            if per_row == 0 { vec![] } else { terms.chunks_mut(size * per_row).collect() };
        term_pieces.resize_with(losses.len().div_ceil(size), || &mut []);
        let pieces: Vec<(usize, &mut [f64], &mut [f64])> = losses
            .chunks_mut(size)
            .zip(term_pieces)
            .enumerate()
            .map(|(i, (out, kept))| (rows.start + i * size, out, kept))
            .collect();
        par::for_each(pieces, |(first, out, kept)| self.losses_from(scores, targets, first, out, kept));
        losses
    }

    /// Each loss of rows `first..` (as many as `out` holds) into `out`, and
    /// their terms into `kept` unless it is empty.
    fn losses_from(&self, scores: &[f64], targets: &Targets, first: usize, out: &mut [f64], kept: &mut [f64]) {
        let width = self.scores_per_row();
        let per_row = self.terms_per_row();
        let mut own = vec![0.0; per_row];
        let keep = !kept.is_empty();
        match (self, targets) {
            (Objective::Squared, Targets::Values(y)) => {
                for (i, loss) in out.iter_mut().enumerate() {
                    let r = first + i;
                    *loss = 0.5 * (scores[r] - y[r]).powi(2);
                }
            }
            (Objective::Logistic, Targets::Classes(c)) => {
                for (i, loss) in out.iter_mut().enumerate() {
                    let r = first + i;
                    let slot = if keep { &mut kept[i..i + 1] } else { &mut own[..] };
                    self.row_terms(&scores[r..r + 1], slot);
                    let p = slot[0].clamp(1e-15, 1.0 - 1e-15);
                    *loss = if c[r] == 1 { -p.ln() } else { -(1.0 - p).ln() };
                }
            }
            (Objective::Softmax { .. }, Targets::Classes(c)) => {
                for (i, loss) in out.iter_mut().enumerate() {
                    let r = first + i;
                    let slot = if keep { &mut kept[i * per_row..(i + 1) * per_row] } else { &mut own[..] };
                    self.row_terms(&scores[r * width..(r + 1) * width], slot);
                    *loss = -(slot[c[r] as usize] / slot[width]).clamp(1e-15, 1.0).ln();
                }
            }
            _ => panic!("targets do not match the objective"),
        }
    }

    /// Outputs of one row's scores: values (regression) or class probabilities.
    pub fn outputs(&self, scores: &[f64]) -> Vec<f64> {
        match self {
            Objective::Squared => scores.to_vec(),
            Objective::Logistic => {
                let p = sigmoid(scores[0]);
                vec![1.0 - p, p]
            }
            Objective::Softmax { .. } => softmax(scores),
        }
    }

    /// Width of [`Objective::outputs`].
    pub fn outputs_per_row(&self) -> usize {
        match self {
            Objective::Logistic => 2,
            other => other.scores_per_row(),
        }
    }
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let mut exp = vec![0.0; row.len()];
    let sum = softmax_terms(row, &mut exp);
    exp.into_iter().map(|e| e / sum).collect()
}

/// `exp(s - max)` of each score into `exp`, and their sum: probability `k`
/// is `exp[k] / sum` (every caller divides the same way, so gradients,
/// losses and outputs agree to the bit).
fn softmax_terms(row: &[f64], exp: &mut [f64]) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for (e, s) in exp.iter_mut().zip(row) {
        *e = (s - max).exp();
    }
    exp.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_are_those_of_the_losses() {
        // d/ds of the loss, numerically, against the quantized gradient.
        let cases = [
            (Objective::Squared, vec![0.3], Targets::Values(vec![1.0])),
            (Objective::Logistic, vec![0.3], Targets::Classes(vec![1])),
            (Objective::Softmax { classes: 3 }, vec![0.3, -0.2, 0.5], Targets::Classes(vec![2])),
        ];
        for (objective, scores, targets) in cases {
            let q = objective.quantizer(10.0);
            for k in 0..objective.scores_per_row() {
                let mut grads = Vec::new();
                objective.gradients(&scores, &targets, k, &q, &mut grads);
                let (g, _) = q.real(super::super::histogram::BinSum { g: grads[0].g, h: grads[0].h, n: 1 });
                let eps = 1e-6;
                let (mut up, mut down) = (scores.clone(), scores.clone());
                up[k] += eps;
                down[k] -= eps;
                let numeric = (objective.loss(&up, &targets) - objective.loss(&down, &targets)) / (2.0 * eps);
                assert!((numeric - g).abs() < 1e-5, "{objective:?} k {k}: {numeric} vs {g}");
            }
        }
    }

    #[test]
    fn initial_scores_match_the_priors() {
        let o = Objective::Logistic;
        let s = o.initial_scores(&[30, 10], 0.0);
        assert!((o.outputs(&s)[1] - 0.25).abs() < 1e-12);
        let o = Objective::Softmax { classes: 3 };
        let p = o.outputs(&o.initial_scores(&[1, 1, 2], 0.0));
        assert!((p[2] - 0.5).abs() < 1e-12);
    }
}

//! What boosting minimizes: squared error, logistic loss, softmax loss;
//! their gradients and hessians, starting scores and output transforms.

use serde::{Deserialize, Serialize};

use super::histogram::{GradPair, Quantizer};

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
        out.clear();
        let width = self.scores_per_row();
        match (self, targets) {
            (Objective::Squared, Targets::Values(y)) => {
                out.extend(scores.iter().zip(y).map(|(s, y)| q.quantize(s - y, 1.0)));
            }
            (Objective::Logistic, Targets::Classes(c)) => {
                out.extend(scores.iter().zip(c).map(|(s, c)| {
                    let p = sigmoid(*s);
                    q.quantize(p - f64::from(u8::from(*c == 1)), p * (1.0 - p))
                }));
            }
            (Objective::Softmax { classes }, Targets::Classes(c)) => {
                let factor = self.softmax_factor(*classes);
                for (row, class) in scores.chunks(width).zip(c) {
                    let p = softmax(row)[k];
                    let y = f64::from(u8::from(*class as usize == k));
                    out.push(q.quantize(p - y, factor * p * (1.0 - p)));
                }
            }
            _ => panic!("targets do not match the objective"),
        }
    }

    /// The summed loss of rows with these scores.
    pub fn loss(&self, scores: &[f64], targets: &Targets) -> f64 {
        let width = self.scores_per_row();
        match (self, targets) {
            (Objective::Squared, Targets::Values(y)) => scores.iter().zip(y).map(|(s, y)| 0.5 * (s - y).powi(2)).sum(),
            (Objective::Logistic, Targets::Classes(c)) => scores
                .iter()
                .zip(c)
                .map(|(s, c)| {
                    let p = sigmoid(*s).clamp(1e-15, 1.0 - 1e-15);
                    if *c == 1 { -p.ln() } else { -(1.0 - p).ln() }
                })
                .sum(),
            (Objective::Softmax { .. }, Targets::Classes(c)) => scores
                .chunks(width)
                .zip(c)
                .map(|(row, class)| -softmax(row)[*class as usize].clamp(1e-15, 1.0).ln())
                .sum(),
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
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = row.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
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

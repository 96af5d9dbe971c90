//! Dense networks trained by mini-batch gradient descent. With no hidden
//! layer this is linear regression (squared error) or logistic / softmax
//! regression (cross-entropy), so one implementation serves all three.
//!
//! Everything random (initial weights, batch order) comes from the seed, and
//! the arithmetic runs in a fixed order, so the same seed on the same data
//! gives bit-identical weights.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Tanh,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Softmax outputs, mean negative log-likelihood: classification.
    SoftmaxCrossEntropy,
    /// Identity outputs, half mean squared error: regression.
    SquaredError,
    /// Identity outputs, squared error within `delta` and linear beyond:
    /// regression robust to outliers.
    Huber { delta: f32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    Sgd { learning_rate: f32, momentum: f32 },
    Adam { learning_rate: f32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Widths of the hidden layers; empty for a linear model.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub batch_size: usize,
    pub epochs: usize,
    /// L2 penalty on weights (not biases).
    pub l2: f32,
    pub seed: u64,
    /// Stop after this many epochs without a better validation loss, and keep
    /// the best weights; without validation rows, stop after this many
    /// epochs in which the training loss fell by less than `tolerance`.
    pub patience: Option<usize>,
    pub tolerance: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: vec![128],
            activation: Activation::Relu,
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: Optimizer::Adam { learning_rate: 1e-3 },
            batch_size: 64,
            epochs: 20,
            l2: 1e-4,
            seed: 42,
            patience: None,
            tolerance: 1e-4,
        }
    }
}

/// What the network learns to output.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Class index of each row, below `classes`.
    Classes { labels: &'a [usize], classes: usize },
    /// Values to regress, one row per input row.
    Values(ArrayView2<'a, f32>),
}

impl Target<'_> {
    pub fn outputs(&self) -> usize {
        match self {
            Target::Classes { classes, .. } => *classes,
            Target::Values(v) => v.ncols(),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Target::Classes { labels, .. } => labels.len(),
            Target::Values(v) => v.nrows(),
        }
    }

    /// The target rows `rows` as a dense matrix (one-hot for classes).
    pub fn dense(&self, rows: &[usize]) -> Array2<f32> {
        match self {
            Target::Classes { labels, classes } => {
                let mut out = Array2::zeros((rows.len(), *classes));
                for (i, &r) in rows.iter().enumerate() {
                    out[[i, labels[r]]] = 1.0;
                }
                out
            }
            Target::Values(v) => v.select(Axis(0), rows),
        }
    }
}

/// Loss per epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingCurve {
    pub train_loss: Vec<f64>,
    pub validation_loss: Vec<f64>,
    /// Epoch (0-based) whose weights were kept.
    pub best_epoch: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    pub weights: Vec<Array2<f32>>,
    pub biases: Vec<Array1<f32>>,
    pub activation: Activation,
    pub loss: Loss,
}

/// Gradients, shaped like the parameters.
struct Gradients {
    weights: Vec<Array2<f32>>,
    biases: Vec<Array1<f32>>,
}

fn softmax_rows(z: &mut Array2<f32>) {
    for mut row in z.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
}

impl Mlp {
    /// A network with Glorot-uniform weights drawn from `rng`.
    pub fn new(inputs: usize, outputs: usize, config: &MlpConfig, rng: &mut StdRng) -> Self {
        let widths: Vec<usize> =
            std::iter::once(inputs).chain(config.hidden.iter().copied()).chain([outputs]).collect();
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for pair in widths.windows(2) {
            let bound = (6.0 / (pair[0] + pair[1]) as f32).sqrt();
            weights.push(Array2::from_shape_simple_fn((pair[0], pair[1]), || rng.random_range(-bound..bound)));
            biases.push(Array1::zeros(pair[1]));
        }
        Self { weights, biases, activation: config.activation, loss: config.loss }
    }

    /// Activations of every layer, input first, outputs last.
    fn forward(&self, x: ArrayView2<'_, f32>) -> Vec<Array2<f32>> {
        let mut layers = vec![x.to_owned()];
        let last = self.weights.len() - 1;
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let mut z = layers[i].dot(w) + b;
            if i < last {
                match self.activation {
                    Activation::Relu => z.mapv_inplace(|v| v.max(0.0)),
                    Activation::Tanh => z.mapv_inplace(f32::tanh),
                }
            } else if self.loss == Loss::SoftmaxCrossEntropy {
                softmax_rows(&mut z);
            }
            layers.push(z);
        }
        layers
    }

    /// Outputs: class probabilities (cross-entropy) or values (squared error).
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.forward(x).pop().expect("at least one layer")
    }

    /// The most probable class of each row.
    pub fn predict_classes(&self, x: ArrayView2<'_, f32>) -> Vec<usize> {
        super::ensemble::argmax_rows(&self.predict(x))
    }

    fn penalty(&self, l2: f32) -> f64 {
        0.5 * f64::from(l2) * self.weights.iter().map(|w| w.iter().map(|v| f64::from(v * v)).sum::<f64>()).sum::<f64>()
    }

    /// Mean loss (with the L2 penalty) of the network on `y`.
    pub fn loss(&self, x: ArrayView2<'_, f32>, y: &Array2<f32>, l2: f32) -> f64 {
        let out = self.predict(x);
        self.data_loss(&out, y) + self.penalty(l2)
    }

    fn data_loss(&self, out: &Array2<f32>, y: &Array2<f32>) -> f64 {
        let n = out.nrows().max(1) as f64;
        match self.loss {
            Loss::SoftmaxCrossEntropy => {
                -out.iter()
                    .zip(y.iter())
                    .filter(|(_, t)| **t > 0.0)
                    .map(|(p, t)| f64::from(*t) * f64::from(p.max(1e-30)).ln())
                    .sum::<f64>()
                    / n
            }
            Loss::SquaredError => {
                0.5 * out.iter().zip(y.iter()).map(|(o, t)| f64::from(o - t).powi(2)).sum::<f64>() / n
            }
            Loss::Huber { delta } => {
                let delta = f64::from(delta);
                out.iter()
                    .zip(y.iter())
                    .map(|(o, t)| {
                        let e = f64::from(o - t).abs();
                        if e <= delta { 0.5 * e * e } else { delta * (e - 0.5 * delta) }
                    })
                    .sum::<f64>()
                    / n
            }
        }
    }

    /// Loss and gradients on one batch.
    fn gradients(&self, x: ArrayView2<'_, f32>, y: &Array2<f32>, l2: f32) -> (f64, Gradients) {
        let layers = self.forward(x);
        let out = layers.last().expect("output layer");
        let loss = self.data_loss(out, y) + self.penalty(l2);
        let n = x.nrows().max(1) as f32;
        // Softmax with cross-entropy and identity with squared error share
        // the same output delta; Huber clips it.
        let mut delta = (out - y) / n;
        if let Loss::Huber { delta: limit } = self.loss {
            delta.mapv_inplace(|d| d.clamp(-limit / n, limit / n));
        }
        let depth = self.weights.len();
        let mut weights = vec![Array2::zeros((0, 0)); depth];
        let mut biases = vec![Array1::zeros(0); depth];
        for l in (0..depth).rev() {
            weights[l] = layers[l].t().dot(&delta) + &(&self.weights[l] * l2);
            biases[l] = delta.sum_axis(Axis(0));
            if l > 0 {
                let mut back = delta.dot(&self.weights[l].t());
                let a = &layers[l];
                match self.activation {
                    Activation::Relu => back.zip_mut_with(a, |d, &v| {
                        if v <= 0.0 {
                            *d = 0.0
                        }
                    }),
                    Activation::Tanh => back.zip_mut_with(a, |d, &v| *d *= 1.0 - v * v),
                }
                delta = back;
            }
        }
        (loss, Gradients { weights, biases })
    }

    /// Trains a new network on `x` and `y`, checking `validation` each epoch.
    pub fn fit(
        x: ArrayView2<'_, f32>,
        y: Target<'_>,
        validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
        config: &MlpConfig,
    ) -> (Self, TrainingCurve) {
        Self::fit_from(None, x, y, validation, config)
    }

    /// Like [`Mlp::fit`], but continuing from `start` when given (its shape
    /// must match the data): the local step of data-parallel training.
    pub fn fit_from(
        start: Option<Mlp>,
        x: ArrayView2<'_, f32>,
        y: Target<'_>,
        validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
        config: &MlpConfig,
    ) -> (Self, TrainingCurve) {
        Self::fit_reporting(start, x, y, validation, config, &mut |_, _| {})
    }

    /// Like [`Mlp::fit_from`], calling `on_epoch(epoch, train_loss)` after
    /// every epoch (0-based) so long training can show progress.
    pub fn fit_reporting(
        start: Option<Mlp>,
        x: ArrayView2<'_, f32>,
        y: Target<'_>,
        validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
        config: &MlpConfig,
        on_epoch: &mut dyn FnMut(usize, f64),
    ) -> (Self, TrainingCurve) {
        assert_eq!(x.nrows(), y.rows(), "one target per row");
        let mut rng = StdRng::seed_from_u64(config.seed);
        let fresh = Self::new(x.ncols(), y.outputs(), config, &mut rng);
        let mut model = start.unwrap_or(fresh);
        let mut optimizer = State::new(&model, config.optimizer);
        let mut curve = TrainingCurve::default();
        let valid = validation.map(|(vx, vy)| (vx, vy.dense(&(0..vy.rows()).collect::<Vec<_>>())));
        let mut best: Option<(f64, Mlp)> = None;
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        // Without validation rows: the best training loss and the epochs since
        // it last fell by more than the tolerance.
        let mut plateau = (f64::INFINITY, 0usize);
        for epoch in 0..config.epochs {
            order.shuffle(&mut rng);
            let mut total = 0.0;
            for batch in order.chunks(config.batch_size.max(1)) {
                let bx = x.select(Axis(0), batch);
                let by = y.dense(batch);
                let (loss, grads) = model.gradients(bx.view(), &by, config.l2);
                total += loss * batch.len() as f64;
                optimizer.step(&mut model, &grads);
            }
            curve.train_loss.push(total / x.nrows().max(1) as f64);
            on_epoch(epoch, total / x.nrows().max(1) as f64);
            if let Some((vx, vy)) = &valid {
                let loss = model.loss(*vx, vy, config.l2);
                curve.validation_loss.push(loss);
                if best.as_ref().is_none_or(|(b, _)| loss < *b) {
                    best = Some((loss, model.clone()));
                    curve.best_epoch = epoch;
                } else if config.patience.is_some_and(|p| epoch - curve.best_epoch >= p) {
                    break;
                }
            } else {
                curve.best_epoch = epoch;
                let loss = total / x.nrows().max(1) as f64;
                if loss < plateau.0 - config.tolerance {
                    plateau = (loss, 0);
                } else {
                    plateau = (plateau.0.min(loss), plateau.1 + 1);
                    if config.patience.is_some_and(|p| plateau.1 >= p) {
                        break;
                    }
                }
            }
        }
        if config.patience.is_some()
            && valid.is_some()
            && let Some((_, kept)) = best
        {
            model = kept;
        }
        (model, curve)
    }
}

/// Optimizer state, shaped like the parameters.
struct State {
    optimizer: Optimizer,
    step: i32,
    first: Vec<(Array2<f32>, Array1<f32>)>,
    second: Vec<(Array2<f32>, Array1<f32>)>,
}

impl State {
    fn new(model: &Mlp, optimizer: Optimizer) -> Self {
        let zeros: Vec<(Array2<f32>, Array1<f32>)> = model
            .weights
            .iter()
            .zip(&model.biases)
            .map(|(w, b)| (Array2::zeros(w.raw_dim()), Array1::zeros(b.raw_dim())))
            .collect();
        Self { optimizer, step: 0, first: zeros.clone(), second: zeros }
    }

    fn step(&mut self, model: &mut Mlp, grads: &Gradients) {
        self.step += 1;
        match self.optimizer {
            Optimizer::Sgd { learning_rate, momentum } => {
                for (l, (vw, vb)) in self.first.iter_mut().enumerate() {
                    vw.zip_mut_with(&grads.weights[l], |v, &g| *v = momentum * *v - learning_rate * g);
                    vb.zip_mut_with(&grads.biases[l], |v, &g| *v = momentum * *v - learning_rate * g);
                    model.weights[l] += &*vw;
                    model.biases[l] += &*vb;
                }
            }
            Optimizer::Adam { learning_rate } => {
                let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
                let c1 = 1.0 - b1.powi(self.step);
                let c2 = 1.0 - b2.powi(self.step);
                for l in 0..model.weights.len() {
                    let (mw, mb) = &mut self.first[l];
                    let (vw, vb) = &mut self.second[l];
                    adam(&mut model.weights[l], mw, vw, &grads.weights[l], learning_rate, b1, b2, eps, c1, c2);
                    adam(&mut model.biases[l], mb, vb, &grads.biases[l], learning_rate, b1, b2, eps, c1, c2);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn adam<D: ndarray::Dimension>(
    param: &mut ndarray::Array<f32, D>,
    m: &mut ndarray::Array<f32, D>,
    v: &mut ndarray::Array<f32, D>,
    g: &ndarray::Array<f32, D>,
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
) {
    m.zip_mut_with(g, |m, &g| *m = b1 * *m + (1.0 - b1) * g);
    v.zip_mut_with(g, |v, &g| *v = b2 * *v + (1.0 - b2) * g * g);
    ndarray::Zip::from(param).and(&*m).and(&*v).for_each(|p, &m, &v| *p -= lr * (m / c1) / ((v / c2).sqrt() + eps));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, inputs: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((rows, inputs), || rng.random_range(-1.0..1.0))
    }

    /// Analytic gradients agree with central finite differences.
    #[test]
    fn gradients_match_finite_differences() {
        for (loss, outputs) in
            [(Loss::SoftmaxCrossEntropy, 3), (Loss::SquaredError, 2), (Loss::Huber { delta: 0.3 }, 2)]
        {
            let config =
                MlpConfig { hidden: vec![5, 4], activation: Activation::Tanh, loss, l2: 0.01, ..MlpConfig::default() };
            let mut rng = StdRng::seed_from_u64(3);
            let model = Mlp::new(4, outputs, &config, &mut rng);
            let x = data(6, 4, 1);
            let y = match loss {
                Loss::SoftmaxCrossEntropy => {
                    Target::Classes { labels: &[0, 1, 2, 0, 1, 2], classes: 3 }.dense(&[0, 1, 2, 3, 4, 5])
                }
                Loss::SquaredError | Loss::Huber { .. } => data(6, 2, 2),
            };
            let (_, grads) = model.gradients(x.view(), &y, config.l2);
            let eps = 1e-2f32;
            for l in 0..model.weights.len() {
                for (i, j) in [(0, 0), (1, 1), (model.weights[l].nrows() - 1, model.weights[l].ncols() - 1)] {
                    let mut plus = model.clone();
                    plus.weights[l][[i, j]] += eps;
                    let mut minus = model.clone();
                    minus.weights[l][[i, j]] -= eps;
                    let numeric = (plus.loss(x.view(), &y, config.l2) - minus.loss(x.view(), &y, config.l2))
                        / f64::from(2.0 * eps);
                    let analytic = f64::from(grads.weights[l][[i, j]]);
                    assert!(
                        (numeric - analytic).abs() <= 1e-3 + 2e-2 * numeric.abs(),
                        "{loss:?} layer {l} ({i},{j}): {numeric} vs {analytic}"
                    );
                }
                let mut plus = model.clone();
                plus.biases[l][0] += eps;
                let mut minus = model.clone();
                minus.biases[l][0] -= eps;
                let numeric =
                    (plus.loss(x.view(), &y, config.l2) - minus.loss(x.view(), &y, config.l2)) / f64::from(2.0 * eps);
                assert!((numeric - f64::from(grads.biases[l][0])).abs() <= 1e-3 + 2e-2 * numeric.abs());
            }
        }
    }

    #[test]
    fn same_seed_same_weights_bit_for_bit() {
        let x = data(200, 8, 5);
        let labels: Vec<usize> = (0..200).map(|i| i % 3).collect();
        let config = MlpConfig { hidden: vec![16], epochs: 3, ..MlpConfig::default() };
        let target = Target::Classes { labels: &labels, classes: 3 };
        let (a, _) = Mlp::fit(x.view(), target, None, &config);
        let (b, _) = Mlp::fit(x.view(), target, None, &config);
        assert!(
            a.weights.iter().zip(&b.weights).all(|(p, q)| p.iter().zip(q).all(|(x, y)| x.to_bits() == y.to_bits()))
        );
    }

    #[test]
    fn linear_regression_recovers_a_line() {
        let x = data(400, 1, 8);
        let y = x.mapv(|v| 3.0 * v - 1.0);
        let config = MlpConfig {
            hidden: vec![],
            loss: Loss::SquaredError,
            optimizer: Optimizer::Sgd { learning_rate: 0.1, momentum: 0.9 },
            batch_size: 32,
            epochs: 50,
            l2: 0.0,
            ..MlpConfig::default()
        };
        let (model, curve) = Mlp::fit(x.view(), Target::Values(y.view()), None, &config);
        assert!((model.weights[0][[0, 0]] - 3.0).abs() < 1e-2 && (model.biases[0][0] + 1.0).abs() < 1e-2, "{model:?}");
        assert!(curve.train_loss.last().unwrap() < &1e-4);
    }

    #[test]
    fn early_stopping_keeps_the_best_epoch() {
        let x = data(300, 10, 9);
        let labels: Vec<usize> = (0..300).map(|i| usize::from(x[[i, 0]] > 0.0)).collect();
        let config = MlpConfig { hidden: vec![64], epochs: 200, patience: Some(3), ..MlpConfig::default() };
        let target = Target::Classes { labels: &labels[..200], classes: 2 };
        let valid = Target::Classes { labels: &labels[200..], classes: 2 };
        let rows = x.slice(ndarray::s![..200, ..]);
        let held = x.slice(ndarray::s![200.., ..]);
        let (model, curve) = Mlp::fit(rows, target, Some((held, valid)), &config);
        assert!(curve.validation_loss.len() < 200, "stopped early");
        let best = curve.validation_loss.iter().copied().fold(f64::INFINITY, f64::min);
        let kept = model.loss(held, &valid.dense(&(0..100).collect::<Vec<_>>()), config.l2);
        assert!((kept - best).abs() < 1e-9, "{kept} vs {best}");
    }
}

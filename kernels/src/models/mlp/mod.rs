//! Dense networks trained by mini-batch gradient descent. With no hidden
//! layer this is linear regression (squared error) or logistic / softmax
//! regression (cross-entropy), so one implementation serves all three.
//!
//! Everything random (initial weights, batch order) comes from the seed, and
//! the arithmetic runs in a fixed order, so the same seed on the same data
//! gives bit-identical weights on the CPU backend.
//!
//! Training and inference are written against [`Backend`]: [`Mlp::fit`] and
//! [`Mlp::predict`] run on the CPU, [`Mlp::fit_on`] and [`Mlp::predict_on`]
//! on any backend (a GPU through wgpu). The stored form, `Mlp`, is always
//! host arrays.
//!
//! # Layout
//! - `network`: parameters, gradients, optimizer state and batch buffers
//!   resident on a backend; one training step as a sequence of ops.
//! - `train`: the epoch loop, early stopping, evaluation and prediction.
//! - [`training_rate`]: measured samples/s of a network shape on a backend,
//!   to choose the backend per model.

mod network;
mod rate;
mod train;

pub use rate::training_rate;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Error};
use crate::cpu::CpuBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Tanh,
}

/// The backend's op for a hidden layer's activation.
impl From<Activation> for crate::backend::Activation {
    fn from(activation: Activation) -> Self {
        match activation {
            Activation::Relu => crate::backend::Activation::Relu,
            Activation::Tanh => crate::backend::Activation::Tanh,
        }
    }
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

    /// Outputs: class probabilities (cross-entropy) or values (squared error).
    ///
    /// # Panics
    /// When `x` does not have the network's number of inputs; see
    /// [`Mlp::predict_on`] for the fallible form.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.predict_in_place(x)
            .unwrap_or_else(|| self.predict_on(&CpuBackend::new(), x).unwrap_or_else(|e| panic!("Mlp::predict: {e}")))
    }

    /// Outputs computed layer by layer on `x` where it lies, with the CPU
    /// backend's kernels (faer's product, the fused bias and activation, the
    /// row softmax): no copy of `x` into a workspace and none of the outputs
    /// back out, which were a twentieth of a scoring node's time. `None` when
    /// `x` is not in standard layout or does not fit the model: the backend
    /// path then answers, or names what is wrong.
    fn predict_in_place(&self, x: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        if train::widths(self).ok()?.first() != Some(&x.ncols()) || x.nrows() == 0 {
            return None;
        }
        let last = self.weights.len() - 1;
        let mut activated: Option<Array2<f32>> = None;
        for (l, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let input = activated.as_ref().map_or(x, |a| a.view());
            let mut z = crate::cpu::product_of(input, false, w.view(), false)?;
            let activation = if l == last { crate::backend::Activation::Identity } else { self.activation.into() };
            crate::cpu::elementwise::bias_activation(z.as_slice_mut()?, b.as_slice()?, activation);
            activated = Some(z);
        }
        let mut out = activated?;
        if self.loss == Loss::SoftmaxCrossEntropy {
            let cols = out.ncols();
            crate::cpu::elementwise::softmax_rows(out.as_slice_mut()?, cols);
        }
        Some(out)
    }

    /// Outputs computed on `backend`.
    pub fn predict_on<B: Backend>(&self, backend: &B, x: ArrayView2<'_, f32>) -> Result<Array2<f32>, Error> {
        train::predict(backend, self, x)
    }

    /// The most probable class of each row.
    pub fn predict_classes(&self, x: ArrayView2<'_, f32>) -> Vec<usize> {
        super::ensemble::argmax_rows(&self.predict(x))
    }

    /// Mean loss (with the L2 penalty) of the network on `y`.
    ///
    /// # Panics
    /// When `x` and `y` do not fit the network; see [`Mlp::loss_on`].
    pub fn loss(&self, x: ArrayView2<'_, f32>, y: &Array2<f32>, l2: f32) -> f64 {
        self.loss_on(&CpuBackend::new(), x, y.view(), l2).unwrap_or_else(|e| panic!("Mlp::loss: {e}"))
    }

    /// Mean loss (with the L2 penalty) computed on `backend`.
    pub fn loss_on<B: Backend>(
        &self,
        backend: &B,
        x: ArrayView2<'_, f32>,
        y: ArrayView2<'_, f32>,
        l2: f32,
    ) -> Result<f64, Error> {
        let widths = train::widths(self)?;
        let network = network::Network::upload(backend, self)?;
        train::Evaluator::new(backend, &widths, x, Target::Values(y))?.loss(backend, &network, l2)
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
    ///
    /// # Panics
    /// When the data does not fit (targets per row, `start`'s shape); see
    /// [`Mlp::fit_on`] for the fallible form on any backend.
    pub fn fit_reporting(
        start: Option<Mlp>,
        x: ArrayView2<'_, f32>,
        y: Target<'_>,
        validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
        config: &MlpConfig,
        on_epoch: &mut dyn FnMut(usize, f64),
    ) -> (Self, TrainingCurve) {
        Self::fit_on(&CpuBackend::new(), start, x, y, validation, config, on_epoch)
            .unwrap_or_else(|e| panic!("Mlp::fit: {e}"))
    }

    /// [`Mlp::fit_reporting`] on `backend`: the same loop and the same random
    /// draws, so a GPU run follows the CPU's within float tolerance. A shape
    /// that does not fit is an [`Error::Shape`]; a device failure an
    /// [`Error::Device`].
    pub fn fit_on<B: Backend>(
        backend: &B,
        start: Option<Mlp>,
        x: ArrayView2<'_, f32>,
        y: Target<'_>,
        validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
        config: &MlpConfig,
        on_epoch: &mut dyn FnMut(usize, f64),
    ) -> Result<(Self, TrainingCurve), Error> {
        train::fit(backend, start, x, y, validation, config, None, on_epoch)
    }

    /// [`Mlp::fit_on`] keeping some weights at zero: `masks` holds one
    /// array per layer shaped like its weight, 1 where a weight may train
    /// and 0 where it stays zero (pruned); after every optimizer step the
    /// weights are multiplied by it. Fine-tuning of pruned networks.
    #[allow(clippy::too_many_arguments)]
    pub fn fit_masked_on<B: Backend>(
        backend: &B,
        start: Mlp,
        masks: &[Array2<f32>],
        x: ArrayView2<'_, f32>,
        y: Target<'_>,
        validation: Option<(ArrayView2<'_, f32>, Target<'_>)>,
        config: &MlpConfig,
        on_epoch: &mut dyn FnMut(usize, f64),
    ) -> Result<(Self, TrainingCurve), Error> {
        train::fit(backend, Some(start), x, y, validation, config, Some(masks), on_epoch)
    }
}

/// Gradients of the L2-penalized mean loss of `model` on one batch, computed
/// on `backend` (weights, biases as `1 x n`), for tests of any backend.
#[cfg(test)]
pub(crate) fn gradients_on<B: Backend>(
    backend: &B,
    model: &Mlp,
    x: ArrayView2<'_, f32>,
    y: ArrayView2<'_, f32>,
    l2: f32,
) -> Result<Vec<network::HostGradient>, Error> {
    let widths = train::widths(model)?;
    let net = network::Network::upload(backend, model)?;
    let mut trainer = network::Trainer::new(backend, &net, Optimizer::Adam { learning_rate: 0.0 }, l2)?;
    let mut ws = network::Workspace::new(backend, &widths, x.nrows())?;
    backend.write(&mut ws.x, x)?;
    backend.write(&mut ws.y, y)?;
    let mut losses = backend.zeros(x.nrows(), 1)?;
    trainer.gradients_only(backend, &net, &mut ws, &mut losses)?;
    let mut grads = trainer.last_gradients(backend)?;
    for ((gw, _), w) in grads.iter_mut().zip(&model.weights) {
        gw.scaled_add(l2, w);
    }
    Ok(grads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn data(rows: usize, inputs: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((rows, inputs), || rng.random_range(-1.0..1.0))
    }

    /// Predicting on `x` where it lies gives the backend path's outputs bit
    /// for bit, for rows in one chunk and in several, softmax or values.
    #[test]
    fn predictions_in_place_are_those_of_the_backend() {
        for (loss, outputs) in [(Loss::SoftmaxCrossEntropy, 10), (Loss::SquaredError, 1)] {
            for hidden in [vec![], vec![32, 16]] {
                let config = MlpConfig { hidden, activation: Activation::Relu, loss, ..MlpConfig::default() };
                let model = Mlp::new(784, outputs, &config, &mut StdRng::seed_from_u64(5));
                for rows in [1, 7, 512, 1300] {
                    let x = data(rows, 784, rows as u64);
                    let backend = model.predict_on(&CpuBackend::new(), x.view()).unwrap();
                    let in_place = model.predict_in_place(x.view()).expect("a standard-layout matrix that fits");
                    assert!(
                        backend.iter().zip(&in_place).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{loss:?}, {rows} rows: outputs differ"
                    );
                }
            }
        }
        let model = Mlp::new(4, 2, &MlpConfig::default(), &mut StdRng::seed_from_u64(1));
        assert!(model.predict_in_place(data(3, 5, 1).view()).is_none(), "too wide: the backend path names it");
        assert!(model.predict_in_place(data(4, 3, 1).t()).is_none(), "transposed: the backend path reads it");
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
            let grads = gradients_on(&CpuBackend::new(), &model, x.view(), y.view(), config.l2).unwrap();
            let eps = 1e-2f32;
            for l in 0..model.weights.len() {
                for (i, j) in [(0, 0), (1, 1), (model.weights[l].nrows() - 1, model.weights[l].ncols() - 1)] {
                    let mut plus = model.clone();
                    plus.weights[l][[i, j]] += eps;
                    let mut minus = model.clone();
                    minus.weights[l][[i, j]] -= eps;
                    let numeric = (plus.loss(x.view(), &y, config.l2) - minus.loss(x.view(), &y, config.l2))
                        / f64::from(2.0 * eps);
                    let analytic = f64::from(grads[l].0[[i, j]]);
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
                assert!((numeric - f64::from(grads[l].1[[0, 0]])).abs() <= 1e-3 + 2e-2 * numeric.abs());
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

//! Magnitude pruning of dense networks, fine-tuning that keeps the pruned
//! weights at zero, and the sparse form pruned networks are stored in.
//!
//! Each layer's weights are pruned on their own to the same sparsity: the
//! `sparsity * weights` smallest in magnitude become zero (biases are
//! kept). A pruned layer is stored row by row of its `inputs x outputs`
//! weight (CSR): for input `i`, the output columns it feeds and the
//! weights. Its kernel walks the nonzero inputs of a row and adds each
//! one's weights into the outputs, so inputs that are zero (most pixels of
//! a digit, ReLU units that are off) cost nothing either.

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::quantized::Cached;
use super::{Activation, Loss, Mlp, MlpConfig, Target};
use crate::cpu::elementwise::{bias_activation, softmax_rows};

/// Why a network cannot be pruned as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PruneError {
    #[error("sparsity {0} is impossible: give the fraction of weights to remove, above 0 and below 1 (e.g. 0.8)")]
    Sparsity(f64),
    #[error("the network has no layers")]
    Empty,
    #[error("fine-tuning failed: {0}")]
    FineTune(String),
}

/// Which weights of a network survive pruning: one flag per weight, per layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask(pub Vec<Array2<bool>>);

impl Mask {
    /// Zeroes the weights of `network` the mask removed.
    pub fn apply(&self, network: &mut Mlp) {
        for (w, keep) in network.weights.iter_mut().zip(&self.0) {
            w.zip_mut_with(keep, |v, k| {
                if !k {
                    *v = 0.0
                }
            });
        }
    }

    /// Fraction of weights removed, over all layers.
    pub fn sparsity(&self) -> f64 {
        let total: usize = self.0.iter().map(|m| m.len()).sum();
        let removed: usize = self.0.iter().map(|m| m.iter().filter(|k| !**k).count()).sum();
        removed as f64 / total.max(1) as f64
    }
}

/// Checks a sparsity asked for: a fraction strictly between 0 and 1.
pub fn check_sparsity(sparsity: f64) -> Result<(), PruneError> {
    if sparsity > 0.0 && sparsity < 1.0 { Ok(()) } else { Err(PruneError::Sparsity(sparsity)) }
}

/// The network with the smallest `sparsity` of each layer's weights set to
/// zero, and the mask that says which survived. Ties at the threshold are
/// broken by position, so exactly `floor(sparsity * n)` go.
pub fn prune(network: &Mlp, sparsity: f64) -> Result<(Mlp, Mask), PruneError> {
    check_sparsity(sparsity)?;
    if network.weights.is_empty() {
        return Err(PruneError::Empty);
    }
    let mut masks = Vec::with_capacity(network.weights.len());
    for w in &network.weights {
        let n = w.len();
        let removed = ((sparsity * n as f64).floor() as usize).min(n);
        let mut order: Vec<usize> = (0..n).collect();
        let values = w.as_standard_layout();
        let flat = values.as_slice().expect("standard layout");
        order.sort_by(|&a, &b| flat[a].abs().total_cmp(&flat[b].abs()).then(a.cmp(&b)));
        let mut keep = vec![true; n];
        order[..removed].iter().for_each(|&i| keep[i] = false);
        masks.push(Array2::from_shape_vec(w.raw_dim(), keep).expect("one flag per weight"));
    }
    let mask = Mask(masks);
    let mut pruned = network.clone();
    mask.apply(&mut pruned);
    Ok((pruned, mask))
}

/// Trains a pruned network `epochs` more epochs on `x` and `y` with
/// `config`'s loss, optimizer and batch size, keeping `mask`: the removed
/// weights are set to zero again after every optimizer step
/// ([`Mlp::fit_masked_on`]).
pub fn fine_tune(
    network: Mlp,
    mask: &Mask,
    x: ArrayView2<'_, f32>,
    y: Target<'_>,
    config: &MlpConfig,
    epochs: usize,
) -> Result<Mlp, PruneError> {
    if epochs == 0 {
        return Ok(network);
    }
    let masks: Vec<Array2<f32>> = mask.0.iter().map(|m| m.mapv(|k| if k { 1.0 } else { 0.0 })).collect();
    let config = MlpConfig { epochs, patience: None, ..config.clone() };
    let cpu = crate::cpu::CpuBackend::new();
    let (mut tuned, _) = Mlp::fit_masked_on(&cpu, network, &masks, x, y, None, &config, &mut |_, _| {})
        .map_err(|e| PruneError::FineTune(e.to_string()))?;
    // The product by the mask leaves exact zeros; this makes it certain.
    mask.apply(&mut tuned);
    Ok(tuned)
}

/// One pruned layer, row by row of its weight (CSR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseLayer {
    pub inputs: usize,
    pub outputs: usize,
    /// `inputs + 1` offsets: input `i`'s weights are at `starts[i]..starts[i + 1]`.
    pub starts: Vec<u32>,
    /// The output column of each kept weight.
    pub columns: Vec<u32>,
    pub values: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A dense network stored and run sparse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseMlp {
    pub layers: Vec<SparseLayer>,
    pub activation: Activation,
    pub loss: Loss,
    /// The densified network, made on first use by batches of more than
    /// [`SPARSE_MAX_ROWS`] rows (never stored).
    #[serde(skip)]
    dense: Cached<Mlp>,
}

/// Batches of at most this many rows run on the sparse kernel; larger ones
/// on the f32 GEMM with the densified weights. Measured on 784-128-10 at
/// 80% sparsity on MNIST rows (`cargo bench -p mass-kernels --bench
/// compress`, fastest of repeated calls): sparse / dense 8.8 / 18.8 µs at
/// one row, 10.0 / 2.3 ms at 1,000 rows.
pub const SPARSE_MAX_ROWS: usize = 4;

impl SparseLayer {
    /// The nonzero weights of `weight` (`inputs x outputs`).
    pub fn from_dense(weight: ArrayView2<'_, f32>, bias: &[f32]) -> Self {
        let (inputs, outputs) = weight.dim();
        let mut starts = Vec::with_capacity(inputs + 1);
        let (mut columns, mut values) = (Vec::new(), Vec::new());
        starts.push(0);
        for row in weight.rows() {
            for (j, v) in row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                columns.push(j as u32);
                values.push(*v);
            }
            starts.push(columns.len() as u32);
        }
        Self { inputs, outputs, starts, columns, values, bias: bias.to_vec() }
    }

    pub fn to_dense(&self) -> Array2<f32> {
        let mut w = Array2::zeros((self.inputs, self.outputs));
        for i in 0..self.inputs {
            let span = self.starts[i] as usize..self.starts[i + 1] as usize;
            for (j, v) in self.columns[span.clone()].iter().zip(&self.values[span]) {
                w[[i, *j as usize]] = *v;
            }
        }
        w
    }

    fn validate(&self) -> Result<(), String> {
        if self.inputs == 0 || self.outputs == 0 {
            return Err("a layer without inputs or outputs".into());
        }
        let offsets_fit = self.starts.len() == self.inputs + 1
            && self.starts.first() == Some(&0)
            && self.starts.windows(2).all(|w| w[0] <= w[1])
            && self.starts.last().map(|s| *s as usize) == Some(self.columns.len());
        if !offsets_fit || self.columns.len() != self.values.len() || self.bias.len() != self.outputs {
            return Err("a layer whose offsets, columns, values or biases do not match its shape".into());
        }
        if self.columns.iter().any(|c| *c as usize >= self.outputs) {
            return Err(format!("a layer naming an output column beyond its {}", self.outputs));
        }
        if !self.values.iter().chain(&self.bias).all(|v| v.is_finite()) {
            return Err("a layer with weights that are not finite numbers".into());
        }
        Ok(())
    }

    /// `out[r] = W^T x[r] + b`, skipping zero inputs.
    fn forward(&self, x: &[f32], out: &mut [f32]) {
        for (row, out_row) in x.chunks_exact(self.inputs).zip(out.chunks_exact_mut(self.outputs)) {
            out_row.copy_from_slice(&self.bias);
            for (i, &v) in row.iter().enumerate() {
                if v == 0.0 {
                    continue;
                }
                let span = self.starts[i] as usize..self.starts[i + 1] as usize;
                for (j, w) in self.columns[span.clone()].iter().zip(&self.values[span]) {
                    out_row[*j as usize] += v * w;
                }
            }
        }
    }
}

impl SparseMlp {
    /// The sparse form of `network` (its zero weights left out).
    pub fn from_dense(network: &Mlp) -> Self {
        let layers = network
            .weights
            .iter()
            .zip(&network.biases)
            .map(|(w, b)| SparseLayer::from_dense(w.view(), b.as_slice().expect("a bias vector is contiguous")))
            .collect();
        Self { layers, activation: network.activation, loss: network.loss, dense: Cached::default() }
    }

    pub fn to_dense(&self) -> Mlp {
        Mlp {
            weights: self.layers.iter().map(SparseLayer::to_dense).collect(),
            biases: self.layers.iter().map(|l| Array1::from(l.bias.clone())).collect(),
            activation: self.activation,
            loss: self.loss,
        }
    }

    /// Fraction of the weights that are zero.
    pub fn sparsity(&self) -> f64 {
        let total: usize = self.layers.iter().map(|l| l.inputs * l.outputs).sum();
        let kept: usize = self.layers.iter().map(|l| l.values.len()).sum();
        1.0 - kept as f64 / total.max(1) as f64
    }

    /// Checks a stored network against the features it reads and the
    /// outputs it must give.
    pub fn validate(&self, features: usize, outputs: usize) -> Result<(), String> {
        for (l, layer) in self.layers.iter().enumerate() {
            layer.validate().map_err(|e| format!("sparse layer {l}: {e}"))?;
        }
        let shapes: Vec<(usize, usize)> = self.layers.iter().map(|l| (l.inputs, l.outputs)).collect();
        if !super::layers_map(&shapes, features, outputs) {
            return Err(format!("the sparse network's layers do not map {features} features to {outputs} outputs"));
        }
        Ok(())
    }

    /// Outputs (class probabilities or values) by the faster path for the
    /// batch: the sparse kernel up to [`SPARSE_MAX_ROWS`] rows, the dense
    /// GEMM on the densified weights beyond.
    ///
    /// # Panics
    /// When `x` does not have the network's number of inputs.
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        if x.nrows() <= SPARSE_MAX_ROWS {
            self.predict_sparse(x)
        } else {
            self.dense.0.get_or_init(|| self.to_dense()).predict(x)
        }
    }

    /// Outputs from the sparse kernel, whatever the batch.
    ///
    /// # Panics
    /// When `x` does not have the network's number of inputs.
    pub fn predict_sparse(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let rows = x.nrows();
        assert_eq!(x.ncols(), self.layers[0].inputs, "SparseMlp::predict: {} inputs", x.ncols());
        let mut input = x.as_standard_layout().into_owned().into_raw_vec_and_offset().0;
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let mut out = vec![0.0f32; rows * layer.outputs];
            layer.forward(&input, &mut out);
            if l < last {
                bias_activation(&mut out, &vec![0.0; layer.outputs], self.activation.into());
            } else if self.loss == Loss::SoftmaxCrossEntropy {
                softmax_rows(&mut out, layer.outputs);
            }
            input = out;
        }
        Array2::from_shape_vec((rows, self.layers[last].outputs), input).expect("rows x outputs values")
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn network(seed: u64) -> Mlp {
        let config = MlpConfig { hidden: vec![12], ..MlpConfig::default() };
        Mlp::new(20, 3, &config, &mut StdRng::seed_from_u64(seed))
    }

    fn rows(n: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        // A third of the inputs zero, as pixels and ReLU units often are.
        Array2::from_shape_simple_fn((n, 20), || if rng.random_bool(0.33) { 0.0 } else { rng.random_range(-1.0..1.0) })
    }

    #[test]
    fn impossible_sparsities_are_refused_by_name() {
        for bad in [0.0, 1.0, 1.5, -0.2, f64::NAN] {
            let err = prune(&network(1), bad).unwrap_err();
            assert!(err.to_string().contains(&format!("sparsity {bad} is impossible")), "{err}");
        }
    }

    #[test]
    fn pruning_removes_the_smallest_weights_of_each_layer() {
        let net = network(2);
        let (pruned, mask) = prune(&net, 0.8).unwrap();
        for (w, p) in net.weights.iter().zip(&pruned.weights) {
            let zeros = p.iter().filter(|v| **v == 0.0).count();
            assert_eq!(zeros, (0.8 * w.len() as f64).floor() as usize);
            let smallest_kept = p.iter().filter(|v| **v != 0.0).fold(f32::INFINITY, |m, v| m.min(v.abs()));
            let largest_removed = w.iter().zip(p).filter(|(_, p)| **p == 0.0).fold(0.0f32, |m, (v, _)| m.max(v.abs()));
            assert!(largest_removed <= smallest_kept);
        }
        assert!((mask.sparsity() - 0.8).abs() < 0.02);
        assert_eq!(pruned.biases, net.biases);
    }

    #[test]
    fn the_sparse_kernel_matches_the_dense_network() {
        let (pruned, _) = prune(&network(3), 0.7).unwrap();
        let sparse = SparseMlp::from_dense(&pruned);
        assert_eq!(sparse.to_dense(), pruned);
        assert!((sparse.sparsity() - 0.7).abs() < 0.02);
        let x = rows(50, 4);
        let (dense, fast) = (pruned.predict(x.view()), sparse.predict_sparse(x.view()));
        let worst = dense.iter().zip(&fast).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        assert_eq!(sparse.predict(x.view()), dense, "large batches run the densified network");
        assert!(sparse.validate(20, 3).is_ok());
        assert!(sparse.validate(20, 4).unwrap_err().contains("do not map 20 features to 4"));
        let mut forged = sparse.clone();
        forged.layers[0].columns[0] = 99;
        assert!(forged.validate(20, 3).unwrap_err().contains("sparse layer 0: a layer naming an output column"));
    }

    /// Fine-tuning keeps the mask and wins back what pruning lost.
    #[test]
    fn fine_tuning_keeps_the_mask_and_recovers() {
        let mut rng = StdRng::seed_from_u64(5);
        let x = Array2::from_shape_simple_fn((600, 20), || rng.random_range(-1.0f32..1.0));
        let labels: Vec<usize> =
            x.rows().into_iter().map(|r| usize::from(r[0] + r[1] > 0.0) + usize::from(r[2] > 0.5)).collect();
        let config = MlpConfig { hidden: vec![64], epochs: 40, ..MlpConfig::default() };
        let target = Target::Classes { labels: &labels, classes: 3 };
        let (net, _) = Mlp::fit(x.view(), target, None, &config);
        let accuracy =
            |m: &Mlp| m.predict_classes(x.view()).iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / 600.0;
        let (pruned, mask) = prune(&net, 0.85).unwrap();
        let tuned = fine_tune(pruned.clone(), &mask, x.view(), target, &config, 20).unwrap();
        for (w, keep) in tuned.weights.iter().zip(&mask.0) {
            assert!(w.iter().zip(keep).all(|(v, k)| *k || *v == 0.0), "a removed weight came back");
        }
        let (dense, before, after) = (accuracy(&net), accuracy(&pruned), accuracy(&tuned));
        assert!(after >= before + 0.1 && after >= dense - 0.1, "dense {dense}, pruned {before}, fine-tuned {after}");
    }
}

//! Linear models solved exactly: ridge regression from the normal
//! equations (whose sums merge across shards), and softmax (logistic)
//! regression or Huber regression by L-BFGS on the full training set. Each
//! gives an [`Mlp`] without hidden layers, so serving and ensembles treat it
//! like any network.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};

use super::{
    Activation, Loss, Mlp, Target,
    lbfgs::{self, Stop},
};
use crate::cpu::skinny;

/// Features beyond which ridge is solved by L-BFGS instead of the normal
/// equations (a d x d system costs d^3 / 3).
pub const MAX_NORMAL_EQUATION_FEATURES: usize = 4096;

/// How a linear fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearFit {
    pub iterations: usize,
    pub converged: bool,
    /// The objective (mean loss plus penalty) at the solution.
    pub objective: f64,
}

/// The sums ridge regression needs, over some rows. Merging two adds them,
/// so nodes can compute them where their shards live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gram {
    pub rows: u64,
    pub features: usize,
    pub outputs: usize,
    pub sum_x: Vec<f64>,
    pub sum_y: Vec<f64>,
    /// X^T X, row-major `features x features`.
    pub xtx: Vec<f64>,
    /// X^T Y, row-major `features x outputs`.
    pub xty: Vec<f64>,
}

impl Gram {
    pub fn new(features: usize, outputs: usize) -> Self {
        Self {
            rows: 0,
            features,
            outputs,
            sum_x: vec![0.0; features],
            sum_y: vec![0.0; outputs],
            xtx: vec![0.0; features * features],
            xty: vec![0.0; features * outputs],
        }
    }

    /// Adds rows `x` with targets `y`.
    pub fn add(&mut self, x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) {
        for start in (0..x.nrows()).step_by(4096) {
            let end = (start + 4096).min(x.nrows());
            let xs = x.slice(ndarray::s![start..end, ..]).mapv(f64::from);
            let ys = y.slice(ndarray::s![start..end, ..]).mapv(f64::from);
            let xtx = xs.t().dot(&xs);
            let xty = xs.t().dot(&ys);
            self.xtx.iter_mut().zip(xtx.iter()).for_each(|(a, b)| *a += b);
            self.xty.iter_mut().zip(xty.iter()).for_each(|(a, b)| *a += b);
            self.sum_x.iter_mut().zip(xs.sum_axis(Axis(0))).for_each(|(a, b)| *a += b);
            self.sum_y.iter_mut().zip(ys.sum_axis(Axis(0))).for_each(|(a, b)| *a += b);
        }
        self.rows += x.nrows() as u64;
    }

    pub fn merge(&mut self, other: &Gram) {
        self.rows += other.rows;
        for (a, b) in [
            (&mut self.sum_x, &other.sum_x),
            (&mut self.sum_y, &other.sum_y),
            (&mut self.xtx, &other.xtx),
            (&mut self.xty, &other.xty),
        ] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    /// The ridge solution minimizing `(1/2n) |Y - XW - b|^2 + (l2/2) |W|^2`
    /// (the intercept is not penalized).
    pub fn solve(&self, l2: f64) -> Result<Mlp, String> {
        let (d, k) = (self.features, self.outputs);
        if self.rows == 0 {
            return Err("no training rows".into());
        }
        let n = self.rows as f64;
        let mean_x: Vec<f64> = self.sum_x.iter().map(|s| s / n).collect();
        let mean_y: Vec<f64> = self.sum_y.iter().map(|s| s / n).collect();
        // Centered sums, plus the penalty on the diagonal.
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = self.xtx[i * d + j] - n * mean_x[i] * mean_x[j];
            }
            a[i * d + i] += n * l2;
        }
        let mut b = vec![0.0; d * k];
        for i in 0..d {
            for o in 0..k {
                b[i * k + o] = self.xty[i * k + o] - n * mean_x[i] * mean_y[o];
            }
        }
        let w = solve_symmetric(a, b, d, k)?;
        let weights = Array2::from_shape_fn((d, k), |(i, o)| w[i * k + o] as f32);
        let biases =
            Array1::from_shape_fn(k, |o| (mean_y[o] - (0..d).map(|i| mean_x[i] * w[i * k + o]).sum::<f64>()) as f32);
        Ok(Mlp { weights: vec![weights], biases: vec![biases], activation: Activation::Relu, loss: Loss::SquaredError })
    }
}

/// Solves `A X = B` for symmetric positive semi-definite `A` (d x d) by
/// Cholesky, adding a little to the diagonal if `A` is singular.
fn solve_symmetric(a: Vec<f64>, b: Vec<f64>, d: usize, k: usize) -> Result<Vec<f64>, String> {
    let scale = (0..d).map(|i| a[i * d + i].abs()).fold(0.0, f64::max).max(1e-300);
    for jitter in [0.0, 1e-12, 1e-9, 1e-6] {
        let mut l = a.clone();
        for i in 0..d {
            l[i * d + i] += jitter * scale;
        }
        if cholesky(&mut l, d) {
            let mut x = b.clone();
            for o in 0..k {
                // L y = b, then L^T x = y.
                for i in 0..d {
                    let s: f64 = (0..i).map(|j| l[i * d + j] * x[j * k + o]).sum();
                    x[i * k + o] = (x[i * k + o] - s) / l[i * d + i];
                }
                for i in (0..d).rev() {
                    let s: f64 = (i + 1..d).map(|j| l[j * d + i] * x[j * k + o]).sum();
                    x[i * k + o] = (x[i * k + o] - s) / l[i * d + i];
                }
            }
            return Ok(x);
        }
    }
    Err("the normal equations are singular even with a penalty; add l2".into())
}

/// In-place lower Cholesky factor; false when `a` is not positive definite.
fn cholesky(a: &mut [f64], d: usize) -> bool {
    for j in 0..d {
        let s: f64 = (0..j).map(|p| a[j * d + p] * a[j * d + p]).sum();
        let diag = a[j * d + j] - s;
        if !(diag > 0.0) {
            return false;
        }
        let root = diag.sqrt();
        a[j * d + j] = root;
        for i in j + 1..d {
            let s: f64 = (0..j).map(|p| a[i * d + p] * a[j * d + p]).sum();
            a[i * d + j] = (a[i * d + j] - s) / root;
        }
        for p in j + 1..d {
            a[j * d + p] = 0.0;
        }
    }
    true
}

/// Training rows as a linear model reads them.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    Floats(ArrayView2<'a, f32>),
    /// Bytes standing for the features (MNIST's pixels, scaled).
    Bytes(ScaledBytes<'a>),
}

impl Rows<'_> {
    pub fn dim(&self) -> (usize, usize) {
        match self {
            Rows::Floats(x) => x.dim(),
            Rows::Bytes(b) => b.values.dim(),
        }
    }
}

/// Fits a linear model to `rows` and `target` with L2 penalty `l2` (on the
/// weights, not the intercepts): ridge from the normal equations when the
/// loss is squared error and the features are few, else L-BFGS. Rows of
/// bytes are trained as bytes where the skinny kernels run, else as the
/// features they stand for.
pub fn fit(
    rows: Rows<'_>,
    target: Target<'_>,
    loss: Loss,
    l2: f64,
    stop: Stop,
    on_iteration: &mut dyn FnMut(usize, f64),
) -> Result<(Mlp, LinearFit), String> {
    let (n, d) = rows.dim();
    if n == 0 {
        return Err("no training rows".into());
    }
    if let Rows::Bytes(b) = rows
        && (b.shift.len() != d || b.scale.len() != d)
    {
        return Err(format!("{d} columns of bytes with {} shifts and {} scales", b.shift.len(), b.scale.len()));
    }
    let k = target.outputs();
    let normal_equations =
        matches!((loss, target), (Loss::SquaredError, Target::Values(_))) && d <= MAX_NORMAL_EQUATION_FEATURES;
    let dense = || target.dense(&(0..n).collect::<Vec<_>>());
    if let Rows::Bytes(bytes) = rows
        && !normal_equations
        && k <= skinny::MAX_COLUMNS
        && skinny::available()
    {
        let dense = dense();
        let objective = |theta: &[f64]| byte_objective(&bytes, &dense, loss, l2, theta, d, k);
        return Ok(minimized(objective, d, k, loss, stop, on_iteration));
    }
    let decoded;
    let x = match rows {
        Rows::Floats(x) => x,
        Rows::Bytes(bytes) => {
            decoded = bytes.decoded();
            decoded.view()
        }
    };
    if let (true, Target::Values(y)) = (normal_equations, target) {
        let mut gram = Gram::new(d, y.ncols());
        gram.add(x, y);
        let model = gram.solve(l2)?;
        let objective = model.loss(x, &y.to_owned(), l2 as f32);
        on_iteration(0, objective);
        return Ok((model, LinearFit { iterations: 1, converged: true, objective }));
    }
    let dense = dense();
    let objective = |theta: &[f64]| linear_objective(x, &dense, loss, l2, theta, d, k);
    Ok(minimized(objective, d, k, loss, stop, on_iteration))
}

/// The linear model at the minimum of `objective` (W row-major, then the
/// intercepts), from zero.
fn minimized(
    mut objective: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    d: usize,
    k: usize,
    loss: Loss,
    stop: Stop,
    on_iteration: &mut dyn FnMut(usize, f64),
) -> (Mlp, LinearFit) {
    let minimum = lbfgs::minimize(&mut objective, vec![0.0; d * k + k], stop, on_iteration);
    let weights = Array2::from_shape_fn((d, k), |(i, o)| minimum.x[i * k + o] as f32);
    let biases = Array1::from_shape_fn(k, |o| minimum.x[d * k + o] as f32);
    let model = Mlp { weights: vec![weights], biases: vec![biases], activation: Activation::Relu, loss };
    (model, LinearFit { iterations: minimum.iterations, converged: minimum.converged, objective: minimum.value })
}

/// Rows of the objective's products at a time: a block of `x` (about
/// 1 MB) stays in the core's own cache from the forward product to the
/// gradient's, where the whole matrix (17.5 MB for a shard of MNIST) went
/// through the shared cache twice per iteration, and two trainers on one
/// machine pushed each other's out of it.
fn objective_block(features: usize) -> usize {
    ((1 << 18) / features.max(1)).clamp(64, 4096)
}

/// Value and gradient of the mean loss plus `(l2/2) |W|^2` at `theta`
/// (W row-major, then the intercepts), a block of rows at a time.
fn linear_objective(
    x: ArrayView2<'_, f32>,
    y: &Array2<f32>,
    loss: Loss,
    l2: f64,
    theta: &[f64],
    d: usize,
    k: usize,
) -> (f64, Vec<f64>) {
    // W by output (k x d): both products then run on the skinny kernels
    // with no copy of W or of its gradient into their layout.
    let wt = Array2::from_shape_fn((k, d), |(o, i)| theta[i * k + o] as f32);
    let mut grad_wt = Array2::<f32>::zeros((k, d));
    let (total, grad_b) = sum_blocks(
        x.nrows(),
        objective_block(d),
        y,
        loss,
        &theta[d * k..],
        |rows| {
            let xb = x.slice(s![rows, ..]);
            crate::cpu::product_of(xb, false, wt.view(), true).unwrap_or_else(|| xb.dot(&wt.t()))
        },
        |rows, delta| {
            let xb = x.slice(s![rows, ..]);
            grad_wt += &crate::cpu::product_of(delta, true, xb, false).unwrap_or_else(|| delta.t().dot(&xb));
        },
    );
    with_penalty(theta, d, k, l2, total / x.nrows() as f64, grad_b, |i, o| f64::from(grad_wt[[o, i]]))
}

/// Training rows held as bytes whose features are `(byte - shift) * scale`
/// column by column: the pipeline's scaling of columns of bytes (MNIST's
/// pixels). A quarter of the memory of the f32 features: two trainers on
/// one machine each streamed a 17.5 MB matrix per iteration and slowed each
/// other by a quarter; with 4.4 MB each they do not.
#[derive(Debug, Clone, Copy)]
pub struct ScaledBytes<'a> {
    pub values: ArrayView2<'a, u8>,
    pub shift: &'a [f64],
    pub scale: &'a [f64],
}

impl ScaledBytes<'_> {
    /// The features the bytes stand for, with the bits the pipeline gives
    /// them (computed in f64, stored as f32).
    pub fn decoded(&self) -> Array2<f32> {
        let (shift, scale) = (self.shift, self.scale);
        let mut x = Array2::<f32>::zeros(self.values.dim());
        for (mut out, row) in x.rows_mut().into_iter().zip(self.values.rows()) {
            for (i, (o, &b)) in out.iter_mut().zip(row).enumerate() {
                *o = ((f64::from(b) - shift[i]) * scale[i]) as f32;
            }
        }
        x
    }
}

/// [`linear_objective`] of the features of rows of bytes, without making
/// them: with `x = (b - shift) scale`, `x W = b (scale W) - (shift scale) W`,
/// so the outputs are the bytes' product with W scaled by input and the
/// intercepts moved, and `xᵀ δ = scale (bᵀ δ - shift Σ δ)`. Needs the skinny
/// kernels (checked by [`fit`]).
fn byte_objective(
    rows: &ScaledBytes<'_>,
    y: &Array2<f32>,
    loss: Loss,
    l2: f64,
    theta: &[f64],
    d: usize,
    k: usize,
) -> (f64, Vec<f64>) {
    let ScaledBytes { values, shift, scale } = *rows;
    let mut wt = Array2::<f32>::zeros((k, d));
    let mut b = theta[d * k..].to_vec();
    for i in 0..d {
        for o in 0..k {
            let w = theta[i * k + o];
            wt[[o, i]] = (w * scale[i]) as f32;
            b[o] -= shift[i] * scale[i] * w;
        }
    }
    let mut sums = Array2::<f32>::zeros((k, d));
    let (total, grad_b) = sum_blocks(
        values.nrows(),
        objective_block(d),
        y,
        loss,
        &b,
        |rows| skinny::product_nt_bytes(values.slice(s![rows, ..]), wt.view()).expect("shapes checked by fit"),
        |rows, delta| {
            sums += &skinny::product_tn_bytes(delta, values.slice(s![rows, ..])).expect("shapes checked by fit");
        },
    );
    let gradient = |i: usize, o: usize| scale[i] * (f64::from(sums[[o, i]]) - shift[i] * grad_b[o]);
    with_penalty(theta, d, k, l2, total / values.nrows() as f64, grad_b.clone(), gradient)
}

/// The summed loss over `rows` rows a block at a time, and the intercepts'
/// gradient: `outputs` gives a block's outputs before the intercepts `b`,
/// `gradient` takes the block's d(loss)/d(output).
fn sum_blocks(
    rows: usize,
    block: usize,
    y: &Array2<f32>,
    loss: Loss,
    b: &[f64],
    mut outputs: impl FnMut(std::ops::Range<usize>) -> Array2<f32>,
    mut gradient: impl FnMut(std::ops::Range<usize>, ArrayView2<'_, f32>),
) -> (f64, Vec<f64>) {
    let k = b.len();
    let mut grad_b = vec![0.0; k];
    let mut total = 0.0;
    for start in (0..rows).step_by(block) {
        let range = start..(start + block).min(rows);
        let z = outputs(range.clone());
        let mut delta = Array2::<f32>::zeros((z.nrows(), k));
        let targets = y.slice(s![range.clone(), ..]);
        let (z, targets) = (z.as_standard_layout(), targets.as_standard_layout());
        total += row_losses(
            z.as_slice().expect("standard layout"),
            targets.as_slice().expect("standard layout"),
            b,
            loss,
            rows as f64,
            delta.as_slice_mut().expect("a new array"),
        );
        gradient(range, delta.view());
        for (g, column) in grad_b.iter_mut().zip(delta.columns()) {
            *g += column.iter().map(|v| f64::from(*v)).sum::<f64>();
        }
    }
    (total, grad_b)
}

/// The objective `mean + (l2/2) |W|^2` and its gradient, W's part from
/// `grad_w(input, output)`, then the intercepts'.
fn with_penalty(
    theta: &[f64],
    d: usize,
    k: usize,
    l2: f64,
    mean: f64,
    grad_b: Vec<f64>,
    grad_w: impl Fn(usize, usize) -> f64,
) -> (f64, Vec<f64>) {
    let mut grad = Vec::with_capacity(d * k + k);
    let mut penalty = 0.0;
    for i in 0..d {
        for o in 0..k {
            let wv = theta[i * k + o];
            penalty += wv * wv;
            grad.push(grad_w(i, o) + l2 * wv);
        }
    }
    grad.extend(grad_b);
    (mean + 0.5 * l2 * penalty, grad)
}

/// The summed loss of rows whose outputs before the intercepts `b` are `z`,
/// with each row's d(loss)/d(output) over `n` written into `delta` (in f64,
/// stored as f32).
fn row_losses(z: &[f32], y: &[f32], b: &[f64], loss: Loss, n: f64, delta: &mut [f32]) -> f64 {
    let k = b.len();
    if k == 0 {
        return 0.0;
    }
    let limit = match loss {
        Loss::SoftmaxCrossEntropy => return softmax_losses(z, y, b, n, delta),
        Loss::SquaredError => f64::INFINITY,
        Loss::Huber { delta: limit } => f64::from(limit),
    };
    let mut total = 0.0;
    // Rows as slices: ndarray's row iterators were a third of this loop.
    for ((zr, yr), dr) in z.chunks_exact(k).zip(y.chunks_exact(k)).zip(delta.chunks_exact_mut(k)) {
        for o in 0..k {
            let e = f64::from(zr[o]) + b[o] - f64::from(yr[o]);
            total += if e.abs() <= limit { 0.5 * e * e } else { limit * (e.abs() - 0.5 * limit) };
            dr[o] = (e.clamp(-limit, limit) / n) as f32;
        }
    }
    total
}

/// [`row_losses`] under softmax cross-entropy: each row's outputs less
/// their largest, the exponentials of the whole block at once (vectorized;
/// libm's, one call each, were a tenth of training MNIST's softmax), and
/// `-ln p = ln(sum) - (output - max)`, one logarithm a row instead of one
/// per output.
fn softmax_losses(z: &[f32], y: &[f32], b: &[f64], n: f64, delta: &mut [f32]) -> f64 {
    let k = b.len();
    let mut shifted = vec![0.0; z.len()];
    for (zr, sr) in z.chunks_exact(k).zip(shifted.chunks_exact_mut(k)) {
        for ((s, v), b) in sr.iter_mut().zip(zr).zip(b) {
            *s = f64::from(*v) + b;
        }
        let max = sr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        sr.iter_mut().for_each(|s| *s -= max);
    }
    let mut exps = shifted.clone();
    crate::cpu::exp::exp_in_place(&mut exps);
    let mut total = 0.0;
    let rows = shifted.chunks_exact(k).zip(exps.chunks_exact(k)).zip(y.chunks_exact(k)).zip(delta.chunks_exact_mut(k));
    for (((sr, er), yr), dr) in rows {
        let sum: f64 = er.iter().sum();
        let log_sum = sum.ln();
        for o in 0..k {
            let t = f64::from(yr[o]);
            if t > 0.0 {
                total += t * (log_sum - sr[o]);
            }
            dr[o] = ((er[o] / sum - t) / n) as f32;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn data(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-1.0..1.0))
    }

    /// The objective taken a block of rows at a time is the mean softmax
    /// loss and its gradient computed row by row in f64 (three blocks here).
    #[test]
    fn the_blocked_objective_is_the_loss_and_gradient_of_every_row() {
        let (n, d, k) = (3 * objective_block(3) - 5, 3, 4);
        let x = data(n, d, 2);
        let mut rng = StdRng::seed_from_u64(3);
        let mut y = Array2::<f32>::zeros((n, k));
        for r in 0..n {
            y[[r, rng.random_range(0..k)]] = 1.0;
        }
        let theta: Vec<f64> = (0..d * k + k).map(|_| rng.random_range(-1.0..1.0)).collect();
        let l2 = 0.01;
        let (value, grad) = linear_objective(x.view(), &y, Loss::SoftmaxCrossEntropy, l2, &theta, d, k);
        let (mut want, mut want_grad) = (0.0, vec![0.0; d * k + k]);
        for r in 0..n {
            let out: Vec<f64> = (0..k)
                .map(|o| (0..d).map(|i| f64::from(x[[r, i]]) * theta[i * k + o]).sum::<f64>() + theta[d * k + o])
                .collect();
            let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = out.iter().map(|v| (v - max).exp()).sum();
            for o in 0..k {
                let p = (out[o] - max).exp() / sum;
                let t = f64::from(y[[r, o]]);
                want -= t * p.ln() / n as f64;
                for i in 0..d {
                    want_grad[i * k + o] += (p - t) * f64::from(x[[r, i]]) / n as f64;
                }
                want_grad[d * k + o] += (p - t) / n as f64;
            }
        }
        want += 0.5 * l2 * theta[..d * k].iter().map(|w| w * w).sum::<f64>();
        for (g, w) in want_grad.iter_mut().zip(&theta).take(d * k) {
            *g += l2 * w;
        }
        assert!((value - want).abs() < 1e-5 * want.abs(), "{value} vs {want}");
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() < 1e-4, "{g} vs {w}");
        }
    }

    /// Bytes and the features they stand for, `(b - shift) * scale`, as
    /// the pipeline makes them (in f64, stored as f32).
    fn scaled_bytes(n: usize, d: usize, seed: u64) -> (Array2<u8>, Vec<f64>, Vec<f64>, Array2<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let bytes = Array2::from_shape_simple_fn((n, d), || if rng.random_bool(0.6) { 0 } else { rng.random::<u8>() });
        let shift: Vec<f64> = (0..d).map(|i| 20.0 + i as f64 * 3.5).collect();
        let scale: Vec<f64> = (0..d).map(|i| 1.0 / (40.0 + i as f64)).collect();
        let x = Array2::from_shape_fn((n, d), |(r, i)| ((f64::from(bytes[[r, i]]) - shift[i]) * scale[i]) as f32);
        (bytes, shift, scale, x)
    }

    #[test]
    fn the_objective_of_bytes_is_that_of_their_features() {
        if !skinny::available() {
            eprintln!("no AVX-512 here: rows of bytes are trained as f32 features, nothing to check");
            return;
        }
        let (n, d, k) = (2 * objective_block(37) + 11, 37, 10);
        let (bytes, shift, scale, x) = scaled_bytes(n, d, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let mut y = Array2::<f32>::zeros((n, k));
        for r in 0..n {
            y[[r, rng.random_range(0..k)]] = 1.0;
        }
        let rows = ScaledBytes { values: bytes.view(), shift: &shift, scale: &scale };
        assert!(rows.decoded().iter().zip(&x).all(|(a, b)| a.to_bits() == b.to_bits()), "decoded as the pipeline does");
        for loss in [Loss::SoftmaxCrossEntropy, Loss::Huber { delta: 1.0 }] {
            let theta: Vec<f64> = (0..d * k + k).map(|_| rng.random_range(-0.5..0.5)).collect();
            let (value, grad) = byte_objective(&rows, &y, loss, 0.01, &theta, d, k);
            let (want, want_grad) = linear_objective(x.view(), &y, loss, 0.01, &theta, d, k);
            assert!((value - want).abs() < 1e-5 * want.abs(), "{loss:?}: {value} vs {want}");
            for (g, w) in grad.iter().zip(&want_grad) {
                assert!((g - w).abs() < 1e-5 + 1e-4 * w.abs(), "{loss:?}: {g} vs {w}");
            }
        }
        // Fitted either way, the models predict the same classes.
        let labels: Vec<usize> =
            (0..n).map(|r| usize::from(bytes[[r, 0]] > 100) + usize::from(bytes[[r, 3]] > 50)).collect();
        let target = Target::Classes { labels: &labels, classes: 3 };
        let stop = Stop { max_iterations: 30, gradient_tolerance: 1e-6 };
        let fit = |rows| super::fit(rows, target, Loss::SoftmaxCrossEntropy, 1e-3, stop, &mut |_, _| {});
        let (from_bytes, _) = fit(Rows::Bytes(rows)).unwrap();
        let (from_floats, _) = fit(Rows::Floats(x.view())).unwrap();
        let (a, b) = (from_bytes.predict_classes(x.view()), from_floats.predict_classes(x.view()));
        let same = a.iter().zip(&b).filter(|(a, b)| a == b).count();
        assert!(same * 100 >= n * 99, "{same} of {n} rows predicted alike");
    }

    #[test]
    fn bytes_the_kernels_cannot_take_are_trained_as_their_features() {
        // Squared error on few features goes to the normal equations, which
        // read f32 features: the bytes are decoded, to the same model.
        let (bytes, shift, scale, x) = scaled_bytes(300, 4, 9);
        let y = x.map_axis(Axis(1), |r| r[0] - 2.0 * r[3] + 0.5).insert_axis(Axis(1));
        let rows = ScaledBytes { values: bytes.view(), shift: &shift, scale: &scale };
        let fit =
            |rows| super::fit(rows, Target::Values(y.view()), Loss::SquaredError, 0.0, Stop::default(), &mut |_, _| {});
        let (from_bytes, _) = fit(Rows::Bytes(rows)).unwrap();
        let (from_floats, _) = fit(Rows::Floats(x.view())).unwrap();
        assert_eq!(from_bytes.weights[0], from_floats.weights[0]);
        // Scalings that do not match the columns are refused by name.
        let short = ScaledBytes { values: bytes.view(), shift: &shift[..3], scale: &scale };
        let refused = fit(Rows::Bytes(short)).unwrap_err();
        assert!(refused.contains("3 shifts"), "{refused}");
    }

    #[test]
    fn ridge_recovers_a_plane_and_shards_merge_into_the_same_solution() {
        let x = data(500, 3, 1);
        let y = x.map_axis(Axis(1), |r| 2.0 * r[0] - r[1] + 0.5 * r[2] + 3.0).insert_axis(Axis(1));
        let (model, fit) = super::fit(
            Rows::Floats(x.view()),
            Target::Values(y.view()),
            Loss::SquaredError,
            0.0,
            Stop::default(),
            &mut |_, _| {},
        )
        .unwrap();
        assert!(fit.converged);
        let w = &model.weights[0];
        assert!(
            (w[[0, 0]] - 2.0).abs() < 1e-4 && (w[[1, 0]] + 1.0).abs() < 1e-4 && (model.biases[0][0] - 3.0).abs() < 1e-4
        );
        let mut merged = Gram::new(3, 1);
        for part in 0..5 {
            let rows = ndarray::s![part * 100..(part + 1) * 100, ..];
            let mut g = Gram::new(3, 1);
            g.add(x.slice(rows), y.slice(rows));
            merged.merge(&g);
        }
        let again = merged.solve(0.0).unwrap();
        assert!((again.weights[0][[2, 0]] - w[[2, 0]]).abs() < 1e-5);
    }

    #[test]
    fn the_penalty_shrinks_ridge_weights_as_scikit_learn_does() {
        // One centered feature: w = sum(xy) / (sum(x^2) + alpha), alpha = n * l2.
        let x = ndarray::array![[-1.0f32], [0.0], [1.0]];
        let y = ndarray::array![[-2.0f32], [0.0], [2.0]];
        let (model, _) = super::fit(
            Rows::Floats(x.view()),
            Target::Values(y.view()),
            Loss::SquaredError,
            1.0 / 3.0,
            Stop::default(),
            &mut |_, _| {},
        )
        .unwrap();
        assert!((model.weights[0][[0, 0]] - 4.0 / 3.0).abs() < 1e-6, "{model:?}");
    }

    #[test]
    fn lbfgs_solves_softmax_regression_to_a_stationary_point() {
        let x = data(600, 4, 2);
        let labels: Vec<usize> = (0..600)
            .map(|r| {
                if x[[r, 0]] + x[[r, 1]] > 0.5 {
                    2
                } else if x[[r, 2]] > 0.0 {
                    1
                } else {
                    0
                }
            })
            .collect();
        let target = Target::Classes { labels: &labels, classes: 3 };
        let (model, fit) = super::fit(
            Rows::Floats(x.view()),
            target,
            Loss::SoftmaxCrossEntropy,
            1e-3,
            Stop::default(),
            &mut |_, _| {},
        )
        .unwrap();
        assert!(fit.converged, "{fit:?}");
        let accuracy = model.predict_classes(x.view()).iter().zip(&labels).filter(|(a, b)| a == b).count();
        assert!(accuracy > 540, "{accuracy}");
        // Moving any weight a little makes the objective worse.
        let base = model.loss(x.view(), &target.dense(&(0..600).collect::<Vec<_>>()), 1e-3);
        for delta in [1e-2f32, -1e-2] {
            let mut moved = model.clone();
            moved.weights[0][[1, 2]] += delta;
            assert!(moved.loss(x.view(), &target.dense(&(0..600).collect::<Vec<_>>()), 1e-3) > base);
        }
    }

    #[test]
    fn huber_ignores_an_outlier_that_pulls_squared_error() {
        let x = data(200, 1, 3);
        let mut y = x.mapv(|v| 2.0 * v);
        y[[0, 0]] = 1000.0;
        let fit = |loss| {
            super::fit(Rows::Floats(x.view()), Target::Values(y.view()), loss, 0.0, Stop::default(), &mut |_, _| {})
                .unwrap()
                .0
        };
        let huber = fit(Loss::Huber { delta: 1.0 });
        let squared = fit(Loss::SquaredError);
        assert!((huber.weights[0][[0, 0]] - 2.0).abs() < 0.1, "{huber:?}");
        assert!((squared.biases[0][0]).abs() > 1.0, "squared error is pulled by the outlier");
    }
}

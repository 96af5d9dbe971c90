//! Post-training int8 quantization of dense networks, and the int8 kernel
//! that serves them.
//!
//! Weights are quantized symmetrically per output column: column `j` of a
//! layer's `inputs x outputs` weight is stored as `i8` values `q` and one
//! `f32` scale `s_j = max |w_j| / 127`, so `w ≈ q * s_j`. Activations are
//! quantized per row when a batch arrives (dynamic quantization): row `r`
//! gets `s_r = max |x_r| / 127`. A layer's output is then
//! `(sum_i qx_ri * qw_ij) * s_r * s_j + b_j`, the sum of `i8 x i8` products
//! accumulated exactly in `i32` ([`MAX_INPUTS`] keeps it from overflowing).
//! Biases stay `f32`, and so do the activation functions and the softmax.
//!
//! The dot products run in one of four kernels, the fastest chosen once per
//! process ([`Kernel::detected`]): a scalar reference, a blocked loop LLVM
//! vectorizes for the baseline target, and multiply-add kernels for AVX2
//! and AVX-512 BW (`vpmaddwd`: pairs of `i16` products summed into `i32`
//! lanes, four rows against sixteen output columns at a time, weights
//! packed once per loaded layer) reached through pulp's safe runtime
//! dispatch; the workspace denies `unsafe`, so VNNI's `vpdpbusd`, which has
//! no safe wrapper in pulp, is not used. All add the same integers, so
//! they agree exactly; tests compare them.

use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{Activation, Loss, Mlp};
use crate::cpu::elementwise::{bias_activation, softmax_rows};

/// Widest layer input whose sum of `i8 x i8` products (each at most
/// `127 * 127` in size) cannot overflow an `i32`.
pub const MAX_INPUTS: usize = (i32::MAX as usize) / (127 * 127);

/// Why a network cannot be quantized, or a stored quantized one is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("layer {layer} has {inputs} inputs; int8 sums overflow beyond {MAX_INPUTS}")]
    TooWide { layer: usize, inputs: usize },
    #[error("layer {layer} has weights that are not finite numbers")]
    NotFinite { layer: usize },
    #[error("the network has no layers")]
    Empty,
}

/// One dense layer with int8 weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedLayer {
    pub inputs: usize,
    pub outputs: usize,
    /// `outputs` rows of `inputs` values: row `j` is output column `j`'s
    /// weights (transposed, so each dot product reads contiguous memory).
    pub weights: Vec<i8>,
    /// One scale per output column.
    pub scales: Vec<f32>,
    pub bias: Vec<f32>,
    /// The weights laid out for the multiply-add kernels, made on first use
    /// (never stored).
    #[serde(skip)]
    pub(crate) packed: Cached<Packed>,
}

/// A layer's weights widened to `i16` and interleaved for `pmaddwd`: for
/// each block of [`LANES`] output columns, for each pair of inputs `k`, the
/// `2 * LANES` values `w(2k, j), w(2k + 1, j)` for `j` in the block. Inputs
/// are padded to an even count and outputs to whole blocks, with zeros.
#[derive(Debug, Clone, Default)]
pub(crate) struct Packed {
    pairs: usize,
    blocks: usize,
    w: Vec<i16>,
}

/// Output columns per block of the packed layout: one 512-bit register of
/// `i32` sums, or two 256-bit ones.
const LANES: usize = 16;

/// A value derived from a stored model (packed or dequantized weights),
/// made on first use and never stored; equal whatever it holds, since it
/// only caches what the stored fields say.
#[derive(Debug, Clone)]
pub(crate) struct Cached<T>(pub(crate) std::sync::OnceLock<T>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<T> PartialEq for Cached<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A dense network whose layers hold int8 weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedMlp {
    pub layers: Vec<QuantizedLayer>,
    pub activation: Activation,
    pub loss: Loss,
    /// The dequantized network, made on first use by batches of sizes the
    /// f32 GEMM answers faster (never stored).
    #[serde(skip)]
    dense: Cached<Mlp>,
    /// Whether the int8 kernel beat the f32 GEMM on the first batch of at
    /// least [`INT8_FROM_ROWS`] rows this network answered (never stored).
    #[serde(skip)]
    large_on_int8: Cached<bool>,
}

/// Up to `INT8_MAX_ROWS` rows a batch runs on the int8 kernel; below
/// `INT8_FROM_ROWS` on the f32 GEMM with the dequantized weights; from
/// `INT8_FROM_ROWS` on whichever of the two was faster on the first such
/// batch this network answered (both are run and timed once, then the
/// choice is kept). Measured on the served shape 784-128-10 with MNIST
/// weights and rows, AVX-512, fastest of 21 interleaved (`cargo bench -p
/// mass-kernels --bench compress`), f32 / int8 kernel: 18-29 / 3.2 µs at 1
/// row, 46-55 / 37-43 at 16, 144-162 / 147-173 at 64, 544-579 / 589-634 at
/// 256, and 2.3-4.8 / 2.4-2.5 ms at 1,000 rows (the f32 figure depends on
/// whether its buffers are warm pages). Other shapes differ (a narrow
/// input layer favours f32 at large batches), hence the measured choice.
pub const INT8_MAX_ROWS: usize = 32;
pub const INT8_FROM_ROWS: usize = 512;

impl QuantizedLayer {
    /// Quantizes `weight` (`inputs x outputs`) per output column.
    pub fn quantize(weight: ArrayView2<'_, f32>, bias: &[f32]) -> Self {
        let (inputs, outputs) = weight.dim();
        let mut weights = vec![0i8; inputs * outputs];
        let mut scales = vec![1.0f32; outputs];
        for (j, column) in weight.columns().into_iter().enumerate() {
            let max = column.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[j] = scale;
            for (q, v) in weights[j * inputs..(j + 1) * inputs].iter_mut().zip(column) {
                *q = (v / scale).round().clamp(-127.0, 127.0) as i8;
            }
        }
        Self { inputs, outputs, weights, scales, bias: bias.to_vec(), packed: Cached::default() }
    }

    /// The `f32` weights the int8 ones stand for (`inputs x outputs`).
    pub fn dequantize(&self) -> Array2<f32> {
        Array2::from_shape_fn((self.inputs, self.outputs), |(i, j)| {
            f32::from(self.weights[j * self.inputs + i]) * self.scales[j]
        })
    }

    fn validate(&self) -> Result<(), String> {
        if self.inputs == 0 || self.outputs == 0 {
            return Err("a layer without inputs or outputs".into());
        }
        if self.inputs > MAX_INPUTS {
            return Err(format!("a layer of {} inputs (int8 sums overflow beyond {MAX_INPUTS})", self.inputs));
        }
        let sizes_fit = self.inputs.checked_mul(self.outputs) == Some(self.weights.len())
            && self.scales.len() == self.outputs
            && self.bias.len() == self.outputs;
        if !sizes_fit {
            return Err("a layer whose weights, scales or biases do not match its shape".into());
        }
        if !self.scales.iter().chain(&self.bias).all(|v| v.is_finite()) {
            return Err("a layer with scales or biases that are not finite numbers".into());
        }
        Ok(())
    }

    /// `out[r] = W^T x[r] + b` for the quantized rows in `words` (row `r` scaled by
    /// `row_scales[r]`); `out` has `rows x outputs` values.
    fn forward(&self, kernel: Kernel, words: &[i32], row_scales: &[f32], out: &mut [f32]) {
        let rows = row_scales.len();
        let pairs = self.inputs.div_ceil(2);
        let width = match kernel {
            Kernel::Scalar | Kernel::Portable => self.outputs,
            Kernel::Avx2 | Kernel::Avx512 => self.pack().blocks * LANES,
        };
        let mut sums = vec![0i32; rows * width];
        match kernel {
            Kernel::Scalar | Kernel::Portable => {
                let q16: &[i16] = pulp::bytemuck::cast_slice(words);
                let mut row = vec![0i8; self.inputs];
                for (q, s) in q16.chunks_exact(2 * pairs).zip(sums.chunks_exact_mut(width)) {
                    row.iter_mut().zip(q).for_each(|(r, q)| *r = *q as i8);
                    if kernel == Kernel::Scalar {
                        dots_scalar(&row, &self.weights, s);
                    } else {
                        dots_blocked(&row, &self.weights, s);
                    }
                }
            }
            Kernel::Avx2 | Kernel::Avx512 => simd::dots(kernel, words, self.pack(), &mut sums),
        }
        for ((s, scale), out_row) in sums.chunks_exact(width).zip(row_scales).zip(out.chunks_exact_mut(self.outputs)) {
            for (((o, s), w), b) in out_row.iter_mut().zip(s).zip(&self.scales).zip(&self.bias) {
                *o = *s as f32 * (scale * w) + b;
            }
        }
    }

    fn pack(&self) -> &Packed {
        self.packed.0.get_or_init(|| {
            let pairs = self.inputs.div_ceil(2);
            let blocks = self.outputs.div_ceil(LANES);
            let mut w = vec![0i16; blocks * pairs * 2 * LANES];
            for j in 0..self.outputs {
                let (block, lane) = (j / LANES, j % LANES);
                for i in 0..self.inputs {
                    let at = ((block * pairs + i / 2) * LANES + lane) * 2 + i % 2;
                    w[at] = i16::from(self.weights[j * self.inputs + i]);
                }
            }
            Packed { pairs, blocks, w }
        })
    }
}

impl QuantizedMlp {
    /// Quantizes every layer of `network`.
    pub fn quantize(network: &Mlp) -> Result<Self, QuantizeError> {
        if network.weights.is_empty() {
            return Err(QuantizeError::Empty);
        }
        let mut layers = Vec::with_capacity(network.weights.len());
        for (layer, (w, b)) in network.weights.iter().zip(&network.biases).enumerate() {
            if w.nrows() > MAX_INPUTS {
                return Err(QuantizeError::TooWide { layer, inputs: w.nrows() });
            }
            if !w.iter().chain(b.iter()).all(|v| v.is_finite()) {
                return Err(QuantizeError::NotFinite { layer });
            }
            layers.push(QuantizedLayer::quantize(w.view(), b.as_slice().expect("a bias vector is contiguous")));
        }
        Ok(Self {
            layers,
            activation: network.activation,
            loss: network.loss,
            dense: Cached::default(),
            large_on_int8: Cached::default(),
        })
    }

    /// The `f32` network the int8 one stands for.
    pub fn dequantize(&self) -> Mlp {
        Mlp {
            weights: self.layers.iter().map(QuantizedLayer::dequantize).collect(),
            biases: self.layers.iter().map(|l| Array1::from(l.bias.clone())).collect(),
            activation: self.activation,
            loss: self.loss,
        }
    }

    /// Checks a stored network (which a peer may have forged) against the
    /// features it reads and the outputs it must give.
    pub fn validate(&self, features: usize, outputs: usize) -> Result<(), String> {
        for (l, layer) in self.layers.iter().enumerate() {
            layer.validate().map_err(|e| format!("int8 layer {l}: {e}"))?;
        }
        let shapes: Vec<(usize, usize)> = self.layers.iter().map(|l| (l.inputs, l.outputs)).collect();
        if !super::layers_map(&shapes, features, outputs) {
            return Err(format!("the int8 network's layers do not map {features} features to {outputs} outputs"));
        }
        Ok(())
    }

    /// Outputs (class probabilities or values) by the faster path for the
    /// batch's size: see [`INT8_MAX_ROWS`] and [`INT8_FROM_ROWS`].
    ///
    /// # Panics
    /// When `x` does not have the network's number of inputs (a loaded
    /// model is validated against its pipeline first).
    pub fn predict(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let rows = x.nrows();
        let dense = || self.dense.0.get_or_init(|| self.dequantize());
        if rows <= INT8_MAX_ROWS {
            return self.predict_with(Kernel::detected(), x);
        }
        if rows < INT8_FROM_ROWS {
            return dense().predict(x);
        }
        match self.large_on_int8.0.get() {
            Some(true) => self.predict_with(Kernel::detected(), x),
            Some(false) => dense().predict(x),
            None => {
                let dense = dense();
                let started = std::time::Instant::now();
                let on_int8 = self.predict_with(Kernel::detected(), x);
                let int8 = started.elapsed();
                let started = std::time::Instant::now();
                std::hint::black_box(dense.predict(x));
                let _ = self.large_on_int8.0.set(int8 <= started.elapsed());
                on_int8
            }
        }
    }

    /// Outputs computed with `kernel`.
    pub fn predict_with(&self, kernel: Kernel, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let rows = x.nrows();
        let first = &self.layers[0];
        assert_eq!(
            x.ncols(),
            first.inputs,
            "QuantizedMlp::predict: {} inputs for {} features",
            x.ncols(),
            first.inputs
        );
        let widest = self.layers.iter().map(|l| l.inputs.div_ceil(2)).max().unwrap_or(0);
        // Each row quantized to `i16` values in pairs (32-bit words), the
        // operand the multiply-add kernels broadcast.
        let mut words = vec![0i32; rows * widest];
        let mut row_scales = vec![0.0f32; rows];
        let standard = x.as_standard_layout();
        let mut input = std::borrow::Cow::Borrowed(standard.as_slice().expect("standard layout"));
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let pairs = layer.inputs.div_ceil(2);
            let words = &mut words[..rows * pairs];
            quantize_rows(&input, layer.inputs, pulp::bytemuck::cast_slice_mut(words), 2 * pairs, &mut row_scales);
            let mut out = vec![0.0f32; rows * layer.outputs];
            layer.forward(kernel, words, &row_scales, &mut out);
            if l < last {
                bias_activation(&mut out, &vec![0.0; layer.outputs], self.activation.into());
            } else if self.loss == Loss::SoftmaxCrossEntropy {
                softmax_rows(&mut out, layer.outputs);
            }
            input = std::borrow::Cow::Owned(out);
        }
        let input = input.into_owned();
        Array2::from_shape_vec((rows, self.layers[last].outputs), input).expect("rows x outputs values")
    }

    /// Bytes of the weights, scales and biases as stored.
    pub fn parameter_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.weights.len() + 4 * (l.scales.len() + l.bias.len())).sum()
    }
}

/// Each row of `x` (`inputs` values) quantized symmetrically into `q` (rows
/// of `stride` values, the rest zero), its scale into `scales`. A row of zeros gets scale 0 (its products are 0); a
/// row holding NaN or an infinity gets scale NaN, so its outputs are NaN
/// as the f32 network's would be (before any ReLU). Written with integer
/// maxima and truncating casts so that it vectorizes (`f32::round` and
/// `f32::max` do not on the baseline target).
fn quantize_rows(x: &[f32], inputs: usize, q: &mut [i16], stride: usize, scales: &mut [f32]) {
    pulp::Arch::new().dispatch(QuantizeRows { x, inputs, q, stride, scales });
}

/// [`quantize_rows`] as a pulp op, compiled for the widest SIMD here.
struct QuantizeRows<'a> {
    x: &'a [f32],
    inputs: usize,
    q: &'a mut [i16],
    stride: usize,
    scales: &'a mut [f32],
}

impl pulp::WithSimd for QuantizeRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let QuantizeRows { x, inputs, q, stride, scales } = self;
        quantize_rows_inline(x, inputs, q, stride, scales)
    }
}

#[inline(always)]
fn quantize_rows_inline(x: &[f32], inputs: usize, q: &mut [i16], stride: usize, scales: &mut [f32]) {
    for ((row, q), scale) in x.chunks_exact(inputs).zip(q.chunks_exact_mut(stride)).zip(scales.iter_mut()) {
        // The bits of |v| order like the values for finite floats, and
        // every NaN or infinity lies above them all.
        let max_bits = row.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff));
        q[inputs..].iter_mut().for_each(|q| *q = 0);
        if max_bits >= 0x7f80_0000 {
            q.iter_mut().for_each(|q| *q = 0);
            *scale = f32::NAN;
        } else if max_bits == 0 {
            q.iter_mut().for_each(|q| *q = 0);
            *scale = 0.0;
        } else {
            let max = f32::from_bits(max_bits);
            let inverse = 127.0 / max;
            // Round half away from zero: truncate after adding a signed half.
            q.iter_mut().zip(row).for_each(|(q, v)| {
                let t = v * inverse;
                *q = (t + 0.5f32.copysign(t)) as i32 as i16;
            });
            *scale = max / 127.0;
        }
    }
}

/// Which code computes the int8 dot products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// One product at a time: the reference the others are tested against.
    Scalar,
    /// A blocked loop as LLVM vectorizes it for the build's baseline
    /// target (SSE2 on x86-64): where neither of the below runs.
    Portable,
    /// Packed weights, `vpmaddwd` on 256 bits, four rows at a time.
    Avx2,
    /// Packed weights, `vpmaddwd` on 512 bits, four rows at a time.
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs, detected once.
    pub fn detected() -> Kernel {
        static DETECTED: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            [Kernel::Avx512, Kernel::Avx2].into_iter().find(|k| k.available()).unwrap_or(Kernel::Portable)
        })
    }

    /// Whether this CPU can run `self`.
    pub fn available(self) -> bool {
        match self {
            Kernel::Scalar | Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => pulp::x86::V3::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => pulp::x86::V4::try_new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => false,
        }
    }
}

fn dots_scalar(x: &[i8], w: &[i8], sums: &mut [i32]) {
    for (sum, row) in sums.iter_mut().zip(w.chunks_exact(x.len())) {
        *sum = 0;
        for (a, b) in x.iter().zip(row) {
            *sum += i32::from(*a) * i32::from(*b);
        }
    }
}

/// Input values per block of the portable loop: one 256-bit register of
/// `i16` lanes after widening.
const BLOCK: usize = 16;

/// One dot product as a widening reduction over blocks of [`BLOCK`], the
/// shape LLVM lowers to multiply-add instructions (`pmaddwd`).
#[inline(always)]
fn dot(x: &[i8], w: &[i8]) -> i32 {
    let mut lanes = [0i32; BLOCK];
    let (xb, xt) = x.split_at(x.len() / BLOCK * BLOCK);
    let (wb, wt) = w.split_at(xb.len());
    for (xc, wc) in xb.chunks_exact(BLOCK).zip(wb.chunks_exact(BLOCK)) {
        for k in 0..BLOCK {
            lanes[k] += i32::from(i16::from(xc[k]) * i16::from(wc[k]));
        }
    }
    let tail: i32 = xt.iter().zip(wt).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
    lanes.iter().sum::<i32>() + tail
}

/// Four output columns per pass, so each block of `x` is loaded once for four.
#[inline(always)]
fn dots_blocked(x: &[i8], w: &[i8], sums: &mut [i32]) {
    let n = x.len();
    let mut rows = w.chunks_exact(n);
    let mut out = sums.chunks_exact_mut(4);
    for group in out.by_ref() {
        let (w0, w1, w2, w3) = (
            rows.next().expect("a row"),
            rows.next().expect("a row"),
            rows.next().expect("a row"),
            rows.next().expect("a row"),
        );
        let mut lanes = [[0i32; BLOCK]; 4];
        let blocks = n / BLOCK * BLOCK;
        for start in (0..blocks).step_by(BLOCK) {
            let xc = &x[start..start + BLOCK];
            for (lane, wr) in lanes.iter_mut().zip([w0, w1, w2, w3]) {
                let wc = &wr[start..start + BLOCK];
                for k in 0..BLOCK {
                    lane[k] += i32::from(i16::from(xc[k]) * i16::from(wc[k]));
                }
            }
        }
        for ((sum, lane), wr) in group.iter_mut().zip(&lanes).zip([w0, w1, w2, w3]) {
            let tail: i32 = x[blocks..].iter().zip(&wr[blocks..]).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
            *sum = lane.iter().sum::<i32>() + tail;
        }
    }
    for (sum, row) in out.into_remainder().iter_mut().zip(rows) {
        *sum = dot(x, row);
    }
}

/// The multiply-add kernels. Each computes `sums` (`rows x blocks * LANES`)
/// from quantized rows given as 32-bit words of two `i16` values each (the
/// even input in the low half) and a packed layer.
mod simd {
    use super::{Kernel, LANES, Packed};

    /// Rows that share each load of the weights.
    const ROWS: usize = 4;

    pub(super) fn dots(kernel: Kernel, pairs: &[i32], packed: &Packed, sums: &mut [i32]) {
        #[cfg(target_arch = "x86_64")]
        {
            let op = Op { pairs, packed, sums };
            match kernel {
                Kernel::Avx512 if let Some(simd) = pulp::x86::V4::try_new() => {
                    return pulp::Simd::vectorize(simd, V4Op(simd, op));
                }
                Kernel::Avx2 | Kernel::Avx512 if let Some(simd) = pulp::x86::V3::try_new() => {
                    return pulp::Simd::vectorize(simd, V3Op(simd, op));
                }
                _ => return portable(op),
            }
        }
        #[allow(unreachable_code)]
        portable(Op { pairs, packed, sums })
    }

    struct Op<'a> {
        pairs: &'a [i32],
        packed: &'a Packed,
        sums: &'a mut [i32],
    }

    /// The packed product one lane at a time (a CPU without AVX2).
    fn portable(op: Op<'_>) {
        let Packed { pairs, blocks, w } = op.packed;
        let width = blocks * LANES;
        for (row, out) in op.pairs.chunks_exact(*pairs).zip(op.sums.chunks_exact_mut(width)) {
            for (j, o) in out.iter_mut().enumerate() {
                let (block, lane) = (j / LANES, j % LANES);
                *o = row
                    .iter()
                    .enumerate()
                    .map(|(k, word)| {
                        let at = ((block * pairs + k) * LANES + lane) * 2;
                        let (lo, hi) = (*word as i16, (*word >> 16) as i16);
                        i32::from(lo) * i32::from(w[at]) + i32::from(hi) * i32::from(w[at + 1])
                    })
                    .sum();
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    struct V4Op<'a>(pulp::x86::V4, Op<'a>);

    #[cfg(target_arch = "x86_64")]
    impl pulp::WithSimd for V4Op<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            use std::arch::x86_64::__m512i;
            let V4Op(simd, Op { pairs: rows_pairs, packed, sums }) = self;
            let Packed { pairs, blocks, w } = packed;
            let (pairs, blocks) = (*pairs, *blocks);
            let width = blocks * LANES;
            let rows = rows_pairs.len() / pairs.max(1);
            let load = |c: &[i16]| -> __m512i { pulp::cast(*<&[i16; 32]>::try_from(c).expect("32 values")) };
            let (f, bw) = (simd.avx512f, simd.avx512bw);
            let mut r = 0;
            while r < rows {
                let n = if rows - r >= ROWS { ROWS } else { 1 };
                let x: Vec<&[i32]> = (r..r + n).map(|i| &rows_pairs[i * pairs..(i + 1) * pairs]).collect();
                for block in 0..blocks {
                    let wb = &w[block * pairs * 2 * LANES..(block + 1) * pairs * 2 * LANES];
                    let mut acc = [f._mm512_setzero_si512(); ROWS];
                    if n == ROWS {
                        let (x0, x1, x2, x3) = (x[0], x[1], x[2], x[3]);
                        for ((((wc, p0), p1), p2), p3) in wb.chunks_exact(2 * LANES).zip(x0).zip(x1).zip(x2).zip(x3) {
                            let wv = load(wc);
                            acc[0] = f._mm512_add_epi32(acc[0], bw._mm512_madd_epi16(f._mm512_set1_epi32(*p0), wv));
                            acc[1] = f._mm512_add_epi32(acc[1], bw._mm512_madd_epi16(f._mm512_set1_epi32(*p1), wv));
                            acc[2] = f._mm512_add_epi32(acc[2], bw._mm512_madd_epi16(f._mm512_set1_epi32(*p2), wv));
                            acc[3] = f._mm512_add_epi32(acc[3], bw._mm512_madd_epi16(f._mm512_set1_epi32(*p3), wv));
                        }
                    } else {
                        for (wc, p0) in wb.chunks_exact(2 * LANES).zip(x[0]) {
                            acc[0] =
                                f._mm512_add_epi32(acc[0], bw._mm512_madd_epi16(f._mm512_set1_epi32(*p0), load(wc)));
                        }
                    }
                    for (i, a) in acc.iter().enumerate().take(n) {
                        let lanes: [i32; LANES] = pulp::cast(*a);
                        let at = (r + i) * width + block * LANES;
                        sums[at..at + LANES].copy_from_slice(&lanes);
                    }
                }
                r += n;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    struct V3Op<'a>(pulp::x86::V3, Op<'a>);

    #[cfg(target_arch = "x86_64")]
    impl pulp::WithSimd for V3Op<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            use std::arch::x86_64::__m256i;
            let V3Op(simd, Op { pairs: rows_pairs, packed, sums }) = self;
            let Packed { pairs, blocks, w } = packed;
            let (pairs, blocks) = (*pairs, *blocks);
            let width = blocks * LANES;
            let rows = rows_pairs.len() / pairs.max(1);
            let load = |c: &[i16]| -> __m256i { pulp::cast(*<&[i16; 16]>::try_from(c).expect("16 values")) };
            let (avx, avx2) = (simd.avx, simd.avx2);
            let mut r = 0;
            while r < rows {
                let n = if rows - r >= ROWS { ROWS } else { 1 };
                let x: Vec<&[i32]> = (r..r + n).map(|i| &rows_pairs[i * pairs..(i + 1) * pairs]).collect();
                for block in 0..blocks {
                    let wb = &w[block * pairs * 2 * LANES..(block + 1) * pairs * 2 * LANES];
                    let zero = avx._mm256_setzero_si256();
                    let mut acc = [[zero; 2]; ROWS];
                    let step = |a: &mut [__m256i; 2], p: i32, w0: __m256i, w1: __m256i| {
                        let xv = avx._mm256_set1_epi32(p);
                        a[0] = avx2._mm256_add_epi32(a[0], avx2._mm256_madd_epi16(xv, w0));
                        a[1] = avx2._mm256_add_epi32(a[1], avx2._mm256_madd_epi16(xv, w1));
                    };
                    if n == ROWS {
                        let (x0, x1, x2, x3) = (x[0], x[1], x[2], x[3]);
                        for ((((wc, p0), p1), p2), p3) in wb.chunks_exact(2 * LANES).zip(x0).zip(x1).zip(x2).zip(x3) {
                            let (w0, w1) = (load(&wc[..LANES]), load(&wc[LANES..]));
                            let [a0, a1, a2, a3] = &mut acc;
                            step(a0, *p0, w0, w1);
                            step(a1, *p1, w0, w1);
                            step(a2, *p2, w0, w1);
                            step(a3, *p3, w0, w1);
                        }
                    } else {
                        for (wc, p0) in wb.chunks_exact(2 * LANES).zip(x[0]) {
                            step(&mut acc[0], *p0, load(&wc[..LANES]), load(&wc[LANES..]));
                        }
                    }
                    for (i, a) in acc.iter().enumerate().take(n) {
                        let lanes: [i32; LANES] = pulp::cast(*a);
                        let at = (r + i) * width + block * LANES;
                        sums[at..at + LANES].copy_from_slice(&lanes);
                    }
                }
                r += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::models::MlpConfig;

    fn network(widths: &[usize], loss: Loss, seed: u64) -> Mlp {
        let config = MlpConfig { hidden: widths[1..widths.len() - 1].to_vec(), loss, ..MlpConfig::default() };
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = Mlp::new(widths[0], widths[widths.len() - 1], &config, &mut rng);
        m.biases.iter_mut().for_each(|b| b.mapv_inplace(|_| rng.random_range(-0.1..0.1)));
        m
    }

    fn rows(n: usize, inputs: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_simple_fn((n, inputs), || rng.random_range(0.0..1.0))
    }

    const KERNELS: [Kernel; 4] = [Kernel::Scalar, Kernel::Portable, Kernel::Avx2, Kernel::Avx512];

    /// Every kernel adds the same integers: bit-identical outputs, for
    /// widths that are and are not multiples of the block and of four.
    #[test]
    fn kernels_agree_exactly_with_the_scalar_reference() {
        for widths in [[784, 128, 10], [37, 13, 3], [16, 4, 1], [5, 7, 2]] {
            let q = QuantizedMlp::quantize(&network(&widths, Loss::SoftmaxCrossEntropy, 1)).unwrap();
            let x = rows(9, widths[0], 2);
            let reference = q.predict_with(Kernel::Scalar, x.view());
            for kernel in KERNELS.into_iter().filter(|k| k.available()) {
                assert_eq!(q.predict_with(kernel, x.view()), reference, "{kernel:?} on {widths:?}");
            }
        }
    }

    /// The int8 network follows the f32 one: probabilities within 0.02 and
    /// the same class on nearly every row, values within 2% of their range.
    #[test]
    fn int8_follows_f32_within_tolerance() {
        let f32_net = network(&[784, 128, 10], Loss::SoftmaxCrossEntropy, 3);
        let q = QuantizedMlp::quantize(&f32_net).unwrap();
        let x = rows(600, 784, 4);
        let (exact, approx) = (f32_net.predict(x.view()), q.predict_with(Kernel::detected(), x.view()));
        let routed = q.predict(x.view());
        assert_eq!(routed, approx, "the first large batch answers from the int8 kernel");
        let again = q.predict(x.view());
        assert!(again == approx || again == q.dequantize().predict(x.view()), "then from the faster path");
        let dequantized = q.predict(x.slice(ndarray::s![..100, ..]));
        let worst = dequantized.iter().zip(&approx).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.02, "100 rows (dequantized f32 path) differ from the kernel by {worst}");
        let worst = exact.iter().zip(&approx).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.02, "largest probability difference {worst}");
        let same = super::super::ensemble::argmax_rows(&exact)
            .iter()
            .zip(super::super::ensemble::argmax_rows(&approx))
            .filter(|(a, b)| **a == *b)
            .count();
        assert!(same >= 588, "{same} of 600 rows kept their class");

        let regressor = network(&[20, 16, 2], Loss::SquaredError, 5);
        let q = QuantizedMlp::quantize(&regressor).unwrap();
        let x = rows(200, 20, 6);
        let (exact, approx) = (regressor.predict(x.view()), q.predict_with(Kernel::detected(), x.view()));
        let range = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = exact.iter().zip(&approx).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 0.02 * range.max(1.0), "largest value difference {worst} of range {range}");
    }

    #[test]
    fn weights_are_about_four_times_smaller() {
        let net = network(&[784, 128, 10], Loss::SoftmaxCrossEntropy, 7);
        let q = QuantizedMlp::quantize(&net).unwrap();
        let f32_bytes: usize = net.weights.iter().map(|w| 4 * w.len()).sum::<usize>() + 4 * (128 + 10);
        let ratio = f32_bytes as f64 / q.parameter_bytes() as f64;
        assert!((3.9..4.0).contains(&ratio), "{ratio}");
        // Dequantized weights are within half a step of the originals.
        for (w, layer) in net.weights.iter().zip(&q.layers) {
            let back = layer.dequantize();
            for ((i, j), v) in w.indexed_iter() {
                assert!((v - back[[i, j]]).abs() <= layer.scales[j] * 0.5 + 1e-7);
            }
        }
    }

    #[test]
    fn rows_of_zeros_and_non_finite_rows() {
        let q = QuantizedMlp::quantize(&network(&[4, 3, 2], Loss::SquaredError, 8)).unwrap();
        let zeros = Array2::zeros((1, 4));
        let exact = q.dequantize().predict(zeros.view());
        let approx = q.predict(zeros.view());
        assert!(exact.iter().zip(&approx).all(|(a, b)| (a - b).abs() < 1e-2), "{exact} vs {approx}");
        // A NaN input is as NaN as in the f32 network (whose ReLU passes 0).
        let bad = ndarray::array![[1.0, f32::NAN, 0.0, 0.0]];
        let nans = |a: Array2<f32>| a.mapv(|v| v.is_nan());
        assert_eq!(nans(q.predict(bad.view())), nans(q.dequantize().predict(bad.view())));
    }

    #[test]
    fn forged_layers_are_refused_by_name() {
        let mut q = QuantizedMlp::quantize(&network(&[4, 3, 2], Loss::SquaredError, 9)).unwrap();
        assert!(q.validate(4, 2).is_ok());
        assert!(q.validate(5, 2).unwrap_err().contains("do not map 5 features"));
        q.layers[1].scales.pop();
        assert!(q.validate(4, 2).unwrap_err().contains("int8 layer 1"));
        let mut inf = network(&[4, 3, 2], Loss::SquaredError, 9);
        inf.weights[1][[0, 0]] = f32::INFINITY;
        assert_eq!(QuantizedMlp::quantize(&inf).unwrap_err(), QuantizeError::NotFinite { layer: 1 });
    }
}

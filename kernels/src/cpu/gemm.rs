//! f32 GEMM on the host, and a short, real measurement of its throughput,
//! advertised by every node.

use std::time::{Duration, Instant};

use faer::{Accum, MatMut, MatRef, Par, linalg::matmul::matmul};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::backend::Tensor;

use super::{CpuTensor, skinny};

fn operand(t: &CpuTensor, transposed: bool) -> MatRef<'_, f32> {
    let (rows, cols) = t.shape();
    row_major(t.as_slice(), rows, cols, transposed)
}

/// A row-major `rows x cols` slice as faer reads it, transposed with `t`.
fn row_major(values: &[f32], rows: usize, cols: usize, t: bool) -> MatRef<'_, f32> {
    let m = MatRef::from_row_major_slice(values, rows, cols);
    if t { m.transpose() } else { m }
}

/// Products below this many multiply-adds (a few milliseconds of one core)
/// run on one thread: starting a thread costs tens of microseconds, far more
/// on a busy machine, where the 64-row products of MLP training ran 2.5x
/// slower split across 2 threads than on one (measured side by side).
const SPLIT_MIN_MACS: usize = 1 << 24;

/// `c = op(a) op(b)` (`c +=` when `accumulate`); transposes are read through
/// strides, never copied. Shapes are checked by the caller.
///
/// faer's AVX-512 kernels ran these shapes 15-45% faster than
/// matrixmultiply (64x784x128 and its transposes, measured side by side).
/// With `threads > 1`, a large product is cut along its longer output side
/// into one block per thread (scoped threads, no pool to configure);
/// each output element is still summed by one thread in one order, so the
/// result does not depend on the thread count.
pub fn product(a: &CpuTensor, ta: bool, b: &CpuTensor, tb: bool, c: &mut CpuTensor, accumulate: bool, threads: usize) {
    let (rows, cols) = c.shape();
    let k = if ta { a.shape().0 } else { a.shape().1 };
    if k == 0 {
        // An empty sum: nothing to add, or zeros.
        if !accumulate {
            c.as_mut_slice().fill(0.0);
        }
        return;
    }
    // Few output columns: one thread is faster on these than faer on all
    // (and the sums, hence the bits, are the same as `product_of`'s).
    if let Some(out) = skinny_product(a.view(), ta, b.view(), tb) {
        if accumulate {
            c.view_mut().zip_mut_with(&out, |c, o| *c += o);
        } else {
            c.view_mut().assign(&out);
        }
        return;
    }
    let (a, b) = (operand(a, ta), operand(b, tb));
    let dst = MatMut::from_row_major_slice_mut(c.as_mut_slice(), rows, cols);
    let accum = if accumulate { Accum::Add } else { Accum::Replace };
    let parts = if rows * cols * k >= SPLIT_MIN_MACS { threads.clamp(1, rows.max(cols)) } else { 1 };
    split(dst, a, b, accum, parts);
}

/// `op(a) op(b)` of two matrices in standard layout, on one thread, on
/// faer's kernels (`ta`/`tb`: read that operand transposed). For the
/// products of a linear model's objective (rows x 784 by 784 x 10 and
/// back), where ndarray's matrixmultiply spent as long packing the rows as
/// multiplying (`perf`: `pack_avx2` 25% of a bagging job, the kernel 25%).
/// Products with at most [`skinny::MAX_COLUMNS`] output columns or rows
/// go to [`skinny`]'s kernels where the CPU has AVX-512.
/// `None` when an operand is not in standard layout or the shapes do not chain.
pub fn product_of(a: ArrayView2<'_, f32>, ta: bool, b: ArrayView2<'_, f32>, tb: bool) -> Option<Array2<f32>> {
    if let Some(out) = skinny_product(a, ta, b, tb) {
        return Some(out);
    }
    let (a, b) = (faer_view(&a, ta)?, faer_view(&b, tb)?);
    if a.ncols() != b.nrows() {
        return None;
    }
    let mut out = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    let (rows, cols) = out.dim();
    let dst = MatMut::from_row_major_slice_mut(out.as_slice_mut()?, rows, cols);
    matmul(dst, Accum::Replace, a, b, 1.0f32, Par::Seq);
    clear_upper_registers();
    Some(out)
}

/// Rows from which copying a skinny `b` into the kernel's layout costs
/// less than a tenth of the product (a one-row prediction stays on faer).
const SKINNY_MIN_ROWS: usize = 32;

/// `op(a) op(b)` on the skinny kernels, where the shape suits them.
fn skinny_product(a: ArrayView2<'_, f32>, ta: bool, b: ArrayView2<'_, f32>, tb: bool) -> Option<Array2<f32>> {
    let few = |n: usize| (1..=skinny::MAX_COLUMNS).contains(&n);
    match (ta, tb) {
        // a bᵀ, b holding a row per output column: as the kernel reads it.
        (false, true) if few(b.nrows()) => skinny::product_nt(a, b),
        // aᵀ b with few columns in a: a few rows out.
        (true, false) if few(a.ncols()) => skinny::product_tn(a, b),
        (false, false) if few(b.ncols()) && a.nrows() >= SKINNY_MIN_ROWS => {
            skinny::product_nt(a, b.t().as_standard_layout().view())
        }
        // aᵀ b with few columns in b: (bᵀ a)ᵀ.
        (true, false) if few(b.ncols()) && a.ncols() >= SKINNY_MIN_ROWS => {
            skinny::product_tn(b, a).map(|t| t.reversed_axes().as_standard_layout().into_owned())
        }
        _ => None,
    }
}

/// `m` (transposed with `t`) as faer reads it; `None` if not in standard layout.
fn faer_view<'a>(m: &'a ArrayView2<'_, f32>, t: bool) -> Option<MatRef<'a, f32>> {
    let (rows, cols) = m.dim();
    Some(row_major(m.as_slice()?, rows, cols, t))
}

/// `dst (+)= a b` with the work cut into `parts` blocks, the last on this thread.
fn split(dst: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>, accum: Accum, parts: usize) {
    if parts <= 1 {
        matmul(dst, accum, a, b, 1.0f32, Par::Seq);
        clear_upper_registers();
        return;
    }
    std::thread::scope(|scope| {
        let (mut dst, mut a, mut b) = (dst, a, b);
        for part in (1..parts).rev() {
            // Cut off 1/(part+1) of what is left, along the longer side.
            if dst.nrows() >= dst.ncols() {
                let at = dst.nrows() / (part + 1);
                let (head, rest) = dst.split_at_row_mut(at);
                let (a_head, a_rest) = a.split_at_row(at);
                scope.spawn(move || matmul(head, accum, a_head, b, 1.0f32, Par::Seq));
                (dst, a) = (rest, a_rest);
            } else {
                let at = dst.ncols() / (part + 1);
                let (head, rest) = dst.split_at_col_mut(at);
                let (b_head, b_rest) = b.split_at_col(at);
                scope.spawn(move || matmul(head, accum, a, b_head, 1.0f32, Par::Seq));
                (dst, b) = (rest, b_rest);
            }
        }
        matmul(dst, accum, a, b, 1.0f32, Par::Seq);
    });
    clear_upper_registers();
}

/// faer's x86 kernels are generated assembly that returns with the upper
/// halves of the vector registers still in use. Until a `vzeroupper`,
/// every SSE instruction the thread runs after (most of our code: the
/// build targets baseline x86-64) pays for them: the feature transform
/// of 1,000 MNIST rows after a prediction's product took 1.45 ms instead
/// of 0.32.
fn clear_upper_registers() {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        simd.avx._mm256_zeroupper();
    }
}

/// Multiplies two seeded random `n x n` f32 matrices repeatedly for about
/// `budget` and returns the best observed rate in GFLOP/s.
///
/// The best run, not the mean, because a node shares its cores with whatever
/// else starts at the same moment; the best is the closest to what it can do.
pub fn measure_gemm_gflops(n: usize, budget: Duration) -> f64 {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    measure_gemm_gflops_with(n, budget, threads)
}

/// [`measure_gemm_gflops`] with `threads` threads per product.
pub fn measure_gemm_gflops_with(n: usize, budget: Duration, threads: usize) -> f64 {
    let n = n.max(8);
    let mut rng = StdRng::seed_from_u64(0x6d617373);
    let mut random = || {
        let values = (0..n * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        CpuTensor::from_array(ndarray::Array2::from_shape_vec((n, n), values).expect("n x n values"))
    };
    let (a, b) = (random(), random());
    let mut c = CpuTensor::zeros(n, n);
    let flops = 2.0 * (n as f64).powi(3);
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut checksum = 0.0f32;
    // At least two runs: the first one also warms caches and the thread pool.
    for run in 0.. {
        let t = Instant::now();
        product(&a, false, &b, false, &mut c, false, threads);
        let secs = t.elapsed().as_secs_f64();
        checksum += c.as_slice()[0];
        best = best.min(secs);
        if run >= 1 && start.elapsed() >= budget {
            break;
        }
    }
    // Keep the product observable so the work cannot be optimized away.
    std::hint::black_box(checksum);
    flops / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Every combination of transposes gives ndarray's product (to f32
    /// rounding); operands not in standard layout, or that do not chain,
    /// give `None`.
    #[test]
    fn products_of_views_match_ndarray() {
        let a = ndarray::Array2::from_shape_fn((37, 19), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = ndarray::Array2::from_shape_fn((19, 10), |(i, j)| ((i * 5 + j) % 7) as f32 * 0.25);
        let bt = b.t().as_standard_layout().into_owned();
        let at = a.t().as_standard_layout().into_owned();
        let close = |x: &ndarray::Array2<f32>, y: &ndarray::Array2<f32>| {
            x.dim() == y.dim() && x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + q.abs()))
        };
        let expected = a.dot(&b);
        assert!(close(&product_of(a.view(), false, b.view(), false).unwrap(), &expected));
        assert!(close(&product_of(a.view(), false, bt.view(), true).unwrap(), &expected));
        assert!(close(&product_of(at.view(), true, b.view(), false).unwrap(), &expected));
        let delta = ndarray::Array2::from_shape_fn((37, 10), |(i, j)| (i as f32 - j as f32) * 0.1);
        assert!(close(&product_of(a.view(), true, delta.view(), false).unwrap(), &a.t().dot(&delta)));
        assert!(product_of(a.t(), false, delta.view(), false).is_none(), "a transposed view is not standard layout");
        assert!(product_of(a.view(), false, a.view(), false).is_none(), "37x19 by 37x19 does not chain");
    }

    #[test]
    fn measures_a_positive_finite_rate() {
        let gflops = measure_gemm_gflops(64, Duration::from_millis(20));
        assert!(gflops.is_finite() && gflops > 0.0, "{gflops}");
    }

    #[test]
    fn transposes_are_read_not_copied_and_accumulate_adds() {
        let a = CpuTensor::from_array(array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]);
        let mut c = CpuTensor::from_array(array![[1.0f32, 0.0], [0.0, 1.0]]);
        product(&a, true, &a, false, &mut c, true, 1);
        assert_eq!(c.to_array(), array![[36.0, 44.0], [44.0, 57.0]]);
    }

    #[test]
    fn split_products_equal_one_thread_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut random = |r, c| {
            CpuTensor::from_array(ndarray::Array2::from_shape_simple_fn((r, c), || rng.random_range(-1.0f32..1.0)))
        };
        for (m, k, n) in [(64, 784, 128), (300, 300, 300)] {
            let (a, b) = (random(m, k), random(k, n));
            let mut one = CpuTensor::zeros(m, n);
            product(&a, false, &b, false, &mut one, false, 1);
            for threads in [2, 3] {
                let mut many = CpuTensor::zeros(m, n);
                product(&a, false, &b, false, &mut many, false, threads);
                assert_eq!(one, many, "{m}x{k}x{n} on {threads} threads");
            }
        }
    }
}

//! f32 GEMM on the host, and a short, real measurement of its throughput,
//! advertised by every node.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::CpuTensor;

/// `c = op(a) op(b)` (`c +=` when `accumulate`); transposes are read through
/// strides, never copied. Shapes are checked by the caller.
pub fn product(a: &CpuTensor, ta: bool, b: &CpuTensor, tb: bool, c: &mut CpuTensor, accumulate: bool) {
    let a = if ta { a.view().reversed_axes() } else { a.view() };
    let b = if tb { b.view().reversed_axes() } else { b.view() };
    let beta = if accumulate { 1.0 } else { 0.0 };
    ndarray::linalg::general_mat_mul(1.0, &a, &b, beta, &mut c.view_mut());
}

/// Multiplies two seeded random `n x n` f32 matrices repeatedly for about
/// `budget` and returns the best observed rate in GFLOP/s.
///
/// The best run, not the mean, because a node shares its cores with whatever
/// else starts at the same moment; the best is the closest to what it can do.
pub fn measure_gemm_gflops(n: usize, budget: Duration) -> f64 {
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
        product(&a, false, &b, false, &mut c, false);
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

    #[test]
    fn measures_a_positive_finite_rate() {
        let gflops = measure_gemm_gflops(64, Duration::from_millis(20));
        assert!(gflops.is_finite() && gflops > 0.0, "{gflops}");
    }

    #[test]
    fn transposes_are_read_not_copied_and_accumulate_adds() {
        let a = CpuTensor::from_array(array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]]);
        let mut c = CpuTensor::from_array(array![[1.0f32, 0.0], [0.0, 1.0]]);
        product(&a, true, &a, false, &mut c, true);
        assert_eq!(c.to_array(), array![[36.0, 44.0], [44.0, 57.0]]);
    }
}

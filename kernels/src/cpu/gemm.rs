//! A short, real measurement of f32 GEMM throughput, advertised by every node.

use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Multiplies two seeded random `n x n` f32 matrices repeatedly for about
/// `budget` and returns the best observed rate in GFLOP/s.
///
/// The best run, not the mean, because a node shares its cores with whatever
/// else starts at the same moment; the best is the closest to what it can do.
pub fn measure_gemm_gflops(n: usize, budget: Duration) -> f64 {
    let n = n.max(8);
    let mut rng = StdRng::seed_from_u64(0x6d617373);
    let a = Array2::from_shape_simple_fn((n, n), || rng.random_range(-1.0f32..1.0));
    let b = Array2::from_shape_simple_fn((n, n), || rng.random_range(-1.0f32..1.0));
    let flops = 2.0 * (n as f64).powi(3);
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut checksum = 0.0f32;
    // At least two runs: the first one also warms caches and the thread pool.
    for run in 0.. {
        let t = Instant::now();
        let c = a.dot(&b);
        let secs = t.elapsed().as_secs_f64();
        checksum += c[[0, 0]];
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

    #[test]
    fn measures_a_positive_finite_rate() {
        let gflops = measure_gemm_gflops(64, Duration::from_millis(20));
        assert!(gflops.is_finite() && gflops > 0.0, "{gflops}");
    }
}

//! A short, bounded measurement of an adapter's f32 GEMM throughput through
//! our own GEMM kernel, for the `gflops` field of GPU adverts.

use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::GpuBackend;
use crate::backend::{Backend, Error, Operand};

/// The largest side tried: 4096^3 is where GPUs approach their peak.
const LARGEST: usize = 4096;
const SMALLEST: usize = 128;

/// Multiplies square matrices on `backend` for about `budget` and returns the
/// best observed rate in GFLOP/s.
///
/// The side starts at 128 and doubles while one product takes under a
/// sixteenth of the budget, so a fast GPU is measured on large products and a
/// software device (lavapipe, about 1 GFLOP/s) still answers within about
/// twice the budget. Each product is timed from submission to completion.
/// The best run, not the mean, as [`crate::cpu::measure_gemm_gflops`].
pub fn measure_gemm_gflops(backend: &GpuBackend, budget: Duration) -> Result<f64, Error> {
    let start = Instant::now();
    let mut n = SMALLEST;
    loop {
        let (secs, _) = time_products(backend, n, Duration::ZERO)?;
        if n >= LARGEST || secs * 16.0 >= budget.as_secs_f64() || start.elapsed() >= budget / 2 {
            break;
        }
        n *= 2;
    }
    let left = budget.saturating_sub(start.elapsed());
    let (best, _) = time_products(backend, n, left)?;
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// Best seconds of one `n x n` product over runs lasting about `budget`
/// (at least two: the first also compiles the kernel and warms the device).
fn time_products(backend: &GpuBackend, n: usize, budget: Duration) -> Result<(f64, usize), Error> {
    let mut rng = StdRng::seed_from_u64(0x6d617373);
    let host = Array2::from_shape_simple_fn((n, n), || rng.random_range(-1.0f32..1.0));
    let (a, b) = (backend.upload(host.view())?, backend.upload(host.t())?);
    let mut c = backend.zeros(n, n)?;
    backend.finish()?;
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 2 || start.elapsed() < budget {
        let t = Instant::now();
        backend.gemm(Operand::Plain(&a), Operand::Plain(&b), &mut c, false)?;
        backend.finish()?;
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    Ok((best, runs))
}

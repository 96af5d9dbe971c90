//! f32 GEMM throughput of the CPU kernel path (faer, all cores) beside
//! numpy's OpenBLAS on the same machine, and of each wgpu adapter through
//! our WGSL kernel (lavapipe on machines without a GPU: correctness only).
//!
//! `cargo bench -p mass-kernels --bench gemm`

use std::time::{Duration, Instant};

use mass_kernels::{
    Backend,
    cpu::{measure_gemm_gflops, skinny},
    gpu,
};
use ndarray::Array2;

/// Best GFLOP/s of `run` (which multiplies `macs` pairs) over about a second.
fn best_gflops(macs: usize, mut run: impl FnMut()) -> f64 {
    let (mut best, start) = (f64::MAX, Instant::now());
    while start.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * macs as f64 / best / 1e9
}

/// `op(a) b` on faer's general kernel (what `product_of` ran before the
/// skinny kernels), one thread.
fn faer_product(a: ndarray::ArrayView2<'_, f32>, ta: bool, b: ndarray::ArrayView2<'_, f32>) -> Array2<f32> {
    use faer::{Accum, MatMut, MatRef, Par, linalg::matmul::matmul};
    let (ar, ac) = a.dim();
    let a = MatRef::from_row_major_slice(a.as_slice().unwrap(), ar, ac);
    let a = if ta { a.transpose() } else { a };
    let b = MatRef::from_row_major_slice(b.as_slice().unwrap(), b.nrows(), b.ncols());
    let mut out = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    let (rows, cols) = out.dim();
    matmul(
        MatMut::from_row_major_slice_mut(out.as_slice_mut().unwrap(), rows, cols),
        Accum::Replace,
        a,
        b,
        1.0f32,
        Par::Seq,
    );
    out
}

/// A linear model's products, rows x 784 by 784 x 10 and the gradient's
/// 784 x rows by rows x 10: faer's general kernel against the skinny one.
fn skinny_shapes() {
    println!("| product (rows x 784, 10 columns) | faer GFLOP/s | skinny GFLOP/s | ratio |");
    println!("|---|---|---|---|");
    for rows in [335, 1000, 5600] {
        let x = Array2::from_shape_fn((rows, 784), |(r, c)| ((r * 7 + c * 3) % 255) as f32 / 255.0);
        let w = Array2::from_shape_fn((784, 10), |(i, o)| ((i + o) % 13) as f32 * 0.01);
        let delta = Array2::from_shape_fn((rows, 10), |(r, o)| ((r + o) % 7) as f32 * 0.1);
        let macs = rows * 784 * 10;
        let faer = best_gflops(macs, || drop(std::hint::black_box(faer_product(x.view(), false, w.view()))));
        let wt = w.t().as_standard_layout().into_owned();
        let ours = best_gflops(macs, || drop(std::hint::black_box(skinny::product_nt(x.view(), wt.view()))));
        println!("| x w, {rows} rows | {faer:.1} | {ours:.1} | {:.2}x |", ours / faer);
        let faer = best_gflops(macs, || drop(std::hint::black_box(faer_product(x.view(), true, delta.view()))));
        let ours = best_gflops(macs, || drop(std::hint::black_box(skinny::product_tn(delta.view(), x.view()))));
        println!("| xᵀ delta, {rows} rows | {faer:.1} | {ours:.1} | {:.2}x |", ours / faer);
    }
}

fn main() {
    skinny_shapes();
    if std::env::var_os("SKINNY_ONLY").is_some() {
        return;
    }
    for n in [64, 128, 512, 1024, 2048] {
        let gflops = measure_gemm_gflops(n, Duration::from_secs(3));
        println!("| Mass CPU kernel (faer) | {n} | {gflops:.1} |");
    }
    for (i, adapter) in gpu::probe_adapters().iter().enumerate() {
        match gpu::GpuBackend::open(i).and_then(|g| Ok((gpu::measure_gemm_gflops(&g, Duration::from_secs(3))?, g))) {
            Ok((gflops, g)) => println!("| Mass wgpu kernel on {} | best side | {gflops:.1} |", g.name()),
            Err(e) => println!("| Mass wgpu kernel on {} | - | failed: {e} |", adapter.name),
        }
    }
}

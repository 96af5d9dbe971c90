//! f32 GEMM throughput of the CPU kernel path (faer, all cores) beside
//! numpy's OpenBLAS on the same machine, and of each wgpu adapter through
//! our WGSL kernel (lavapipe on machines without a GPU: correctness only).
//!
//! `cargo bench -p mass-kernels --bench gemm`

use std::time::Duration;

use mass_kernels::{Backend, cpu::measure_gemm_gflops, gpu};

fn main() {
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

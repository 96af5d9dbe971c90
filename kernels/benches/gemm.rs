//! f32 GEMM throughput of the CPU kernel path (ndarray + matrixmultiply,
//! threaded), for BENCHMARKS.md, beside numpy's OpenBLAS on the same machine.
//!
//! `cargo bench -p mass-kernels --bench gemm`

use std::time::Duration;

use mass_kernels::cpu::measure_gemm_gflops;

fn main() {
    for n in [512, 1024, 2048] {
        let gflops = measure_gemm_gflops(n, Duration::from_secs(3));
        println!("| Mass CPU kernel (ndarray/matrixmultiply) | {n} | {gflops:.1} |");
    }
}

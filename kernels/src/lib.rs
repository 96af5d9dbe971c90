//! mass-kernels: the math of Mass. No networking, no storage.
//!
//! # Layout
//! - [`backend`]: the [`Backend`] trait every algorithm is written against:
//!   tensors the backend owns, and the ops a dense network trains with.
//! - [`cpu`]: the host backend (faer GEMM, SIMD element-wise kernels) and
//!   its measured GEMM throughput.
//! - [`gpu`]: wgpu: adapter discovery, the WGSL backend, its GEMM throughput.
//! - [`formats`]: models in formats other tools read (safetensors, ONNX).
//! - [`features`]: feature pipelines fitted from mergeable statistics.
//! - [`search`]: proposing hyperparameter trials (grid, random, TPE, genetic).
//! - [`models`]: model families (MLP and the linear models it contains) and
//!   metrics; the MLP trains on any backend ([`models::Mlp::fit_on`]).
//!
//! ```
//! use mass_kernels::{Backend, cpu::CpuBackend};
//! use ndarray::array;
//! let a = array![[1.0f32, 2.0], [3.0, 4.0]];
//! let c = CpuBackend::new().matmul(a.view(), a.view()).unwrap();
//! assert_eq!(c, array![[7.0, 10.0], [15.0, 22.0]]);
//! ```

pub mod backend;
pub mod cpu;
pub mod features;
pub mod formats;
pub mod gpu;
pub mod models;
pub mod search;

pub use backend::{Backend, Error};

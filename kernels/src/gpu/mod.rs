//! wgpu: which GPU adapters a node has, and a [`Backend`](crate::Backend)
//! that runs the kernels on one of them as WGSL compute shaders.
//!
//! # Layout
//! - [`probe`](probe_adapters): adapter discovery; no adapter is a valid answer.
//! - `context`: device, queue, batched submission, read-back, errors.
//! - `kernels`: the WGSL kernels of `shaders/`, compiled on first use.
//! - `backend`: [`GpuBackend`], the [`Backend`](crate::Backend) ops.
//! - `measure`: GEMM throughput of an adapter, for adverts.
//!
//! On a machine without a GPU, Mesa's lavapipe (`mesa-vulkan-drivers`) is a
//! Vulkan device of type Cpu: the same kernels run there, slowly, which is
//! how tests check them everywhere.

mod backend;
mod context;
mod kernels;
mod measure;
mod probe;
mod tensor;

#[cfg(test)]
mod conformance;

pub use backend::GpuBackend;
pub use measure::measure_gemm_gflops;
pub use probe::probe_adapters;
pub use tensor::GpuTensor;

use crate::backend::Error;

/// The backends adapters are looked for on. GL is left out: its compute
/// support is too thin for our kernels, and on headless machines it spends
/// seconds failing to find a display.
const BACKENDS: wgpu::Backends = wgpu::Backends::VULKAN.union(wgpu::Backends::METAL).union(wgpu::Backends::DX12);

fn adapters() -> Vec<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = BACKENDS;
    let instance = wgpu::Instance::new(descriptor);
    pollster::block_on(instance.enumerate_adapters(BACKENDS))
}

/// Preference among device types: real GPUs before software ones.
fn rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl GpuBackend {
    /// Opens adapter `index` in [`probe_adapters`]' order (the order adverts
    /// list GPUs in). Blocking: it loads drivers.
    pub fn open(index: usize) -> Result<Self, Error> {
        let mut all = adapters();
        let count = all.len();
        if index >= count {
            return Err(Error::Unavailable {
                backend: "wgpu",
                reason: format!("no adapter {index}: this machine has {count}"),
            });
        }
        Self::new(all.swap_remove(index))
    }

    /// Opens the most capable adapter: a discrete GPU first, a software
    /// device (lavapipe) last. Blocking: it loads drivers.
    pub fn open_default() -> Result<Self, Error> {
        let best = adapters().into_iter().min_by_key(|a| rank(a.get_info().device_type));
        match best {
            Some(adapter) => Self::new(adapter),
            None => Err(Error::Unavailable {
                backend: "wgpu",
                reason: "no Vulkan, Metal or DX12 adapter (on Linux without a GPU, install \
                         mesa-vulkan-drivers for lavapipe)"
                    .to_owned(),
            }),
        }
    }
}

/// Test support: the default adapter, or `None` (with a line saying the GPU
/// tests were skipped) when there is none. With `MASS_REQUIRE_GPU_TESTS=1`
/// (CI, where lavapipe is installed) a missing adapter panics instead, so
/// GPU tests cannot pass by skipping.
pub fn open_for_tests() -> Option<GpuBackend> {
    match GpuBackend::open_default() {
        Ok(backend) => Some(backend),
        Err(e) if std::env::var("MASS_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1") => {
            panic!("MASS_REQUIRE_GPU_TESTS=1 but no GPU backend: {e}")
        }
        Err(e) => {
            eprintln!("GPU tests skipped: {e}");
            None
        }
    }
}

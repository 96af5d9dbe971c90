//! The WGSL kernels (in `shaders/`), compiled on first use, and their
//! parameter blocks.
//!
//! Compiling a pipeline takes tens to hundreds of milliseconds on a software
//! rasterizer, so each is built only when an op first needs it (measuring
//! GEMM throughput builds only the GEMM).

use std::sync::OnceLock;

use super::context::Context;

/// One compute pipeline per kernel entry point.
#[derive(Default)]
pub(super) struct Kernels {
    gemm: OnceLock<wgpu::ComputePipeline>,
    bias_activation: OnceLock<wgpu::ComputePipeline>,
    activation_grad: OnceLock<wgpu::ComputePipeline>,
    softmax: OnceLock<wgpu::ComputePipeline>,
    output_delta: OnceLock<wgpu::ComputePipeline>,
    column_sums: OnceLock<wgpu::ComputePipeline>,
    adam: OnceLock<wgpu::ComputePipeline>,
    sgd: OnceLock<wgpu::ComputePipeline>,
}

/// Which kernel, with its source and entry point.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kernel {
    Gemm,
    BiasActivation,
    ActivationGrad,
    Softmax,
    OutputDelta,
    ColumnSums,
    Adam,
    Sgd,
}

impl Kernel {
    fn source(self) -> (&'static str, &'static str) {
        match self {
            Kernel::Gemm => (include_str!("shaders/gemm.wgsl"), "main"),
            Kernel::BiasActivation => (include_str!("shaders/activation.wgsl"), "bias_activation"),
            Kernel::ActivationGrad => (include_str!("shaders/activation.wgsl"), "activation_grad"),
            Kernel::Softmax => (include_str!("shaders/softmax.wgsl"), "main"),
            Kernel::OutputDelta => (include_str!("shaders/output_delta.wgsl"), "main"),
            Kernel::ColumnSums => (include_str!("shaders/column_sums.wgsl"), "main"),
            Kernel::Adam => (include_str!("shaders/adam.wgsl"), "main"),
            Kernel::Sgd => (include_str!("shaders/sgd.wgsl"), "main"),
        }
    }

    /// Invocations per workgroup along x, as the shader declares.
    pub fn width(self) -> u32 {
        match self {
            Kernel::Gemm => 16,
            Kernel::BiasActivation | Kernel::ActivationGrad | Kernel::Adam | Kernel::Sgd => 256,
            Kernel::Softmax | Kernel::OutputDelta | Kernel::ColumnSums => 64,
        }
    }
}

impl Kernels {
    pub fn get(&self, context: &Context, kernel: Kernel) -> &wgpu::ComputePipeline {
        let cell = match kernel {
            Kernel::Gemm => &self.gemm,
            Kernel::BiasActivation => &self.bias_activation,
            Kernel::ActivationGrad => &self.activation_grad,
            Kernel::Softmax => &self.softmax,
            Kernel::OutputDelta => &self.output_delta,
            Kernel::ColumnSums => &self.column_sums,
            Kernel::Adam => &self.adam,
            Kernel::Sgd => &self.sgd,
        };
        cell.get_or_init(|| {
            let (source, entry) = kernel.source();
            let module = context.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(entry),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            context.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })
    }
}

/// A parameter block: 32-bit fields in declaration order, as the WGSL
/// structs lay them out (all fields are 4 bytes, so there is no padding).
#[derive(Default)]
pub(super) struct Params(Vec<u8>);

impl Params {
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn f32(mut self, v: f32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// The bytes, padded to a multiple of 16 (uniform structs round up).
    pub fn bytes(mut self) -> Vec<u8> {
        self.0.resize(self.0.len().div_ceil(16) * 16, 0);
        self.0
    }
}

/// Workgroups for `items` invocations of `kernel` in a 1-D layout, folded
/// into a second dimension past the 65535-per-dimension limit (the shaders
/// unfold it with `num_workgroups`).
pub(super) fn groups_1d(kernel: Kernel, items: usize, most: u32) -> (u32, u32) {
    let groups = items.div_ceil(kernel.width() as usize).max(1);
    let x = groups.min(most as usize);
    (x as u32, groups.div_ceil(x) as u32)
}

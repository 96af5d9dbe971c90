//! The wgpu backend's tensor: a storage buffer in device memory.

use crate::backend::Tensor;

/// A row-major f32 matrix in a device buffer. Valid only with the
/// [`super::GpuBackend`] that made it.
#[derive(Debug)]
pub struct GpuTensor {
    pub(super) buffer: wgpu::Buffer,
    pub(super) rows: usize,
    pub(super) cols: usize,
}

impl GpuTensor {
    pub(super) fn len(&self) -> usize {
        self.rows * self.cols
    }
}

impl Tensor for GpuTensor {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

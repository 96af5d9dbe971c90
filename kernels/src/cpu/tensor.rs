//! The CPU backend's tensor: a row-major `Vec<f32>` with its shape.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::backend::Tensor;

/// A row-major f32 matrix in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl CpuTensor {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Takes `host` (copied only when it is not already row-major and dense).
    pub fn from_array(host: Array2<f32>) -> Self {
        let (rows, cols) = host.dim();
        let data =
            if host.is_standard_layout() { host.into_raw_vec_and_offset().0 } else { host.iter().copied().collect() };
        Self { rows, cols, data }
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn view(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.rows, self.cols), &self.data).expect("length is rows x cols by construction")
    }

    pub fn view_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        ArrayViewMut2::from_shape((self.rows, self.cols), &mut self.data)
            .expect("length is rows x cols by construction")
    }

    pub fn to_array(&self) -> Array2<f32> {
        Array2::from_shape_vec((self.rows, self.cols), self.data.clone())
            .expect("length is rows x cols by construction")
    }
}

impl Tensor for CpuTensor {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

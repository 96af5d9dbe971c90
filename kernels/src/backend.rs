//! The interface every compute backend (CPU, GPU, bridged accelerator) offers.

use ndarray::{Array2, ArrayView2};

/// Why a kernel could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shape mismatch: {op} of {left:?} and {right:?}")]
    Shape { op: &'static str, left: Vec<usize>, right: Vec<usize> },
    #[error("{backend} backend unavailable: {reason}")]
    Unavailable { backend: &'static str, reason: String },
    #[error("{backend} backend failed: {reason}")]
    Device { backend: &'static str, reason: String },
}

/// A place where tensors are computed.
pub trait Backend {
    /// Short name for logs and adverts ("cpu", "wgpu:<adapter>").
    fn name(&self) -> String;

    /// `a @ b` for row-major f32 matrices.
    fn matmul(&self, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>, Error>;
}

/// Checks that `a @ b` is defined.
pub(crate) fn check_matmul(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Result<(), Error> {
    if a.ncols() != b.nrows() {
        return Err(Error::Shape { op: "matmul", left: a.shape().to_vec(), right: b.shape().to_vec() });
    }
    Ok(())
}

//! The CPU backend on ndarray (matrixmultiply, threaded).

mod gemm;

pub use gemm::measure_gemm_gflops;

use ndarray::{Array2, ArrayView2};

use crate::backend::{Backend, Error, check_matmul};

/// ndarray on the host CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_owned()
    }

    fn matmul(&self, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>, Error> {
        check_matmul(&a, &b)?;
        Ok(a.dot(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matmul_rejects_mismatched_shapes() {
        let a = Array2::<f32>::zeros((2, 3));
        let err = CpuBackend.matmul(a.view(), a.view()).unwrap_err();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
    }

    #[test]
    fn matmul_matches_hand_computed() {
        let a = array![[1.0f32, 0.5, -1.0]];
        let b = array![[2.0f32], [4.0], [1.0]];
        assert_eq!(CpuBackend.matmul(a.view(), b.view()).unwrap(), array![[3.0]]);
    }
}

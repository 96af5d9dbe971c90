//! The CPU backend: tensors in host memory, GEMM on faer, and the fused
//! element-wise kernels of [`elementwise`], [`loss`] and [`optim`].

pub(crate) mod elementwise;
pub(crate) mod exp;
mod gemm;
mod loss;
mod optim;
pub mod skinny;
mod tensor;

pub use gemm::{measure_gemm_gflops, measure_gemm_gflops_with, product_of};
pub use tensor::CpuTensor;

use ndarray::{Array2, ArrayView2};

use crate::backend::{Activation, AdamStep, Backend, Error, Operand, OutputLoss, SgdStep, Tensor, check};

/// The host CPU. Ops run synchronously on the calling thread; nothing is
/// queued.
///
/// Thread policy: by default one core per product, because a node runs one
/// training task per core and small products (a 64-row batch) lose more to
/// waking threads than they gain. [`CpuBackend::with_threads`] splits large
/// products (from about 16 million multiply-adds) across that many threads,
/// for one model trained alone on a machine. Results are bit-identical
/// whatever the thread count.
#[derive(Debug, Clone, Copy)]
pub struct CpuBackend {
    threads: usize,
}

impl CpuBackend {
    /// One thread per product.
    pub const fn new() -> Self {
        Self { threads: 1 }
    }

    /// Large products split across `threads` threads (at least one).
    pub fn with_threads(threads: usize) -> Self {
        Self { threads: threads.max(1) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn name(&self) -> String {
        "cpu".to_owned()
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<CpuTensor, Error> {
        Ok(CpuTensor::zeros(rows, cols))
    }

    fn upload(&self, host: ArrayView2<'_, f32>) -> Result<CpuTensor, Error> {
        Ok(CpuTensor::from_array(host.to_owned()))
    }

    fn write(&self, dst: &mut CpuTensor, host: ArrayView2<'_, f32>) -> Result<(), Error> {
        check::write(dst, &host)?;
        dst.view_mut().assign(&host);
        Ok(())
    }

    fn load_rows(&self, src: ArrayView2<'_, f32>, rows: &[usize], dst: &mut CpuTensor) -> Result<(), Error> {
        check::load_rows(&src, rows, dst)?;
        let cols = src.ncols();
        if cols == 0 {
            return Ok(());
        }
        for (&r, out) in rows.iter().zip(dst.as_mut_slice().chunks_exact_mut(cols)) {
            let row = src.row(r);
            match row.as_slice() {
                Some(s) => out.copy_from_slice(s),
                None => out.iter_mut().zip(row.iter()).for_each(|(o, v)| *o = *v),
            }
        }
        Ok(())
    }

    fn download(&self, t: &CpuTensor) -> Result<Array2<f32>, Error> {
        Ok(t.to_array())
    }

    fn gemm(
        &self,
        a: Operand<'_, CpuTensor>,
        b: Operand<'_, CpuTensor>,
        c: &mut CpuTensor,
        accumulate: bool,
    ) -> Result<(), Error> {
        check::gemm(a, b, c)?;
        let ((a, ta), (b, tb)) = (a.parts(), b.parts());
        gemm::product(a, ta, b, tb, c, accumulate, self.threads);
        Ok(())
    }

    fn bias_activation(&self, z: &mut CpuTensor, bias: &CpuTensor, activation: Activation) -> Result<(), Error> {
        check::bias(z, bias)?;
        elementwise::bias_activation(z.as_mut_slice(), bias.as_slice(), activation);
        Ok(())
    }

    fn activation_grad(
        &self,
        delta: &mut CpuTensor,
        activated: &CpuTensor,
        activation: Activation,
    ) -> Result<(), Error> {
        check::pair("activation_grad", delta, activated)?;
        elementwise::activation_grad(delta.as_mut_slice(), activated.as_slice(), activation);
        Ok(())
    }

    fn softmax_rows(&self, z: &mut CpuTensor) -> Result<(), Error> {
        let cols = z.shape().1;
        elementwise::softmax_rows(z.as_mut_slice(), cols);
        Ok(())
    }

    fn output_delta(
        &self,
        outputs: &CpuTensor,
        targets: &CpuTensor,
        loss: OutputLoss,
        delta: &mut CpuTensor,
        row_losses: &mut CpuTensor,
        offset: usize,
    ) -> Result<(), Error> {
        check::output_delta(outputs, targets, delta, row_losses, offset)?;
        let (rows, cols) = outputs.shape();
        let losses = &mut row_losses.as_mut_slice()[offset..offset + rows];
        loss::output_delta(outputs.as_slice(), targets.as_slice(), cols, loss, delta.as_mut_slice(), losses);
        Ok(())
    }

    fn column_sums(&self, a: &CpuTensor, out: &mut CpuTensor) -> Result<(), Error> {
        check::column_sums(a, out)?;
        elementwise::column_sums(a.as_slice(), out.as_mut_slice());
        Ok(())
    }

    fn sum_squares(&self, a: &CpuTensor) -> Result<f64, Error> {
        Ok(elementwise::sum_squares(a.as_slice()))
    }

    fn adam(
        &self,
        param: &mut CpuTensor,
        grad: &CpuTensor,
        m: &mut CpuTensor,
        v: &mut CpuTensor,
        step: AdamStep,
    ) -> Result<(), Error> {
        check::update(param, grad, &[m, v])?;
        optim::adam(param.as_mut_slice(), grad.as_slice(), m.as_mut_slice(), v.as_mut_slice(), step);
        Ok(())
    }

    fn sgd(
        &self,
        param: &mut CpuTensor,
        grad: &CpuTensor,
        velocity: &mut CpuTensor,
        step: SgdStep,
    ) -> Result<(), Error> {
        check::update(param, grad, &[velocity])?;
        optim::sgd(param.as_mut_slice(), grad.as_slice(), velocity.as_mut_slice(), step);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matmul_rejects_mismatched_shapes() {
        let a = Array2::<f32>::zeros((2, 3));
        let err = CpuBackend::new().matmul(a.view(), a.view()).unwrap_err();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
    }

    #[test]
    fn matmul_matches_hand_computed() {
        let a = array![[1.0f32, 0.5, -1.0]];
        let b = array![[2.0f32], [4.0], [1.0]];
        assert_eq!(CpuBackend::new().matmul(a.view(), b.view()).unwrap(), array![[3.0]]);
    }

    #[test]
    fn ops_refuse_bad_shapes_with_an_error() {
        let cpu = CpuBackend::new();
        let mut z = cpu.zeros(2, 3).unwrap();
        let bias = cpu.zeros(1, 2).unwrap();
        assert!(matches!(cpu.bias_activation(&mut z, &bias, Activation::Relu), Err(Error::Shape { .. })));
        let src = Array2::<f32>::zeros((4, 3));
        assert!(matches!(cpu.load_rows(src.view(), &[0, 4], &mut z), Err(Error::Shape { .. })));
        let (out, t) = (cpu.zeros(2, 3).unwrap(), cpu.zeros(2, 3).unwrap());
        let (mut d, mut losses) = (cpu.zeros(2, 3).unwrap(), cpu.zeros(1, 1).unwrap());
        let err = cpu.output_delta(&out, &t, OutputLoss::SquaredError, &mut d, &mut losses, 0).unwrap_err();
        assert!(err.to_string().contains("row_losses"), "{err}");
    }
}

//! [`GpuBackend`]: the [`Backend`] ops as WGSL dispatches on one device.

use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};

use super::context::{Context, device_error};
use super::kernels::{Kernel, Kernels, Params, groups_1d};
use super::tensor::GpuTensor;
use crate::backend::{Activation, AdamStep, Backend, Error, Operand, OutputLoss, SgdStep, check};

/// A GPU (or a software Vulkan device such as lavapipe) through wgpu.
///
/// Ops are queued and run in order; [`Backend::download`] waits for them and
/// reports any failure. Safe to share between threads (ops from several
/// threads interleave in the one queue).
pub struct GpuBackend {
    context: Context,
    kernels: Kernels,
    /// Host rows gathered for [`Backend::load_rows`], reused between batches.
    gather: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend").field("adapter", &self.context.info.name).finish_non_exhaustive()
    }
}

fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Identity => 0,
        Activation::Relu => 1,
        Activation::Tanh => 2,
    }
}

fn u32_of(value: usize, what: &str) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| device_error(format!("{what} of {value} exceeds the kernels' 32-bit indices")))
}

impl GpuBackend {
    pub(super) fn new(adapter: wgpu::Adapter) -> Result<Self, Error> {
        Ok(Self { context: Context::open(adapter)?, kernels: Kernels::default(), gather: Mutex::default() })
    }

    /// The adapter's description, as wgpu reports it.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.context.info
    }

    /// Waits until all queued ops have run; reports any failure.
    pub fn finish(&self) -> Result<(), Error> {
        self.context.finish()
    }

    fn run(&self, kernel: Kernel, params: Params, buffers: &[&wgpu::Buffer], groups: (u32, u32)) -> Result<(), Error> {
        let pipeline = self.kernels.get(&self.context, kernel);
        self.context.dispatch(pipeline, &params.bytes(), buffers, groups)
    }

    fn run_1d(&self, kernel: Kernel, params: Params, buffers: &[&wgpu::Buffer], items: usize) -> Result<(), Error> {
        if items == 0 {
            return Ok(());
        }
        let most = self.context.limits.max_compute_workgroups_per_dimension;
        self.run(kernel, params, buffers, groups_1d(kernel, items, most))
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;

    fn name(&self) -> String {
        format!("wgpu:{}", self.context.info.name)
    }

    fn zeros(&self, rows: usize, cols: usize) -> Result<GpuTensor, Error> {
        let len = rows.checked_mul(cols).ok_or_else(|| device_error(format!("{rows} x {cols} overflows")))?;
        // New buffers are zero-initialized by wgpu.
        Ok(GpuTensor { buffer: self.context.storage(len)?, rows, cols })
    }

    fn upload(&self, host: ArrayView2<'_, f32>) -> Result<GpuTensor, Error> {
        let mut t = self.zeros(host.nrows(), host.ncols())?;
        self.write(&mut t, host)?;
        Ok(t)
    }

    fn write(&self, dst: &mut GpuTensor, host: ArrayView2<'_, f32>) -> Result<(), Error> {
        check::write(dst, &host)?;
        match host.as_slice() {
            Some(values) => self.context.write(&dst.buffer, values),
            None => self.context.write(&dst.buffer, &host.iter().copied().collect::<Vec<_>>()),
        }
    }

    fn load_rows(&self, src: ArrayView2<'_, f32>, rows: &[usize], dst: &mut GpuTensor) -> Result<(), Error> {
        check::load_rows(&src, rows, dst)?;
        let mut gather = self.gather.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gather.clear();
        for &r in rows {
            let row = src.row(r);
            match row.as_slice() {
                Some(s) => gather.extend_from_slice(s),
                None => gather.extend(row.iter()),
            }
        }
        self.context.write(&dst.buffer, &gather)
    }

    fn download(&self, t: &GpuTensor) -> Result<Array2<f32>, Error> {
        let values = self.context.read(&t.buffer, t.len())?;
        Array2::from_shape_vec((t.rows, t.cols), values).map_err(|e| device_error(format!("read-back: {e}")))
    }

    fn gemm(
        &self,
        a: Operand<'_, GpuTensor>,
        b: Operand<'_, GpuTensor>,
        c: &mut GpuTensor,
        accumulate: bool,
    ) -> Result<(), Error> {
        check::gemm(a, b, c)?;
        let ((ta, a_t), (tb, b_t)) = (a.parts(), b.parts());
        let (m, n, k) = (c.rows, c.cols, a.shape().1);
        if m == 0 || n == 0 {
            return Ok(());
        }
        let flags = u32::from(a_t) | (u32::from(b_t) << 1) | (u32::from(accumulate) << 2);
        let params =
            Params::default().u32(u32_of(m, "rows")?).u32(u32_of(n, "columns")?).u32(u32_of(k, "depth")?).u32(flags);
        let most = self.context.limits.max_compute_workgroups_per_dimension as usize;
        let groups = (n.div_ceil(64), m.div_ceil(64));
        if groups.0 > most || groups.1 > most {
            return Err(device_error(format!("a {m} x {n} product needs more than {most} workgroups per side")));
        }
        // k = 0 still runs: the kernel writes zeros (or leaves c when accumulating).
        self.run(Kernel::Gemm, params, &[&ta.buffer, &tb.buffer, &c.buffer], (groups.0 as u32, groups.1 as u32))
    }

    fn bias_activation(&self, z: &mut GpuTensor, bias: &GpuTensor, activation: Activation) -> Result<(), Error> {
        check::bias(z, bias)?;
        let params = Params::default()
            .u32(u32_of(z.rows, "rows")?)
            .u32(u32_of(z.cols, "columns")?)
            .u32(activation_code(activation))
            .u32(0);
        self.run_1d(Kernel::BiasActivation, params, &[&z.buffer, &bias.buffer], z.len())
    }

    fn activation_grad(
        &self,
        delta: &mut GpuTensor,
        activated: &GpuTensor,
        activation: Activation,
    ) -> Result<(), Error> {
        check::pair("activation_grad", delta, activated)?;
        let params = Params::default()
            .u32(u32_of(delta.rows, "rows")?)
            .u32(u32_of(delta.cols, "columns")?)
            .u32(activation_code(activation))
            .u32(0);
        self.run_1d(Kernel::ActivationGrad, params, &[&delta.buffer, &activated.buffer], delta.len())
    }

    fn softmax_rows(&self, z: &mut GpuTensor) -> Result<(), Error> {
        let params = Params::default().u32(u32_of(z.rows, "rows")?).u32(u32_of(z.cols, "columns")?).u32(0).u32(0);
        self.run_1d(Kernel::Softmax, params, &[&z.buffer], if z.cols == 0 { 0 } else { z.rows })
    }

    fn output_delta(
        &self,
        outputs: &GpuTensor,
        targets: &GpuTensor,
        loss: OutputLoss,
        delta: &mut GpuTensor,
        row_losses: &mut GpuTensor,
        offset: usize,
    ) -> Result<(), Error> {
        check::output_delta(outputs, targets, delta, row_losses, offset)?;
        let (code, huber) = match loss {
            OutputLoss::SoftmaxCrossEntropy => (0, 0.0),
            OutputLoss::SquaredError => (1, 0.0),
            OutputLoss::Huber { delta } => (2, delta),
        };
        let params = Params::default()
            .u32(u32_of(outputs.rows, "rows")?)
            .u32(u32_of(outputs.cols, "columns")?)
            .u32(code)
            .u32(u32_of(offset, "offset")?)
            .f32(huber)
            .f32(1.0 / outputs.rows.max(1) as f32);
        let buffers = [&outputs.buffer, &targets.buffer, &delta.buffer, &row_losses.buffer];
        self.run_1d(Kernel::OutputDelta, params, &buffers, outputs.rows)
    }

    fn column_sums(&self, a: &GpuTensor, out: &mut GpuTensor) -> Result<(), Error> {
        check::column_sums(a, out)?;
        let params = Params::default().u32(u32_of(a.rows, "rows")?).u32(u32_of(a.cols, "columns")?).u32(0).u32(0);
        self.run_1d(Kernel::ColumnSums, params, &[&a.buffer, &out.buffer], a.cols)
    }

    fn sum_squares(&self, a: &GpuTensor) -> Result<f64, Error> {
        // Called once per epoch for the L2 penalty: a read-back is cheaper
        // to keep right than a reduction kernel, and sums in f64 as the CPU.
        let values = self.context.read(&a.buffer, a.len())?;
        Ok(values.iter().map(|&v| f64::from(v * v)).sum())
    }

    fn adam(
        &self,
        param: &mut GpuTensor,
        grad: &GpuTensor,
        m: &mut GpuTensor,
        v: &mut GpuTensor,
        step: AdamStep,
    ) -> Result<(), Error> {
        check::update(param, grad, &[m, v])?;
        let params = Params::default()
            .u32(u32_of(param.len(), "length")?)
            .f32(step.learning_rate)
            .f32(step.beta1)
            .f32(step.beta2)
            .f32(step.epsilon)
            .f32(1.0 / step.correction1)
            .f32(1.0 / step.correction2)
            .f32(step.l2);
        let buffers = [&param.buffer, &grad.buffer, &m.buffer, &v.buffer];
        self.run_1d(Kernel::Adam, params, &buffers, param.len())
    }

    fn sgd(
        &self,
        param: &mut GpuTensor,
        grad: &GpuTensor,
        velocity: &mut GpuTensor,
        step: SgdStep,
    ) -> Result<(), Error> {
        check::update(param, grad, &[velocity])?;
        let params = Params::default()
            .u32(u32_of(param.len(), "length")?)
            .f32(step.learning_rate)
            .f32(step.momentum)
            .f32(step.l2);
        self.run_1d(Kernel::Sgd, params, &[&param.buffer, &grad.buffer, &velocity.buffer], param.len())
    }
}

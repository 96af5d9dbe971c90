//! The interface every compute backend (CPU, GPU, bridged accelerator) offers.
//!
//! A backend owns its tensors ([`Backend::Tensor`]): a GPU backend keeps them
//! in device memory, so an algorithm that allocates its buffers once and then
//! only calls ops (a training loop) moves no data between host and device
//! except what it loads and reads back on purpose. Every op writes into a
//! buffer the caller owns; none allocates.
//!
//! The ops are those a dense network needs to train and predict: GEMM with
//! transposes, bias plus activation fused, the activation's derivative, row
//! softmax, the output delta of each loss, column sums (bias gradients) and
//! the optimizer updates in place. Shapes are checked by [`check`] before any
//! work, the same way on every backend, and a mismatch is an
//! [`Error::Shape`], never a panic.

pub mod check;

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

/// A row-major f32 matrix owned by a backend.
pub trait Tensor {
    /// `(rows, columns)`.
    fn shape(&self) -> (usize, usize);
}

/// A GEMM operand: a tensor as stored, or its transpose (read, never copied).
#[derive(Debug)]
pub enum Operand<'a, T> {
    Plain(&'a T),
    Transposed(&'a T),
}

impl<T> Clone for Operand<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Operand<'_, T> {}

impl<'a, T: Tensor> Operand<'a, T> {
    /// The tensor and whether it is read transposed.
    pub fn parts(self) -> (&'a T, bool) {
        match self {
            Operand::Plain(t) => (t, false),
            Operand::Transposed(t) => (t, true),
        }
    }

    /// `(rows, columns)` of the operand as the product sees it.
    pub fn shape(self) -> (usize, usize) {
        match self {
            Operand::Plain(t) => t.shape(),
            Operand::Transposed(t) => {
                let (r, c) = t.shape();
                (c, r)
            }
        }
    }
}

/// Element-wise activation applied after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    Tanh,
}

/// How the output layer is judged; decides the output delta and row loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputLoss {
    /// Outputs are softmax probabilities: mean negative log-likelihood.
    SoftmaxCrossEntropy,
    /// Half squared error.
    SquaredError,
    /// Squared error within `delta`, linear beyond.
    Huber { delta: f32 },
}

/// One Adam update (coupled L2: `l2 * param` is added to the gradient).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub learning_rate: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// `1 - beta1^t` and `1 - beta2^t` for step `t` (1-based).
    pub correction1: f32,
    pub correction2: f32,
    pub l2: f32,
}

impl AdamStep {
    /// The usual constants (0.9, 0.999, 1e-8) at step `t` (1-based).
    pub fn at(t: i32, learning_rate: f32, l2: f32) -> Self {
        let (beta1, beta2) = (0.9f32, 0.999f32);
        Self {
            learning_rate,
            beta1,
            beta2,
            epsilon: 1e-8,
            correction1: 1.0 - beta1.powi(t),
            correction2: 1.0 - beta2.powi(t),
            l2,
        }
    }
}

/// One SGD step with momentum: `v = momentum v - lr (g + l2 p); p += v`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    pub learning_rate: f32,
    pub momentum: f32,
    pub l2: f32,
}

/// A place where tensors are computed.
///
/// Ops may be queued: results are guaranteed visible to the host only after
/// [`Backend::download`] (or [`Backend::sum_squares`]), which also reports
/// any failure of queued work.
pub trait Backend {
    type Tensor: Tensor;

    /// Short name for logs and adverts ("cpu", "wgpu:<adapter>").
    fn name(&self) -> String;

    /// A `rows x cols` tensor of zeros.
    fn zeros(&self, rows: usize, cols: usize) -> Result<Self::Tensor, Error>;

    /// A tensor holding a copy of `host`.
    fn upload(&self, host: ArrayView2<'_, f32>) -> Result<Self::Tensor, Error>;

    /// Overwrites `dst` with `host` (same shape).
    fn write(&self, dst: &mut Self::Tensor, host: ArrayView2<'_, f32>) -> Result<(), Error>;

    /// Overwrites `dst` with rows `rows` of `src`, in that order: a training
    /// batch gathered straight into a reused buffer.
    fn load_rows(&self, src: ArrayView2<'_, f32>, rows: &[usize], dst: &mut Self::Tensor) -> Result<(), Error>;

    /// A host copy of `t`; waits for queued work.
    fn download(&self, t: &Self::Tensor) -> Result<Array2<f32>, Error>;

    /// `c = a b` (or `c += a b` when `accumulate`).
    fn gemm(
        &self,
        a: Operand<'_, Self::Tensor>,
        b: Operand<'_, Self::Tensor>,
        c: &mut Self::Tensor,
        accumulate: bool,
    ) -> Result<(), Error>;

    /// `z = activation(z + bias)`, the bias (`1 x cols`) added to every row.
    fn bias_activation(&self, z: &mut Self::Tensor, bias: &Self::Tensor, activation: Activation) -> Result<(), Error>;

    /// `delta *= activation'` where `activated` holds the activation's outputs
    /// (relu: zero where the output is not positive; tanh: `1 - y^2`).
    fn activation_grad(
        &self,
        delta: &mut Self::Tensor,
        activated: &Self::Tensor,
        activation: Activation,
    ) -> Result<(), Error>;

    /// Replaces each row of `z` by its softmax.
    fn softmax_rows(&self, z: &mut Self::Tensor) -> Result<(), Error>;

    /// The gradient of the mean loss over the rows with respect to `outputs`
    /// (probabilities for cross-entropy, values otherwise) into `delta`, and
    /// each row's loss into `row_losses[offset + row]` (a column).
    fn output_delta(
        &self,
        outputs: &Self::Tensor,
        targets: &Self::Tensor,
        loss: OutputLoss,
        delta: &mut Self::Tensor,
        row_losses: &mut Self::Tensor,
        offset: usize,
    ) -> Result<(), Error>;

    /// `out` (`1 x cols`) = the sum of the rows of `a`: bias gradients.
    fn column_sums(&self, a: &Self::Tensor, out: &mut Self::Tensor) -> Result<(), Error>;

    /// Sum of the squares of all elements (for L2 penalties), in f64.
    fn sum_squares(&self, a: &Self::Tensor) -> Result<f64, Error>;

    /// One Adam update of `param` in place; `m` and `v` are its moments.
    fn adam(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        m: &mut Self::Tensor,
        v: &mut Self::Tensor,
        step: AdamStep,
    ) -> Result<(), Error>;

    /// One SGD-with-momentum update of `param` in place.
    fn sgd(
        &self,
        param: &mut Self::Tensor,
        grad: &Self::Tensor,
        velocity: &mut Self::Tensor,
        step: SgdStep,
    ) -> Result<(), Error>;

    /// `a @ b` for host matrices: upload, one GEMM, download. A convenience
    /// for one-off products; loops should keep tensors on the backend.
    fn matmul(&self, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>, Error> {
        check::matmul_host(&a, &b)?;
        let (ta, tb) = (self.upload(a)?, self.upload(b)?);
        let mut c = self.zeros(a.nrows(), b.ncols())?;
        self.gemm(Operand::Plain(&ta), Operand::Plain(&tb), &mut c, false)?;
        self.download(&c)
    }
}

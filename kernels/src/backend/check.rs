//! Shape checks shared by every backend, so that a bad call fails the same
//! way (an [`Error::Shape`] naming the op and both shapes) wherever it runs,
//! before any work is queued.

use ndarray::ArrayView2;

use super::{Error, Operand, Tensor};

fn mismatch(op: &'static str, left: (usize, usize), right: (usize, usize)) -> Error {
    Error::Shape { op, left: vec![left.0, left.1], right: vec![right.0, right.1] }
}

fn same(op: &'static str, left: (usize, usize), right: (usize, usize)) -> Result<(), Error> {
    if left == right { Ok(()) } else { Err(mismatch(op, left, right)) }
}

/// `a @ b` on host matrices is defined.
pub fn matmul_host(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Result<(), Error> {
    if a.ncols() != b.nrows() {
        return Err(Error::Shape { op: "matmul", left: a.shape().to_vec(), right: b.shape().to_vec() });
    }
    Ok(())
}

/// `c = a b` is defined and `c` has its shape.
pub fn gemm<T: Tensor>(a: Operand<'_, T>, b: Operand<'_, T>, c: &T) -> Result<(), Error> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa.1 != sb.0 {
        return Err(mismatch("gemm", sa, sb));
    }
    same("gemm output", c.shape(), (sa.0, sb.1))
}

/// `host` fits `dst` exactly.
pub fn write<T: Tensor>(dst: &T, host: &ArrayView2<'_, f32>) -> Result<(), Error> {
    same("write", dst.shape(), (host.nrows(), host.ncols()))
}

/// Rows `rows` of `src` fit `dst` and exist.
pub fn load_rows<T: Tensor>(src: &ArrayView2<'_, f32>, rows: &[usize], dst: &T) -> Result<(), Error> {
    same("load_rows", dst.shape(), (rows.len(), src.ncols()))?;
    match rows.iter().find(|&&r| r >= src.nrows()) {
        Some(&r) => Err(mismatch("load_rows index", (r, 0), (src.nrows(), src.ncols()))),
        None => Ok(()),
    }
}

/// A `1 x cols` bias for `z`.
pub fn bias<T: Tensor>(z: &T, bias: &T) -> Result<(), Error> {
    same("bias", bias.shape(), (1, z.shape().1))
}

/// Two tensors of one shape (element-wise ops).
pub fn pair<T: Tensor>(op: &'static str, a: &T, b: &T) -> Result<(), Error> {
    same(op, a.shape(), b.shape())
}

/// Outputs, targets and delta of one shape; `row_losses` a column with room
/// for the rows at `offset`.
pub fn output_delta<T: Tensor>(
    outputs: &T,
    targets: &T,
    delta: &T,
    row_losses: &T,
    offset: usize,
) -> Result<(), Error> {
    same("output_delta targets", outputs.shape(), targets.shape())?;
    same("output_delta delta", outputs.shape(), delta.shape())?;
    let (rows, cols) = row_losses.shape();
    if cols != 1 || rows < offset.saturating_add(outputs.shape().0) {
        return Err(mismatch("output_delta row_losses", (offset + outputs.shape().0, 1), (rows, cols)));
    }
    Ok(())
}

/// `out` is `1 x cols(a)`.
pub fn column_sums<T: Tensor>(a: &T, out: &T) -> Result<(), Error> {
    same("column_sums", out.shape(), (1, a.shape().1))
}

/// Parameter, gradient and optimizer state of one shape.
pub fn update<T: Tensor>(param: &T, grad: &T, state: &[&T]) -> Result<(), Error> {
    same("update gradient", param.shape(), grad.shape())?;
    state.iter().try_for_each(|s| same("update state", param.shape(), s.shape()))
}

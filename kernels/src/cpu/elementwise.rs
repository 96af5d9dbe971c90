//! Element-wise and row-wise kernels on row-major slices: one pass over the
//! data each, with the activation chosen outside the loop so the loop body is
//! branch-free and vectorizes.

use crate::backend::Activation;

/// `z = activation(z + bias)` for each row of `z` (`bias.len()` columns).
pub fn bias_activation(z: &mut [f32], bias: &[f32], activation: Activation) {
    let cols = bias.len();
    if cols == 0 {
        return;
    }
    for row in z.chunks_exact_mut(cols) {
        match activation {
            Activation::Identity => row.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
            Activation::Relu => row.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).max(0.0)),
            Activation::Tanh => row.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).tanh()),
        }
    }
}

/// `delta *= activation'(activated)`.
pub fn activation_grad(delta: &mut [f32], activated: &[f32], activation: Activation) {
    match activation {
        Activation::Identity => {}
        Activation::Relu => delta.iter_mut().zip(activated).for_each(|(d, &a)| {
            if a <= 0.0 {
                *d = 0.0
            }
        }),
        Activation::Tanh => delta.iter_mut().zip(activated).for_each(|(d, &a)| *d *= 1.0 - a * a),
    }
}

/// Each row (of `cols` values) replaced by its softmax.
pub fn softmax_rows(z: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    for row in z.chunks_exact_mut(cols) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

/// `out = sum of the rows of a` (`out.len()` columns).
pub fn column_sums(a: &[f32], out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    if out.is_empty() {
        return;
    }
    for row in a.chunks_exact(out.len()) {
        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
    }
}

/// Sum of squares in f64, in a fixed order.
pub fn sum_squares(a: &[f32]) -> f64 {
    a.iter().map(|&v| f64::from(v * v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_relu_clamps_after_adding() {
        let mut z = [1.0, -2.0, 0.5, -0.5];
        bias_activation(&mut z, &[1.0, 1.0], Activation::Relu);
        assert_eq!(z, [2.0, 0.0, 1.5, 0.5]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_survive_large_values() {
        let mut z = [1000.0, 1000.0, 0.0, 1.0];
        softmax_rows(&mut z, 2);
        assert_eq!(&z[..2], &[0.5, 0.5]);
        assert!((z[2] + z[3] - 1.0).abs() < 1e-6 && z[3] > z[2]);
    }

    #[test]
    fn column_sums_add_rows() {
        let mut out = [9.0; 2];
        column_sums(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut out);
        assert_eq!(out, [9.0, 12.0]);
    }
}

//! Optimizer updates in place, one fused pass over parameter, gradient and
//! state (the L2 term is added to the gradient on the way).
//!
//! The loops run under [`pulp::Arch::dispatch`], which compiles them for the
//! widest SIMD the CPU has (AVX-512 here), so Adam's square root and division
//! stay a small part of a training step.
//!
//! Moments below the smallest normal f32 are flushed to zero. Inputs that are
//! always zero (MNIST's border pixels) give zero gradients, and their first
//! moment then decays through the subnormal range, where x86 arithmetic is
//! about a hundred times slower; the flushed values change a step by under
//! 1e-30. GPUs flush subnormals anyway, so this also keeps the backends alike.

use pulp::{Simd, WithSimd};

use crate::backend::{AdamStep, SgdStep};

#[inline(always)]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

struct Adam<'a> {
    param: &'a mut [f32],
    grad: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    s: AdamStep,
}

impl WithSimd for Adam<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Adam { param, grad, m, v, s } = self;
        let n = param.len();
        let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
        let (b1, b2) = (s.beta1, s.beta2);
        let (lr, inv1, inv2) = (s.learning_rate, 1.0 / s.correction1, 1.0 / s.correction2);
        for i in 0..n {
            let g = grad[i] + s.l2 * param[i];
            let mi = flush(b1 * m[i] + (1.0 - b1) * g);
            let vi = flush(b2 * v[i] + (1.0 - b2) * g * g);
            m[i] = mi;
            v[i] = vi;
            param[i] -= lr * (mi * inv1) / ((vi * inv2).sqrt() + s.epsilon);
        }
    }
}

struct Sgd<'a> {
    param: &'a mut [f32],
    grad: &'a [f32],
    velocity: &'a mut [f32],
    s: SgdStep,
}

impl WithSimd for Sgd<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let Sgd { param, grad, velocity, s } = self;
        let n = param.len();
        let (grad, velocity) = (&grad[..n], &mut velocity[..n]);
        for i in 0..n {
            let v = flush(s.momentum * velocity[i] - s.learning_rate * (grad[i] + s.l2 * param[i]));
            velocity[i] = v;
            param[i] += v;
        }
    }
}

/// One Adam step over equally long slices.
pub fn adam(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    pulp::Arch::new().dispatch(Adam { param, grad, m, v, s });
}

/// One SGD-with-momentum step over equally long slices.
pub fn sgd(param: &mut [f32], grad: &[f32], velocity: &mut [f32], s: SgdStep) {
    pulp::Arch::new().dispatch(Sgd { param, grad, velocity, s });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_adam_step_moves_by_the_learning_rate() {
        // At t = 1 the bias-corrected step is lr * g / |g| (up to epsilon).
        let (mut p, mut m, mut v) = ([1.0f32, 1.0], [0.0; 2], [0.0; 2]);
        adam(&mut p, &[0.5, -2.0], &mut m, &mut v, AdamStep::at(1, 0.1, 0.0));
        assert!((p[0] - 0.9).abs() < 1e-6 && (p[1] - 1.1).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn sgd_momentum_accumulates_velocity() {
        let (mut p, mut vel) = ([0.0f32], [0.0f32]);
        let step = SgdStep { learning_rate: 0.1, momentum: 0.5, l2: 0.0 };
        sgd(&mut p, &[1.0], &mut vel, step);
        sgd(&mut p, &[1.0], &mut vel, step);
        assert!((p[0] + 0.25).abs() < 1e-7, "{p:?}");
    }

    #[test]
    fn decayed_moments_flush_to_zero() {
        let (mut p, mut m, mut v) = ([0.0f32], [1e-38f32], [0.0f32]);
        adam(&mut p, &[0.0], &mut m, &mut v, AdamStep::at(5, 0.1, 0.0));
        assert_eq!(m[0], 0.0);
    }
}

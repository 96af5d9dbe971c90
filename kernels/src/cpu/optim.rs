//! Optimizer updates in place, one fused pass over parameter, gradient and
//! state (the L2 term is added to the gradient on the way).

use crate::backend::{AdamStep, SgdStep};

/// One Adam step over equally long slices.
pub fn adam(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    let n = param.len();
    let (grad, m, v) = (&grad[..n], &mut m[..n], &mut v[..n]);
    let (b1, b2) = (s.beta1, s.beta2);
    let (lr, inv1, inv2) = (s.learning_rate, 1.0 / s.correction1, 1.0 / s.correction2);
    for i in 0..n {
        let g = grad[i] + s.l2 * param[i];
        let mi = b1 * m[i] + (1.0 - b1) * g;
        let vi = b2 * v[i] + (1.0 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= lr * (mi * inv1) / ((vi * inv2).sqrt() + s.epsilon);
    }
}

/// One SGD-with-momentum step over equally long slices.
pub fn sgd(param: &mut [f32], grad: &[f32], velocity: &mut [f32], s: SgdStep) {
    let n = param.len();
    let (grad, velocity) = (&grad[..n], &mut velocity[..n]);
    for i in 0..n {
        let v = s.momentum * velocity[i] - s.learning_rate * (grad[i] + s.l2 * param[i]);
        velocity[i] = v;
        param[i] += v;
    }
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
}

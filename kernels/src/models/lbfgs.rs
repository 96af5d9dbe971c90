//! L-BFGS: a quasi-Newton minimizer for smooth convex objectives (the
//! linear models' losses), with a backtracking line search.

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stop {
    pub max_iterations: usize,
    /// Stop when the largest gradient component is at most this.
    pub gradient_tolerance: f64,
}

impl Default for Stop {
    fn default() -> Self {
        Self { max_iterations: 500, gradient_tolerance: 1e-5 }
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
}

/// Summed in eight running sums: one sum of 7,850 products (softmax on
/// MNIST) waited on each addition before the next, and the two-loop
/// recursion's forty dot products were 3.5% of a bagging job.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut sums = [0.0; LANES];
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f64>() + tail
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimizes `f`, which returns the value and gradient at a point, from `x0`.
/// `on_iteration(iteration, value)` after each step.
pub fn minimize(
    f: &mut dyn FnMut(&[f64]) -> (f64, Vec<f64>),
    x0: Vec<f64>,
    stop: Stop,
    on_iteration: &mut dyn FnMut(usize, f64),
) -> Minimum {
    const HISTORY: usize = 10;
    let mut x = x0;
    let (mut value, mut grad) = f(&x);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    for iteration in 0..stop.max_iterations {
        if max_abs(&grad) <= stop.gradient_tolerance {
            return Minimum { x, value, iterations: iteration, converged: true };
        }
        // Two-loop recursion: direction = -H * grad.
        let mut q = grad.clone();
        let mut alphas = Vec::with_capacity(s_hist.len());
        for (s, y) in s_hist.iter().zip(&y_hist).rev() {
            let rho = 1.0 / dot(y, s);
            let alpha = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= alpha * yi);
            alphas.push((alpha, rho));
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / max_abs(&grad).max(1.0),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y), (alpha, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (alpha - beta) * si);
        }
        let mut direction: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&grad, &direction);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost): restart from the gradient.
            s_hist.clear();
            y_hist.clear();
            direction = grad.iter().map(|g| -g).collect();
            slope = -dot(&grad, &grad);
        }
        // Backtracking line search (Armijo).
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            let candidate: Vec<f64> = x.iter().zip(&direction).map(|(xi, di)| xi + step * di).collect();
            let (v, g) = f(&candidate);
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                accepted = Some((candidate, v, g));
                break;
            }
            step *= 0.5;
        }
        let Some((next, next_value, next_grad)) = accepted else {
            return Minimum { x, value, iterations: iteration, converged: false };
        };
        let s: Vec<f64> = next.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = next_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        if dot(&s, &y) > 1e-12 {
            if s_hist.len() == HISTORY {
                s_hist.remove(0);
                y_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(y);
        }
        let improvement = value - next_value;
        (x, value, grad) = (next, next_value, next_grad);
        on_iteration(iteration, value);
        if improvement.abs() <= 1e-12 * value.abs().max(1.0) {
            return Minimum {
                x,
                value,
                iterations: iteration + 1,
                converged: max_abs(&grad) <= stop.gradient_tolerance,
            };
        }
    }
    let converged = max_abs(&grad) <= stop.gradient_tolerance;
    Minimum { x, value, iterations: stop.max_iterations, converged }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_the_rosenbrock_valley() {
        let mut f = |p: &[f64]| {
            let (a, b) = (p[0], p[1]);
            let value = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let grad = vec![-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)];
            (value, grad)
        };
        let m =
            minimize(&mut f, vec![-1.2, 1.0], Stop { max_iterations: 1000, gradient_tolerance: 1e-6 }, &mut |_, _| {});
        assert!(m.converged, "{m:?}");
        assert!((m.x[0] - 1.0).abs() < 1e-5 && (m.x[1] - 1.0).abs() < 1e-5, "{m:?}");
    }
}

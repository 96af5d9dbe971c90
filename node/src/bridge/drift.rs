//! How far a device's fixed-point answers are from the float model's, on
//! sample rows, and whether that is too far. Pure.
//!
//! The measure is the largest absolute difference over every output of
//! every member on every sample row: probabilities for classifiers (so 0.02
//! is two points of probability), standardized values for regressors (so
//! 0.02 is a fiftieth of the label's standard deviation). One number with
//! the same meaning for every model, which the operator's limit is set in.

use ndarray::Array2;

#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// Largest absolute difference of any output.
    pub max: f64,
    /// Mean absolute difference over all outputs.
    pub mean: f64,
    pub rows: usize,
    /// Classifiers: rows whose most probable class differs in any member.
    pub changed_class: Option<usize>,
}

/// Compares each member's outputs on the device (`fixed`) with the float
/// model's (`float`), on the same rows.
pub fn measure(float: &[Array2<f32>], fixed: &[Array2<f32>], classifier: bool) -> Drift {
    assert_eq!(float.len(), fixed.len(), "one answer per member from each");
    let rows = float.first().map_or(0, |f| f.nrows());
    let (mut max, mut sum, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut changed = vec![false; rows];
    for (a, b) in float.iter().zip(fixed) {
        assert_eq!(a.dim(), b.dim(), "outputs of the same shape");
        for (x, y) in a.iter().zip(b) {
            let d = (f64::from(*x) - f64::from(*y)).abs();
            // A NaN from either side is as far as it gets.
            let d = if d.is_nan() { f64::INFINITY } else { d };
            max = max.max(d);
            sum += d;
            count += 1;
        }
        if classifier {
            let (ca, cb) = (argmax(a), argmax(b));
            for (row, (p, q)) in ca.iter().zip(&cb).enumerate() {
                changed[row] |= p != q;
            }
        }
    }
    Drift {
        max,
        mean: if count == 0 { 0.0 } else { sum / count as f64 },
        rows,
        changed_class: classifier.then(|| changed.iter().filter(|c| **c).count()),
    }
}

fn argmax(outputs: &Array2<f32>) -> Vec<usize> {
    mass_kernels::models::ensemble::argmax_rows(outputs)
}

impl Drift {
    /// Ok within `limit`; past it, the sentence the operator reads.
    pub fn verdict(&self, limit: f64, model: &str, bridge: &str, precision: &str) -> Result<(), String> {
        if self.max <= limit {
            return Ok(());
        }
        let classes = match self.changed_class {
            Some(n) => format!("; {n} of {} rows change class", self.rows),
            None => String::new(),
        };
        Err(format!(
            "model {model} is refused for bridge '{bridge}': in {precision} its outputs drift up to {:.4} from the \
             float model's (mean {:.4} over {} sample rows{classes}), past the limit of {limit} \
             (hardware.bridges.max_drift); it stays on the CPU",
            self.max, self.mean, self.rows
        ))
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn drift_is_the_largest_difference_over_members_rows_and_outputs() {
        let float = vec![array![[0.9f32, 0.1], [0.4, 0.6]], array![[0.5f32, 0.5], [0.2, 0.8]]];
        let fixed = vec![array![[0.88f32, 0.12], [0.55, 0.45]], array![[0.5f32, 0.5], [0.2, 0.8]]];
        let d = measure(&float, &fixed, true);
        assert!((d.max - 0.15).abs() < 1e-6, "{d:?}");
        assert!((d.mean - (0.02 + 0.02 + 0.15 + 0.15) / 8.0).abs() < 1e-6, "{d:?}");
        assert_eq!((d.rows, d.changed_class), (2, Some(1)));
        assert_eq!(measure(&float, &float, false), Drift { max: 0.0, mean: 0.0, rows: 2, changed_class: None });
    }

    #[test]
    fn a_nan_is_infinitely_far() {
        let d = measure(&[array![[1.0f32]]], &[array![[f32::NAN]]], false);
        assert!(d.max.is_infinite());
        assert!(d.verdict(0.5, "m", "b", "fixed<8,3>").is_err());
    }

    #[test]
    fn past_the_limit_the_refusal_says_by_how_much() {
        let d = Drift { max: 0.3125, mean: 0.05, rows: 256, changed_class: Some(31) };
        assert!(d.verdict(0.5, "'digits'", "fpga0", "fixed<8,3>").is_ok());
        let sentence = d.verdict(0.02, "'digits'", "fpga0", "fixed<8,3>").unwrap_err();
        assert_eq!(
            sentence,
            "model 'digits' is refused for bridge 'fpga0': in fixed<8,3> its outputs drift up to 0.3125 from the \
             float model's (mean 0.0500 over 256 sample rows; 31 of 256 rows change class), past the limit of \
             0.02 (hardware.bridges.max_drift); it stays on the CPU"
        );
    }
}

//! Output deltas and per-row losses of each loss, fused in one pass.

use crate::backend::OutputLoss;

/// Writes `d(mean loss)/d(outputs)` into `delta` and each row's loss into
/// `row_losses` (one per row). `outputs` are probabilities for cross-entropy.
pub fn output_delta(
    outputs: &[f32],
    targets: &[f32],
    cols: usize,
    loss: OutputLoss,
    delta: &mut [f32],
    row_losses: &mut [f32],
) {
    if cols == 0 {
        row_losses.iter_mut().for_each(|l| *l = 0.0);
        return;
    }
    let scale = 1.0 / (outputs.len() / cols).max(1) as f32;
    let rows = outputs.chunks_exact(cols).zip(targets.chunks_exact(cols)).zip(delta.chunks_exact_mut(cols));
    for (((o, t), d), row_loss) in rows.zip(row_losses.iter_mut()) {
        let mut total = 0.0f32;
        match loss {
            OutputLoss::SoftmaxCrossEntropy => {
                for ((&p, &y), d) in o.iter().zip(t).zip(d.iter_mut()) {
                    *d = (p - y) * scale;
                    if y > 0.0 {
                        total -= y * p.max(1e-30).ln();
                    }
                }
            }
            OutputLoss::SquaredError => {
                for ((&p, &y), d) in o.iter().zip(t).zip(d.iter_mut()) {
                    let e = p - y;
                    *d = e * scale;
                    total += 0.5 * e * e;
                }
            }
            OutputLoss::Huber { delta: limit } => {
                for ((&p, &y), d) in o.iter().zip(t).zip(d.iter_mut()) {
                    let e = p - y;
                    *d = e.clamp(-limit, limit) * scale;
                    let a = e.abs();
                    total += if a <= limit { 0.5 * a * a } else { limit * (a - 0.5 * limit) };
                }
            }
        }
        *row_loss = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_delta_is_p_minus_y_over_rows() {
        let (mut delta, mut losses) = ([0.0; 4], [0.0; 2]);
        output_delta(
            &[0.25, 0.75, 0.5, 0.5],
            &[0.0, 1.0, 1.0, 0.0],
            2,
            OutputLoss::SoftmaxCrossEntropy,
            &mut delta,
            &mut losses,
        );
        assert_eq!(delta, [0.125, -0.125, -0.25, 0.25]);
        assert!((losses[0] + 0.75f32.ln()).abs() < 1e-7 && (losses[1] + 0.5f32.ln()).abs() < 1e-7);
    }

    #[test]
    fn huber_clips_the_delta_and_grows_linearly() {
        let (mut delta, mut losses) = ([0.0; 2], [0.0; 1]);
        output_delta(&[3.0, 0.1], &[0.0, 0.0], 2, OutputLoss::Huber { delta: 1.0 }, &mut delta, &mut losses);
        assert_eq!(delta, [1.0, 0.1]);
        assert!((losses[0] - (2.5 + 0.005)).abs() < 1e-6, "{losses:?}");
    }
}

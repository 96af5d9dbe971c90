//! Distillation: one network (the student) trained to give another model's
//! outputs (the teacher's) on the same rows. A classifier's student learns
//! the teacher's class probabilities (soft labels: cross-entropy against
//! them), a regressor's the teacher's values (squared error).

use ndarray::ArrayView2;

use super::{Mlp, MlpConfig, Target, TrainingCurve};
use crate::cpu::CpuBackend;

/// Hidden layers a student has at most, and units per layer at most (the
/// bounds a job's `mlp:` learner has).
pub const MAX_STUDENT_LAYERS: usize = 16;
pub const MAX_STUDENT_WIDTH: usize = 65_536;

/// Why a student cannot be trained as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistillError {
    #[error("student mlp:{spec} does not fit: {why}")]
    Student { spec: String, why: String },
    #[error("the teacher's outputs have {teacher} rows for {rows} feature rows")]
    Rows { teacher: usize, rows: usize },
    #[error("no training rows to distill on")]
    NoRows,
    #[error("training the student failed: {0}")]
    Training(String),
}

/// Checks a student's hidden layer widths.
pub fn check_student(hidden: &[usize]) -> Result<(), DistillError> {
    let spec = hidden.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",");
    let refuse = |why: String| Err(DistillError::Student { spec: spec.clone(), why });
    if hidden.is_empty() {
        return refuse("a student needs at least one hidden layer".into());
    }
    if hidden.len() > MAX_STUDENT_LAYERS {
        return refuse(format!("{} hidden layers; at most {MAX_STUDENT_LAYERS}", hidden.len()));
    }
    if let Some(w) = hidden.iter().find(|w| **w == 0 || **w > MAX_STUDENT_WIDTH) {
        return refuse(format!("a layer of {w} units; every layer needs 1 to {MAX_STUDENT_WIDTH}"));
    }
    Ok(())
}

/// Trains a student with `config` (its hidden layers, loss and optimizer)
/// on rows `x` to give `teacher`'s outputs, checking `validation` (rows and
/// the teacher's outputs on them) for early stopping.
pub fn distill(
    x: ArrayView2<'_, f32>,
    teacher: ArrayView2<'_, f32>,
    validation: Option<(ArrayView2<'_, f32>, ArrayView2<'_, f32>)>,
    config: &MlpConfig,
) -> Result<(Mlp, TrainingCurve), DistillError> {
    distill_from(None, x, teacher, validation, config, &mut |_, _| {})
}

/// [`distill`] continuing from `start` (a round of distillation where the
/// shards live starts from the last round's average), calling `on_epoch`
/// with each epoch's loss.
pub fn distill_from(
    start: Option<Mlp>,
    x: ArrayView2<'_, f32>,
    teacher: ArrayView2<'_, f32>,
    validation: Option<(ArrayView2<'_, f32>, ArrayView2<'_, f32>)>,
    config: &MlpConfig,
    on_epoch: &mut dyn FnMut(usize, f64),
) -> Result<(Mlp, TrainingCurve), DistillError> {
    check_student(&config.hidden)?;
    if x.nrows() == 0 {
        return Err(DistillError::NoRows);
    }
    if teacher.nrows() != x.nrows() {
        return Err(DistillError::Rows { teacher: teacher.nrows(), rows: x.nrows() });
    }
    let validation = validation.filter(|(vx, _)| vx.nrows() > 0).map(|(vx, vt)| (vx, Target::Values(vt)));
    Mlp::fit_on(&CpuBackend::new(), start, x, Target::Values(teacher), validation, config, on_epoch)
        .map_err(|e| DistillError::Training(e.to_string()))
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, Axis};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::models::{Loss, ensemble::argmax_rows};

    #[test]
    fn students_that_do_not_fit_are_refused_by_name() {
        let err = |h: &[usize]| check_student(h).unwrap_err().to_string();
        assert!(err(&[]).contains("student mlp: does not fit: a student needs at least one hidden layer"));
        assert!(err(&[64, 0]).contains("student mlp:64,0 does not fit: a layer of 0 units"));
        assert!(err(&[8; 17]).contains("17 hidden layers; at most 16"));
        assert!(err(&[100_000]).contains("a layer of 100000 units"));
        assert!(check_student(&[64]).is_ok());
    }

    /// Noisy two-moons-like classes in 10 dimensions (8 of them noise).
    fn data(rows: usize, seed: u64) -> (Array2<f32>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Array2::zeros((rows, 10));
        let mut labels = Vec::with_capacity(rows);
        for r in 0..rows {
            let class = rng.random_range(0..3usize);
            let angle = rng.random_range(0.0..std::f32::consts::PI) + class as f32 * 2.1;
            x[[r, 0]] = angle.cos() * (1.0 + class as f32 * 0.3) + rng.random_range(-0.45..0.45);
            x[[r, 1]] = angle.sin() * (1.0 + class as f32 * 0.3) + rng.random_range(-0.45..0.45);
            for c in 2..10 {
                x[[r, c]] = rng.random_range(-1.0..1.0);
            }
            labels.push(class);
        }
        (x, labels)
    }

    fn accuracy(out: &Array2<f32>, labels: &[usize]) -> f64 {
        argmax_rows(out).iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64
    }

    /// The check at unit level, on a fixed seed: a student of a
    /// bagging-of-8 keeps at least 80% of the ensemble's gain over a
    /// single member (their mean accuracy).
    #[test]
    fn a_student_keeps_most_of_a_bagged_ensembles_gain() {
        let (x, labels) = data(400, 1);
        let (tx, tlabels) = data(2000, 2);
        let member_config =
            MlpConfig { hidden: vec![64], epochs: 150, l2: 0.0, batch_size: 32, ..MlpConfig::default() };
        let mut rng = StdRng::seed_from_u64(3);
        let mut outputs = Vec::new();
        let mut train_outputs = Vec::new();
        for m in 0..8 {
            let sample: Vec<usize> = (0..x.nrows()).map(|_| rng.random_range(0..x.nrows())).collect();
            let picked: Vec<usize> = sample.iter().map(|&r| labels[r]).collect();
            let config = MlpConfig { seed: m, ..member_config.clone() };
            let target = Target::Classes { labels: &picked, classes: 3 };
            let (member, _) = Mlp::fit(x.select(Axis(0), &sample).view(), target, None, &config);
            outputs.push(member.predict(tx.view()));
            train_outputs.push(member.predict(x.view()));
        }
        let single = outputs.iter().map(|o| accuracy(o, &tlabels)).sum::<f64>() / 8.0;
        let mean = |outs: &[Array2<f32>]| outs.iter().fold(Array2::zeros(outs[0].raw_dim()), |a, o| a + o) / 8.0;
        let ensemble = accuracy(&mean(&outputs), &tlabels);
        let teacher = mean(&train_outputs);
        let config = MlpConfig {
            hidden: vec![64],
            epochs: 150,
            batch_size: 32,
            loss: Loss::SoftmaxCrossEntropy,
            ..MlpConfig::default()
        };
        let (student, _) = distill(x.view(), teacher.view(), None, &config).unwrap();
        let distilled = accuracy(&student.predict(tx.view()), &tlabels);
        let gain = ensemble - single;
        assert!(gain > 0.005, "the ensemble should gain over its members: {ensemble} vs {single}");
        assert!(distilled - single >= 0.8 * gain, "student {distilled}, ensemble {ensemble}, single member {single}");
    }

    #[test]
    fn a_regressor_student_follows_its_teachers_values() {
        let mut rng = StdRng::seed_from_u64(9);
        let x = Array2::from_shape_simple_fn((300, 3), || rng.random_range(-1.0f32..1.0));
        let teacher = x.map_axis(Axis(1), |r| r[0] * 2.0 - r[1] * r[2]).insert_axis(Axis(1));
        let config = MlpConfig { hidden: vec![32], epochs: 200, loss: Loss::SquaredError, ..MlpConfig::default() };
        let (student, _) = distill(x.view(), teacher.view(), None, &config).unwrap();
        let out = student.predict(x.view());
        let rmse = (out.iter().zip(&teacher).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / 300.0).sqrt();
        assert!(rmse < 0.1, "{rmse}");
        assert_eq!(
            distill(x.view(), teacher.slice(ndarray::s![..10, ..]), None, &config).unwrap_err(),
            DistillError::Rows { teacher: 10, rows: 300 }
        );
    }
}

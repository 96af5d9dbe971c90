//! Distillation where the shards live: a trainer whose assignment names a
//! teacher (a model's manifest) trains its student on the teacher's
//! outputs for its shards' rows instead of on their labels. The teacher
//! reads the rows through its own pipeline, the student through the
//! assignment's; both keep the same rows (same label, same classes), which
//! is checked row by row.

use mass_kernels::models::{Loss, Member, Mlp, distill, ensemble::combine};
use mass_protocol::{
    ContentId,
    dataset::{Shard, Split},
    features::FittedPipeline,
    jobs::{Combine, Learner, ModelSpec, Task},
};
use ndarray::Array2;

use super::{
    evaluate::check_model,
    judge,
    learners::{self, Fitted, RowSet},
    task::rows_where,
};
use crate::mesh::Mesh;

/// A model whose outputs a student learns.
pub struct Teacher {
    pipeline: FittedPipeline,
    members: Vec<Member>,
    meta: Option<Mlp>,
    combine: Combine,
}

/// A student's rows with the teacher's outputs on them.
pub struct Taught {
    pub rows: RowSet,
    pub outputs: Array2<f32>,
}

impl Teacher {
    /// The model of manifest `id`, checked against the `student`'s pipeline
    /// (same task and classes) and against its own (members' shapes), since
    /// the assignment comes from a peer.
    pub async fn load(mesh: &Mesh, id: ContentId, student: &FittedPipeline) -> Result<Teacher, String> {
        let manifest = mesh.load_model(id).await.map_err(|e| format!("the teacher: {e}"))?;
        if !manifest.parts.is_empty() {
            return Err(format!("the teacher {id} is composed of other models"));
        }
        let pipeline = mesh.load_pipeline(manifest.pipeline).await.map_err(|e| format!("the teacher: {e}"))?;
        if pipeline.task != student.task || pipeline.classes != student.classes {
            return Err(format!(
                "the teacher {id} predicts {:?} over {} classes and the student {:?} over {}",
                pipeline.task,
                pipeline.classes.len(),
                student.task,
                student.classes.len()
            ));
        }
        let (members, meta) = judge::members(mesh, &manifest.members, manifest.meta).await?;
        Teacher::new(pipeline, members, meta, manifest.combine)
    }

    /// A teacher of these parts, once they fit together (a peer's model
    /// could name members of another shape).
    pub fn new(
        pipeline: FittedPipeline,
        members: Vec<Member>,
        meta: Option<Mlp>,
        combine: Combine,
    ) -> Result<Teacher, String> {
        check_model(&pipeline, &members, &combine, meta.as_ref()).map_err(|e| format!("the teacher: {e}"))?;
        Ok(Teacher { pipeline, members, meta, combine })
    }

    /// The teacher's outputs on `student`, the rows of `shards` that `keep`
    /// picked through the student's pipeline.
    pub fn teach(
        &self,
        shards: &[Shard],
        keep: impl Fn(Split, u64) -> bool + Copy,
        student: RowSet,
    ) -> Result<Taught, String> {
        let mut parts = Vec::with_capacity(shards.len());
        for shard in shards {
            parts.push(rows_where(&self.pipeline, shard, keep)?);
        }
        let rows = RowSet::concat(parts, self.pipeline.task, self.pipeline.features)?;
        if rows.global_rows != student.global_rows {
            return Err(format!(
                "the teacher's pipeline keeps {} rows and the student's {}, not the same ones",
                rows.rows(),
                student.rows()
            ));
        }
        let outputs: Vec<Array2<f32>> = self.members.iter().map(|m| m.predict(rows.x().view())).collect();
        Ok(Taught { rows: student, outputs: combine(&outputs, &self.combine, self.meta.as_ref()) })
    }
}

/// Trains a student network (`spec`'s hidden layers and settings) on the
/// teacher's outputs, from `start` when given: class probabilities under
/// cross-entropy, a regressor's values under squared error. The validation
/// rows' outputs drive early stopping.
pub fn fit_student(
    spec: &ModelSpec,
    task: Task,
    train: &Taught,
    validation: &Taught,
    start: Option<Mlp>,
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, usize, f64),
) -> Result<Fitted, String> {
    let Learner::Mlp { hidden } = &spec.learner else {
        return Err(format!("a student must be a network, not {:?}", spec.learner));
    };
    let mut config = learners::mlp_config(spec, hidden, task, train.rows.rows(), seed);
    config.loss = match task {
        Task::Classification => Loss::SoftmaxCrossEntropy,
        Task::Regression => Loss::SquaredError,
    };
    let epochs = config.epochs;
    let (train_x, validation_x) = (train.rows.x(), validation.rows.x());
    let validation = (validation.rows.rows() > 0).then(|| (validation_x.view(), validation.outputs.view()));
    let (student, curve) =
        distill::distill_from(start, train_x.view(), train.outputs.view(), validation, &config, &mut |epoch, loss| {
            on_epoch(epoch, epochs, loss)
        })
        .map_err(|e| e.to_string())?;
    Ok(Fitted { member: Member::Mlp(student), curve: curve.train_loss, backend: learners::CPU.into() })
}

#[cfg(test)]
mod tests {
    use mass_kernels::models::ensemble::argmax_rows;

    use super::*;
    use crate::fuzz::fixture::fixture;

    fn training_row(split: Split, _: u64) -> bool {
        split == Split::Train
    }

    fn rows(pipeline: &FittedPipeline, shards: &[Shard], keep: fn(Split, u64) -> bool) -> RowSet {
        let parts = shards.iter().map(|s| rows_where(pipeline, s, keep).unwrap()).collect();
        RowSet::concat(parts, pipeline.task, pipeline.features).unwrap()
    }

    #[test]
    fn a_student_learns_the_teachers_answers_on_its_rows() {
        let f = fixture();
        let teacher = Teacher::new(f.pipeline.clone(), f.members.clone(), None, Combine::Mean).unwrap();
        let student_rows = rows(&f.pipeline, &f.shards, training_row);
        let taught = teacher.teach(&f.shards, training_row, student_rows).unwrap();
        assert_eq!(taught.outputs.nrows(), taught.rows.rows());
        let valid = teacher
            .teach(
                &f.shards,
                |s, _| s == Split::Validation,
                rows(&f.pipeline, &f.shards, |s, _| s == Split::Validation),
            )
            .unwrap();
        let spec = ModelSpec { epochs: Some(300), ..ModelSpec::of(Learner::Mlp { hidden: vec![16] }) };
        let mut epochs = 0;
        let fitted =
            fit_student(&spec, f.pipeline.task, &taught, &valid, None, 1, &mut |_, total, _| epochs = total).unwrap();
        assert_eq!(epochs, 300);
        let Member::Mlp(student) = &fitted.member else { panic!("a student is a network") };
        let said = argmax_rows(&student.predict(taught.rows.x().view()));
        let taught_said = argmax_rows(&taught.outputs);
        let agree = said.iter().zip(&taught_said).filter(|(a, b)| a == b).count();
        assert!(agree * 10 >= said.len() * 8, "the student agrees with its teacher on {agree} of {} rows", said.len());
        // A second round continues from the first's weights.
        let again = fit_student(&spec, f.pipeline.task, &taught, &valid, Some(student.clone()), 1, &mut |_, _, _| {});
        assert!(again.is_ok());
    }

    #[test]
    fn rows_the_teacher_does_not_keep_alike_are_refused() {
        let f = fixture();
        let teacher = Teacher::new(f.pipeline.clone(), f.members.clone(), None, Combine::Mean).unwrap();
        let all = rows(&f.pipeline, &f.shards, training_row);
        let fewer = all.select(&(0..all.rows() - 1).collect::<Vec<_>>());
        let refused = teacher.teach(&f.shards, training_row, fewer).err().unwrap();
        assert!(refused.contains("not the same ones"), "{refused}");
    }

    #[test]
    fn a_teacher_whose_parts_do_not_fit_is_refused() {
        let f = fixture();
        let refused = Teacher::new(f.pipeline.clone(), vec![], None, Combine::Mean).err().unwrap();
        assert!(refused.contains("the teacher: a model without members"), "{refused}");
        let weights = Combine::WeightedMean(vec![1.0]);
        let refused = Teacher::new(f.pipeline.clone(), f.members.clone(), None, weights).err().unwrap();
        assert!(refused.contains("weights for"), "{refused}");
        let spec = ModelSpec::of(Learner::Linear);
        let taught = Taught { rows: rows(&f.pipeline, &f.shards, training_row), outputs: Array2::zeros((0, 3)) };
        let refused = fit_student(&spec, f.pipeline.task, &taught, &taught, None, 1, &mut |_, _, _| {}).err().unwrap();
        assert!(refused.contains("a student must be a network"), "{refused}");
    }
}

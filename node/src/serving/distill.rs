//! Distillation where the shards live: the student is trained data-parallel
//! on the teacher's outputs. The dataset's shards are split among as many
//! workers as there are live nodes (at most one per shard), each placed
//! where its shards are, like a data-parallel job's. In each of [`ROUNDS`]
//! rounds every worker computes the teacher's outputs on its own rows
//! ([`crate::jobs::teacher`]), trains the student from the last round's
//! average on them and stores it; the next round starts from the robust
//! average of what the workers stored. No node reads every shard, and
//! the asking node only passes blob ids from round to round.

use std::collections::BTreeSet;

use futures::future::join_all;
use mass_kernels::models::Mlp;
use mass_protocol::{
    ContentId,
    api::PeerState,
    dataset::DatasetManifest,
    jobs::{Assignment, ModelSpec, Placement, TaskRecord},
};
use tracing::{info, warn};

use super::router::ServeError;
use crate::{
    jobs::{driver, task},
    membership::GetPeers,
    mesh::Mesh,
};

/// Rounds of training and averaging. In each, a worker trains the epochs a
/// network gets for its rows (the step budget, early stopping on).
pub const ROUNDS: usize = 3;

/// What the workers made.
pub struct Student {
    pub network: Mlp,
    /// The workers' mean training loss per epoch, round after round.
    pub curve: Vec<f64>,
    /// The nodes that trained a part of it.
    pub trained_on: Vec<String>,
}

/// What one distillation asks of the mesh.
pub struct Distillation<'a> {
    /// Names the work in the progress gossiped (the compression request's blob).
    pub job: ContentId,
    /// The teacher's manifest.
    pub teacher: ContentId,
    /// The pipeline the student reads.
    pub pipeline: ContentId,
    pub data: &'a DatasetManifest,
    /// The student's learner and settings.
    pub spec: ModelSpec,
    pub seed: u64,
}

/// Trains the student where the shards live; fails when no worker
/// finishes a round.
pub async fn distill(mesh: &Mesh, asked: Distillation<'_>) -> Result<Student, ServeError> {
    let shards: Vec<ContentId> = asked.data.shards.iter().map(|s| s.id).collect();
    let views = mesh.membership.send(GetPeers).await.unwrap_or_default();
    let live = views.iter().filter(|v| v.state == PeerState::Up).count();
    let workers = live.clamp(1, shards.len().max(1));
    let tasks: Vec<TaskRecord> = (0..workers)
        .map(|w| TaskRecord::new(shards.iter().skip(w).step_by(workers).copied().collect(), asked.seed))
        .collect();
    let plans = driver::plan_trainers(mesh, &tasks, Placement::default()).await;
    let (mut start, mut curve, mut trained_on) = (Vec::new(), Vec::new(), BTreeSet::new());
    for round in 0..ROUNDS {
        let runs = tasks.iter().zip(&plans).enumerate().map(|(index, (task, order))| {
            let work = Assignment {
                job: asked.job,
                task: index as u32,
                shards: task.shards.clone(),
                pipeline: asked.pipeline,
                spec: asked.spec.clone(),
                seed: asked.seed,
                start: start.clone(),
                holdout: false,
                setup: None,
                boost_from: vec![],
                fold: None,
                teacher: Some(asked.teacher),
            };
            driver::train_somewhere(mesh, work, order.clone())
        });
        let (mut finished, mut curves, mut failures) = (Vec::new(), Vec::new(), Vec::new());
        for (index, result) in join_all(runs).await.into_iter().enumerate() {
            match result {
                Ok((peer, trained)) => {
                    info!(round, worker = index, %peer, rows = trained.rows, "distillation worker finished");
                    finished.push((trained.weights, trained.rows));
                    curves.push(trained.curve);
                    trained_on.insert(peer);
                }
                Err(e) => {
                    warn!(round, worker = index, "distillation worker left out of this round: {e}");
                    failures.push(e);
                }
            }
        }
        if finished.is_empty() {
            return Err(ServeError::Unavailable(format!(
                "no worker finished round {round} of the distillation: {}",
                failures.join("; ")
            )));
        }
        curve.extend(mean_curve(&curves));
        start = finished;
    }
    let network = task::average(mesh, &start).await.map_err(ServeError::Unavailable)?;
    Ok(Student { network, curve, trained_on: trained_on.into_iter().collect() })
}

/// The mean of the curves, epoch by epoch, as long as the shortest.
fn mean_curve(curves: &[Vec<f64>]) -> Vec<f64> {
    let epochs = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..epochs).map(|e| curves.iter().map(|c| c[e]).sum::<f64>() / curves.len() as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_averaged_epoch_by_epoch_as_long_as_the_shortest() {
        assert_eq!(mean_curve(&[vec![1.0, 2.0, 3.0], vec![3.0, 4.0]]), vec![2.0, 3.0]);
        assert!(mean_curve(&[]).is_empty());
    }
}

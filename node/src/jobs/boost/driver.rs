//! Driving a boosted job across the nodes that hold its shards.
//!
//! Each shard's rows stay on one of its homes (a worker). Every round the
//! workers compute their rows' gradients; then, split after split, every
//! worker builds the histogram of the smaller new leaf for its rows, and
//! each owner merges the slice of features it owns from all workers, gets
//! the sibling by subtraction and finds its best split; the driver only
//! picks the best of the owners' answers and says which leaf to split next.
//! On a narrow set the driver is the only owner (one exchange a split).
//! Sums are exact integers, so the trees are the ones a single process
//! growing on all rows would get, whichever nodes take part. The job is
//! checkpointed every few seconds of rounds; a new driver reopens the rows
//! with the checkpointed rounds' trees and carries on.

use futures::future::join_all;
use libp2p::PeerId;
use mass_kernels::models::gbdt::{
    BoostSetup, Gbdt, Stopper,
    histogram::{BinSum, Layout},
    split::{Candidate, better},
    tree::{Grower, Tree},
};
use mass_protocol::{
    ContentId,
    dataset::DatasetManifest,
    jobs::{JobRecord, TrainingProgress},
    storage::BlobKind,
};
use rand::Rng;
use tracing::{debug, info, warn};

use super::{
    messages::{BoostReply, BoostRequest, Generation, MergeItem},
    session::{feature_slices, owner_count},
    sessions::call,
};
use crate::{
    jobs::{
        checkpoint_due,
        driver::{load_blob, step},
        machine::{BoostRound, Drive, Event, StepError},
    },
    mesh::Mesh,
    placement::{self, Candidate as Ranked},
    replication::homes,
};

/// A worker: a peer and the shards whose rows it holds.
#[derive(Debug, Clone)]
struct Worker {
    peer: PeerId,
    shards: Vec<ContentId>,
}

/// Which live node holds each shard's rows: one of its homes, the one with
/// the fewest rows so far (ties by rank for the job), so rows spread over
/// the nodes that have them and none move. Shards with no live home go to
/// the first live node (it fetches them).
async fn plan_workers(mesh: &Mesh, job: &ContentId, manifest: &DatasetManifest) -> Vec<Worker> {
    let mut live = mesh.up_peers().await;
    live.push(mesh.net.local_peer_id());
    live.sort_by_key(|p| p.to_bytes());
    let mut load: std::collections::HashMap<PeerId, u64> = std::collections::HashMap::new();
    let mut workers: Vec<Worker> = Vec::new();
    for shard in &manifest.shards {
        let key = [job.as_bytes().as_slice(), shard.id.as_bytes()].concat();
        let keys: Vec<Vec<u8>> = homes(&shard.id, &live, 2).iter().map(|p| p.to_bytes()).collect();
        let ranked: Vec<PeerId> = placement::rank(&key, keys.iter().map(|id| Ranked { id, weight: 1.0 }))
            .into_iter()
            .filter_map(|b| PeerId::from_bytes(b).ok())
            .collect();
        let Some(peer) = ranked.iter().min_by_key(|p| load.get(*p).copied().unwrap_or(0)).or(live.first()).copied()
        else {
            continue;
        };
        *load.entry(peer).or_default() += shard.rows;
        match workers.iter_mut().find(|w| w.peer == peer) {
            Some(w) => w.shards.push(shard.id),
            None => workers.push(Worker { peer, shards: vec![shard.id] }),
        }
    }
    workers
}

/// Sends `request` to every worker at once; all must answer.
async fn to_all(mesh: &Mesh, peers: &[PeerId], request: impl Fn() -> BoostRequest) -> Result<Vec<BoostReply>, String> {
    join_all(peers.iter().map(|p| call(mesh, *p, request()))).await.into_iter().collect()
}

/// Each worker's slice of the features (empty for a worker that owns
/// none) and the owners, in worker order. With one owner, the driver owns
/// all when it holds rows: each split is then one exchange, its own
/// pulls from the workers.
fn assign_slices(layout: &Layout, workers: &[PeerId], driver: PeerId) -> (Vec<(u32, u32)>, Vec<PeerId>) {
    let ranges = feature_slices(layout, owner_count(layout.total_bins(), workers.len()));
    let mut order: Vec<usize> = (0..workers.len()).collect();
    order.sort_by_key(|&i| workers[i] != driver);
    let none = layout.features() as u32;
    let mut slices = vec![(none, none); workers.len()];
    let mut owners = Vec::with_capacity(ranges.len());
    for (range, &i) in ranges.iter().zip(&order) {
        slices[i] = (range.start as u32, range.end as u32);
        owners.push(workers[i]);
    }
    (slices, owners)
}

/// Grows one round's trees (one per output) in lockstep: each step asks
/// every owner for the best splits of the leaves made by the last split of
/// each tree.
async fn grow_round(
    mesh: &Mesh,
    job: ContentId,
    generation: Generation,
    setup: &BoostSetup,
    peers: &[PeerId],
    roots: Vec<BinSum>,
) -> Result<Vec<Tree>, String> {
    let mut growers: Vec<Grower> = roots.iter().map(|r| Grower::new(setup.params.shape, *r)).collect();
    let mut items: Vec<MergeItem> = roots
        .iter()
        .enumerate()
        .map(|(k, root)| MergeItem {
            output: k as u32,
            order: None,
            small: 0,
            small_sum: *root,
            want_small: setup.splittable(root.n),
            large: None,
        })
        .collect();
    loop {
        for item in &items {
            let grower = &mut growers[item.output as usize];
            if !item.want_small {
                grower.offer(item.small, None);
            }
            if let Some((large, _, false)) = item.large {
                grower.offer(large, None);
            }
        }
        let asked: Vec<MergeItem> =
            items.iter().copied().filter(|i| i.want_small || i.large.is_some_and(|l| l.2)).collect();
        if !asked.is_empty() {
            let answers = to_all(mesh, peers, || BoostRequest::Merge { job, generation, items: asked.clone() }).await?;
            let mut best: std::collections::BTreeMap<(u32, u32), Option<Candidate>> = Default::default();
            for answer in answers {
                let BoostReply::Best(found) = answer else { return Err("unexpected answer to a merge".into()) };
                for (output, node, candidate) in found {
                    let slot = best.entry((output, node)).or_insert(None);
                    *slot = better(*slot, candidate);
                }
            }
            for ((output, node), candidate) in best {
                if let Some(grower) = growers.get_mut(output as usize) {
                    grower.offer(node, candidate);
                }
            }
        }
        items.clear();
        for (k, grower) in growers.iter_mut().enumerate() {
            while let Some(order) = grower.next() {
                let (small, large) = order.children();
                let sum_of = |node| if node == order.left { order.left_sum } else { order.right_sum };
                let want = |node: u32, grower: &Grower| grower.may_split(node) && setup.splittable(sum_of(node).n);
                let (want_small, want_large) = (want(small, grower), want(large, grower));
                if !want_small && !want_large {
                    grower.offer(small, None);
                    grower.offer(large, None);
                    continue;
                }
                items.push(MergeItem {
                    output: k as u32,
                    order: Some(order),
                    small,
                    small_sum: sum_of(small),
                    want_small,
                    large: Some((large, sum_of(large), want_large)),
                });
                break;
            }
        }
        if items.is_empty() {
            break;
        }
    }
    Ok(growers.into_iter().map(|g| setup.finish_tree(g)).collect())
}

/// Runs the remaining rounds of a boosted job and returns the model. Each
/// round's outcome goes to the job's state machine, which checkpoints it.
pub async fn boost(
    mesh: &Mesh,
    drive: &mut Drive,
    manifest: &DatasetManifest,
    pipeline: ContentId,
) -> Result<Gbdt, StepError> {
    let setup_id = drive.record().setup.ok_or_else(|| StepError::Invalid("a boosted job without its setup".into()))?;
    let setup: BoostSetup = load_blob(mesh, setup_id, "boosting setup").await?;
    let rounds = setup.params.rounds;
    let job = drive.record().id;
    let state = drive.record().boost.clone().unwrap_or_default();
    let finished = state.stopped || state.rounds.len() >= rounds;
    if !finished {
        let workers = plan_workers(mesh, &job, manifest).await;
        let peers: Vec<PeerId> = workers.iter().map(|w| w.peer).collect();
        let generation: Generation = rand::rng().random();
        let layout = Layout::new(&setup.bins);
        let (slices, owners) = assign_slices(&layout, &peers, mesh.net.local_peer_id());
        let names: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
        let opened = join_all(workers.iter().zip(&slices).map(|(w, slice)| {
            let request = BoostRequest::Open {
                job,
                generation,
                setup: setup_id,
                pipeline,
                shards: w.shards.clone(),
                rounds: state.rounds.clone(),
                slice: *slice,
                workers: names.clone(),
            };
            call(mesh, w.peer, request)
        }))
        .await;
        for (w, result) in workers.iter().zip(opened) {
            result.map_err(|e| format!("worker {} could not take its rows: {e}", w.peer))?;
        }
        let opened = workers.iter().map(|w| (w.peer.to_string(), w.shards.clone())).collect();
        step(mesh, drive, Event::BoostOpened { workers: opened }).await?;
        info!(%job, workers = workers.len(), from = state.rounds.len(), "boosting across the shards' homes");
        let result = run_rounds(mesh, drive, &setup, &peers, &owners, generation, manifest).await;
        // Best effort: a worker that misses this drops the rows when idle.
        let _ = to_all(mesh, &peers, || BoostRequest::Close { job }).await;
        result?;
    }
    let state = drive.record().boost.clone().unwrap_or_default();
    let outputs = setup.objective.scores_per_row();
    let kept = Stopper { best: state.best.map(|(r, l)| (r as usize, l)) }
        .rounds_kept(state.rounds.len(), setup.params.patience);
    let mut trees = Vec::with_capacity(kept * outputs);
    for id in state.rounds.iter().take(kept) {
        trees.extend(load_blob::<Vec<Tree>>(mesh, *id, "boosting round").await?);
    }
    Ok(Gbdt { bins: setup.bins, objective: setup.objective, init: setup.init, trees })
}

async fn run_rounds(
    mesh: &Mesh,
    drive: &mut Drive,
    setup: &BoostSetup,
    peers: &[PeerId],
    owners: &[PeerId],
    generation: Generation,
    manifest: &DatasetManifest,
) -> Result<(), StepError> {
    let job = drive.record().id;
    let outputs = setup.objective.scores_per_row();
    let rounds = setup.params.rounds;
    let mut checkpointed = std::time::Instant::now();
    loop {
        let state = drive.record().boost.clone().unwrap_or_default();
        let round = state.rounds.len();
        if state.stopped || round >= rounds {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let starts = to_all(mesh, peers, || BoostRequest::StartRound { job, generation, round: round as u32 }).await?;
        let mut roots = vec![BinSum::default(); outputs];
        for start in starts {
            let BoostReply::Roots(sums) = start else {
                return Err(StepError::Unavailable("unexpected answer to a round start".into()));
            };
            for (total, part) in roots.iter_mut().zip(sums) {
                *total += part;
            }
        }
        let started = began.elapsed();
        let trees = grow_round(mesh, job, generation, setup, owners, roots).await?;
        let grown = began.elapsed();
        let ends = to_all(mesh, peers, || BoostRequest::EndRound {
            job,
            generation,
            round: round as u32,
            trees: trees.clone(),
        })
        .await?;
        let (train, validation) = shard_losses(drive.record(), manifest, ends)?;
        let ended = began.elapsed();
        let id = mesh.save_kept(&trees, BlobKind::Model).await?;
        let saved = began.elapsed();
        let mut stopper = Stopper { best: state.best.map(|(r, l)| (r as usize, l)) };
        let stopped = match validation {
            Some(loss) => stopper.record(round, loss, setup.params.patience),
            None => state.stopped,
        };
        let best = stopper.best.map(|(r, l)| (r as u32, l));
        let progress = TrainingProgress { job, task: 0, epoch: round as u32 + 1, epochs: rounds as u32, loss: train };
        mesh.progress.record(mesh.peer_id.clone(), progress.clone());
        mesh.net.publish_progress(progress);
        let checkpoint = checkpoint_due(checkpointed.elapsed(), round + 1 == rounds);
        let done =
            BoostRound { round, trees: id, train_loss: train, validation_loss: validation, stopped, best, checkpoint };
        step(mesh, drive, Event::BoostRound(done)).await?;
        if checkpoint {
            checkpointed = std::time::Instant::now();
        }
        debug!(%job, round, ?started, ?grown, ?ended, ?saved, total = ?began.elapsed(), "boosting round timed");
    }
}

/// Mean training and validation loss from the workers' per-shard sums,
/// added in the dataset's shard order so the figures (and early stopping)
/// do not depend on which node held which shard.
fn shard_losses(
    record: &JobRecord,
    manifest: &DatasetManifest,
    replies: Vec<BoostReply>,
) -> Result<(f64, Option<f64>), String> {
    let state = record.boost.as_ref().expect("set by boost");
    let mut by_shard: std::collections::HashMap<ContentId, ((f64, u64), (f64, u64))> = Default::default();
    for ((_, shards), reply) in state.workers.iter().zip(replies) {
        let BoostReply::Losses { train, validation } = reply else {
            return Err("unexpected answer to a round end".into());
        };
        if train.len() != shards.len() || validation.len() != shards.len() {
            return Err("a worker answered for other shards than it holds".into());
        }
        for ((shard, t), v) in shards.iter().zip(train).zip(validation) {
            by_shard.insert(*shard, (t, v));
        }
    }
    let (mut train, mut train_rows, mut valid, mut valid_rows) = (0.0, 0u64, 0.0, 0u64);
    for shard in &manifest.shards {
        let ((t, tn), (v, vn)) = by_shard.get(&shard.id).copied().ok_or("a shard's losses are missing")?;
        train += t;
        train_rows += tn;
        valid += v;
        valid_rows += vn;
    }
    if train_rows == 0 {
        warn!(job = %record.id, "no training rows answered");
    }
    let validation = (valid_rows > 0).then(|| valid / valid_rows as f64);
    Ok((train / train_rows.max(1) as f64, validation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_kernels::models::gbdt::bins::FeatureBins;

    fn layout(features: usize, bins: usize) -> Layout {
        let upper: Vec<f32> = (0..bins).map(|i| i as f32).collect();
        Layout::new(&vec![FeatureBins::Numeric { upper }; features])
    }

    #[test]
    fn the_driver_owns_every_feature_of_a_narrow_set_and_the_others_none() {
        let workers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let (slices, owners) = assign_slices(&layout(10, 100), &workers, workers[1]);
        assert_eq!(owners, vec![workers[1]]);
        assert_eq!(slices, vec![(10, 10), (0, 10), (10, 10)]);
        // A driver without rows: the first worker owns them.
        let (slices, owners) = assign_slices(&layout(10, 100), &workers, PeerId::random());
        assert_eq!((owners, slices[0]), (vec![workers[0]], (0, 10)));
    }

    #[test]
    fn a_wide_set_is_sliced_among_owners_driver_first() {
        let workers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let (slices, owners) = assign_slices(&layout(800, 250), &workers, workers[2]);
        assert_eq!(owners, vec![workers[2], workers[0], workers[1]]);
        assert_eq!((slices[2].0, slices[1].1), (0, 800));
        assert_eq!((slices[2].1, slices[0].1), (slices[0].0, slices[1].0));
    }
}

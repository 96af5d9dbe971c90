//! The boosted jobs this node takes part in, and the requests that drive
//! them: from peers (`Request::Boost`) or from a driver on this node, which
//! calls [`call`] and reaches its own sessions without the network.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::{BoxFuture, FutureExt, join_all};
use libp2p::PeerId;
use mass_kernels::models::gbdt::{BoostSetup, histogram::Layout, tree::Tree};
use mass_protocol::{
    ContentId,
    dataset::Split,
    rpc::{Request, Response},
};
use tracing::debug;

use super::{
    messages::{self, BoostReply, BoostRequest, SliceItem},
    session::{Owned, Plan, Rows},
};
use crate::{compute::Work, jobs::task::training_rows, mesh::Mesh};

/// Boosted jobs a node holds rows for at once; past it, a driver is told
/// this node is busy and picks another home of the shards.
pub const MAX_SESSIONS: usize = 4;
/// A session nobody used for this long is dropped (its driver died and
/// its successor opened sessions elsewhere, or the job ended).
pub const IDLE: Duration = Duration::from_secs(600);

struct Session {
    plan: Arc<Plan>,
    rows: Arc<tokio::sync::Mutex<Rows>>,
    owned: Arc<tokio::sync::Mutex<Owned>>,
    round: AtomicU32,
    used: Mutex<Instant>,
}

#[derive(Clone, Default)]
pub struct BoostSessions {
    inner: Arc<Mutex<HashMap<ContentId, Arc<Session>>>>,
}

impl BoostSessions {
    fn get(&self, job: &ContentId, generation: u64) -> Result<Arc<Session>, String> {
        let sessions = self.inner.lock().expect("boost sessions lock");
        match sessions.get(job) {
            Some(s) if s.plan.generation == generation => {
                *s.used.lock().expect("session clock") = Instant::now();
                Ok(s.clone())
            }
            _ => Err(format!("no rows are held here for job {job} (generation {generation}); open them first")),
        }
    }

    /// Room for job `job`'s rows: drops idle sessions, and refuses when full
    /// of other jobs.
    fn make_room(&self, job: &ContentId) -> Result<(), String> {
        let mut sessions = self.inner.lock().expect("boost sessions lock");
        sessions.retain(|_, s| s.used.lock().expect("session clock").elapsed() < IDLE);
        sessions.remove(job);
        if sessions.len() >= MAX_SESSIONS {
            return Err(format!("busy: this node holds rows for {MAX_SESSIONS} boosted jobs already"));
        }
        Ok(())
    }

    pub fn sessions(&self) -> usize {
        self.inner.lock().expect("boost sessions lock").len()
    }
}

/// Sends `request` to `peer`'s sessions (this node's own without the network).
pub fn call(mesh: &Mesh, peer: PeerId, request: BoostRequest) -> BoxFuture<'_, Result<BoostReply, String>> {
    async move {
        if peer == mesh.net.local_peer_id() {
            return handle(mesh, request).await;
        }
        let bytes = messages::encode(&request)?;
        match mesh.net.request_within(peer, Request::Boost(bytes), crate::net::client::WORK_TIMEOUT).await {
            Ok(Response::Boost(bytes)) => messages::decode(&bytes),
            Ok(Response::Error(e)) => Err(format!("{peer}: {}", e.message)),
            Ok(_) => Err(format!("{peer}: unexpected answer to a boost request")),
            Err(e) => Err(format!("{peer}: {e}")),
        }
    }
    .boxed()
}

/// Answers one request for a boosted job.
pub async fn handle(mesh: &Mesh, request: BoostRequest) -> Result<BoostReply, String> {
    let sessions = &mesh.boost;
    match request {
        BoostRequest::Open { job, generation, setup, pipeline, shards, rounds, slice, workers } => {
            sessions.make_room(&job)?;
            let setup: BoostSetup = mesh.load(setup).await?;
            let pipeline = mesh.load_pipeline(pipeline).await?;
            let layout = Layout::new(&setup.bins);
            let slice = slice.0 as usize..slice.1 as usize;
            setup.check(&pipeline).map_err(|e| format!("boosting setup: {e}"))?;
            if slice.start > slice.end || slice.end > layout.features() {
                return Err("the feature slice does not fit the pipeline".into());
            }
            let mut loaded = Vec::new();
            for id in &shards {
                loaded.push(mesh.load_shard(*id).await?);
            }
            let mut trees: Vec<Vec<Tree>> = Vec::new();
            for id in &rounds {
                let round: Vec<Tree> = mesh.load(*id).await?;
                for tree in &round {
                    tree.validate(layout.features())?;
                }
                trees.push(round);
            }
            let plan = Arc::new(Plan { job, generation, setup, layout, slice, workers });
            let building = plan.clone();
            let rows = mesh
                .compute
                .run_waiting(Work::Boosting, move || -> Result<Rows, String> {
                    let mut train = Vec::new();
                    let mut validation = Vec::new();
                    for shard in &loaded {
                        let (t, v) = training_rows(&pipeline, shard, |s, _| s == Split::Train, false)?;
                        train.push(t);
                        validation.push(v);
                    }
                    Ok(Rows::new(&building, &train, &validation, &trees))
                })
                .await?;
            let held = rows.rows();
            let session = Session {
                plan,
                rows: Arc::new(tokio::sync::Mutex::new(rows)),
                owned: Arc::default(),
                round: AtomicU32::new(0),
                used: Mutex::new(Instant::now()),
            };
            sessions.inner.lock().expect("boost sessions lock").insert(job, Arc::new(session));
            debug!(%job, rows = held, "holding rows for a boosted job");
            Ok(BoostReply::Opened { rows: held })
        }
        BoostRequest::StartRound { job, generation, round } => {
            let session = sessions.get(&job, generation)?;
            session.round.store(round, Ordering::SeqCst);
            session.owned.lock().await.clear();
            let mut rows = session.rows.clone().lock_owned().await;
            let plan = session.plan.clone();
            let roots = mesh.compute.run_waiting(Work::Boosting, move || rows.start_round(&plan, round)).await;
            Ok(BoostReply::Roots(roots))
        }
        BoostRequest::Slices { job, generation, features, items } => {
            let session = sessions.get(&job, generation)?;
            let features = features.0 as usize..features.1 as usize;
            if features.start > features.end || features.end > session.plan.layout.features() {
                return Err("the feature range is outside the features".into());
            }
            let mut rows = session.rows.clone().lock_owned().await;
            let plan = session.plan.clone();
            let slices = mesh.compute.run_waiting(Work::Boosting, move || rows.slices(&plan, features, &items)).await;
            Ok(BoostReply::Slices(slices.map_err(|e| e.to_string())?))
        }
        BoostRequest::Merge { job, generation, items } => {
            let session = sessions.get(&job, generation)?;
            let plan = session.plan.clone();
            let wanted: Vec<SliceItem> =
                items.iter().map(|i| SliceItem { output: i.output, order: i.order, node: i.small }).collect();
            let slice = (plan.slice.start as u32, plan.slice.end as u32);
            let count = wanted.len();
            let pulls = plan.workers.iter().map(|w| {
                let request = BoostRequest::Slices { job, generation, features: slice, items: wanted.clone() };
                async move {
                    let peer: PeerId = w.parse().map_err(|_| format!("worker '{w}' is not a peer id"))?;
                    match call(mesh, peer, request).await? {
                        BoostReply::Slices(slices) if slices.len() == count => Ok(slices),
                        _ => Err(format!("{w}: unexpected answer to a slice request")),
                    }
                }
            });
            let parts: Vec<_> = join_all(pulls).await.into_iter().collect::<Result<_, String>>()?;
            let round = session.round.load(Ordering::SeqCst);
            let mut owned = session.owned.clone().lock_owned().await;
            let best =
                mesh.compute.run_waiting(Work::Boosting, move || owned.merge(&plan, round, &items, &parts)).await;
            Ok(BoostReply::Best(best))
        }
        BoostRequest::EndRound { job, generation, round: _, trees } => {
            let session = sessions.get(&job, generation)?;
            let outputs = session.plan.setup.objective.scores_per_row();
            if trees.len() != outputs {
                return Err(format!("a round has {outputs} trees, not {}", trees.len()));
            }
            for tree in &trees {
                tree.validate(session.plan.layout.features())?;
            }
            let mut rows = session.rows.clone().lock_owned().await;
            let (train, validation) = mesh.compute.run_waiting(Work::Boosting, move || rows.end_round(&trees)).await;
            Ok(BoostReply::Losses { train, validation })
        }
        BoostRequest::Close { job } => {
            sessions.inner.lock().expect("boost sessions lock").remove(&job);
            Ok(BoostReply::Closed)
        }
    }
}

//! Answering a prediction from any node: locally when this node holds the
//! model version, else on a replica picked by load (the less busy of two
//! random replicas, by their advertised queue depth), retrying another
//! replica on failure, all within one deadline.

use std::time::Duration;

use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::PeerId;
use mass_protocol::{
    ContentId,
    jobs::Task,
    rpc::{Request, Response, RpcErrorKind},
    serving::{PredictCall, Predicted, Prediction, Rows},
};
use tokio::time::Instant;
use tracing::debug;

use super::{choice, inference::InferenceError, peers::PeersSeen, registry};
use crate::mesh::Mesh;

/// Why a prediction was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("no replica answered within the {0:?} deadline")]
    Deadline(Duration),
}

impl From<registry::RegistryError> for ServeError {
    fn from(e: registry::RegistryError) -> Self {
        match e {
            registry::RegistryError::NotFound(m) => ServeError::NotFound(m),
            other => ServeError::Unavailable(other.to_string()),
        }
    }
}

/// Predicts `rows` with the version of model `name` served now.
pub async fn predict(mesh: &Mesh, name: &str, rows: Rows, allow_missing: bool) -> Result<Prediction, ServeError> {
    let (manifest, version) = registry::current(mesh, name).await?;
    let started = Instant::now();
    let answer = predict_version(mesh, name, manifest, version, rows, allow_missing).await;
    mesh.metrics.prediction(name, started.elapsed().as_secs_f64());
    answer
}

async fn predict_version(
    mesh: &Mesh,
    name: &str,
    manifest: ContentId,
    version: u64,
    rows: Rows,
    allow_missing: bool,
) -> Result<Prediction, ServeError> {
    let call = PredictCall { model: name.to_owned(), manifest, version, rows, allow_missing };
    let deadline = Instant::now() + mesh.serving.config.deadline;
    let seen = mesh.serving.peers.get(mesh).await;
    // Busy here: a replica may have room.
    if holds(mesh, manifest, &seen) && !mesh.serving.inference.is_full() {
        return serve_local_within(mesh, call, deadline).await;
    }
    if mesh.serving.demand.forwarded(manifest, mesh.serving.config.hot_after) {
        // Hot here: take a copy in the background; once loaded, this node
        // answers itself.
        let mesh = mesh.clone();
        tokio::spawn(async move {
            match mesh.serving.models.get(&mesh, manifest).await {
                Ok(_) => tracing::info!(%manifest, "serving a hot model here too"),
                Err(e) => debug!(%manifest, "cannot take a copy of a hot model: {e}"),
            }
        });
    }
    forward(mesh, call, deadline, &seen).await
}

/// Runs `call` on this node, loading the version if needed.
pub async fn serve_local(mesh: &Mesh, call: PredictCall) -> Result<Prediction, ServeError> {
    let model = mesh.serving.models.get(mesh, call.manifest).await.map_err(ServeError::Unavailable)?;
    let probabilities =
        mesh.serving.inference.run(model.clone(), call.rows, call.allow_missing).await.map_err(|e| match e {
            InferenceError::Overloaded(_) => ServeError::Overloaded(e.to_string()),
            InferenceError::BadInput(m) => ServeError::BadInput(m),
            InferenceError::Stopped => ServeError::Unavailable(e.to_string()),
        })?;
    let (predictions, probabilities, classes) = match model.manifest.task {
        Task::Classification => {
            let classes = &model.manifest.classes;
            let probabilities = probabilities.mapv(|p| p as f32);
            let predictions = mass_kernels::models::ensemble::argmax_rows(&probabilities)
                .into_iter()
                .map(|c| Predicted::Class(classes.get(c).cloned().unwrap_or_default()))
                .collect();
            (predictions, probabilities.rows().into_iter().map(|r| r.to_vec()).collect(), classes.clone())
        }
        Task::Regression => {
            let values = probabilities.column(0).iter().map(|v| Predicted::Value(*v)).collect();
            (values, vec![], vec![])
        }
    };
    Ok(Prediction {
        model: call.model,
        version: call.version,
        manifest: call.manifest,
        predictions,
        probabilities,
        classes,
        served_by: mesh.peer_id.clone(),
    })
}

/// Whether this node serves version `id` itself: loaded already, or one of
/// its replicas (which load it on first use if the keeper has not yet).
/// Other nodes that happen to store its blobs (the trainer, the driver)
/// forward, so load goes where the replicas are.
fn holds(mesh: &Mesh, id: ContentId, seen: &PeersSeen) -> bool {
    mesh.serving.models.is_loaded(&id) || super::replica_set_seen(mesh, &id, seen).contains(&mesh.net.local_peer_id())
}

/// The replicas of version `id` among the live peers, best first
/// ([`choice`]), those that lost a hedge lately last, then every other
/// live peer.
fn replicas(mesh: &Mesh, id: ContentId, seen: &PeersSeen) -> Vec<PeerId> {
    let local = mesh.net.local_peer_id();
    let replica_set = super::replica_set_seen(mesh, &id, seen);
    let mut chosen = choice::replicas_first(&replica_set, &local, |p| seen.depth(p), &mut rand::rng());
    // A replica that lost a hedge lately is asked after the others.
    mesh.serving.hedging.order(&mut chosen, std::time::Instant::now());
    let live: Vec<PeerId> = seen.depths.iter().map(|(p, _)| *p).collect();
    choice::then_the_rest(chosen, &live, &local, &mut rand::rng())
}

/// Answers `call` on this node within `deadline`: loading a version can
/// take longer than a request may.
async fn serve_local_within(mesh: &Mesh, call: PredictCall, deadline: Instant) -> Result<Prediction, ServeError> {
    match tokio::time::timeout_at(deadline, serve_local(mesh, call)).await {
        Ok(answer) => answer,
        Err(_) => Err(ServeError::Deadline(mesh.serving.config.deadline)),
    }
}

/// Sends `call` to replicas in turn until one answers, within `deadline`;
/// this node runs it itself when no peer can. Once the version has a
/// recent p95 ([`super::hedge`]), a replica slower than it gets company
/// when the hedging budget allows (5% of requests): the next replica is
/// asked too, the first answer wins and the other is dropped.
async fn forward(
    mesh: &Mesh,
    call: PredictCall,
    deadline: Instant,
    seen: &PeersSeen,
) -> Result<Prediction, ServeError> {
    let mut failures = Vec::new();
    let candidates = replicas(mesh, call.manifest, seen);
    let version = call.manifest;
    let hedge_after = mesh.serving.hedging.hedge_after(&version);
    let request = Request::Predict(Box::new(call));
    let mut waiting = candidates.iter().copied().enumerate();
    let mut running = FuturesUnordered::new();
    let mut hedged = false;
    let first = candidates.first().copied();
    mesh.metrics.forwarded();
    mesh.serving.hedging.forwarded();
    // `None` when too little time is left to ask anyone.
    let ask = |attempt: usize, peer: PeerId| {
        let budget = choice::budget(deadline.saturating_duration_since(Instant::now()), attempt, candidates.len())?;
        let (mesh, request) = (mesh.clone(), request.clone());
        Some(async move {
            let sent = Instant::now();
            let outcome = tokio::time::timeout(budget, mesh.net.predict(peer, request)).await;
            (peer, sent.elapsed(), budget, outcome)
        })
    };
    loop {
        if running.is_empty() {
            let Some(asked) = waiting.next().and_then(|(attempt, peer)| ask(attempt, peer)) else { break };
            running.push(asked);
        }
        if Instant::now() >= deadline {
            return Err(ServeError::Deadline(mesh.serving.config.deadline));
        }
        let hedge_at = match hedge_after {
            Some(after) if !hedged && running.len() == 1 => Instant::now() + after,
            _ => deadline,
        };
        tokio::select! {
            Some((peer, took, budget, outcome)) = running.next() => {
                match outcome {
                    Ok(Ok(Response::Predicted(prediction))) => {
                        mesh.serving.hedging.record(version, took);
                        if hedged && let Some(first) = first.filter(|f| *f != peer) {
                            mesh.serving.hedging.slow(first, std::time::Instant::now());
                        }
                        return Ok(*prediction);
                    }
                    Ok(Ok(Response::Error(e))) if e.kind == RpcErrorKind::BadInput => {
                        return Err(ServeError::BadInput(e.message));
                    }
                    Ok(Ok(Response::Error(e))) => failures.push(format!("{peer}: {}", e.message)),
                    Ok(Ok(_)) => failures.push(format!("{peer}: unexpected answer")),
                    Ok(Err(e)) => failures.push(e.to_string()),
                    Err(_) => {
                        mesh.serving.hedging.record(version, took);
                        mesh.serving.hedging.slow(peer, std::time::Instant::now());
                        failures.push(format!("{peer}: no answer within {budget:?}"));
                    }
                }
                debug!(%peer, "replica failed, trying the next: {}", failures.last().expect("pushed"));
            }
            _ = tokio::time::sleep_until(hedge_at) => {
                // Hedged or not, this request waits no longer for a hedge.
                hedged = true;
                let hedging = &mesh.serving.hedging;
                let suspect = first.is_some_and(|f| hedging.take_suspect(&f, std::time::Instant::now()));
                if hedge_at < deadline
                    && waiting.len() > 0
                    && (suspect || hedging.spend())
                    && let Some(asked) = waiting.next().and_then(|(attempt, peer)| ask(attempt, peer))
                {
                    mesh.metrics.hedged();
                    running.push(asked);
                }
            }
        }
    }
    if Instant::now() < deadline
        && let Request::Predict(call) = request
    {
        return serve_local_within(mesh, *call, deadline).await;
    }
    Err(ServeError::Unavailable(format!("no replica could answer: {}", failures.join("; "))))
}

//! The service actor: answers peers' requests that need storage or
//! replication, and applies ref updates from gossip, from newly met or
//! recovered peers, and from one random peer every 10 s (anti-entropy).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix::{Actor, AsyncContext, Context, Handler, ResponseFuture, WrapFuture};
use libp2p::{PeerId, gossipsub::MessageAcceptance};
use mass_protocol::{
    rpc::{Request, Response, RpcError, RpcErrorKind},
    serving::PredictCall,
};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::{
    jobs::task::{Admission, TrainError},
    mesh::{AcceptRefError, Mesh},
    net::{InboundRequest, PeerNotice},
    replication::ReplicateFrom,
    serving::router::ServeError,
    storage::StoreError,
};

/// Ref syncs with newly met peers running at once: each verifies a whole
/// ref list, and a flood of new connections must not run hundreds together.
const CONCURRENT_SYNCS: usize = 4;
/// Syncs that may wait for a turn; past it a newly met peer is not synced
/// (gossip still brings its new writes).
const WAITING_SYNCS: usize = 256;
/// How long a sync waits for its turn.
const SYNC_WAIT: Duration = Duration::from_secs(60);
/// Anti-entropy: how often a node merges the ref list of one up peer
/// picked at random. Gossip is best-effort (a peer outside the topic's mesh
/// for a few heartbeats misses messages for good), so without this a ref
/// could stay unknown to a node until it next met the writer.
const ANTI_ENTROPY: Duration = Duration::from_secs(10);

pub struct ServiceActor {
    mesh: Mesh,
    syncs: Arc<Semaphore>,
    waiting_syncs: Arc<AtomicUsize>,
}

impl ServiceActor {
    pub fn new(mesh: Mesh) -> Self {
        Self { mesh, syncs: Arc::new(Semaphore::new(CONCURRENT_SYNCS)), waiting_syncs: Arc::default() }
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(ANTI_ENTROPY, |service, ctx| {
            let (mesh, syncs) = (service.mesh.clone(), service.syncs.clone());
            ctx.spawn(
                async move {
                    use rand::seq::IndexedRandom;
                    let peers = mesh.up_peers().await;
                    let Some(peer) = peers.choose(&mut rand::rng()).copied() else { return };
                    // Skipped when syncs with newly met peers take every turn.
                    if let Ok(_turn) = syncs.try_acquire_owned() {
                        sync_refs(mesh, peer).await;
                    }
                }
                .into_actor(service),
            );
        });
    }
}

fn storage_error(e: StoreError) -> Response {
    Response::Error(RpcError { kind: RpcErrorKind::Storage, message: e.to_string() })
}

/// A peer's forwarded prediction, answered here. The network task calls
/// it directly ([`crate::net::client::Sinks::predictions`]), without the
/// hop through this actor's thread other requests take.
pub async fn answer_predict(mesh: &Mesh, call: PredictCall) -> Response {
    match crate::serving::router::serve_local(mesh, call).await {
        Ok(prediction) => Response::Predicted(Box::new(prediction)),
        Err(e) => {
            let kind = match e {
                ServeError::BadInput(_) => RpcErrorKind::BadInput,
                ServeError::Overloaded(_) => RpcErrorKind::Overloaded,
                _ => RpcErrorKind::Unavailable,
            };
            Response::Error(RpcError { kind, message: e.to_string() })
        }
    }
}

impl Handler<InboundRequest> for ServiceActor {
    type Result = ResponseFuture<Response>;

    fn handle(&mut self, InboundRequest { peer, request }: InboundRequest, _: &mut Self::Context) -> Self::Result {
        let storage = self.mesh.storage.clone();
        let replication = self.mesh.replication.clone();
        let mesh = self.mesh.clone();
        Box::pin(async move {
            match request {
                Request::TrainTask(work) => match crate::jobs::task::train(&mesh, *work, Admission::Now).await {
                    Ok(t) => Response::Trained { weights: t.weights, rows: t.rows, curve: t.curve, backend: t.backend },
                    Err(e @ (TrainError::Busy(_) | TrainError::Leaving)) => {
                        Response::Error(RpcError { kind: RpcErrorKind::Overloaded, message: e.to_string() })
                    }
                    Err(TrainError::Failed(message)) => {
                        Response::Error(RpcError { kind: RpcErrorKind::Refused, message })
                    }
                },
                Request::Predict(call) => answer_predict(&mesh, *call).await,
                Request::PredictShard { manifest, shard, extend } => {
                    match crate::serving::batch::predict_shard(&mesh, manifest, shard, extend).await {
                        Ok(scores) => Response::ShardPredicted {
                            csv: scores.csv,
                            test: scores.classes,
                            values: scores.values,
                            extended: scores.extended,
                        },
                        Err(message) => Response::Error(RpcError { kind: RpcErrorKind::Unavailable, message }),
                    }
                }
                Request::GetBlobMeta { id } => match storage.meta(id).await {
                    Ok(meta) => Response::BlobMeta(meta),
                    Err(e) => storage_error(e),
                },
                Request::GetChunk { id, index } => match storage.meta(id).await {
                    Ok(Some(meta)) => match storage.chunk(meta, index as usize).await {
                        Ok(bytes) => Response::Chunk(Some(bytes)),
                        // A damaged copy is never served; the peer asks another holder.
                        Err(e) => storage_error(e),
                    },
                    Ok(None) => Response::Chunk(None),
                    Err(e) => storage_error(e),
                },
                Request::GetBlobKind { id } => match storage.kind(id).await {
                    Ok(kind) => Response::BlobKind(kind),
                    Err(e) => storage_error(e),
                },
                Request::HasBlob { id } => match storage.has(id).await {
                    Ok(has) => Response::Has(has),
                    Err(e) => storage_error(e),
                },
                Request::Replicate { id } | Request::HoldNow { id } => {
                    let wait = matches!(request, Request::HoldNow { .. });
                    match replication.send(ReplicateFrom { peer, id, wait }).await {
                        Ok(Ok(has)) => Response::Has(has),
                        // Over a bound on fetches: the holder's next repair walk asks again.
                        Ok(Err(busy)) => Response::Error(RpcError { kind: RpcErrorKind::Overloaded, message: busy }),
                        Err(e) => Response::Error(RpcError { kind: RpcErrorKind::Unavailable, message: e.to_string() }),
                    }
                }
                Request::ListRefs => match storage.refs().await {
                    Ok(refs) => Response::Refs(refs),
                    Err(e) => storage_error(e),
                },
                Request::GetRef { name } if let Err(reason) = mass_protocol::storage::validate_ref_name(&name) => {
                    Response::Error(RpcError { kind: RpcErrorKind::Refused, message: reason })
                }
                Request::GetRef { name } => match storage.get_ref(name).await {
                    Ok(record) => Response::Refs(record.into_iter().collect()),
                    Err(e) => storage_error(e),
                },
                Request::HoldRef { name, entry } => match mesh.accept_ref(&name, entry).await {
                    Ok(_) => Response::Has(true),
                    Err(crate::mesh::AcceptRefError::Refused(message)) => {
                        Response::Error(RpcError { kind: RpcErrorKind::Refused, message })
                    }
                    Err(crate::mesh::AcceptRefError::Store(message)) => {
                        Response::Error(RpcError { kind: RpcErrorKind::Storage, message })
                    }
                },
                Request::SummarizeShard { shard, schema, spec } => {
                    on_held_shard(&mesh, shard, move |rows| {
                        crate::mesh::summarize_rows(&rows, &schema, &spec).map(Response::Summary)
                    })
                    .await
                }
                Request::ShardMoments { shard, pipeline, features } => {
                    on_held_shard(&mesh, shard, move |rows| {
                        crate::mesh::moments_of(&rows, &pipeline, &features).map(Response::Moments)
                    })
                    .await
                }
                Request::Boost(bytes) => {
                    let answer = match crate::jobs::boost::messages::decode(&bytes) {
                        Ok(request) => crate::jobs::boost::sessions::handle(&mesh, request).await,
                        Err(e) => Err(e),
                    };
                    match answer.and_then(|reply| crate::jobs::boost::messages::encode(&reply)) {
                        Ok(bytes) => Response::Boost(bytes),
                        Err(message) => Response::Error(RpcError { kind: RpcErrorKind::Refused, message }),
                    }
                }
                Request::EvaluateShard(ask) => match crate::jobs::judge::parts(&mesh, &ask).await {
                    Ok((pipeline, members, meta)) => {
                        let metrics = mesh.metrics.clone();
                        on_held_shard(&mesh, ask.shard, move |shard| {
                            metrics.shard_judged();
                            crate::jobs::evaluate::shard_evaluation(
                                &pipeline,
                                &members,
                                &ask.combine,
                                meta.as_ref(),
                                &shard,
                                ask.rows,
                                ask.report,
                            )
                            .map(|e| Response::Evaluated(Box::new(e)))
                        })
                        .await
                    }
                    Err(message) => Response::Error(RpcError { kind: RpcErrorKind::Unavailable, message }),
                },
                Request::GetAdvert => Response::Error(RpcError {
                    kind: RpcErrorKind::Refused,
                    message: "adverts are answered by the network task".into(),
                }),
            }
        })
    }
}

impl Handler<PeerNotice> for ServiceActor {
    type Result = ();

    fn handle(&mut self, notice: PeerNotice, ctx: &mut Self::Context) {
        match notice {
            PeerNotice::RefUpdate { source, update, verdict } => {
                let mesh = self.mesh.clone();
                ctx.spawn(
                    async move {
                        let acceptance = match mesh.accept_ref(&update.name, update.entry).await {
                            Ok(_) => MessageAcceptance::Accept,
                            Err(AcceptRefError::Refused(e)) => {
                                warn!(%source, name = %update.name, "refused a ref update: {e}");
                                MessageAcceptance::Reject
                            }
                            Err(AcceptRefError::Store(e)) => {
                                warn!(%source, name = %update.name, "could not apply a ref update: {e}");
                                MessageAcceptance::Ignore
                            }
                        };
                        verdict.report(acceptance).await;
                    }
                    .into_actor(self),
                );
            }
            PeerNotice::Progress { source, progress } => self.mesh.progress.record(source.to_string(), progress),
            PeerNotice::Connected { peer } => {
                if self.waiting_syncs.fetch_add(1, Ordering::SeqCst) >= WAITING_SYNCS {
                    self.waiting_syncs.fetch_sub(1, Ordering::SeqCst);
                    return debug!(%peer, "too many ref syncs waiting; not syncing with a newly met peer");
                }
                let (mesh, syncs, waiting) = (self.mesh.clone(), self.syncs.clone(), self.waiting_syncs.clone());
                ctx.spawn(
                    async move {
                        let turn = tokio::time::timeout(SYNC_WAIT, syncs.acquire_owned()).await;
                        waiting.fetch_sub(1, Ordering::SeqCst);
                        match turn {
                            Ok(Ok(_turn)) => sync_refs(mesh, peer).await,
                            _ => debug!(%peer, "ref sync skipped: no turn in time"),
                        }
                    }
                    .into_actor(self),
                );
            }
        }
    }
}

/// Answers with `work` run (off the event loop) on shard `shard`, when this
/// node holds it.
async fn on_held_shard(
    mesh: &Mesh,
    shard: mass_protocol::ContentId,
    work: impl FnOnce(mass_protocol::dataset::Shard) -> Result<Response, String> + Send + 'static,
) -> Response {
    let storage = &mesh.storage;
    let meta = match storage.meta(shard).await {
        Ok(Some(meta)) => meta,
        Ok(None) => {
            let message = format!("shard {shard} is not stored here");
            return Response::Error(RpcError { kind: RpcErrorKind::Refused, message });
        }
        Err(e) => return storage_error(e),
    };
    let rows = match crate::datasets::service::read_shard(storage, &meta).await {
        Ok(rows) => rows,
        Err(e) => return Response::Error(RpcError { kind: RpcErrorKind::Storage, message: e.to_string() }),
    };
    match mesh.compute.run(crate::compute::Work::Statistics, move || work(rows)).await {
        Ok(Ok(response)) => response,
        Ok(Err(message)) => Response::Error(RpcError { kind: RpcErrorKind::Refused, message }),
        Err(busy) => Response::Error(RpcError { kind: RpcErrorKind::Overloaded, message: busy.to_string() }),
    }
}

/// Anti-entropy: merges every ref a newly met peer knows (each entry
/// checked as a gossiped one is), so refs written while two nodes were apart
/// converge as soon as they meet.
async fn sync_refs(mesh: Mesh, peer: PeerId) {
    match mesh.net.request(peer, Request::ListRefs).await {
        Ok(Response::Refs(records)) => {
            let mut refused = 0;
            for record in records {
                // Oldest first, so each entry's version jump is from the one before.
                for entry in record.history {
                    if let Err(e) = mesh.accept_ref(&record.name, entry).await {
                        refused += 1;
                        debug!(%peer, name = %record.name, "refused a synced ref entry: {e}");
                    }
                }
            }
            if refused > 0 {
                warn!(%peer, refused, "refused ref entries from a peer's ref list");
            }
        }
        other => debug!(%peer, ?other, "ref sync skipped"),
    }
}

//! A peer that serves wrong bytes is caught at the first bad chunk, and the
//! fetch completes from an honest holder. The rogue is a real libp2p peer in
//! this test process that speaks the Mass protocols and lies about chunks.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, SwarmBuilder, identify, noise, ping, request_response,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use mass_node::{metrics::Metrics, net::rpc_codec::RpcCodec, replication::homes};
use mass_protocol::{
    Advert, ContentId, CpuInfo, HardwareProfile, Load,
    chunking::{CHUNK_SIZE, chunk_cv},
    names,
    rpc::{Request, Response},
    storage::BlobMeta,
};
use mass_sdk::Client;

use crate::support::{Cluster, bytes, eventually, lists_up_with_hardware, metric};

#[derive(NetworkBehaviour)]
struct RogueBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    rpc: request_response::Behaviour<RpcCodec>,
}

fn layout(data: &[u8]) -> BlobMeta {
    let cvs = data.chunks(CHUNK_SIZE).enumerate().map(|(i, c)| chunk_cv(i as u64, c)).collect();
    BlobMeta { id: ContentId::of(data), size: data.len() as u64, chunks: cvs }
}

pub(crate) fn advert(addr: &Multiaddr) -> Advert {
    Advert {
        protocol_version: names::PROTOCOL_VERSION,
        seq: 0,
        agent: "rogue/0".into(),
        listen_addrs: vec![addr.to_string()],
        http_addr: None,
        hardware: HardwareProfile {
            cpu: CpuInfo { model: "rogue".into(), cores: 1 },
            memory_bytes: 1 << 30,
            gemm_gflops: 1.0,
            gpus: vec![],
            bridges: vec![],
            capacity_gflops: 1.0,
        },
        load: Load::default(),
        draining: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_serving_wrong_bytes_is_caught_at_the_first_bad_chunk() {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| RogueBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(names::IDENTIFY_PROTOCOL.into(), key.public())),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(300))),
            rpc: request_response::Behaviour::with_codec(
                RpcCodec::new(Metrics::new().0),
                [(StreamProtocol::new(names::RPC_PROTOCOL), request_response::ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let rogue: PeerId = *swarm.local_peer_id();

    // An honest holder and a reader that will fetch, with repair out of the way.
    let mut cluster =
        Cluster::with_config(&format!("{}\n", crate::support::FAST_CONFIG.replace("\"500ms\"\n", "\"1h\"\n")));
    let reader = cluster.spawn(&[]);
    let holder = cluster.spawn(&[&reader]);
    let (reader_id, holder_id): (PeerId, PeerId) =
        (reader.peer_id().parse().unwrap(), holder.peer_id().parse().unwrap());

    // Content for which the rogue outranks the holder, so the reader asks it first.
    let view = [reader_id, holder_id, rogue];
    let data = (0u64..)
        .map(|seed| bytes(seed, 3 * CHUNK_SIZE + 1000))
        .find(|data| homes(&ContentId::of(data), &view, 3)[..2] == [rogue, holder_id])
        .unwrap();
    let meta = layout(&data);
    let id = meta.id;

    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    for node in [&reader, &holder] {
        swarm.dial(node.listen_addr().parse::<Multiaddr>().unwrap()).unwrap();
    }
    let chunk_requests = Arc::new(AtomicUsize::new(0));
    let served = chunk_requests.clone();
    let rogue_task = tokio::spawn(async move {
        loop {
            let SwarmEvent::Behaviour(RogueBehaviourEvent::Rpc(request_response::Event::Message {
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) = swarm.select_next_some().await
            else {
                continue;
            };
            let response = match request {
                Request::GetAdvert => Response::Advert(Box::new(advert(&addr))),
                Request::GetBlobMeta { .. } => Response::BlobMeta(Some(meta.clone())),
                Request::GetChunk { index, .. } => {
                    served.fetch_add(1, Ordering::SeqCst);
                    let mut lie = vec![0u8; meta.chunk_len(index as usize)];
                    lie[0] = 1;
                    Response::Chunk(Some(lie))
                }
                Request::HasBlob { .. } | Request::Replicate { .. } | Request::HoldNow { .. } => Response::Has(true),
                Request::ListRefs | Request::GetRef { .. } => Response::Refs(vec![]),
                // Claims to hold a ref entry it drops.
                Request::HoldRef { .. } => Response::Has(true),
                Request::GetBlobKind { .. } => Response::BlobKind(Some(mass_protocol::storage::BlobKind::Other)),
                Request::SummarizeShard { .. }
                | Request::TrainTask { .. }
                | Request::Predict(_)
                | Request::PredictShard { .. }
                | Request::ShardMoments { .. }
                | Request::Boost(_)
                | Request::EvaluateShard(_) => Response::Error(mass_protocol::rpc::RpcError {
                    kind: mass_protocol::rpc::RpcErrorKind::Refused,
                    message: "no".into(),
                }),
            };
            let _ = swarm.behaviour_mut().rpc.send_response(channel, response);
        }
    });

    eventually(Duration::from_secs(10), "both nodes see each other and the rogue as up", || async {
        let all = [reader.peer_id(), holder.peer_id()];
        lists_up_with_hardware(&reader, &all).await
            && lists_up_with_hardware(&holder, &all).await
            && crate::support::state_of(&reader, &rogue.to_string()).await == Some(mass_sdk::api::PeerState::Up)
    })
    .await;
    Client::new([holder.http_url()]).unwrap().put_blob(data.clone(), true).await.unwrap();

    let got = Client::new([reader.http_url()]).unwrap().get_blob(&id.to_string()).await.unwrap();
    assert!(got == data, "the reader served bytes that are not the blob");
    // Requests are pipelined, so the rogue may have been asked for a few
    // chunks, but the first bad one ended it: one integrity failure, and the
    // rest came from the honest holder.
    assert!(chunk_requests.load(Ordering::SeqCst) <= mass_node::replication::fetch::PIPELINE);
    assert_eq!(metric(&reader, "mass_integrity_failures_total").await, 1.0);
    rogue_task.abort();
}

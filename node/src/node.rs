//! Starting and stopping a whole node: keys, hardware, network, actors, HTTP.

use std::{path::PathBuf, sync::Arc, time::Duration};

use actix::Actor;
use libp2p::Multiaddr;
use mass_protocol::api::{ENDPOINTS_FILE, NodeEndpoints};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    config::NodeConfig,
    hardware::{self, Advertiser},
    http,
    membership::MembershipActor,
    metrics::Metrics,
    net::{self, NetClient, Sinks, identity, network_key, task::NetTask},
    replication::ReplicationActor,
    service::ServiceActor,
    storage::{self, Storage},
};

/// Folder of the RocksDB store inside the data dir.
pub const STORE_DIR: &str = "store";
/// How often a node checks which model versions it should keep loaded.
const MODEL_KEEPER_INTERVAL: Duration = Duration::from_secs(1);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    NetworkKey(#[from] network_key::NetworkKeyError),
    #[error(transparent)]
    Build(#[from] net::swarm::BuildError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot serve gRPC on {addr}: {source}")]
    Grpc { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(
        "could not reach any bootstrap peer within {timeout:?}: {failures}. Check that the peers run and, if the mesh is private, that this node has the same network key"
    )]
    Bootstrap { timeout: Duration, failures: String },
    #[error("cannot write {path}: {source}")]
    Endpoints { path: PathBuf, source: std::io::Error },
    #[error("the network task stopped while starting")]
    NetStopped,
    #[error(transparent)]
    Store(#[from] storage::StoreError),
    #[error("API tokens: {0}")]
    Tokens(crate::auth::TokenError),
    #[error(transparent)]
    Tls(#[from] http::tls::TlsError),
    #[error(
        "the HTTP API would listen on {addr}, beyond this machine, with no API tokens: anyone who reaches it \
         could change or delete the mesh's data. Create one first (`mass token create --role admin --data-dir {}`) \
         or listen on 127.0.0.1",
        data_dir.display()
    )]
    Unprotected { addr: std::net::SocketAddr, data_dir: PathBuf },
}

/// How a node is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Hand everything off first ([`crate::drain`]); SIGTERM.
    Drain,
    /// Stop now; SIGINT, or a second signal during a drain.
    Now,
}

/// Runs a node until `stops` says to stop (a closed channel stops it at
/// once) or a drain asked for through the API is over. Must be called
/// inside an actix System on a multi-thread tokio runtime.
///
/// An abrupt stop (SIGKILL) loses nothing durable: the identity key is written
/// atomically before the node joins, and membership is rebuilt from gossip.
pub async fn run(config: NodeConfig, mut stops: mpsc::UnboundedReceiver<Stop>) -> Result<(), StartError> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?;
    let endpoints_path = data_dir.join(ENDPOINTS_FILE);
    let _ = std::fs::remove_file(&endpoints_path);

    if let Some(lie) = config.byzantine {
        crate::jobs::byzantine::announce(lie);
    }
    let keypair = identity::load_or_create(data_dir)?;
    let local_peer_id = keypair.public().to_peer_id();
    let psk = config.net.network_key.as_deref().map(network_key::load).transpose()?;
    match &psk {
        Some(psk) => info!(fingerprint = %psk.fingerprint(), "private mesh: pre-shared network key in use"),
        None => warn_if_open(&config.net),
    }

    let tokens = crate::auth::Tokens::load(data_dir).map_err(StartError::Tokens)?;
    let beyond_loopback =
        [Some(config.http.listen), config.http.grpc].into_iter().flatten().find(|a| !a.ip().is_loopback());
    if let Some(addr) = beyond_loopback
        && tokens.is_empty()
    {
        return Err(StartError::Unprotected { addr, data_dir: data_dir.clone() });
    }
    let tls = config.http.tls.as_ref().map(|files| http::tls::server_config(&files.cert, &files.key)).transpose()?;
    if tls.is_none() && !config.http.listen.ip().is_loopback() {
        warn!(
            addr = %config.http.listen,
            "the HTTP API listens beyond loopback without TLS: tokens and data cross the network in clear \
             (set http.tls_cert and http.tls_key)"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http_listener = std::net::TcpListener::bind(config.http.listen)
        .map_err(|source| StartError::Http { addr: config.http.listen, source })?;
    let http_addr =
        http_listener.local_addr().map_err(|source| StartError::Http { addr: config.http.listen, source })?;

    let grpc_listener = config
        .http
        .grpc
        .map(|addr| {
            let listener = std::net::TcpListener::bind(addr).map_err(|source| StartError::Grpc { addr, source })?;
            let bound = listener.local_addr().map_err(|source| StartError::Grpc { addr, source })?;
            Ok::<_, StartError>((listener, bound))
        })
        .transpose()?;

    let (metrics, registry) = Metrics::new();
    let hardware_config = config.hardware.clone();
    let compute = crate::compute::Compute::new(config.compute.clone(), metrics.clone());
    let share = config.compute.share(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let gpu_use = config.compute.gpu;
    let hardware = tokio::task::spawn_blocking(move || hardware::detect(&hardware_config, share, gpu_use));
    let gpu = hardware::Gpu::new(gpu_use);

    let store = storage::Store::open(&data_dir.join(STORE_DIR))?;
    let signer: crate::storage::Signer = Arc::new(identity::ref_signer(keypair.clone()));
    let storage = Storage::start(store, config.storage.threads, metrics.clone(), signer);
    let mut swarm = net::swarm::build(keypair, psk, &config.net, metrics.clone())?;
    for addr in &config.net.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| StartError::Listen { addr: addr.clone(), reason: listen_reason(&e) })?;
    }

    // Peers see a node leave by its next advert, and gossip takes a moment.
    let leaving = crate::drain::Leaving::new(config.membership.advert_interval * 2);
    let membership = MembershipActor::new(local_peer_id, config.membership, metrics.clone(), leaving.clone()).start();
    let bridges = crate::bridge::Bridges::start(&config.bridges);
    let (command_tx, command_rx) = mpsc::channel(net::COMMAND_CAPACITY);
    let lanes_control = swarm.behaviour().lanes.new_control();
    let net_client = NetClient::new(command_tx, local_peer_id)
        .with_lanes(net::lanes::Lanes::new(lanes_control.clone(), metrics.clone()));
    let replication = ReplicationActor::new(
        local_peer_id,
        net_client.clone(),
        storage.clone(),
        membership.clone(),
        config.storage.clone(),
        metrics.clone(),
        leaving.clone(),
    )
    .start();
    let mesh = crate::mesh::Mesh {
        peer_id: local_peer_id.to_string(),
        storage: storage.clone(),
        replication: replication.clone(),
        membership: membership.clone(),
        net: net_client.clone(),
        progress: Default::default(),
        boost: Default::default(),
        compute: compute.clone(),
        gpu: gpu.clone(),
        metrics: metrics.clone(),
        serving: crate::serving::Serving::start(config.serving.clone(), compute.clone(), metrics.clone())
            .with_bridges(bridges.clone()),
        ref_admins: config.storage.ref_admins.clone().into(),
        ref_copies: config.storage.replication,
        leaving: leaving.clone(),
        byzantine: config.byzantine,
    };
    let drain = crate::drain::Drain::new(leaving.clone());
    crate::serving::keeper::ModelKeeper::new(mesh.clone(), MODEL_KEEPER_INTERVAL).start();
    let service = ServiceActor::new(mesh.clone()).start();
    membership.do_send(crate::membership::actor::OnRecovered(service.clone().recipient()));
    crate::jobs::JobWatcher::new(mesh.clone()).start();
    crate::studies::StudyWatcher::new(mesh.clone()).start();
    crate::serving::scoring::ScoringWatcher::new(mesh.clone()).start();
    let predict: net::client::PredictHandler = {
        let mesh = mesh.clone();
        std::sync::Arc::new(move |call| {
            let mesh = mesh.clone();
            Box::pin(async move { crate::service::answer_predict(&mesh, call).await })
        })
    };
    let sinks = Sinks {
        membership: membership.clone().recipient(),
        requests: service.clone().recipient(),
        notices: service.recipient(),
        predictions: Some(predict.clone()),
    };
    let task = NetTask::new(swarm, command_rx, net_client.sender(), sinks, metrics.clone(), &config.net)
        .map_err(|e| StartError::Build(net::swarm::BuildError::from(e)))?;
    net::lanes::serve(lanes_control, predict, task.inbound_quota(), metrics.clone())
        .map_err(|e| StartError::Build(net::swarm::BuildError::from(e)))?;
    let net_task = tokio::spawn(task.run());

    let started = async {
        bootstrap(&net_client, &config.net).await?;
        let listen_addrs = wait_for_listen_addrs(&net_client).await?;
        let (hardware, device) = hardware.await.expect("hardware detection does not panic");
        if let Some(device) = device {
            gpu.install(device);
        }
        Advertiser::new(
            hardware,
            Some(http_addr.to_string()),
            config.membership.advert_interval,
            net_client.clone(),
            membership.clone(),
            mesh.serving.inference.clone(),
            mesh.compute.clone(),
            config.hardware.gemm_size,
        )
        .with_bridges(bridges)
        .with_leaving(leaving.clone())
        .with_replicas(mesh.serving.replicas.clone())
        .start();
        crate::membership::redial::spawn(membership.clone(), net_client.clone(), config.membership.advert_interval * 4);
        Ok::<_, StartError>(listen_addrs)
    }
    .await;
    let listen_addrs = match started {
        Ok(addrs) => addrs,
        Err(e) => {
            net_client.shutdown().await;
            return Err(e);
        }
    };

    let state = http::State {
        mesh: mesh.clone(),
        registry,
        gc_grace_ms: config.storage.gc_grace.as_millis() as u64,
        shard_rows: config.storage.shard_rows,
        tokens: tokens.clone(),
        metrics: metrics.clone(),
        max_upload: config.http.max_upload,
        spool_dir: config.data_dir.clone(),
        max_trials: config.http.max_trials,
        drain: drain.clone(),
    };
    let server =
        http::serve(http_listener, state, tls).map_err(|source| StartError::Http { addr: http_addr, source })?;
    let server_handle = server.handle();
    tokio::spawn(server);
    let (grpc_stop, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let grpc_url = grpc_listener.map(|(listener, bound)| {
        let predictor = crate::grpc::Predictor::new(mesh.clone(), tokens.clone());
        let tls = config.http.tls.clone();
        tokio::spawn(async move {
            let stopped = async {
                let _ = grpc_stopped.await;
            };
            if let Err(e) = crate::grpc::serve(listener, predictor, tls.as_ref(), stopped).await {
                warn!(addr = %bound, "gRPC service stopped: {e}");
            }
        });
        format!("{scheme}://{bound}")
    });
    info!(peer_id = %local_peer_id, http = %http_addr, grpc = ?grpc_url, "node started");

    let endpoints = NodeEndpoints {
        peer_id: local_peer_id.to_string(),
        http_url: format!("{scheme}://{http_addr}"),
        grpc_url,
        listen_addrs: listen_addrs.iter().map(ToString::to_string).collect(),
        pid: std::process::id(),
    };
    write_endpoints(&endpoints_path, &endpoints)
        .map_err(|source| StartError::Endpoints { path: endpoints_path.clone(), source })?;

    let stop = tokio::select! {
        stop = stops.recv() => stop.unwrap_or(Stop::Now),
        () = drain.requested() => Stop::Drain,
    };
    if stop == Stop::Drain {
        // At least two adverts saying this node leaves, so that every peer
        // routes around it before it goes.
        let linger = config.membership.advert_interval * 2;
        tokio::select! {
            _ = drain.run(&mesh, config.membership.drain_timeout, linger) => {}
            _ = stops.recv() => warn!("asked again to stop: leaving before the drain is over"),
        }
    }
    info!("shutting down");
    let _ = std::fs::remove_file(&endpoints_path);
    server_handle.stop(true).await;
    let _ = grpc_stop.send(());
    net_client.shutdown().await;
    let _ = net_task.await;
    storage.quiesce().await;
    Ok(())
}

/// Warns when the node can be reached from other machines and any of them
/// may join: without a network key, the mesh admits every peer that dials.
fn warn_if_open(config: &net::Config) {
    let exposed = config.exposed_listen_addrs();
    if exposed.is_empty() {
        return;
    }
    let addrs: Vec<String> = exposed.iter().map(ToString::to_string).collect();
    warn!(
        listen = %addrs.join(", "),
        "this node listens beyond loopback without a network key: any host that reaches these addresses can \
         join the mesh as a peer, read every blob, submit work and gossip to every node. For a private mesh, \
         create a key with `mass keygen swarm.key` and start every node with --network-key swarm.key"
    );
}

/// The operating system's words for a failed listen, e.g. "Address already in
/// use (os error 98)".
fn listen_reason(error: &libp2p::TransportError<std::io::Error>) -> String {
    match error {
        libp2p::TransportError::Other(io) => io.to_string(),
        libp2p::TransportError::MultiaddrNotSupported(_) => {
            "no transport for this address; use /ip4/.../tcp/PORT".into()
        }
    }
}

/// Dials every bootstrap address at once; succeeds when at least one answers.
async fn bootstrap(net: &NetClient, config: &net::Config) -> Result<(), StartError> {
    if config.bootstrap.is_empty() {
        return Ok(());
    }
    let dials = config.bootstrap.iter().map(|addr| {
        let net = net.clone();
        let addr = addr.clone();
        async move {
            match tokio::time::timeout(config.bootstrap_timeout, net.dial(addr.clone())).await {
                Ok(Ok(peer)) => Ok(peer),
                Ok(Err(net::NetError::Stopped)) => Err("the network task stopped".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("{addr}: no answer")),
            }
        }
    });
    let results = futures::future::join_all(dials).await;
    let failures: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    if failures.len() == results.len() {
        return Err(StartError::Bootstrap { timeout: config.bootstrap_timeout, failures: failures.join("; ") });
    }
    for failure in failures {
        warn!("bootstrap peer unreachable: {failure}");
    }
    Ok(())
}

async fn wait_for_listen_addrs(net: &NetClient) -> Result<Vec<Multiaddr>, StartError> {
    for _ in 0..200 {
        let addrs = net.listen_addrs().await.map_err(|_| StartError::NetStopped)?;
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Vec::new())
}

fn write_endpoints(path: &std::path::Path, endpoints: &NodeEndpoints) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(endpoints).expect("endpoints serialize"))?;
    std::fs::rename(&tmp, path)
}

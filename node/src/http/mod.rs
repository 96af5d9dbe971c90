//! The HTTP API every node serves: `/v1/...` JSON, `/metrics`, and the
//! dashboard at `/`.

// Handlers return ready error responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

use std::{net::SocketAddr, sync::Arc};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    dev::{Server, Service},
    web,
};
use either::Either;
use mass_protocol::{
    api::{ErrorBody, Health},
    names,
};
use prometheus_client::registry::Registry;

pub mod arrow;
pub mod auth;
mod blobs;
mod dashboard;
mod datasets;
mod jobs;
// The fuzz targets read predict bodies with `models::parse_predict`.
pub(crate) mod models;
mod openapi;
mod pipelines;
mod predict_body;
mod refs;
mod routes;
mod studies;
pub mod tls;
mod wait;

use self::openapi::schemas as doc;
use crate::{membership::GetPeers, mesh::Mesh};

/// Where the API listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Worker threads of the HTTP server; the API is light, compute runs elsewhere.
const WORKERS: usize = 2;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Largest upload body (blob or dataset), in bytes.
    pub max_upload: u64,
    /// Trials a study may ask for, at most.
    pub max_trials: usize,
    /// Serve HTTPS with these, plain HTTP without (and gRPC likewise).
    pub tls: Option<TlsFiles>,
    /// Where the gRPC prediction service listens (`crate::grpc`), if anywhere.
    pub grpc: Option<SocketAddr>,
}

/// The PEM files of the API's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Default upload limit: 64 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 << 30;
/// Default trial budget limit of a study.
pub const DEFAULT_MAX_TRIALS: usize = 1000;

impl State {
    /// The handle background work and handlers share.
    pub fn mesh(&self) -> Mesh {
        self.mesh.clone()
    }
}

/// What the handlers can reach.
pub struct State {
    pub mesh: Mesh,
    pub registry: Arc<Registry>,
    /// Default grace period of `POST /v1/gc`.
    pub gc_grace_ms: u64,
    /// Default rows per dataset shard.
    pub shard_rows: usize,
    pub tokens: crate::auth::Tokens,
    pub metrics: crate::metrics::Metrics,
    /// Largest upload body (blob or dataset), in bytes.
    pub max_upload: u64,
    /// Where uploads that must be whole before they are read (Parquet) are
    /// spooled: the node's data dir.
    pub spool_dir: std::path::PathBuf,
    /// Trials a study may ask for, at most.
    pub max_trials: usize,
    /// This node's drain: started by `POST /v1/node/drain`, shown by GET.
    pub drain: crate::drain::Drain,
}

/// Starts serving on an already bound listener, over HTTPS when `tls` is
/// given; the returned server runs until stopped through its handle.
pub fn serve(
    listener: std::net::TcpListener,
    state: State,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        let tokens = state.tokens.clone();
        let counters = state.metrics.clone();
        let timings = state.metrics.clone();
        App::new()
            .wrap_fn(move |request, service| {
                let header = request.headers().get("authorization").and_then(|v| v.to_str().ok());
                let refused = auth::refusal(&tokens, request.method(), request.path(), header);
                let future = match refused {
                    Some((status, message)) => {
                        counters.auth_refused(status.as_u16());
                        Either::Left(std::future::ready(Ok(auth::refuse(request, status, message))))
                    }
                    None => Either::Right(service.call(request)),
                };
                async move {
                    match future {
                        Either::Left(ready) => ready.await,
                        Either::Right(call) => call.await.map(|r| r.map_into_left_body()),
                    }
                }
            })
            // Outermost: every request is timed, refused ones included. The
            // route is the matched pattern, so names in paths do not make
            // new series.
            .wrap_fn(move |request, service| {
                let started = std::time::Instant::now();
                let method = request.method().to_string();
                let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
                let timings = timings.clone();
                let call = service.call(request);
                async move {
                    let response = call.await;
                    timings.http_request(&method, &route, started.elapsed().as_secs_f64());
                    response
                }
            })
            .app_data(state.clone())
            .configure(routes::register)
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                let message = format!("invalid query string: {err}");
                actix_web::error::InternalError::from_response(err, error(StatusCode::BAD_REQUEST, message)).into()
            }))
            .app_data(web::JsonConfig::default().limit(64 * 1024).error_handler(|err, _| {
                let message = format!("invalid JSON body: {err}");
                actix_web::error::InternalError::from_response(err, error(StatusCode::BAD_REQUEST, message)).into()
            }))
            .default_service(web::to(not_found))
    })
    .workers(WORKERS)
    .disable_signals()
    .shutdown_timeout(3);
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

use actix_web::http::StatusCode;

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody { error: message.into() })
}

#[utoipa::path(
    get,
    path = "/v1/health",
    operation_id = "node_health",
    tag = "node",
    summary = "Liveness and identity of the node",
    responses(
        (status = 200, description = "OK", body = doc::Health, content_type = "application/json"),
    ),
)]
async fn health(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        peer_id: state.mesh.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: names::PROTOCOL_VERSION,
    })
}

#[utoipa::path(
    get,
    path = "/v1/peers",
    operation_id = "node_peers",
    tag = "node",
    summary = "Peers this node knows, with hardware and load",
    responses(
        (status = 200, description = "OK", body = Vec<doc::PeerView>, content_type = "application/json"),
    ),
)]
async fn peers(state: web::Data<State>) -> HttpResponse {
    match state.mesh.membership.send(GetPeers).await {
        Ok(peers) => HttpResponse::Ok().json(peers),
        Err(e) => error(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, format!("membership unavailable: {e}")),
    }
}

/// Starts this node's drain: it hands everything off, then exits.
#[utoipa::path(
    post,
    path = "/v1/node/drain",
    operation_id = "node_drain",
    tag = "node",
    summary = "Drain this node: hand its blobs, serving replicas and jobs to the other nodes, then exit (admin \
        role)",
    responses(
        (status = 202, description = "Draining", body = doc::DrainStatus, content_type = "application/json"),
    ),
)]
async fn drain(state: web::Data<State>) -> HttpResponse {
    state.drain.request();
    HttpResponse::Accepted().json(state.drain.status())
}

#[utoipa::path(
    get,
    path = "/v1/node/drain",
    operation_id = "node_drain_status",
    tag = "node",
    summary = "How far this node's drain got",
    responses(
        (status = 200, description = "OK", body = doc::DrainStatus, content_type = "application/json"),
    ),
)]
async fn drain_status(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(state.drain.status())
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "node_metrics",
    tag = "node",
    summary = "Prometheus/OpenMetrics counters",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    ),
)]
async fn metrics(state: web::Data<State>) -> HttpResponse {
    state.metrics.set_inference_queue(state.mesh.serving.inference.depth());
    for (kind, blobs, bytes) in state.mesh.storage.usage() {
        state.metrics.set_blobs(kind.label(), blobs, bytes);
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::render(&state.registry))
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    error(actix_web::http::StatusCode::NOT_FOUND, format!("no such endpoint: {} {}", request.method(), request.path()))
}

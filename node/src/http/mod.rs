//! The HTTP API every node serves: `/v1/...` JSON, and `/metrics`.

use std::{net::SocketAddr, sync::Arc};

use actix::Addr;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::Server, web};
use mass_protocol::{
    api::{ErrorBody, Health},
    names,
};
use prometheus_client::registry::Registry;

use crate::membership::{GetPeers, MembershipActor};

/// Where the API listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Worker threads of the HTTP server; the API is light, compute runs elsewhere.
const WORKERS: usize = 2;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
}

/// What the handlers can reach.
pub struct State {
    pub peer_id: String,
    pub membership: Addr<MembershipActor>,
    pub registry: Arc<Registry>,
}

/// Starts serving on an already bound listener; the returned server runs
/// until stopped through its handle.
pub fn serve(listener: std::net::TcpListener, state: State) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/v1/health", web::get().to(health))
            .route("/v1/peers", web::get().to(peers))
            .route("/metrics", web::get().to(metrics))
            .default_service(web::to(not_found))
    })
    .workers(WORKERS)
    .disable_signals()
    .shutdown_timeout(3)
    .listen(listener)?
    .run();
    Ok(server)
}

fn error(status: actix_web::http::StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: message.into(),
    })
}

async fn health(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
        peer_id: state.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: names::PROTOCOL_VERSION,
    })
}

async fn peers(state: web::Data<State>) -> HttpResponse {
    match state.membership.send(GetPeers).await {
        Ok(peers) => HttpResponse::Ok().json(peers),
        Err(e) => error(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("membership unavailable: {e}"),
        ),
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::render(&state.registry))
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    error(
        actix_web::http::StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", request.method(), request.path()),
    )
}

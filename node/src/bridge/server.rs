//! The reference bridge: the protocol of `docs/bridge.md` served over
//! HTTP by a process that emulates a fixed-point device on the CPU
//! ([`super::device`]). It is what tests and benchmarks run instead of
//! hardware, and the model a host program for a real board can follow.
//!
//! It keeps its device's limits (largest model, batch and model count,
//! refused with 413 and a sentence), honours deadlines (504, never a late
//! answer), and can be told to be slow (`delay`) or to hang every
//! inference after a number of them (`stall_after`), the failures a node
//! must survive.

use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{
    App, HttpResponse, HttpServer,
    http::StatusCode,
    web::{self, Bytes, Data, Path},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, warn};

use super::{
    device::{DeviceError, Program},
    fixed::Numerics,
    wire::{self, Activation},
};

/// Largest request body: a model of a few million weights as JSON text.
pub const MAX_BODY: usize = 128 << 20;

/// What the emulated device is and how it misbehaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub numerics: Numerics,
    pub device: String,
    pub kind: String,
    pub clock_mhz: f32,
    pub max_parameters: u64,
    pub max_layers: u32,
    pub max_batch: u32,
    pub max_models: u32,
    /// Added to every inference: a slow device.
    pub delay: Duration,
    /// After this many infer requests, every further one hangs without an
    /// answer (the host program still answers health): a stalled device.
    pub stall_after: Option<u64>,
}

impl Options {
    /// A device with room for the models tests and benchmarks use.
    pub fn new(numerics: Numerics) -> Self {
        Self {
            numerics,
            device: "mass reference bridge (fixed-point emulation on the CPU)".into(),
            kind: "fpga".into(),
            clock_mhz: 250.0,
            max_parameters: 1 << 20,
            max_layers: 8,
            max_batch: 1024,
            max_models: 16,
            delay: Duration::ZERO,
            stall_after: None,
        }
    }

    fn capabilities(&self) -> wire::Capabilities {
        let format = self.numerics.format;
        wire::Capabilities {
            protocol: wire::EXTENSION.into(),
            device: self.device.clone(),
            kind: self.kind.clone(),
            clock_mhz: self.clock_mhz,
            precision: wire::Precision {
                format: format.to_string(),
                total_bits: format.total_bits(),
                integer_bits: format.integer_bits(),
                rounding: self.numerics.rounding,
                overflow: "saturate".into(),
                accumulator_bits: self.numerics.accumulator_bits,
            },
            max_parameters: self.max_parameters,
            max_layers: self.max_layers,
            max_batch: self.max_batch,
            max_models: self.max_models,
            layers: vec!["dense".into()],
            activations: vec![Activation::Identity, Activation::Relu, Activation::Tanh, Activation::Softmax],
        }
    }
}

struct Shared {
    options: Options,
    boot_id: String,
    started: Instant,
    models: Mutex<HashMap<String, Arc<Loaded>>>,
    infers: AtomicU64,
}

struct Loaded {
    program: Program,
    rows: AtomicU64,
    batches: AtomicU64,
}

impl Shared {
    fn model(&self, name: &str) -> Option<Arc<Loaded>> {
        self.models.lock().expect("models lock").get(name).cloned()
    }
}

/// Serves the bridge protocol on `listener` until the returned server is
/// stopped or dropped. Must run inside an actix (or Tokio) runtime.
pub fn serve(listener: TcpListener, options: Options) -> std::io::Result<actix_web::dev::Server> {
    let shared = Data::new(Shared {
        boot_id: format!("{:016x}", rand::random::<u64>()),
        started: Instant::now(),
        models: Mutex::new(HashMap::new()),
        infers: AtomicU64::new(0),
        options,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("/v2", web::get().to(server_metadata))
            .route("/v2/health/live", web::get().to(|| async { HttpResponse::Ok().json(wire::Live { live: true }) }))
            .route("/v2/health/ready", web::get().to(|| async { HttpResponse::Ok().json(wire::Ready { ready: true }) }))
            .route("/v2/hardware/health", web::get().to(health))
            .route("/v2/hardware/capabilities", web::get().to(capabilities))
            .route("/v2/repository/index", web::post().to(index))
            .route("/v2/repository/index", web::get().to(index))
            .route("/v2/repository/models/{name}/load", web::post().to(load))
            .route("/v2/repository/models/{name}/unload", web::post().to(unload))
            .route("/v2/models/{name}", web::get().to(model_metadata))
            .route("/v2/models/{name}/ready", web::get().to(model_ready))
            .route("/v2/models/{name}/stats", web::get().to(model_stats))
            .route("/v2/models/{name}/infer", web::post().to(infer))
            .default_service(web::to(|| async { refuse(StatusCode::NOT_FOUND, "no such endpoint in protocol v2") }))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}

fn refuse(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(wire::ErrorBody { error: message.into() })
}

// The error is the answer to send, built once; its size does not matter here.
#[allow(clippy::result_large_err)]
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body).map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn ok<T: Serialize>(value: &T) -> HttpResponse {
    HttpResponse::Ok().json(value)
}

fn unknown(name: &str) -> HttpResponse {
    refuse(StatusCode::NOT_FOUND, format!("no model named '{name}' is loaded"))
}

async fn server_metadata() -> HttpResponse {
    ok(&wire::ServerMetadata {
        name: "mass-bridge".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec![wire::REPOSITORY_EXTENSION.into(), "statistics".into(), wire::EXTENSION.into()],
    })
}

async fn health(state: Data<Shared>) -> HttpResponse {
    let models = state.models.lock().expect("models lock").len() as u32;
    ok(&wire::Health {
        // A stalled device still reports ok: the host program cannot see
        // the hang, which is why the node also runs a test inference.
        status: wire::HealthStatus::Ok,
        boot_id: state.boot_id.clone(),
        uptime_s: state.started.elapsed().as_secs_f64(),
        models,
        message: "emulated device".into(),
    })
}

async fn capabilities(state: Data<Shared>) -> HttpResponse {
    ok(&state.options.capabilities())
}

async fn index(state: Data<Shared>) -> HttpResponse {
    let mut entries: Vec<wire::RepositoryEntry> = state
        .models
        .lock()
        .expect("models lock")
        .keys()
        .map(|name| wire::RepositoryEntry { name: name.clone(), state: "READY".into() })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    ok(&entries)
}

async fn load(state: Data<Shared>, name: Path<String>, body: Bytes) -> HttpResponse {
    let request: wire::LoadRequest = match parse(&body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let model = request.parameters.mass_mlp;
    let options = &state.options;
    if model.layers.len() > options.max_layers as usize {
        let message =
            format!("the model has {} layers; this device runs {} at most", model.layers.len(), options.max_layers);
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    if model.parameters() > options.max_parameters {
        let message = format!(
            "the model has {} parameters; this device holds {} per model at most",
            model.parameters(),
            options.max_parameters
        );
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    let numerics = options.numerics;
    let program = match web::block(move || Program::compile(&model, numerics)).await {
        Ok(Ok(program)) => program,
        Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, format!("model '{name}': {e}")),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("compiling failed: {e}")),
    };
    let mut models = state.models.lock().expect("models lock");
    if !models.contains_key(name.as_str()) && models.len() >= options.max_models as usize {
        let message = format!("the device holds {} models, its most; unload one first", models.len());
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    info!(model = %name, inputs = program.inputs(), outputs = program.outputs(), "model loaded");
    models.insert(name.into_inner(), Arc::new(Loaded { program, rows: AtomicU64::new(0), batches: AtomicU64::new(0) }));
    HttpResponse::Ok().finish()
}

async fn unload(state: Data<Shared>, name: Path<String>) -> HttpResponse {
    match state.models.lock().expect("models lock").remove(name.as_str()) {
        Some(_) => {
            info!(model = %name, "model unloaded");
            HttpResponse::Ok().finish()
        }
        None => unknown(&name),
    }
}

async fn model_metadata(state: Data<Shared>, name: Path<String>) -> HttpResponse {
    let Some(model) = state.model(&name) else { return unknown(&name) };
    let tensor = |n: &str, width: usize| wire::TensorMetadata {
        name: n.into(),
        datatype: wire::FP32.into(),
        shape: vec![-1, width as i64],
    };
    ok(&wire::ModelMetadata {
        name: name.into_inner(),
        versions: vec!["1".into()],
        platform: wire::MLP_FORMAT.into(),
        inputs: vec![tensor(wire::INPUT, model.program.inputs())],
        outputs: vec![tensor(wire::OUTPUT, model.program.outputs())],
    })
}

async fn model_ready(state: Data<Shared>, name: Path<String>) -> HttpResponse {
    match state.model(&name) {
        Some(_) => ok(&wire::Ready { ready: true }),
        None => unknown(&name),
    }
}

async fn model_stats(state: Data<Shared>, name: Path<String>) -> HttpResponse {
    let Some(model) = state.model(&name) else { return unknown(&name) };
    ok(&wire::ModelStatistics {
        model_stats: vec![wire::ModelStat {
            name: name.into_inner(),
            inference_count: model.rows.load(Ordering::Relaxed),
            execution_count: model.batches.load(Ordering::Relaxed),
        }],
    })
}

async fn infer(state: Data<Shared>, name: Path<String>, body: Bytes) -> HttpResponse {
    let arrived = Instant::now();
    let count = state.infers.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(limit) = state.options.stall_after
        && count > limit
    {
        if count == limit + 1 {
            warn!("stalling: inference {count} and every later one will never be answered");
        }
        std::future::pending::<()>().await;
    }
    let Some(model) = state.model(&name) else { return unknown(&name) };
    let mut request: wire::InferRequest = match parse(&body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    if request.inputs.len() != 1 {
        let message = format!("an infer request carries one input tensor; this one carries {}", request.inputs.len());
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    let (rows, columns) = match request.inputs[0].as_matrix() {
        Ok(shape) => shape,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    if columns != model.program.inputs() || rows == 0 {
        let message =
            format!("model '{name}' reads rows of {} features; got {rows} rows of {columns}", model.program.inputs());
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    if rows > state.options.max_batch as usize {
        let message =
            format!("a batch of {rows} rows is over this device's largest batch, {}", state.options.max_batch);
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    let deadline = request.parameters.deadline_ms.map(|ms| arrived + Duration::from_millis(ms));
    let late = |deadline: Option<Instant>| deadline.is_some_and(|d| Instant::now() >= d);
    if !state.options.delay.is_zero() {
        // A slow device: the delay, cut short where the deadline falls.
        let wait = deadline.map_or(state.options.delay, |d| state.options.delay.min(d - Instant::now().min(d)));
        tokio::time::sleep(wait).await;
    }
    if late(deadline) {
        return deadline_passed(request.parameters.deadline_ms, "before the batch started");
    }
    let x = std::mem::take(&mut request.inputs[0].data);
    let runner = model.clone();
    let outputs = runner.program.outputs();
    match web::block(move || runner.program.run(&x, rows, deadline)).await {
        Ok(Ok(data)) => {
            model.rows.fetch_add(rows as u64, Ordering::Relaxed);
            model.batches.fetch_add(1, Ordering::Relaxed);
            ok(&wire::InferResponse {
                model_name: name.into_inner(),
                id: request.id,
                outputs: vec![wire::Tensor::matrix(wire::OUTPUT, rows, outputs, data)],
            })
        }
        Ok(Err(DeviceError::Deadline { done, layers })) => {
            deadline_passed(request.parameters.deadline_ms, &format!("after {done} of {layers} layers"))
        }
        Ok(Err(e)) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("the device failed: {e}")),
    }
}

fn deadline_passed(deadline_ms: Option<u64>, when: &str) -> HttpResponse {
    let message = format!("the deadline of {} ms passed {when}; the batch was dropped", deadline_ms.unwrap_or(0));
    refuse(StatusCode::GATEWAY_TIMEOUT, message)
}

/// What a started bridge writes to its `--ready-file`, so that a launcher
/// (a test, a script) learns the port the OS picked.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Ready {
    /// Base URL of the protocol, e.g. "http://127.0.0.1:41234".
    pub url: String,
    pub pid: u32,
}

/// Writes `ready` to `path` in one step (a reader never sees half a file).
pub fn write_ready(path: &std::path::Path, ready: &Ready) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(ready).expect("ready serializes"))?;
    std::fs::rename(&tmp, path)
}

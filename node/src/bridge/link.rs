//! One declared bridge as the node sees it: its client, what the probe
//! learned (capabilities, measured rate), the models this node loaded on
//! it, and the breaker that decides whether batches go there.
//!
//! Batches reach it from blocking threads ([`Link::infer_blocking`]): the
//! HTTP call runs on the node's runtime and the caller waits with a hard
//! time limit, so a bridge that never answers costs a batch its timeout
//! and nothing more.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mass_kernels::models::Mlp;
use mass_protocol::{BridgeInfo, BridgeStatus, ContentId};
use ndarray::{Array2, ArrayView2, Axis, concatenate};
use tokio::runtime::Handle;
use tracing::{debug, info, warn};

use super::{
    Settings,
    breaker::{Breaker, Failure},
    client::{BridgeError, Client},
    drift,
    plan::{self, Decision},
    wire::{self, Capabilities, HealthStatus, MlpModel},
};

/// Time allowed to calls outside the request path (probe, load, drift check).
const CONTROL_LIMIT: Duration = Duration::from_secs(5);
/// How often a bridge in use has its health checked.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Timed runs of the standard batch; the best one is the rate.
const RATE_RUNS: usize = 3;

pub struct Link {
    pub settings: Settings,
    client: Client,
    runtime: Handle,
    epoch: Instant,
    state: Mutex<State>,
    /// Loads, placements and probes one at a time, so they cannot race for
    /// the device's model slots.
    busy: tokio::sync::Mutex<()>,
}

struct State {
    breaker: Breaker,
    status: BridgeStatus,
    capabilities: Option<Capabilities>,
    boot_id: Option<String>,
    rows_per_s: f32,
    last_health_ms: u64,
    /// What this node loaded there, by bridge name, to load again after
    /// the bridge restarts.
    loaded: HashMap<String, Arc<MlpModel>>,
    /// Model versions whose batches go there.
    placed: HashSet<ContentId>,
}

/// Why a model version does not run on a bridge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaceError {
    /// Its fixed-point outputs drift past the limit; the sentence says by how much.
    #[error("{0}")]
    Drift(String),
    /// Within the limit, but the CPU runs it faster (or the route says no).
    #[error("model {model} stays off bridge '{bridge}': {why}")]
    Slower { model: String, bridge: String, why: String },
    /// The bridge could not take it: not probed, over its limits, a call failed.
    #[error("model {model} stays off bridge '{bridge}': {why}")]
    Failed { model: String, bridge: String, why: String },
}

/// A model version accepted by a bridge: the names its members run under.
pub struct Placement {
    pub link: Arc<Link>,
    pub names: Vec<String>,
    pub outputs: usize,
    /// Rows per second of this version there, measured at placement.
    pub rows_per_s: f64,
}

impl Link {
    pub fn new(settings: Settings, runtime: Handle) -> Result<Self, String> {
        let client = Client::new(&settings.endpoint)?;
        let state = State {
            breaker: Breaker::opened("not probed yet", 0),
            status: BridgeStatus::Unprobed,
            capabilities: None,
            boot_id: None,
            rows_per_s: 0.0,
            last_health_ms: 0,
            loaded: HashMap::new(),
            placed: HashSet::new(),
        };
        Ok(Self {
            settings,
            client,
            runtime,
            epoch: Instant::now(),
            state: Mutex::new(state),
            busy: Default::default(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("bridge state lock")
    }

    /// Whether batches may go to this bridge now.
    pub fn allows(&self) -> bool {
        self.state().breaker.allows()
    }

    pub fn rows_per_s(&self) -> f32 {
        self.state().rows_per_s
    }

    /// What this node advertises about the bridge.
    pub fn info(&self) -> BridgeInfo {
        let state = self.state();
        let caps = state.capabilities.as_ref();
        BridgeInfo {
            name: self.settings.name.clone(),
            kind: self.settings.kind.clone(),
            endpoint: self.settings.endpoint.clone(),
            status: state.status,
            device: caps.map(|c| c.device.clone()).unwrap_or_default(),
            precision: caps.map(|c| c.precision.format.clone()).unwrap_or_default(),
            rows_per_s: state.rows_per_s,
            models: state.placed.len() as u32,
        }
    }

    pub fn probe_due(&self) -> bool {
        self.state().breaker.probe_due(self.now_ms())
    }

    pub fn health_due(&self) -> bool {
        let state = self.state();
        state.breaker.allows() && self.now_ms() >= state.last_health_ms + HEALTH_INTERVAL.as_millis() as u64
    }

    /// A batch went through.
    pub fn succeeded(&self) {
        self.state().breaker.succeeded();
    }

    /// A batch failed (it ran on the CPU instead).
    pub fn failed(&self, error: &BridgeError) {
        let now = self.now_ms();
        let mut state = self.state();
        if state.breaker.failed(Failure::of(error), &error.to_string(), now) {
            state.status = BridgeStatus::Down;
            warn!(bridge = %self.settings.name, "bridge taken out of use, inference runs on the CPU: {error}");
        } else {
            debug!(bridge = %self.settings.name, "a batch fell back to the CPU: {error}");
        }
    }

    fn take_down(&self, reason: &str) {
        let now = self.now_ms();
        let mut state = self.state();
        if state.breaker.failed(Failure::Hard, reason, now) {
            state.status = BridgeStatus::Down;
            warn!(bridge = %self.settings.name, "bridge taken out of use, inference runs on the CPU: {reason}");
        }
    }

    /// The periodic check of a bridge in use: health answers, and it is
    /// the same process (a restarted bridge lost the models).
    pub async fn check_health(&self) {
        let now = self.now_ms();
        self.state().last_health_ms = now;
        match self.client.health(self.settings.timeout.max(Duration::from_millis(500))).await {
            Ok(health) if health.status == HealthStatus::Failed => {
                self.take_down(&format!("it reports a failed device: {}", health.message));
            }
            Ok(health) if self.state().boot_id.as_deref() != Some(health.boot_id.as_str()) => {
                self.take_down("it restarted and lost its models");
            }
            Ok(_) => {}
            Err(e) => self.take_down(&e.to_string()),
        }
    }

    /// Probes the bridge: protocol version, capabilities, health, the
    /// models this node had there (loaded again if the bridge restarted),
    /// and the rate on the standard batch, which also proves that
    /// inference runs. On success batches go there again.
    pub async fn probe(&self) -> Result<(), String> {
        let _busy = self.busy.lock().await;
        let result = self.try_probe().await;
        let now = self.now_ms();
        let mut state = self.state();
        match &result {
            Ok(()) => {
                let was = state.status;
                state.breaker.probe_passed();
                state.status = BridgeStatus::Up;
                state.last_health_ms = now;
                let caps = state.capabilities.as_ref().expect("probed");
                info!(
                    bridge = %self.settings.name,
                    device = %caps.device,
                    precision = %caps.precision.format,
                    rows_per_s = state.rows_per_s,
                    "bridge {}",
                    if was == BridgeStatus::Unprobed { "probed and in use" } else { "back in use" }
                );
            }
            Err(e) => {
                let first = state.status != BridgeStatus::Down && state.status != BridgeStatus::Incompatible;
                state.breaker.probe_failed(e, now);
                if state.status != BridgeStatus::Incompatible {
                    state.status = BridgeStatus::Down;
                }
                if first {
                    warn!(bridge = %self.settings.name, "bridge not usable, inference stays on the CPU: {e}");
                } else {
                    debug!(bridge = %self.settings.name, "bridge still not usable: {e}");
                }
            }
        }
        result
    }

    async fn try_probe(&self) -> Result<(), String> {
        let metadata = self.client.metadata(CONTROL_LIMIT).await.map_err(|e| e.to_string())?;
        if !metadata.extensions.iter().any(|e| e == wire::EXTENSION) {
            self.state().status = BridgeStatus::Incompatible;
            return Err(format!(
                "{} ({} {}) does not speak {} (its extensions: {})",
                self.client.endpoint(),
                metadata.name,
                metadata.version,
                wire::EXTENSION,
                metadata.extensions.join(", ")
            ));
        }
        let capabilities = self.client.capabilities(CONTROL_LIMIT).await.map_err(|e| e.to_string())?;
        let health = self.client.health(CONTROL_LIMIT).await.map_err(|e| e.to_string())?;
        if health.status == HealthStatus::Failed {
            return Err(format!("it reports a failed device: {}", health.message));
        }
        let restarted = self.state().boot_id.as_deref() != Some(health.boot_id.as_str());
        if restarted {
            let lost: Vec<(String, Arc<MlpModel>)> =
                self.state().loaded.iter().map(|(n, m)| (n.clone(), m.clone())).collect();
            for (name, model) in lost {
                self.client.load(&name, &model, CONTROL_LIMIT).await.map_err(|e| format!("reloading {name}: {e}"))?;
            }
        }
        let rows_per_s = self.measure_rate(&capabilities).await?;
        let mut state = self.state();
        state.capabilities = Some(capabilities);
        state.boot_id = Some(health.boot_id);
        state.rows_per_s = rows_per_s;
        Ok(())
    }

    /// Rows per second of the standard model on the standard batch (the
    /// best of a few runs), loaded for the measurement and unloaded after.
    async fn measure_rate(&self, capabilities: &Capabilities) -> Result<f32, String> {
        let mut model = plan::probe_model();
        let fits = plan::fits(std::slice::from_ref(&model), capabilities, 0);
        if let Err(why) = &fits {
            // Still prove that inference runs, on the smallest network;
            // its rate says nothing comparable, so none is advertised.
            debug!(bridge = %self.settings.name, "no rate: the standard model does not fit ({why})");
            model = plan::canary_model();
        }
        let rows = plan::PROBE_ROWS.min(capabilities.max_batch as usize).max(1);
        let data = plan::probe_rows(rows);
        let x = Array2::from_shape_fn((rows, model.inputs()), |(r, c)| data[r * 64 + c % 64]);
        self.client
            .load(plan::PROBE_MODEL, &model, CONTROL_LIMIT)
            .await
            .map_err(|e| format!("loading the standard model: {e}"))?;
        let mut best = Duration::MAX;
        let mut result = Ok(());
        for _ in 0..RATE_RUNS {
            let started = Instant::now();
            if let Err(e) = self.infer_one(plan::PROBE_MODEL, x.view(), model.outputs(), rows, CONTROL_LIMIT).await {
                result = Err(format!("running the standard batch: {e}"));
                break;
            }
            best = best.min(started.elapsed());
        }
        let _ = self.client.unload(plan::PROBE_MODEL, CONTROL_LIMIT).await;
        result?;
        if fits.is_err() {
            return Ok(0.0);
        }
        Ok((rows as f64 / best.as_secs_f64().max(1e-9)) as f32)
    }

    /// Runs `x` through model `name`, in batches the device takes.
    async fn infer_one(
        &self,
        name: &str,
        x: ArrayView2<'_, f32>,
        outputs: usize,
        max_batch: usize,
        limit: Duration,
    ) -> Result<Array2<f32>, BridgeError> {
        infer_chunks(&self.client, name, x, outputs, max_batch, Instant::now() + limit).await
    }

    fn max_batch(&self) -> usize {
        self.state().capabilities.as_ref().map_or(1, |c| c.max_batch.max(1) as usize)
    }

    /// Members' outputs for `x` from the bridge, waiting at most the
    /// bridge's `timeout`. Runs on a blocking thread (an inference batch).
    pub fn infer_blocking(
        &self,
        names: &[String],
        outputs: usize,
        x: ArrayView2<'_, f32>,
    ) -> Result<Vec<Array2<f32>>, BridgeError> {
        let limit = self.settings.timeout;
        let deadline = Instant::now() + limit;
        let (client, names, x, max_batch) = (self.client.clone(), names.to_vec(), x.to_owned(), self.max_batch());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = self.runtime.spawn(async move {
            let mut answers = Vec::with_capacity(names.len());
            for name in &names {
                match infer_chunks(&client, name, x.view(), outputs, max_batch, deadline).await {
                    Ok(a) => answers.push(a),
                    Err(e) => return drop(tx.send(Err(e))),
                }
            }
            let _ = tx.send(Ok(answers));
        });
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(BridgeError::Timeout { endpoint: self.client.endpoint().to_owned(), after: limit })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(BridgeError::Protocol {
                endpoint: self.client.endpoint().to_owned(),
                message: "the call ended without an answer (the node's runtime is stopping)".into(),
            }),
        }
    }

    /// Loads a model version's networks, checks their drift on `sample`
    /// and compares speeds; the placement when the bridge should run it,
    /// else why not (and the networks are unloaded).
    pub async fn place(
        self: &Arc<Self>,
        id: ContentId,
        label: &str,
        networks: Vec<Mlp>,
        classifier: bool,
        sample: Arc<Array2<f32>>,
    ) -> Result<Placement, PlaceError> {
        let _busy = self.busy.lock().await;
        let failed =
            |why: String| PlaceError::Failed { model: label.to_owned(), bridge: self.settings.name.clone(), why };
        let capabilities =
            self.state().capabilities.clone().ok_or_else(|| failed("the bridge is not probed yet".into()))?;
        let described: Vec<MlpModel> = networks.iter().map(plan::describe).collect();
        let names: Vec<String> = (0..networks.len()).map(|m| plan::model_name(&id, m)).collect();
        let others = self.state().loaded.keys().filter(|n| !names.contains(n)).count();
        plan::fits(&described, &capabilities, others).map_err(failed)?;
        for (name, model) in names.iter().zip(described) {
            if let Err(e) = self.client.load(name, &model, CONTROL_LIMIT).await {
                self.unload(&names).await;
                return Err(failed(format!("loading failed: {e}")));
            }
            self.state().loaded.insert(name.clone(), Arc::new(model));
        }
        let outputs = networks[0].weights.last().map_or(0, |w| w.ncols());
        let checked = self.check(&names, &networks, outputs, classifier, sample, &capabilities).await.map_err(failed);
        let mut rate = 0.0;
        let verdict = checked.and_then(|(drift, bridge_rate, cpu_rate)| {
            rate = bridge_rate;
            drift
                .verdict(self.settings.max_drift, label, &self.settings.name, &capabilities.precision.format)
                .map_err(PlaceError::Drift)?;
            info!(
                bridge = %self.settings.name,
                model = %label,
                drift = drift.max,
                bridge_rows_per_s = bridge_rate as u64,
                cpu_rows_per_s = cpu_rate as u64,
                "fixed-point drift within the limit"
            );
            match plan::decide(self.settings.route, bridge_rate, cpu_rate) {
                Decision::Bridge => Ok(()),
                Decision::Cpu(why) => {
                    Err(PlaceError::Slower { model: label.to_owned(), bridge: self.settings.name.clone(), why })
                }
            }
        });
        if let Err(e) = verdict {
            self.unload(&names).await;
            return Err(e);
        }
        self.state().placed.insert(id);
        info!(bridge = %self.settings.name, model = %label, members = names.len(), "inference of this model runs on the bridge");
        Ok(Placement { link: self.clone(), names, outputs, rows_per_s: rate })
    }

    /// Drift and rates (bridge, CPU) of the networks on `sample`.
    async fn check(
        &self,
        names: &[String],
        networks: &[Mlp],
        outputs: usize,
        classifier: bool,
        sample: Arc<Array2<f32>>,
        capabilities: &Capabilities,
    ) -> Result<(drift::Drift, f64, f64), String> {
        let rows = sample.nrows().max(1) as f64;
        let (nets, x) = (networks.to_vec(), sample.clone());
        let (float, cpu_time) = tokio::task::spawn_blocking(move || {
            let mut best = Duration::MAX;
            let mut outputs = Vec::new();
            for _ in 0..RATE_RUNS {
                let started = Instant::now();
                outputs = nets.iter().map(|n| n.predict(x.view())).collect::<Vec<_>>();
                best = best.min(started.elapsed());
            }
            (outputs, best)
        })
        .await
        .map_err(|e| format!("the CPU check failed: {e}"))?;
        let mut fixed = Vec::new();
        let mut bridge_time = Duration::MAX;
        for _ in 0..RATE_RUNS {
            let started = Instant::now();
            let mut answers = Vec::with_capacity(names.len());
            for name in names {
                let answer = self
                    .infer_one(name, sample.view(), outputs, capabilities.max_batch as usize, CONTROL_LIMIT)
                    .await
                    .map_err(|e| format!("the check on sample rows failed: {e}"))?;
                answers.push(answer);
            }
            bridge_time = bridge_time.min(started.elapsed());
            fixed = answers;
        }
        let drift = drift::measure(&float, &fixed, classifier);
        Ok((drift, rows / bridge_time.as_secs_f64().max(1e-9), rows / cpu_time.as_secs_f64().max(1e-9)))
    }

    /// Unloads names this node loaded (best effort: a bridge that is down
    /// loses them anyway).
    pub async fn unload(&self, names: &[String]) {
        for name in names {
            self.state().loaded.remove(name);
            if let Err(e) = self.client.unload(name, CONTROL_LIMIT).await {
                debug!(bridge = %self.settings.name, "unloading {name}: {e}");
            }
        }
    }

    /// A model version this node no longer holds: off the bridge.
    pub async fn forget(&self, id: &ContentId) {
        let _busy = self.busy.lock().await;
        let prefix = plan::model_prefix(id);
        let names: Vec<String> = self.state().loaded.keys().filter(|n| n.starts_with(&prefix)).cloned().collect();
        self.state().placed.remove(id);
        self.unload(&names).await;
    }

    pub fn is_placed(&self, id: &ContentId) -> bool {
        self.state().placed.contains(id)
    }
}

/// `x` through model `name` in batches of at most `max_batch` rows, all
/// before `deadline`.
async fn infer_chunks(
    client: &Client,
    name: &str,
    x: ArrayView2<'_, f32>,
    outputs: usize,
    max_batch: usize,
    deadline: Instant,
) -> Result<Array2<f32>, BridgeError> {
    let mut parts = Vec::new();
    for chunk in x.axis_chunks_iter(Axis(0), max_batch.max(1)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let message = format!("the time for model {name} ran out between batches");
            return Err(BridgeError::Protocol { endpoint: client.endpoint().to_owned(), message });
        }
        let data: Vec<f32> = chunk.iter().copied().collect();
        let (width, values) = client.infer(name, chunk.nrows(), chunk.ncols(), data, left).await?;
        if width != outputs {
            return Err(BridgeError::Protocol {
                endpoint: client.endpoint().to_owned(),
                message: format!("model {name} answered {width} outputs per row, not {outputs}"),
            });
        }
        parts.push(Array2::from_shape_vec((chunk.nrows(), width), values).expect("checked shape"));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    Ok(concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, outputs))))
}

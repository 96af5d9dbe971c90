//! Which backend trains a network: the node's GPU (through wgpu) when its
//! measured training rate for that network's shape beats the CPU's, the
//! CPU otherwise.
//!
//! No GFLOP/s figure says where the line is: a GPU wins on wide layers and
//! large batches and loses small ones to dispatch and transfer overhead. So
//! the first task of each shape (inputs, hidden widths, outputs, batch,
//! loss, optimizer) measures both backends for a short, bounded time with
//! [`training_rate`] and the answer is kept for the node's life. The choice
//! itself is [`choose`], a pure function of the measured rates.
//!
//! A software Vulkan device (Mesa's lavapipe, device type Cpu) runs on the
//! same cores as the CPU backend: it is never used unless the operator says
//! `compute.gpu = "always"` (tests do, to run the wgpu path end to end).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use mass_kernels::{
    Backend,
    cpu::CpuBackend,
    gpu::GpuBackend,
    models::{MlpConfig, Optimizer, mlp::training_rate},
};
use mass_protocol::{GpuAdapter, GpuDeviceType};
use serde::Deserialize;
use tracing::{info, warn};

/// `compute.gpu`: whether training may use a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuUse {
    /// Never: every task trains on the CPU, and GPUs are not measured.
    Off,
    /// A hardware GPU, for the shapes it trains faster than the CPU.
    #[default]
    Auto,
    /// Any adapter, software ones included, for every network (tests, and
    /// operators who know better than the measurement).
    Always,
}

/// Where a network trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Cpu,
    Gpu,
}

/// Measured training samples per second of one network shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub cpu: f64,
    pub gpu: f64,
}

/// How much faster than the CPU a GPU must measure before it is used:
/// two short measurements differ by a few percent from run to run, and a
/// near tie is not worth the device.
pub const MARGIN: f64 = 1.1;

/// How long each backend trains a shape to measure it.
pub const RATE_BUDGET: Duration = Duration::from_millis(150);

/// Whether an adapter of `kind` may train under `use_`.
pub fn usable(use_: GpuUse, kind: GpuDeviceType) -> bool {
    match use_ {
        GpuUse::Off => false,
        GpuUse::Auto => kind != GpuDeviceType::Cpu,
        GpuUse::Always => true,
    }
}

/// The backend for one network, given the measured rates (`None`: no
/// usable device, or its measurement failed).
pub fn choose(use_: GpuUse, rates: Option<Rates>) -> Choice {
    match (use_, rates) {
        (GpuUse::Off, _) | (_, None) => Choice::Cpu,
        (GpuUse::Always, Some(_)) => Choice::Gpu,
        (GpuUse::Auto, Some(r)) if r.gpu.is_finite() && r.gpu > MARGIN * r.cpu => Choice::Gpu,
        (GpuUse::Auto, Some(_)) => Choice::Cpu,
    }
}

/// The throughput this node offers to Mass work, GFLOP/s: the CPU's
/// measured GEMM scaled by the compute pool's `share`, plus each hardware
/// GPU it may train on. Software adapters are left out: they are the same
/// cores again.
pub fn capacity(cpu_gflops: f32, share: f64, gpus: &[GpuAdapter], use_: GpuUse) -> f32 {
    let gpu: f64 = gpus
        .iter()
        .filter(|g| g.device_type != GpuDeviceType::Cpu && usable(use_, g.device_type))
        .map(|g| f64::from(g.gflops))
        .sum();
    (f64::from(cpu_gflops) * share + gpu) as f32
}

/// The part of a network's settings that decides its speed.
fn shape_key(inputs: usize, outputs: usize, config: &MlpConfig) -> String {
    let optimizer = match config.optimizer {
        Optimizer::Adam { .. } => "adam",
        Optimizer::Sgd { .. } => "sgd",
    };
    format!(
        "{inputs}-{:?}-{outputs} batch {} {:?} {optimizer} {:?}",
        config.hidden, config.batch_size, config.loss, config.activation
    )
}

/// The node's GPU for training, once detection opened one, and the rates
/// measured so far. Cheap to clone; shared by every training task.
#[derive(Clone, Default)]
pub struct Gpu {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    use_: GpuUse,
    device: OnceLock<Arc<GpuBackend>>,
    rates: Mutex<HashMap<String, Option<Rates>>>,
}

impl Gpu {
    pub fn new(use_: GpuUse) -> Self {
        Self { inner: Arc::new(Inner { use_, ..Inner::default() }) }
    }

    pub fn use_(&self) -> GpuUse {
        self.inner.use_
    }

    /// Takes the device detection opened (at most once; later calls are ignored).
    pub fn install(&self, device: GpuBackend) {
        if self.inner.use_ != GpuUse::Off {
            info!(backend = %device.name(), "training may use this GPU");
            let _ = self.inner.device.set(Arc::new(device));
        }
    }

    /// The device to train an `inputs -> config.hidden -> outputs` network
    /// on, or `None` for the CPU. Measures the shape on both backends the
    /// first time it is seen (about twice [`RATE_BUDGET`]). Blocking: call
    /// it on a compute thread.
    pub fn for_network(&self, inputs: usize, outputs: usize, config: &MlpConfig) -> Option<Arc<GpuBackend>> {
        let device = self.inner.device.get()?;
        let rates = match self.inner.use_ {
            GpuUse::Off => return None,
            // No measurement needed: the operator chose.
            GpuUse::Always => Some(Rates { cpu: 0.0, gpu: f64::INFINITY }),
            GpuUse::Auto => self.rates(device, inputs, outputs, config),
        };
        (choose(self.inner.use_, rates) == Choice::Gpu).then(|| device.clone())
    }

    fn rates(&self, device: &GpuBackend, inputs: usize, outputs: usize, config: &MlpConfig) -> Option<Rates> {
        let key = shape_key(inputs, outputs, config);
        if let Some(known) = self.inner.rates.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return *known;
        }
        // Two tasks of a new shape at once may both measure it; the answers agree.
        let cpu = training_rate(&CpuBackend::new(), inputs, outputs, config, RATE_BUDGET);
        let gpu = training_rate(device, inputs, outputs, config, RATE_BUDGET);
        let rates = match (cpu, gpu) {
            (Ok(cpu), Ok(gpu)) => Some(Rates { cpu, gpu }),
            (cpu, gpu) => {
                warn!(shape = %key, ?cpu, ?gpu, "training rate not measured; this shape trains on the CPU");
                None
            }
        };
        if let Some(r) = rates {
            info!(shape = %key, cpu = r.cpu, gpu = r.gpu, backend = ?choose(self.inner.use_, rates), "training rates measured");
        }
        self.inner.rates.lock().unwrap_or_else(PoisonError::into_inner).insert(key, rates);
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(cpu: f64, gpu: f64) -> Option<Rates> {
        Some(Rates { cpu, gpu })
    }

    #[test]
    fn auto_takes_the_gpu_only_when_it_measures_faster_by_the_margin() {
        assert_eq!(choose(GpuUse::Auto, rates(1000.0, 5000.0)), Choice::Gpu);
        assert_eq!(choose(GpuUse::Auto, rates(1000.0, 1050.0)), Choice::Cpu, "a near tie stays on the CPU");
        assert_eq!(choose(GpuUse::Auto, rates(1000.0, 200.0)), Choice::Cpu);
        assert_eq!(choose(GpuUse::Auto, rates(1000.0, f64::NAN)), Choice::Cpu);
        assert_eq!(choose(GpuUse::Auto, None), Choice::Cpu, "no device or no measurement");
    }

    #[test]
    fn off_and_always_override_the_measurement() {
        assert_eq!(choose(GpuUse::Off, rates(1.0, 1e9)), Choice::Cpu);
        assert_eq!(choose(GpuUse::Always, rates(1e9, 1.0)), Choice::Gpu);
        assert_eq!(choose(GpuUse::Always, None), Choice::Cpu, "always needs a device");
    }

    #[test]
    fn software_adapters_are_used_only_when_told() {
        assert!(!usable(GpuUse::Auto, GpuDeviceType::Cpu));
        assert!(usable(GpuUse::Auto, GpuDeviceType::DiscreteGpu));
        assert!(usable(GpuUse::Always, GpuDeviceType::Cpu));
        assert!(!usable(GpuUse::Off, GpuDeviceType::DiscreteGpu));
    }

    fn adapter(kind: GpuDeviceType, gflops: f32) -> GpuAdapter {
        GpuAdapter {
            name: "test".into(),
            backend: "vulkan".into(),
            device_type: kind,
            driver: String::new(),
            limits: mass_protocol::GpuLimits {
                max_buffer_size: 0,
                max_storage_buffer_binding_size: 0,
                max_compute_workgroup_storage_size: 0,
                max_compute_invocations_per_workgroup: 0,
                max_compute_workgroup_size_x: 0,
                max_compute_workgroups_per_dimension: 0,
            },
            gflops,
        }
    }

    #[test]
    fn capacity_adds_hardware_gpus_but_not_software_ones_or_disabled_ones() {
        let gpus = [adapter(GpuDeviceType::DiscreteGpu, 1000.0), adapter(GpuDeviceType::Cpu, 1.0)];
        assert!((capacity(100.0, 0.5, &gpus, GpuUse::Auto) - 1050.0).abs() < 1e-3);
        assert!((capacity(100.0, 0.5, &gpus, GpuUse::Always) - 1050.0).abs() < 1e-3);
        assert!((capacity(100.0, 0.5, &gpus, GpuUse::Off) - 50.0).abs() < 1e-3);
        assert!((capacity(100.0, 1.0, &[], GpuUse::Auto) - 100.0).abs() < 1e-3);
    }

    #[test]
    fn shapes_differ_by_what_changes_speed_only() {
        let base = MlpConfig { hidden: vec![64], batch_size: 32, ..MlpConfig::default() };
        let other_rate = MlpConfig { optimizer: Optimizer::Adam { learning_rate: 0.5 }, ..base.clone() };
        assert_eq!(shape_key(64, 10, &base), shape_key(64, 10, &other_rate));
        let wider = MlpConfig { hidden: vec![128], ..base.clone() };
        assert_ne!(shape_key(64, 10, &base), shape_key(64, 10, &wider));
        let bigger_batch = MlpConfig { batch_size: 64, ..base.clone() };
        assert_ne!(shape_key(64, 10, &base), shape_key(64, 10, &bigger_batch));
        assert_ne!(shape_key(64, 10, &base), shape_key(64, 3, &base));
    }

    /// The first network of a shape is measured on both backends; the
    /// answer is kept and decides, through `choose`, every later one.
    #[test]
    fn a_shape_is_measured_once_and_its_rates_decide() {
        let Some(device) = mass_kernels::gpu::open_for_tests() else { return };
        let config = MlpConfig { hidden: vec![16], batch_size: 32, ..MlpConfig::default() };
        let gpu = Gpu::new(GpuUse::Auto);
        gpu.install(device);
        let first = gpu.for_network(12, 3, &config).is_some();
        let rates = gpu.inner.rates.lock().unwrap().get(&shape_key(12, 3, &config)).copied();
        let rates = rates.expect("the shape was measured").expect("both backends measured");
        assert!(rates.cpu > 0.0 && rates.gpu > 0.0, "{rates:?}");
        assert_eq!(first, choose(GpuUse::Auto, Some(rates)) == Choice::Gpu);
        assert_eq!(gpu.for_network(12, 3, &config).is_some(), first, "the kept answer decides again");
        assert_eq!(gpu.inner.rates.lock().unwrap().len(), 1);

        let always = Gpu::new(GpuUse::Always);
        always.install(mass_kernels::gpu::open_for_tests().unwrap());
        assert!(always.for_network(12, 3, &config).is_some());
        assert!(always.inner.rates.lock().unwrap().is_empty(), "no measurement when told to");
        let off = Gpu::new(GpuUse::Off);
        off.install(mass_kernels::gpu::open_for_tests().unwrap());
        assert!(off.for_network(12, 3, &config).is_none());
    }

    #[test]
    fn without_a_device_every_network_trains_on_the_cpu() {
        let gpu = Gpu::new(GpuUse::Always);
        assert!(gpu.for_network(4, 2, &MlpConfig::default()).is_none());
    }
}

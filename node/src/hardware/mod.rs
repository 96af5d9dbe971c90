//! What this node has (detected and measured once at start) and how busy it is
//! (sampled for every advert).

mod advertiser;
pub mod gpu;
mod remeasure;

use std::time::Duration;

pub use advertiser::Advertiser;
pub use gpu::{Gpu, GpuUse};
use mass_kernels::gpu::GpuBackend;
use mass_protocol::{BridgeInfo, CpuInfo, GpuAdapter, HardwareProfile, Load, QueueDepth};
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct Config {
    /// Side of the square matrices used for the GEMM measurement.
    pub gemm_size: usize,
    /// How long the GEMM measurement may run.
    pub gemm_budget: Duration,
    /// Whether to look for GPU adapters through wgpu.
    pub probe_gpus: bool,
    /// Accelerator bridges declared by the operator.
    pub bridges: Vec<BridgeInfo>,
}

impl Config {
    pub const DEFAULT_GEMM_SIZE: usize = 512;
    pub const DEFAULT_GEMM_BUDGET: Duration = Duration::from_millis(300);
    /// GPU drivers can hang; a node does not wait for them forever
    /// (probing and measuring every adapter together).
    pub const GPU_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
    /// How long each adapter's GEMM is measured (a software adapter may take
    /// about twice as long: see `measure_gemm_gflops`).
    pub const GPU_GEMM_BUDGET: Duration = Duration::from_millis(300);

    pub fn validate(&self) -> Result<(), String> {
        if !(8..=8192).contains(&self.gemm_size) {
            return Err(format!("hardware.gemm_size must be between 8 and 8192, not {}", self.gemm_size));
        }
        for (i, bridge) in self.bridges.iter().enumerate() {
            for (field, value) in [("name", &bridge.name), ("kind", &bridge.kind), ("endpoint", &bridge.endpoint)] {
                if value.trim().is_empty() {
                    return Err(format!("hardware.bridges[{i}].{field} must not be empty"));
                }
            }
        }
        Ok(())
    }
}

/// Detects and measures this machine; `share` is the part of it the compute
/// pool may use. With `gpus` other than [`GpuUse::Off`], each adapter's GEMM
/// is measured too, and the fastest adapter training may use comes back
/// open. Blocking (seconds): run it off any event loop.
pub fn detect(config: &Config, share: f64, gpus: GpuUse) -> (HardwareProfile, Option<GpuBackend>) {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    system.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let model = system
        .cpus()
        .first()
        .map(|cpu| cpu.brand().trim().to_owned())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let gemm_gflops = mass_kernels::cpu::measure_gemm_gflops(config.gemm_size, config.gemm_budget) as f32;
    let (adapters, device) = if config.probe_gpus { probe_gpus_bounded(gpus) } else { (Vec::new(), None) };
    let capacity_gflops = gpu::capacity(gemm_gflops, share, &adapters, gpus);
    info!(%model, cores, gemm_gflops, capacity_gflops, gpus = ?adapters.iter().map(|g| (&g.name, g.gflops)).collect::<Vec<_>>(),
        bridges = config.bridges.len(), "hardware detected");
    let profile = HardwareProfile {
        cpu: CpuInfo { model, cores },
        memory_bytes: system.total_memory(),
        gemm_gflops,
        gpus: adapters,
        bridges: config.bridges.clone(),
        capacity_gflops,
    };
    (profile, device)
}

/// Probes GPUs (and, unless `use_` is off, measures each) on a helper
/// thread, and gives up after a bound: a hung driver leaves the node
/// without GPUs, not without a start. The helper thread is then left to
/// finish or hang on its own.
fn probe_gpus_bounded(use_: GpuUse) -> (Vec<GpuAdapter>, Option<GpuBackend>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(probe_and_measure(use_));
    });
    match rx.recv_timeout(Config::GPU_PROBE_TIMEOUT) {
        Ok(found) => found,
        Err(_) => {
            warn!("GPU probe did not finish in {:?}; advertising no GPU", Config::GPU_PROBE_TIMEOUT);
            (Vec::new(), None)
        }
    }
}

/// Lists the adapters, measures each one's GEMM through our kernel, and
/// keeps open the fastest one training may use.
fn probe_and_measure(use_: GpuUse) -> (Vec<GpuAdapter>, Option<GpuBackend>) {
    let mut adapters = mass_kernels::gpu::probe_adapters();
    if use_ == GpuUse::Off {
        return (adapters, None);
    }
    let mut best: Option<(f32, GpuBackend)> = None;
    for (index, adapter) in adapters.iter_mut().enumerate() {
        let measured = GpuBackend::open(index).and_then(|backend| {
            let gflops = mass_kernels::gpu::measure_gemm_gflops(&backend, Config::GPU_GEMM_BUDGET)?;
            Ok((gflops as f32, backend))
        });
        match measured {
            Ok((gflops, backend)) => {
                adapter.gflops = gflops;
                if gpu::usable(use_, adapter.device_type) && best.as_ref().is_none_or(|(b, _)| gflops > *b) {
                    best = Some((gflops, backend));
                }
            }
            Err(e) => warn!(adapter = %adapter.name, "GPU not measured, not used: {e}"),
        }
    }
    (adapters, best.map(|(_, backend)| backend))
}

/// Samples the node's current load.
pub fn sample_load(system: &mut sysinfo::System, cores: u32, queues: Vec<QueueDepth>) -> Load {
    system.refresh_memory();
    let load_avg = sysinfo::System::load_average().one;
    Load { free_memory_bytes: system.available_memory(), cpu_load: (load_avg / f64::from(cores.max(1))) as f32, queues }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_measures_this_machine() {
        let config = Config {
            gemm_size: 64,
            gemm_budget: Duration::from_millis(10),
            probe_gpus: false,
            bridges: vec![BridgeInfo::declared("fpga0", "fpga", "tcp://127.0.0.1:7000")],
        };
        let (profile, device) = detect(&config, 0.5, GpuUse::Auto);
        assert!(device.is_none(), "GPUs were not probed");
        assert!(profile.cpu.cores >= 1);
        assert!(profile.memory_bytes > 0);
        assert!(profile.gemm_gflops > 0.0);
        assert!((profile.capacity_gflops - profile.gemm_gflops / 2.0).abs() < 1e-3);
        assert_eq!(profile.bridges, config.bridges);
    }

    /// Every adapter is measured; the fastest one training may use stays
    /// open; with GPUs off nothing is measured or opened.
    #[test]
    fn gpus_are_measured_and_the_fastest_usable_one_is_kept_open() {
        let (adapters, device) = probe_and_measure(GpuUse::Always);
        if adapters.is_empty() {
            assert!(
                !std::env::var("MASS_REQUIRE_GPU_TESTS").is_ok_and(|v| v == "1"),
                "MASS_REQUIRE_GPU_TESTS=1 but wgpu found no adapter"
            );
            return eprintln!("GPU tests skipped: no adapter");
        }
        for adapter in &adapters {
            assert!(adapter.gflops > 0.0, "{} measured {} GFLOP/s", adapter.name, adapter.gflops);
        }
        let device = device.expect("an adapter was measured, so one is kept");
        let fastest = adapters.iter().map(|a| a.gflops).fold(0.0f32, f32::max);
        assert!(adapters.iter().any(|a| a.gflops == fastest && device.adapter_info().name == a.name));

        let (adapters, device) = probe_and_measure(GpuUse::Off);
        assert!(device.is_none());
        assert!(adapters.iter().all(|a| a.gflops == 0.0));
    }

    #[test]
    fn empty_bridge_fields_are_refused() {
        let config = Config {
            gemm_size: 64,
            gemm_budget: Duration::from_millis(10),
            probe_gpus: false,
            bridges: vec![BridgeInfo::declared("x", "fpga", " ")],
        };
        assert!(config.validate().unwrap_err().contains("bridges[0].endpoint"));
    }
}

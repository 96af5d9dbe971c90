//! What this node has (detected and measured once at start) and how busy it is
//! (sampled for every advert).

mod advertiser;

use std::time::Duration;

pub use advertiser::Advertiser;
use mass_protocol::{BridgeInfo, CpuInfo, HardwareProfile, Load, QueueDepth};
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
    /// GPU drivers can hang; a node does not wait for them forever.
    pub const GPU_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

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
/// pool may use. Blocking (seconds): run it off any event loop.
pub fn detect(config: &Config, share: f64) -> HardwareProfile {
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
    let gpus = if config.probe_gpus { probe_gpus_bounded() } else { Vec::new() };
    info!(%model, cores, gemm_gflops, gpus = gpus.len(), bridges = config.bridges.len(), "hardware detected");
    HardwareProfile {
        cpu: CpuInfo { model, cores },
        memory_bytes: system.total_memory(),
        gemm_gflops,
        gpus,
        bridges: config.bridges.clone(),
        capacity_gflops: (f64::from(gemm_gflops) * share) as f32,
    }
}

/// Probes GPUs on a helper thread and gives up after a bound.
fn probe_gpus_bounded() -> Vec<mass_protocol::GpuAdapter> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(mass_kernels::gpu::probe_adapters());
    });
    match rx.recv_timeout(Config::GPU_PROBE_TIMEOUT) {
        Ok(adapters) => adapters,
        Err(_) => {
            warn!("GPU probe did not finish in {:?}; advertising no GPU", Config::GPU_PROBE_TIMEOUT);
            Vec::new()
        }
    }
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
        let profile = detect(&config, 0.5);
        assert!(profile.cpu.cores >= 1);
        assert!(profile.memory_bytes > 0);
        assert!(profile.gemm_gflops > 0.0);
        assert!((profile.capacity_gflops - profile.gemm_gflops / 2.0).abs() < 1e-3);
        assert_eq!(profile.bridges, config.bridges);
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

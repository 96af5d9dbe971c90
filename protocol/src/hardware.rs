//! What a node has to offer: measured and detected, never looked up.

use serde::{Deserialize, Serialize};

/// Everything a node advertises about its hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareProfile {
    pub cpu: CpuInfo,
    /// Total physical memory.
    pub memory_bytes: u64,
    /// f32 GEMM throughput measured at start on the CPU backend, in GFLOP/s.
    pub gemm_gflops: f32,
    /// GPU adapters wgpu found; empty is a valid answer.
    pub gpus: Vec<GpuAdapter>,
    /// Accelerator bridges declared in the node's config (FPGA and others).
    pub bridges: Vec<BridgeInfo>,
    /// The CPU throughput this node offers to Mass work, GFLOP/s: the
    /// measured GEMM scaled by the share of the machine its compute pool
    /// may use. Work is placed by it.
    pub capacity_gflops: f32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    /// Logical cores the node may use.
    pub cores: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuAdapter {
    pub name: String,
    /// wgpu backend: "vulkan", "metal", "dx12", "gl", ...
    pub backend: String,
    pub device_type: GpuDeviceType,
    pub driver: String,
    pub limits: GpuLimits,
    /// f32 GEMM throughput measured through wgpu at start, GFLOP/s (0: not measured).
    pub gflops: f32,
}

/// Mirrors wgpu's device types; append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuDeviceType {
    Other,
    IntegratedGpu,
    DiscreteGpu,
    VirtualGpu,
    /// A software rasterizer such as Mesa's llvmpipe/lavapipe.
    Cpu,
}

/// The adapter limits that decide which kernels fit on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

/// An external accelerator the node reaches through a bridge process
/// (`docs/bridge.md`): what the operator declared, then what the node's
/// probe found. Fields after `endpoint` were appended (bincode: never
/// reorder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeInfo {
    pub name: String,
    /// What sits behind the bridge, e.g. "fpga".
    pub kind: String,
    /// Where the bridge listens, e.g. "tcp://127.0.0.1:7000".
    pub endpoint: String,
    pub status: BridgeStatus,
    /// The device as the bridge describes it; empty until probed.
    pub device: String,
    /// Its arithmetic, e.g. "fixed<16,6>"; empty until probed.
    pub precision: String,
    /// Rows per second on the standard batch (a 64-128-10 network, 256
    /// rows), measured by the node through the protocol; 0 until measured.
    pub rows_per_s: f32,
    /// Model versions whose inference runs there now.
    pub models: u32,
}

impl BridgeInfo {
    /// A bridge as declared, before any probe.
    pub fn declared(name: impl Into<String>, kind: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            endpoint: endpoint.into(),
            status: BridgeStatus::Unprobed,
            device: String::new(),
            precision: String::new(),
            rows_per_s: 0.0,
            models: 0,
        }
    }
}

/// Whether a bridge takes work; append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BridgeStatus {
    /// Declared; the first probe has not finished.
    Unprobed,
    /// Probed, answering: batches of the models placed there go to it.
    Up,
    /// Unreachable, failing or stalled: everything runs on the CPU while
    /// the node re-probes it.
    Down,
    /// It answers but does not speak this node's protocol version.
    Incompatible,
}

//! Adapter discovery through wgpu. No adapter is a valid answer.

use mass_protocol::{GpuAdapter, GpuDeviceType, GpuLimits};

/// Lists the adapters wgpu can open on this machine (Vulkan, Metal, DX12),
/// in the order [`super::GpuBackend::open`] numbers them.
///
/// Blocking: it loads drivers. Call it off any event loop.
pub fn probe_adapters() -> Vec<GpuAdapter> {
    super::adapters().iter().map(describe).collect()
}

fn describe(adapter: &wgpu::Adapter) -> GpuAdapter {
    let info = adapter.get_info();
    let limits = adapter.limits();
    GpuAdapter {
        name: info.name,
        backend: info.backend.to_str().to_owned(),
        device_type: match info.device_type {
            wgpu::DeviceType::IntegratedGpu => GpuDeviceType::IntegratedGpu,
            wgpu::DeviceType::DiscreteGpu => GpuDeviceType::DiscreteGpu,
            wgpu::DeviceType::VirtualGpu => GpuDeviceType::VirtualGpu,
            wgpu::DeviceType::Cpu => GpuDeviceType::Cpu,
            wgpu::DeviceType::Other => GpuDeviceType::Other,
        },
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_owned(),
        limits: GpuLimits {
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        },
        gflops: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_never_panics_and_names_every_adapter() {
        for adapter in probe_adapters() {
            assert!(!adapter.name.is_empty());
            assert!(!adapter.backend.is_empty());
            eprintln!("found {adapter:?}");
        }
    }
}

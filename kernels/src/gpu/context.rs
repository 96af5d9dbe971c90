//! The plumbing of the wgpu backend: opening a device, queueing dispatches,
//! moving bytes, and turning wgpu's asynchronous errors into [`Error`]s.
//!
//! Dispatches are recorded into one pending command encoder and submitted
//! together when the host next writes or reads a buffer. That order matters:
//! `Queue::write_buffer` takes effect at the start of the next submission,
//! so anything recorded before a write must be submitted before it.
//!
//! Each dispatch's small parameter block (shapes, flags, step constants)
//! goes into its own 256-byte slot of one uniform buffer; the slots used by
//! a submission are written in one call just before it. No buffer is
//! created per dispatch, only a bind group.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::backend::Error;

/// Bytes per parameter slot: the largest uniform offset alignment wgpu allows.
const SLOT: u64 = 256;
/// Parameter slots per submission; a full ring submits early.
const SLOTS: u64 = 256;
/// How long a read-back may wait for the device.
const WAIT: Duration = Duration::from_secs(120);

pub(super) fn device_error(reason: impl std::fmt::Display) -> Error {
    Error::Device { backend: "wgpu", reason: reason.to_string() }
}

fn unavailable(reason: impl std::fmt::Display) -> Error {
    Error::Unavailable { backend: "wgpu", reason: reason.to_string() }
}

/// Work recorded but not yet submitted.
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    params: Vec<u8>,
    slots: u64,
}

/// One opened device and its queue.
pub(super) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    params: wgpu::Buffer,
    pending: Mutex<Pending>,
    /// The first error wgpu reported asynchronously (validation, out of
    /// memory, device lost), kept until the next sync point reports it.
    failure: Arc<Mutex<Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Context {
    /// Opens `adapter` with the largest limits it offers (big training sets
    /// exceed the 128 MiB default storage binding).
    pub fn open(adapter: wgpu::Adapter) -> Result<Self, Error> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("mass-kernels"),
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let sink = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).get_or_insert_with(|| e.to_string());
        }));
        let sink = failure.clone();
        device.set_device_lost_callback(move |reason, message| {
            lock(&sink).get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mass-kernels params"),
            size: SLOT * SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pending = Mutex::new(Pending { encoder: None, params: Vec::new(), slots: 0 });
        Ok(Self { device, queue, info, limits, params, pending, failure })
    }

    /// The first asynchronous failure, if any.
    pub fn check(&self) -> Result<(), Error> {
        match lock(&self.failure).as_ref() {
            Some(reason) => Err(device_error(format!("{}: {reason}", self.info.name))),
            None => Ok(()),
        }
    }

    /// A storage buffer of `len` f32 (at least one, as bindings require).
    pub fn storage(&self, len: usize) -> Result<wgpu::Buffer, Error> {
        let size = (len.max(1) as u64).saturating_mul(4);
        let most = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if size > most {
            return Err(device_error(format!(
                "a tensor of {len} values needs {size} bytes; {} binds at most {most}",
                self.info.name
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Records one dispatch of `pipeline` with `params` in binding 0 and
    /// `buffers` in bindings 1.. in order.
    pub fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) -> Result<(), Error> {
        debug_assert!(params.len() as u64 <= SLOT);
        let mut pending = lock(&self.pending);
        if pending.slots == SLOTS {
            self.submit(&mut pending);
        }
        let slot = pending.slots;
        pending.slots += 1;
        pending.params.resize((slot * SLOT) as usize, 0);
        pending.params.extend_from_slice(params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params,
                offset: slot * SLOT,
                size: wgpu::BufferSize::new(SLOT),
            }),
        }];
        entries.extend(
            buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
        );
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let encoder = pending.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mass-kernels ops") })
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
        Ok(())
    }

    /// Submits what is recorded, with its parameter slots.
    fn submit(&self, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            if !pending.params.is_empty() {
                self.queue.write_buffer(&self.params, 0, &pending.params);
            }
            self.queue.submit([encoder.finish()]);
        }
        pending.params.clear();
        pending.slots = 0;
    }

    /// Submits recorded work so that a following host write lands after it.
    pub fn flush(&self) {
        self.submit(&mut lock(&self.pending));
    }

    /// Overwrites `buffer` from `values`, after all recorded work.
    pub fn write(&self, buffer: &wgpu::Buffer, values: &[f32]) -> Result<(), Error> {
        self.flush();
        if !values.is_empty() {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.queue.write_buffer(buffer, 0, &bytes);
        }
        self.check()
    }

    /// Waits until the device has finished everything submitted.
    pub fn finish(&self) -> Result<(), Error> {
        self.flush();
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(WAIT) })
            .map_err(|e| device_error(format!("{}: waiting for the device: {e}", self.info.name)))?;
        self.check()
    }

    /// The first `len` f32 of `buffer`, after all recorded work.
    pub fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>, Error> {
        if len == 0 {
            return self.finish().map(|()| Vec::new());
        }
        let size = len as u64 * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mass-kernels read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = lock(&self.pending);
            let encoder = pending.encoder.get_or_insert_with(|| {
                self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mass-kernels read") })
            });
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
            self.submit(&mut pending);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.finish()?;
        rx.recv_timeout(WAIT)
            .map_err(|_| device_error(format!("{}: read-back never completed", self.info.name)))?
            .map_err(|e| device_error(format!("{}: mapping a read-back buffer: {e}", self.info.name)))?;
        let values = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| device_error(format!("{}: reading a mapped buffer: {e}", self.info.name)))?;
            view.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        };
        staging.unmap();
        Ok(values)
    }
}

//! Where a loaded model's networks run: the slot every
//! [`crate::serving::model::LoadedModel`] carries. Empty, its members run on
//! the CPU; once a bridge accepted the version, batches go there, and any
//! batch the bridge cannot answer in time runs on the CPU instead, so no
//! request fails because of a bridge.

use std::sync::{Arc, RwLock};

use mass_kernels::models::Member;
use ndarray::{Array2, ArrayView2};

pub use super::link::Placement;
use super::plan;

#[derive(Default)]
pub struct Slot(RwLock<Option<Arc<Placement>>>);

impl Slot {
    pub fn set(&self, placement: Placement) {
        *self.0.write().expect("bridge slot lock") = Some(Arc::new(placement));
    }

    pub fn get(&self) -> Option<Arc<Placement>> {
        self.0.read().expect("bridge slot lock").clone()
    }

    /// Each member's outputs for feature rows `x`: from the bridge when the
    /// version is placed on one that is in use and answers in time, else
    /// from the CPU. A batch too big to finish within the bridge's timeout
    /// (a batch prediction over a whole shard) goes straight to the CPU: it
    /// would only time out there. Blocking: call it where a batch runs.
    pub fn predict(&self, members: &[Member], x: ArrayView2<'_, f32>) -> Vec<Array2<f32>> {
        if let Some(placement) = self.get()
            && placement.link.allows()
            && plan::in_time(x.nrows(), placement.rows_per_s, placement.link.settings.timeout)
        {
            match placement.link.infer_blocking(&placement.names, placement.outputs, x) {
                Ok(outputs) if outputs.len() == members.len() => {
                    placement.link.succeeded();
                    return outputs;
                }
                Ok(_) => {}
                Err(e) => placement.link.failed(&e),
            }
        }
        members.iter().map(|m| m.predict(x)).collect()
    }
}

//! The node's compute pool: every piece of CPU-heavy work (training tasks,
//! boosting steps, inference batches, shard statistics, evaluation) runs on
//! one of `slots` threads of work at a time, sized from the node's cores,
//! behind a bounded queue. A node that is full says so at once, so the work
//! goes to a node with room instead of piling up here.
//!
//! Online predictions also have `serving_slots` of their own, on threads of
//! their own, so a job holding every general slot does not make them wait.
//!
//! `throttle` limits the share of a core's time each slot uses (an operator
//! capping a node, or a test standing in for a slower machine): after a
//! piece of work has run for `d`, its slot stays taken for `d * (1/throttle - 1)`.
//!
//! Work waiting and running is counted in `/metrics` by kind
//! (`mass_compute_tasks{kind,state}`), with the work finished and refused
//! (`mass_compute_finished_total{kind}`, `mass_compute_refused_total{kind}`).
//! The counts are held by guards, so work whose caller stopped waiting (a
//! timed-out request dropping its future) gives its place back.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mass_protocol::QueueDepth;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

mod threads;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Pieces of work running at once (default: the node's cores).
    pub slots: usize,
    /// Slots kept for online predictions (`compute.serving_slots`, default
    /// 1), beside `slots`: training that holds every slot for seconds does
    /// not make a prediction wait past its deadline.
    pub serving_slots: usize,
    /// Pieces of work that may wait for a slot; past it, "busy".
    pub queue: usize,
    /// Share of a core's time each slot may use, in (0, 1].
    pub throttle: f64,
    /// Whether training may run on a GPU (`compute.gpu`).
    pub gpu: crate::hardware::GpuUse,
}

impl Config {
    pub fn for_cores(cores: usize) -> Self {
        Self { slots: cores.max(1), serving_slots: 1, queue: 4 * cores.max(1), throttle: 1.0, gpu: Default::default() }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_SLOTS).contains(&self.slots) {
            return Err(format!("compute.slots must be 1-{MAX_SLOTS}, not {}", self.slots));
        }
        if self.serving_slots > MAX_SERVING_SLOTS {
            return Err(format!("compute.serving_slots must be 0-{MAX_SERVING_SLOTS}, not {}", self.serving_slots));
        }
        if self.queue > 1 << 16 {
            return Err(format!("compute.queue must be at most 65536, not {}", self.queue));
        }
        if !(self.throttle > 0.0 && self.throttle <= 1.0) {
            return Err(format!("compute.throttle must be in (0, 1], not {}", self.throttle));
        }
        Ok(())
    }

    /// The share of the machine's measured throughput this node offers.
    pub fn share(&self, cores: usize) -> f64 {
        (self.slots as f64 / cores.max(1) as f64).min(1.0) * self.throttle
    }
}

/// The advert entry that carries a node's slot count.
pub const SLOTS_QUEUE: &str = "compute.slots";
/// The most compute slots a node may have (and a peer's advert is believed).
pub const MAX_SLOTS: usize = 1024;
/// The most slots a node may keep for online predictions.
pub const MAX_SERVING_SLOTS: usize = 64;
/// Adverts count the work a node has done as `done.<kind>`.
pub const DONE_PREFIX: &str = "done.";

/// What a piece of work is, for the load the node advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Work {
    Training,
    Boosting,
    Inference,
    Statistics,
    Evaluation,
}

impl Work {
    pub const ALL: [Work; 5] = [Work::Training, Work::Boosting, Work::Inference, Work::Statistics, Work::Evaluation];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Work::Training => "training",
            Work::Boosting => "boosting",
            Work::Inference => "inference",
            Work::Statistics => "statistics",
            Work::Evaluation => "evaluation",
        }
    }

    /// The queue name in adverts: `compute.<kind>`, its depth the pieces running.
    pub fn queue_name(self) -> &'static str {
        match self {
            Work::Training => "compute.training",
            Work::Boosting => "compute.boosting",
            Work::Inference => "compute.inference",
            Work::Statistics => "compute.statistics",
            Work::Evaluation => "compute.evaluation",
        }
    }
}

/// The pool refused: every slot busy and (for queued work) the queue full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("busy: all {slots} compute slots of this node are taken ({waiting} waiting); another node may have room")]
pub struct Busy {
    pub slots: usize,
    pub waiting: usize,
}

#[derive(Clone)]
pub struct Compute {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    slots: Arc<Semaphore>,
    /// The slots only online predictions take.
    serving: Arc<Semaphore>,
    waiting: AtomicUsize,
    running: Mutex<BTreeMap<Work, usize>>,
    /// Pieces of work finished since the node started, by kind: its share
    /// of the mesh's work, shown in `mass peers`.
    done: Mutex<BTreeMap<Work, u64>>,
    metrics: Metrics,
    /// The threads general slots' work runs on, one per slot.
    threads: threads::Threads,
    /// The threads serving slots' work runs on: apart, so a job's work
    /// always lands on the same few threads and reuses their warm memory.
    serving_threads: threads::Threads,
}

/// A compute slot held for work about to start; freed when dropped.
pub struct Reserved {
    permit: OwnedSemaphorePermit,
    /// Whether it is one of the slots kept for serving.
    serving: bool,
}

impl Reserved {
    fn general(permit: OwnedSemaphorePermit) -> Self {
        Self { permit, serving: false }
    }
}

/// A place in the queue, given back when dropped: when a slot is had, or
/// when the future waiting for one is dropped.
struct Place {
    inner: Arc<Inner>,
    kind: Work,
}

impl Place {
    /// A place, and how many waited before it.
    fn take(inner: &Arc<Inner>, kind: Work) -> (Self, usize) {
        let ahead = inner.waiting.fetch_add(1, Ordering::SeqCst);
        inner.metrics.compute_tasks(kind.label(), "waiting", 1);
        (Self { inner: inner.clone(), kind }, ahead)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        self.inner.metrics.compute_tasks(self.kind.label(), "waiting", -1);
    }
}

/// Work on a slot: counted while it lives, and the slot freed after it
/// (fields drop after `drop`). It moves into the blocking closure, so a
/// caller that stops waiting does not free the slot its work still uses.
struct Running {
    inner: Arc<Inner>,
    kind: Work,
    _permit: OwnedSemaphorePermit,
}

impl Running {
    fn start(inner: &Arc<Inner>, kind: Work, permit: OwnedSemaphorePermit) -> Self {
        *inner.running.lock().expect("pool lock").entry(kind).or_default() += 1;
        inner.metrics.compute_tasks(kind.label(), "running", 1);
        Self { inner: inner.clone(), kind, _permit: permit }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(n) = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&self.kind) {
            *n = n.saturating_sub(1);
        }
        *self.inner.done.lock().unwrap_or_else(|e| e.into_inner()).entry(self.kind).or_default() += 1;
        self.inner.metrics.compute_tasks(self.kind.label(), "running", -1);
        self.inner.metrics.compute_task_done(self.kind.label());
    }
}

impl Compute {
    pub fn new(config: Config, metrics: Metrics) -> Self {
        let slots = Arc::new(Semaphore::new(config.slots));
        let serving = Arc::new(Semaphore::new(config.serving_slots));
        // A thread for every slot, so taken slots never outnumber the
        // threads that run their work.
        let threads = threads::Threads::start(config.slots, "mass-compute");
        let serving_threads = threads::Threads::start(config.serving_slots, "mass-serving");
        for kind in Work::ALL {
            metrics.compute_kind(kind.label());
        }
        Self {
            inner: Arc::new(Inner {
                config,
                slots,
                serving,
                waiting: AtomicUsize::new(0),
                running: Mutex::new(BTreeMap::new()),
                done: Mutex::new(BTreeMap::new()),
                metrics,
                threads,
                serving_threads,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn busy(&self, kind: Work) -> Busy {
        self.inner.metrics.compute_refused(kind.label());
        Busy { slots: self.inner.config.slots, waiting: self.inner.waiting.load(Ordering::SeqCst) }
    }

    /// Runs `work` on a slot, waiting in the queue for one; refuses at once
    /// when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        kind: Work,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = match self.inner.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let (place, ahead) = Place::take(&self.inner, kind);
                if ahead >= self.inner.config.queue {
                    drop(place);
                    return Err(self.busy(kind));
                }
                let permit = self.inner.slots.clone().acquire_owned().await;
                drop(place);
                permit.expect("the pool's semaphore is never closed")
            }
        };
        Ok(self.execute(kind, Reserved::general(permit), work).await)
    }

    /// Runs `work` on a slot, waiting as long as it takes: for work whose
    /// own queue already bounds it (the inference batch loop runs one batch
    /// at a time).
    pub async fn run_waiting<T: Send + 'static>(&self, kind: Work, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (place, _) = Place::take(&self.inner, kind);
        let permit = self.inner.slots.clone().acquire_owned().await;
        drop(place);
        let permit = permit.expect("the pool's semaphore is never closed");
        self.execute(kind, Reserved::general(permit), work).await
    }

    /// Runs an online prediction on a slot kept for serving or a general
    /// one, whichever frees first, waiting as long as it takes (the
    /// inference queue bounds it). Offline scoring, a job's throughput
    /// work, goes through [`Compute::run_waiting`] and never takes the
    /// serving slots.
    pub async fn run_serving<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let slot = match self.try_reserve_serving() {
            Some(slot) => slot,
            None => {
                let (place, _) = Place::take(&self.inner, Work::Inference);
                let (permit, serving) = tokio::select! {
                    biased;
                    permit = self.inner.serving.clone().acquire_owned() => (permit, true),
                    permit = self.inner.slots.clone().acquire_owned() => (permit, false),
                };
                drop(place);
                Reserved { permit: permit.expect("the pool's semaphores are never closed"), serving }
            }
        };
        self.execute(Work::Inference, slot, work).await
    }

    /// A slot for an online prediction, taken now: one kept for serving if
    /// free (leaving the general slots to jobs), else a general one.
    pub fn try_reserve_serving(&self) -> Option<Reserved> {
        match self.inner.serving.clone().try_acquire_owned() {
            Ok(permit) => Some(Reserved { permit, serving: true }),
            Err(_) => self.try_reserve(),
        }
    }

    /// Runs `work` on a free slot now, or refuses at once: for work a peer
    /// asks for, which another node with a free slot should take instead.
    pub async fn run_now<T: Send + 'static>(
        &self,
        kind: Work,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = self.inner.slots.clone().try_acquire_owned().map_err(|_| self.busy(kind))?;
        Ok(self.execute(kind, Reserved::general(permit), work).await)
    }

    async fn execute<T: Send + 'static>(
        &self,
        kind: Work,
        slot: Reserved,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let threads = if slot.serving { &self.inner.serving_threads } else { &self.inner.threads };
        let running = Running::start(&self.inner, kind, slot.permit);
        let throttle = self.inner.config.throttle;
        threads
            .run(move || {
                let started = Instant::now();
                let out = work();
                if throttle < 1.0 {
                    std::thread::sleep(started.elapsed().mul_f64(1.0 / throttle - 1.0));
                }
                drop(running);
                out
            })
            .await
    }

    /// A free slot, taken now, for work that starts after some waiting of
    /// its own (reading its shard). Checking [`Compute::has_room`] and
    /// taking the slot later let every caller of the moment see the same
    /// free slot, so all of them ran here and none went to a peer.
    pub fn try_reserve(&self) -> Option<Reserved> {
        self.inner.slots.clone().try_acquire_owned().ok().map(Reserved::general)
    }

    /// Runs `work` on a slot [`Compute::try_reserve`] took, on this thread:
    /// for work of tens of microseconds, where handing it to the blocking
    /// pool and back costs more than the work. Not throttled: a throttled
    /// node's work goes to the pool, whose pause blocks no event loop.
    pub fn run_here<T>(&self, kind: Work, slot: Reserved, work: impl FnOnce() -> T) -> T {
        let running = Running::start(&self.inner, kind, slot.permit);
        let out = work();
        drop(running);
        out
    }

    /// Whether work is paused after it runs (`compute.throttle` below 1).
    pub fn is_throttled(&self) -> bool {
        self.inner.config.throttle < 1.0
    }

    /// Runs `work` on a slot [`Compute::try_reserve`] took.
    pub async fn run_reserved<T: Send + 'static>(
        &self,
        kind: Work,
        slot: Reserved,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.execute(kind, slot, work).await
    }

    /// Whether a piece of work sent now would start at once.
    pub fn has_room(&self) -> bool {
        self.inner.slots.available_permits() > 0
    }

    /// Whether every slot, general and serving, is free.
    #[cfg(test)]
    pub(crate) fn all_free(&self) -> bool {
        self.inner.slots.available_permits() == self.inner.config.slots
            && self.inner.serving.available_permits() == self.inner.config.serving_slots
    }

    /// Training that holds one general slot until `release` sends (or is
    /// dropped), returned once it runs: for tests of what waits for it.
    #[cfg(test)]
    pub(crate) async fn hold_a_slot(
        &self,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<bool, Busy>>) {
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let pool = self.clone();
        let training = tokio::spawn(async move { pool.run(Work::Training, move || hold.recv().is_ok()).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.has_room() {
            assert!(Instant::now() < deadline, "training never took its slot");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (release, training)
    }

    /// Pieces of work running now, by kind.
    pub fn running(&self) -> Vec<(Work, usize)> {
        self.inner.running.lock().expect("pool lock").iter().map(|(k, n)| (*k, *n)).collect()
    }

    /// Pieces running or waiting now, and pieces finished since the start:
    /// together, whether the node worked between two looks.
    pub fn activity(&self) -> (usize, u64) {
        let running: usize = self.inner.running.lock().expect("pool lock").values().sum();
        let done = self.inner.done.lock().expect("pool lock").values().sum();
        (running + self.inner.waiting.load(Ordering::SeqCst), done)
    }

    /// Running work by kind, the queue, and the work done so far (as
    /// `done.<kind>`), for adverts and `mass peers`.
    pub fn depths(&self) -> Vec<QueueDepth> {
        let running = self.inner.running.lock().expect("pool lock");
        let mut out: Vec<QueueDepth> =
            running.iter().map(|(k, n)| QueueDepth { name: k.queue_name().into(), depth: *n as u32 }).collect();
        let done = self.inner.done.lock().expect("pool lock");
        out.extend(done.iter().map(|(k, n)| QueueDepth {
            name: format!("{DONE_PREFIX}{}", k.label()),
            depth: u32::try_from(*n).unwrap_or(u32::MAX),
        }));
        out.push(QueueDepth {
            name: "compute.waiting".into(),
            depth: self.inner.waiting.load(Ordering::SeqCst) as u32,
        });
        out.push(QueueDepth { name: "compute.free".into(), depth: self.inner.slots.available_permits() as u32 });
        out.push(QueueDepth { name: SLOTS_QUEUE.into(), depth: self.inner.config.slots as u32 });
        out
    }
}

/// Time a throttled slot stays taken after `ran` of work.
pub fn throttled(ran: Duration, throttle: f64) -> Duration {
    if throttle >= 1.0 { Duration::ZERO } else { ran.mul_f64(1.0 / throttle - 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_queued_work_waits() {
        let pool = Compute::new(
            Config { slots: 1, serving_slots: 0, queue: 1, throttle: 1.0, gpu: Default::default() },
            Metrics::new().0,
        );
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(Work::Training, move || hold.recv().is_ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pool.has_room());
        assert_eq!(pool.run_now(Work::Training, || 1).await, Err(Busy { slots: 1, waiting: 0 }));
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(Work::Inference, || 2).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.run(Work::Inference, || 3).await.is_err(), "the queue holds one");
        let training = pool.depths().into_iter().find(|q| q.name == "compute.training").unwrap();
        assert_eq!(training.depth, 1);
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(2));
        assert!(pool.has_room());
    }

    #[tokio::test]
    async fn predictions_run_on_the_serving_slot_while_training_holds_every_other() {
        let pool = Compute::new(
            Config { slots: 1, serving_slots: 1, queue: 4, throttle: 1.0, gpu: Default::default() },
            Metrics::new().0,
        );
        let (release, training) = pool.hold_a_slot().await;
        assert!(pool.try_reserve().is_none(), "the serving slot is not a general one");
        assert!(pool.run_now(Work::Statistics, || 1).await.is_err(), "nor for a peer's work");
        let thread = || std::thread::current().name().unwrap_or_default().to_owned();
        let answer = tokio::time::timeout(Duration::from_secs(10), pool.run_serving(thread)).await;
        assert_eq!(answer.as_deref(), Ok("mass-serving-0"), "a prediction does not wait for training");
        // With the serving slot taken too, the next prediction takes
        // whichever slot frees first: here the general one.
        let lane = pool.try_reserve_serving().expect("the serving slot is free again");
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run_serving(|| 8).await })
        };
        release.send(()).unwrap();
        assert_eq!(training.await.unwrap(), Ok(true));
        assert_eq!(tokio::time::timeout(Duration::from_secs(10), queued).await.unwrap().unwrap(), 8);
        drop(lane);
        // General work keeps to the general slots' threads (their memory warm).
        for _ in 0..8 {
            assert_eq!(pool.run(Work::Training, thread).await.unwrap(), "mass-compute-0");
        }
        assert!(Config { serving_slots: MAX_SERVING_SLOTS + 1, ..Config::for_cores(1) }.validate().is_err());
    }

    #[tokio::test]
    async fn a_reserved_slot_is_taken_at_once_and_freed_by_its_work() {
        let pool = Compute::new(
            Config { slots: 1, serving_slots: 0, queue: 1, throttle: 1.0, gpu: Default::default() },
            Metrics::new().0,
        );
        let slot = pool.try_reserve().expect("a free slot");
        assert!(!pool.has_room() && pool.try_reserve().is_none(), "one caller gets the one slot");
        assert_eq!(pool.run_now(Work::Statistics, || 1).await, Err(Busy { slots: 1, waiting: 0 }));
        assert_eq!(pool.run_reserved(Work::Statistics, slot, || 2).await, 2);
        assert!(pool.has_room());
        drop(pool.try_reserve());
        assert!(pool.has_room(), "a reservation dropped unused frees its slot");
    }

    #[test]
    fn work_run_here_runs_on_this_thread_on_its_slot_and_frees_it() {
        let pool = Compute::new(
            Config { slots: 1, serving_slots: 0, queue: 1, throttle: 1.0, gpu: Default::default() },
            Metrics::new().0,
        );
        let slot = pool.try_reserve().expect("a free slot");
        let here = std::thread::current().id();
        let ran_on = pool.run_here(Work::Inference, slot, || {
            assert_eq!(pool.running(), vec![(Work::Inference, 1)], "counted while it runs");
            std::thread::current().id()
        });
        assert_eq!(ran_on, here);
        assert!(pool.has_room());
        assert!(!pool.is_throttled());
    }

    /// The value of one series in the text format.
    fn series(registry: &prometheus_client::registry::Registry, name: &str) -> f64 {
        let text = crate::metrics::render(registry);
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(f64::NAN)
    }

    #[tokio::test]
    async fn tasks_are_counted_by_kind_and_state_and_a_caller_that_stops_waiting_gives_its_place_back() {
        let (metrics, registry) = Metrics::new();
        let pool = Compute::new(
            Config { slots: 1, serving_slots: 0, queue: 2, throttle: 1.0, gpu: Default::default() },
            metrics,
        );
        let running = r#"mass_compute_tasks{kind="training",state="running"}"#;
        let waiting = r#"mass_compute_tasks{kind="inference",state="waiting"}"#;
        assert_eq!(series(&registry, running), 0.0, "every kind shows from the start");
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(Work::Training, move || hold.recv().is_ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(series(&registry, running), 1.0);
        // Two wait; one of them is given up by its caller (a timeout).
        let gives_up = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(Work::Inference, || 1).await })
        };
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(Work::Inference, || 2).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(series(&registry, waiting), 2.0);
        assert!(pool.run(Work::Evaluation, || 3).await.is_err(), "the queue holds two");
        assert_eq!(series(&registry, r#"mass_compute_refused_total{kind="evaluation"}"#), 1.0);
        gives_up.abort();
        assert!(gives_up.await.unwrap_err().is_cancelled());
        assert_eq!(series(&registry, waiting), 1.0);
        assert_eq!(pool.busy(Work::Statistics).waiting, 1, "the queue has room again");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(true));
        assert_eq!(queued.await.unwrap(), Ok(2));
        assert_eq!(series(&registry, running), 0.0);
        assert_eq!(series(&registry, waiting), 0.0);
        assert_eq!(series(&registry, r#"mass_compute_finished_total{kind="training"}"#), 1.0);
        assert_eq!(series(&registry, r#"mass_compute_finished_total{kind="inference"}"#), 1.0);
        assert!(pool.has_room());
    }

    #[tokio::test]
    async fn a_throttled_slot_stays_taken_for_the_rest_of_its_share() {
        let pool = Compute::new(
            Config { slots: 1, serving_slots: 0, queue: 0, throttle: 0.25, gpu: Default::default() },
            Metrics::new().0,
        );
        let started = Instant::now();
        pool.run(Work::Training, || std::thread::sleep(Duration::from_millis(40))).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(160), "{:?}", started.elapsed());
        assert_eq!(throttled(Duration::from_secs(1), 0.5), Duration::from_secs(1));
        assert!(
            Config { slots: 1, serving_slots: 0, queue: 0, throttle: 0.0, gpu: Default::default() }.validate().is_err()
        );
        assert!(
            (Config { slots: 1, serving_slots: 0, queue: 0, throttle: 0.25, gpu: Default::default() }.share(2) - 0.125)
                .abs()
                < 1e-12
        );
    }
}

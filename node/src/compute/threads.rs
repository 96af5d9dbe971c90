//! The threads compute work runs on: one per slot, kept as long as the
//! pool. Each keeps its allocator arena (glibc gives each thread one of its
//! own, up to eight per core) and the memory freed in it, so the next piece
//! of work reuses warm pages. On tokio's blocking pool, which the storage's
//! reads share, work landed on whichever thread was idle, each with an
//! arena of its own: on two pinned nodes a third of an evaluation's samples
//! were the kernel zeroing fresh pages.

type Job = Box<dyn FnOnce() + Send>;

pub(super) struct Threads {
    jobs: crossbeam_channel::Sender<Job>,
    /// How many threads started (none if the system refused every one:
    /// then work goes to tokio's blocking pool, as before).
    started: usize,
}

impl Threads {
    pub(super) fn start(count: usize, name: &str) -> Self {
        // Each piece wakes one waiting thread (a receiver behind a lock woke
        // two: the one that took it and the next in line for the lock).
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let mut started = 0;
        for index in 0..count {
            let queue = queue.clone();
            // Ends once the pool is gone.
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || queue.iter().for_each(|job| job()));
            match thread {
                Ok(_) => started += 1,
                Err(e) => tracing::error!("cannot start compute thread {index}: {e}"),
            }
        }
        Self { jobs, started }
    }

    /// Runs `work` on one of the threads and returns its result; a panic in
    /// it is raised here, where the work was asked for.
    pub(super) async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let result = if self.started == 0 {
            tokio::task::spawn_blocking(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)))
                .await
                .map_err(|e| e.into_panic())
                .and_then(|caught| caught)
        } else {
            let (done, answer) = tokio::sync::oneshot::channel();
            // Work may reach the runtime, as it could on the blocking pool.
            let runtime = tokio::runtime::Handle::try_current().ok();
            let job: Job = Box::new(move || {
                let _entered = runtime.as_ref().map(|r| r.enter());
                let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
            });
            self.jobs.send(job).expect("the compute threads live as long as their pool");
            answer.await.expect("a compute thread answers every piece it takes")
        };
        match result {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_same_few_threads_and_panics_reach_the_caller() {
        let threads = Threads::start(2, "mass-compute");
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..20 {
            names.insert(threads.run(|| std::thread::current().name().map(str::to_owned)).await);
        }
        assert!(!names.is_empty() && names.len() <= 2, "{names:?}");
        assert!(names.iter().all(|n| n.as_deref().is_some_and(|n| n.starts_with("mass-compute-"))), "{names:?}");
        let caught = tokio::spawn(async move {
            threads.run(|| panic!("boom")).await;
        })
        .await;
        assert!(caught.is_err_and(|e| e.is_panic()));
    }
}

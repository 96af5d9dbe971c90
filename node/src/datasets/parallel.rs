//! An ordered parallel map, the one piece of threading ingest needs.
//!
//! The calling thread pulls jobs (reading the file: its reader need not be
//! `Send`), worker threads run `work` on them, and the calling thread hands
//! the results to `sink` in the jobs' order, so whatever `sink` does (store
//! shards, fold statistics) happens exactly as a single thread would do it.
//! At most `2 * threads` jobs are between pulled and sunk, whatever the
//! number of jobs: memory is bounded by a few jobs per worker.

use std::{
    collections::BTreeMap,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
};

/// Runs `work` over `jobs` on `threads` threads (inline, with no thread
/// started, when `threads` is 1) and hands each result to `sink`, in order.
///
/// Stops at the first error, in job order: a job that fails to be pulled
/// (`Err` from `jobs`) is reported only after every job pulled before it
/// has been sunk, so an error that `sink` returns for an earlier job wins.
/// A panic in `work` is resumed on the calling thread.
pub fn ordered_map<J, T, E>(
    threads: usize,
    jobs: impl Iterator<Item = Result<J, E>>,
    work: impl Fn(J) -> T + Sync,
    sink: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E>
where
    J: Send,
    T: Send,
{
    if threads <= 1 {
        let mut sink = sink;
        for job in jobs {
            sink(work(job?))?;
        }
        return Ok(());
    }
    let window = 2 * threads as u64;
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, J)>(threads);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, thread::Result<T>)>();
    // Set once the caller returns: jobs still queued are skipped.
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let (job_rx, work, stop) = (&job_rx, &work, &stop);
            scope.spawn(move || {
                loop {
                    // The lock is held while waiting for a job, never while working.
                    let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((index, job)) = job else { return };
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let result = catch_unwind(AssertUnwindSafe(|| work(job)));
                    if done_tx.send((index, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let result = feed(jobs, &job_tx, InOrder { done: &done_rx, waiting: BTreeMap::new(), next: 0 }, window, sink);
        stop.store(true, Ordering::Relaxed);
        // Dropping the sender lets idle workers end; the scope then waits
        // for the busy ones, whose results nobody reads.
        drop(job_tx);
        result
    })
}

/// The calling thread's part: pulls jobs while fewer than `window` are in
/// flight, and sinks results in order.
fn feed<J, T, E>(
    mut jobs: impl Iterator<Item = Result<J, E>>,
    job_tx: &mpsc::SyncSender<(u64, J)>,
    mut order: InOrder<'_, T>,
    window: u64,
    mut sink: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E> {
    let mut pulled = 0u64;
    loop {
        while pulled - order.next >= window {
            sink(order.take()?)?;
        }
        let Some(job) = jobs.next() else { break };
        match job {
            Ok(job) => {
                job_tx.send((pulled, job)).expect("workers live while jobs are sent");
                pulled += 1;
            }
            Err(e) => {
                while order.next < pulled {
                    sink(order.take()?)?;
                }
                return Err(e);
            }
        }
    }
    while order.next < pulled {
        sink(order.take()?)?;
    }
    Ok(())
}

/// Results as they arrive, handed out in job order.
struct InOrder<'a, T> {
    done: &'a mpsc::Receiver<(u64, thread::Result<T>)>,
    waiting: BTreeMap<u64, T>,
    next: u64,
}

impl<T> InOrder<'_, T> {
    /// The next result in order, waiting for it if need be. Never fails;
    /// the `Result` is for the caller's `?`.
    fn take<E>(&mut self) -> Result<T, E> {
        loop {
            if let Some(result) = self.waiting.remove(&self.next) {
                self.next += 1;
                return Ok(result);
            }
            let (index, result) = self.done.recv().expect("a worker holds each job pulled and not yet done");
            match result {
                Ok(result) => self.waiting.insert(index, result),
                Err(panic) => resume_unwind(panic),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_threads() {
        for threads in [1, 2, 3, 8] {
            let mut got = Vec::new();
            // Later jobs finish first: the order is the jobs', not the finishing one.
            let work = |i: u64| {
                std::thread::sleep(std::time::Duration::from_micros((40 - i % 40) * 20));
                i * i
            };
            ordered_map(threads, (0..100u64).map(Ok::<_, ()>), work, |x| {
                got.push(x);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, (0..100u64).map(|i| i * i).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    #[test]
    fn the_earliest_error_wins() {
        for threads in [1, 2, 4] {
            // Job 3 fails to be pulled, job 1 fails in the sink: job 1's error is first in order.
            let jobs = (0..10u64).map(|i| if i == 3 { Err(format!("pull {i}")) } else { Ok(i) });
            let sunk = AtomicUsize::new(0);
            let err = ordered_map(
                threads,
                jobs,
                |i| i,
                |i| {
                    sunk.fetch_add(1, Ordering::Relaxed);
                    if i == 1 { Err(format!("sink {i}")) } else { Ok(()) }
                },
            )
            .unwrap_err();
            assert_eq!(err, "sink 1");
            assert_eq!(sunk.load(Ordering::Relaxed), 2, "nothing after the failing job is sunk");
            // With no failing sink, the pull error comes after every earlier job.
            let jobs = (0..10u64).map(|i| if i == 3 { Err(format!("pull {i}")) } else { Ok(i) });
            let mut got = Vec::new();
            let err = ordered_map(
                threads,
                jobs,
                |i| i,
                |i| {
                    got.push(i);
                    Ok(())
                },
            )
            .unwrap_err();
            assert_eq!((err.as_str(), got), ("pull 3", vec![0, 1, 2]));
        }
    }

    #[test]
    fn jobs_in_flight_are_bounded() {
        let live = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let jobs = (0..200u64).map(|i| {
            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            Ok::<_, ()>(i)
        });
        ordered_map(
            3,
            jobs,
            |i| i,
            |_| {
                live.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .unwrap();
        assert!(most.load(Ordering::SeqCst) <= 6, "{} jobs in flight", most.load(Ordering::SeqCst));
    }

    #[test]
    #[should_panic(expected = "job 5")]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let _ = ordered_map(2, (0..10u64).map(Ok::<_, ()>), |i| assert_ne!(i, 5, "job 5"), |_| Ok(()));
    }
}

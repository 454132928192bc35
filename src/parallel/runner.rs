//! Where a `Parallel` run's batches go: inline, a thread pool, or the process executor; and the
//! batches in flight on either pool.

use super::{Backend, Parallel};
use crate::error::{ErrorKind, TaskError};
use crate::executor::{Announce, Batch, Executor, Notify};
use crate::task::Task;
use crate::unwind;
use crate::ThreadPool;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run executes its tasks.
pub(crate) enum Runner {
    /// `n_jobs(1)`: in the calling thread, no pool at all.
    Inline,
    /// Batches dispatched to a pool.
    Pool(Pool),
    /// No pool could be had; the run yields this error and ends.
    Unavailable(String),
}

/// A pool batches are dispatched to.
pub(crate) enum Pool {
    Threads(Arc<ThreadPool>),
    Processes(Executor),
}

/// The outcome slot of a batch running on a thread: outputs (or the first panic) and the run
/// time, written by the pool thread before it notifies.
type ThreadSlot<O> = Arc<Mutex<Option<(Result<Vec<O>, TaskError>, Duration)>>>;

/// A batch in flight.
pub(crate) enum Pending<O> {
    Process(Batch<O>),
    Thread(ThreadSlot<O>),
}

impl Runner {
    /// The runner for `options` with `jobs` jobs.
    pub(crate) fn choose(options: &Parallel, jobs: usize) -> Runner {
        let backend = if crate::process::marker::in_worker() && options.executor.is_none() {
            // Inside a worker task: never a process pool per task.
            Backend::Threads
        } else {
            options.backend
        };
        // `n_jobs(1)` runs inline, unless an executor was given explicitly: then it is used.
        if jobs == 1 && options.executor.is_none() {
            return Runner::Inline;
        }
        let pool = match backend {
            Backend::Threads => Pool::Threads(thread_pool(jobs)),
            Backend::Processes => {
                let executor = match &options.executor {
                    Some(executor) => Ok(executor.clone()),
                    None => Executor::builder().workers(jobs).reusable(),
                };
                match executor {
                    Ok(executor) => Pool::Processes(executor),
                    // A worker process that never called init() may not start workers of its
                    // own: threads give the same results.
                    Err(_) if crate::process::marker::refuse_nested_workers().is_err() => {
                        Pool::Threads(thread_pool(jobs))
                    }
                    // This program cannot have workers (no init()): the run reports why.
                    Err(e) => return Runner::Unavailable(e.to_string()),
                }
            }
        };
        Runner::Pool(pool)
    }
}

impl Pool {
    /// Starts `batch`; `sender` is told `tag` when it finishes. Thread batches not begun when
    /// `abort` is raised skip their work.
    pub(crate) fn dispatch<T: Task>(
        &self,
        batch: Vec<T>,
        sender: &Announce,
        tag: usize,
        abort: &Arc<AtomicBool>,
    ) -> Pending<T::Output> {
        match self {
            Pool::Processes(executor) => {
                Pending::Process(executor.submit_batch(&batch, Notify { sender: sender.clone(), tag }))
            }
            Pool::Threads(pool) => {
                let slot: ThreadSlot<T::Output> = Arc::new(Mutex::new(None));
                let (slot2, sender, abort) = (slot.clone(), sender.clone(), abort.clone());
                pool.spawn(move || {
                    let outcome = if abort.load(Ordering::Relaxed) {
                        (Err(TaskError::new(ErrorKind::Cancelled, std::any::type_name::<T>())), Duration::ZERO)
                    } else {
                        run_batch(batch)
                    };
                    *slot2.lock() = Some(outcome);
                    sender.send(tag);
                });
                Pending::Thread(slot)
            }
        }
    }

    /// True for the thread pool, whose batches cannot be killed by a Ctrl-C: the iterator
    /// stops waiting for them instead.
    pub(crate) fn is_threads(&self) -> bool {
        matches!(self, Pool::Threads(_))
    }
}

impl<O: serde::de::DeserializeOwned> Pending<O> {
    /// The outputs and run time of a batch whose notification came.
    pub(crate) fn take(self) -> (Result<Vec<O>, TaskError>, Duration) {
        match self {
            Pending::Process(batch) => batch.take(),
            Pending::Thread(slot) => slot.lock().take().expect("set before notifying"),
        }
    }
}

impl<O> Pending<O> {
    /// Cancels a process batch no worker received yet (thread batches see the abort flag).
    pub(crate) fn cancel(&self) {
        if let Pending::Process(batch) = self {
            batch.cancel();
        }
    }
}

/// Runs a batch on this thread: outputs, or the first panic; and the run time.
pub(crate) fn run_batch<T: Task>(batch: Vec<T>) -> (Result<Vec<T::Output>, TaskError>, Duration) {
    let start = Instant::now();
    let mut outputs = Vec::with_capacity(batch.len());
    for task in batch {
        match unwind::halt_unwinding(|| task.run()) {
            Ok(output) => outputs.push(output),
            Err(payload) => {
                let kind = ErrorKind::Panic { message: unwind::payload_message(&*payload), location: None };
                return (Err(TaskError::new(kind, std::any::type_name::<T>())), Duration::ZERO);
            }
        }
    }
    (Ok(outputs), start.elapsed())
}

/// The thread pool of the last size asked for, kept for the next run (as the reusable
/// executor is). A run of another size replaces it: the old pool ends once the runs still using
/// it let go, so pools never pile up (one per distinct `n_jobs` would, forever).
fn thread_pool(n: usize) -> Arc<ThreadPool> {
    static POOL: Mutex<Option<(usize, Arc<ThreadPool>)>> = Mutex::new(None);
    let mut cached = POOL.lock();
    if let Some((size, pool)) = cached.as_ref().filter(|(size, _)| *size == n) {
        debug_assert_eq!(*size, n);
        return pool.clone();
    }
    let pool = ThreadPool::builder().num_threads(n).thread_name(|i| format!("workpool-parallel-{i}"));
    let pool = Arc::new(pool.build().unwrap_or_else(|e| panic!("{e}")));
    *cached = Some((n, pool.clone()));
    pool
}

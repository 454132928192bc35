//! The process executor: typed tasks run in re-executed worker processes.
//!
//! ```text
//!  submit / map (any thread) ──encode──▶ injector ──▶ feeder i (one thread per slot)
//!                                                       │  fill window, write frames
//!                                                       ▼
//!                                            worker process i  (this binary, in init())
//!                                                       │  STARTED / DONE frames
//!  TaskHandle::join ◀── Completion ◀────────────────────┘
//! ```
//!
//! Words: a **slot** is one of the `workers(n)` places of an executor; it has one **feeder**
//! thread and at most one **worker process** at a time (started lazily, replaced when it dies).
//!
//! Arguments are encoded on the submitting thread, outputs decoded on the joining thread: the
//! feeders only move bytes. The files:
//!
//! * `builder.rs`: settings ([`ExecutorBuilder`]) and building; the reusable executor.
//! * `shared.rs`: what handles and feeders share (`Shared`, `Slot`, `Envelope`), submitting,
//!   interrupting, and the process-wide list of live executors.
//! * `feeder.rs`: the dispatch loop of one slot and its fault handling.
//! * `completion.rs`: one task's outcome, a small state machine; `handle.rs`: [`TaskHandle`];
//!   `batch.rs`: the typed handle of a batch (what `Parallel` waits on); `map.rs`: [`Map`].

mod batch;
mod builder;
mod completed;
mod completion;
mod doorbell;
mod feeder;
mod handle;
mod map;
mod shared;
mod shutdown;

pub(crate) use batch::Batch;
pub use builder::{ExecutorBuilder, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
pub use completed::{as_completed, AsCompleted, MapStream};
pub(crate) use completion::{Announce, Notify};
pub use handle::{KillOnDrop, TaskHandle};
pub use map::Map;
#[cfg(feature = "ctrlc")]
pub(crate) use shared::interrupt_all;
pub use shutdown::ShuttingDown;

use crate::codec;
use crate::error::BuildError;
use crate::task::{self, Task};
use shared::Shared;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Closes the executor when the last user handle goes (feeder threads hold the `Shared` itself).
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// A pool of worker processes that run [`Task`]s.
///
/// Workers are this program's own binary, started again (see [`init`](crate::init)); they start
/// lazily on the first task, exit after [`idle_timeout`](ExecutorBuilder::idle_timeout), and are
/// replaced whenever one dies. A crash, abort or kill costs the task that was running and
/// nothing else. Cloning is cheap; all clones share the workers. Dropping the last clone lets
/// every submitted task finish (their handles still get results), then stops the workers.
///
/// # Examples
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use workpool::{Executor, Task};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square(u64);
/// impl Task for Square {
///     type Output = u64;
///     fn run(self) -> u64 { self.0 * self.0 }
/// }
/// workpool::register!(Square);
///
/// fn main() {
///     workpool::init();
///     let ex = Executor::builder().workers(2).build().unwrap();
///     assert_eq!(ex.submit(Square(7)).join().unwrap(), 49);
///     let squares: Vec<u64> = ex.map((0..100).map(Square)).map(Result::unwrap).collect();
///     assert_eq!(squares[9], 81);
/// }
/// ```
#[derive(Clone)]
pub struct Executor {
    owner: Arc<Owner>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor").field("config", &self.shared().config).finish()
    }
}

/// What [`Executor::workers`] reports about one slot.
///
/// ```no_run
/// # fn main() {
/// # workpool::init();
/// let ex = workpool::Executor::builder().workers(2).build().unwrap();
/// for (slot, w) in ex.workers().iter().enumerate() {
///     let pid = w.pid.map_or("-".to_string(), |p| p.to_string());
///     println!("slot {slot}: pid {pid}, {} in flight, {} run, {} starts, {} deaths",
///         w.in_flight, w.tasks_run, w.starts, w.deaths);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The process id, when a worker process is running in this slot.
    pub pid: Option<u32>,
    /// Tasks sent to the worker process and not finished (0: idle).
    pub in_flight: usize,
    /// Tasks finished by this slot's worker processes, over all of them.
    pub tasks_run: u64,
    /// Worker processes started in this slot.
    pub starts: u64,
    /// Worker processes of this slot that died (crash, kill, timeout).
    pub deaths: u64,
}

/// How [`Executor::shutdown`] treats work that has not finished.
///
/// ```no_run
/// # fn main() {
/// # workpool::init();
/// use workpool::{Executor, Shutdown};
///
/// let ex = Executor::builder().build().unwrap();
/// // … submit work …
/// ex.shutdown(Shutdown::CancelQueued); // queued tasks are cancelled, running ones finish
/// // Or `Shutdown::Wait`: everything submitted runs first.
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Run everything already submitted, then stop the workers.
    Wait,
    /// Cancel queued tasks (their handles report `is_cancelled()`), finish the running ones.
    CancelQueued,
}

impl Executor {
    /// A builder; `Executor::builder().workers(4).build()`.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(4).build().unwrap();
    /// # drop(ex);
    /// # }
    /// ```
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The process-wide executor with default settings ([`cpu_count`](crate::cpu_count)
    /// workers); same as `Executor::builder().reusable()`.
    ///
    /// # Errors
    /// As [`ExecutorBuilder::build`].
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// // Anywhere in the program: the same executor, created on first use.
    /// let ex = workpool::Executor::reusable().unwrap();
    /// assert_eq!(ex.num_workers(), workpool::cpu_count());
    /// # }
    /// ```
    pub fn reusable() -> Result<Executor, BuildError> {
        Executor::builder().reusable()
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// Number of slots (worker processes at a time).
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(3).build().unwrap();
    /// assert_eq!(ex.num_workers(), 3); // slots; their processes start on demand
    /// # }
    /// ```
    pub fn num_workers(&self) -> usize {
        self.shared().slots.len()
    }

    /// Submits a task; returns at once with a handle to its result.
    ///
    /// Errors that need no worker (an unregistered type, an argument that does not serialize, an
    /// executor that was shut down) are reported through the handle right away.
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn word_count(text: String) -> usize {
    ///     text.split_whitespace().count()
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().build().unwrap();
    ///     let handle = ex.submit(WordCount { text: "one two three".into() });
    ///     assert_eq!(handle.join().unwrap(), 3);
    /// }
    /// ```
    pub fn submit<T: Task>(&self, task: T) -> TaskHandle<T::Output> {
        let completion = self.shared().submit_encoded(
            std::any::type_name::<T>(),
            task::entry_of::<T>(),
            1,
            |out| codec::encode_into(&task, out),
            None,
        );
        TaskHandle::new(completion)
    }

    /// Submits a task with a run-time limit of its own, with the semantics of the builder's
    /// [`task_timeout`](ExecutorBuilder::task_timeout) (which it replaces for this task): past
    /// `timeout` the task fails with [`TaskError::is_timeout`](crate::TaskError::is_timeout),
    /// its worker is killed and replaced, the other tasks carry on. The time counts from when
    /// the task starts in a worker, not from submission (pebble's `schedule(timeout=)`).
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Nap(u64);
    /// # impl workpool::Task for Nap { type Output = (); fn run(self) { std::thread::sleep(std::time::Duration::from_millis(self.0)) } }
    /// # workpool::register!(Nap);
    /// # fn main() { workpool::init();
    /// use std::time::Duration;
    /// let ex = workpool::Executor::builder().workers(1).build().unwrap();
    /// let slow = ex.submit_with_timeout(Nap(10_000), Duration::from_millis(100));
    /// assert!(slow.join().unwrap_err().is_timeout());
    /// # }
    /// ```
    pub fn submit_with_timeout<T: Task>(&self, task: T, timeout: Duration) -> TaskHandle<T::Output> {
        let completion = self.shared().submit_timed(
            std::any::type_name::<T>(),
            task::entry_of::<T>(),
            1,
            |out| codec::encode_into(&task, out),
            None,
            Some(timeout),
        );
        TaskHandle::new(completion)
    }

    /// Submits many arguments of `T` as one frame (a batch): the worker runs them in order and
    /// returns all outputs together, or the first failure. `notify` is told when it lands.
    pub(crate) fn submit_batch<T: Task>(&self, tasks: &[T], notify: Notify) -> Batch<T::Output> {
        let encode = |out: &mut Vec<u8>| tasks.iter().try_for_each(|t| codec::encode_into(t, out));
        let completion = self.shared().submit_encoded(
            std::any::type_name::<T>(),
            task::entry_of::<T>(),
            tasks.len() as u32,
            encode,
            Some(notify),
        );
        Batch::new(completion, tasks.len())
    }

    /// Runs every task and yields the results **in input order**, streaming: input is pulled
    /// lazily and at most a bounded number of tasks are in flight, so memory stays flat however
    /// long the input. Dropping the iterator cancels what has not been sent to a worker.
    ///
    /// A Ctrl-C (with [`handle_ctrl_c`](crate::handle_ctrl_c)) makes the iterator yield one
    /// `is_interrupted()` error and end.
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn parse(line: String) -> Result<i64, String> {
    ///     line.trim().parse().map_err(|e| format!("{line:?}: {e}"))
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().build().unwrap();
    ///     let lines = vec!["1".to_string(), "x".to_string(), "3".to_string()];
    ///     let parsed: Vec<_> = ex.map(lines.into_iter().map(|line| Parse { line })).map(Result::unwrap).collect();
    ///     assert_eq!(parsed[0], Ok(1));
    ///     assert!(parsed[1].is_err());
    /// }
    /// ```
    pub fn map<T, I>(&self, tasks: I) -> Map<T::Output, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        Map::new(self.clone(), tasks.into_iter())
    }

    /// The async form of [`map`](Executor::map): a [`Stream`](futures_core::Stream) of the
    /// results in input order, with the same bounded window (input is pulled as results are
    /// taken). Dropping it cancels what has not been sent to a worker.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Square(u64);
    /// # impl workpool::Task for Square { type Output = u64; fn run(self) -> u64 { self.0 * self.0 } }
    /// # workpool::register!(Square);
    /// # async fn sum(ex: workpool::Executor) -> u64 {
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// // With `futures::StreamExt` this is `while let Some(r) = squares.next().await`.
    /// let mut squares = ex.map_stream((0..1000).map(Square));
    /// let mut total = 0;
    /// while let Some(square) = poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut squares), cx)).await {
    ///     total += square.unwrap();
    /// }
    /// total
    /// # }
    /// ```
    pub fn map_stream<T, I>(&self, tasks: I) -> MapStream<T::Output, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        MapStream::new(self.clone(), tasks.into_iter())
    }

    /// A snapshot of the slots: pids, busy or idle, tasks run, restarts.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(2).build().unwrap();
    /// let busy = ex.workers().iter().filter(|w| w.in_flight > 0).count();
    /// println!("{busy} of {} slots busy", ex.num_workers());
    /// # }
    /// ```
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared()
            .slots
            .iter()
            .map(|s| {
                let pid = s.pid.load(Ordering::SeqCst);
                WorkerInfo {
                    pid: (pid != 0).then_some(pid),
                    in_flight: s.inflight.load(Ordering::SeqCst),
                    tasks_run: s.tasks_run.load(Ordering::SeqCst),
                    starts: s.starts.load(Ordering::SeqCst),
                    deaths: s.deaths.load(Ordering::SeqCst),
                }
            })
            .collect()
    }

    /// [`shutdown`](Executor::shutdown) for async code: the same stop, done on a thread of
    /// its own, so the runtime is not blocked while workers finish; the future is ready once
    /// every worker process has exited and been reaped. The stop begins at this call (later
    /// submits fail at once), whether or not the future is awaited.
    ///
    /// ```no_run
    /// # async fn stop(ex: workpool::Executor) {
    /// ex.shutdown_async(workpool::Shutdown::CancelQueued).await;
    /// # }
    /// ```
    pub fn shutdown_async(&self, mode: Shutdown) -> ShuttingDown {
        if mode == Shutdown::CancelQueued {
            // At once, as `shutdown` would: nothing queued may start after this call returns.
            self.shared().queue.drain(|env| {
                env.completion.cancel();
            });
        }
        self.shared().close();
        shutdown::start(self, mode)
    }

    /// Where each slot's time went, and in total: tasks run, busy, idle and starting time,
    /// bytes to and from workers, deaths by cause (see [`ExecutorStats`](crate::ExecutorStats)).
    ///
    /// ```no_run
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(2).build().unwrap();
    /// let stats = ex.stats();
    /// assert_eq!(stats.slots.len(), 2);
    /// assert_eq!(stats.total.tasks_run, 0);
    /// ```
    pub fn stats(&self) -> crate::ExecutorStats {
        let shared = self.shared();
        crate::ExecutorStats::collect(&shared.observe, shared.slots.iter().map(|s| s.starts.load(Ordering::SeqCst)))
    }

    /// Starts recording a timeline of this executor (every slot's tasks, worker starts, deaths,
    /// timeouts, and the callers' waits) until [`Recording::finish`](crate::Recording::finish),
    /// which gives a [`Timeline`](crate::Timeline) to write as Chrome trace-event JSON. Not
    /// recording costs nothing measurable; recording a few per cent on tiny tasks.
    ///
    /// ```no_run
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(2).build().unwrap();
    /// let recording = ex.record();
    /// // ... submit, map, Parallel::new().executor(ex.clone()).run(...) ...
    /// recording.finish().write_chrome_json("timeline.json").unwrap();
    /// ```
    pub fn record(&self) -> crate::Recording {
        crate::Recording::start(&self.shared().observe)
    }

    /// Stops the executor and waits until its workers have exited and been reaped.
    ///
    /// Every clone is affected: later submits fail with `ErrorKind::ShutDown`. Handles of tasks
    /// that were cancelled report `is_cancelled()`; the others get their results.
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn double(n: u64) -> u64 {
    ///     2 * n
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().build().unwrap();
    ///     let pending: Vec<_> = (0..100).map(|n| ex.submit(Double { n })).collect();
    ///     ex.shutdown(workpool::Shutdown::Wait); // returns once the workers are gone
    ///     assert_eq!(pending.into_iter().map(|h| h.join().unwrap()).sum::<u64>(), 9900);
    ///     assert!(ex.submit(Double { n: 1 }).join().is_err()); // ErrorKind::ShutDown
    /// }
    /// ```
    pub fn shutdown(&self, mode: Shutdown) {
        let shared = self.shared();
        if mode == Shutdown::CancelQueued {
            shared.queue.drain(|env| {
                env.completion.cancel();
            });
        }
        shared.close();
        let threads: Vec<_> = shared.threads.lock().drain(..).collect();
        if threads.is_empty() {
            // Another caller is joining the feeders (or did): wait until it is done.
            let mut stopped = shared.stopped.lock();
            while !*stopped {
                shared.stopped_cv.wait(&mut stopped);
            }
            return;
        }
        let me = std::thread::current().id();
        for thread in threads {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
        *shared.stopped.lock() = true;
        shared.stopped_cv.notify_all();
    }
}

//! The process executor: typed tasks run in re-executed worker processes.
//!
//! ```text
//!  submit / map (any thread) ──encode──▶ injector ──▶ feeder i (one thread per worker slot)
//!                                                       │  fill window, write frames
//!                                                       ▼
//!                                            worker process i  (this binary, in init())
//!                                                       │  STARTED / DONE frames
//!  TaskHandle::join ◀── Completion ◀────────────────────┘
//! ```
//!
//! Arguments are encoded on the submitting thread, outputs decoded on the joining thread: the
//! feeders only move bytes. See [`feeder`] for the dispatch loop and its fault handling.

mod feeder;
pub(crate) mod handle;
mod map;

pub use handle::TaskHandle;
pub use map::Map;

use crate::codec;
use crate::error::{BuildError, ErrorKind};
use crate::process::wire;
use crate::scheduler::{Order, Shared};
use crate::task::{self, Task};
use handle::Completion;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Default `idle_timeout`: as loky, five minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a new worker has to say hello.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings of an executor; two reusable requests with equal configs share workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) max_worker_memory: Option<u64>,
    pub(crate) handshake_timeout: Duration,
}

/// One encoded task on its way to a worker.
pub(crate) struct Envelope {
    pub(crate) id: u64,
    /// The complete `TASK` frame.
    pub(crate) frame: Vec<u8>,
    pub(crate) completion: Arc<Completion>,
    /// The Ctrl-C epoch at submission: tasks from before an interrupt are not dispatched.
    pub(crate) epoch: u64,
}

/// What the outside world can see of one worker slot (all fields written by its feeder, except
/// `interrupt`, which the Ctrl-C path sets before it kills the worker).
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) pid: AtomicU32,
    pub(crate) inflight: AtomicUsize,
    pub(crate) tasks_run: AtomicU64,
    pub(crate) starts: AtomicU64,
    pub(crate) deaths: AtomicU64,
    pub(crate) interrupt: AtomicU64,
}

/// State shared by an executor's handles and its feeder threads.
pub(crate) struct Core {
    pub(crate) config: Config,
    pub(crate) shared: Arc<Shared<Envelope>>,
    pub(crate) slots: Box<[Arc<Slot>]>,
    /// `max(1, cpu_count / workers)`: the thread caps workers get (computed once: cpu_count
    /// reads several files).
    pub(crate) threads_per_worker: usize,
    next_id: AtomicU64,
    /// Bumped by every Ctrl-C.
    pub(crate) epoch: AtomicU64,
    /// Set when workers cannot start at all (no `init()`, wrong binary): fail fast from then on.
    broken: std::sync::OnceLock<String>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Core {
    pub(crate) fn set_broken(&self, message: String) {
        let _ = self.broken.set(message.clone());
        self.shared.drain(|env| {
            env.completion.fail(ErrorKind::Spawn { message: message.clone() });
        });
    }

    /// Ctrl-C: fail what is queued, kill busy workers (their tasks fail as interrupted).
    pub(crate) fn interrupt(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.drain(|env| {
            env.completion.fail(ErrorKind::Interrupted);
        });
        for slot in self.slots.iter() {
            if slot.inflight.load(Ordering::SeqCst) > 0 {
                slot.interrupt.store(epoch, Ordering::SeqCst);
                let pid = slot.pid.load(Ordering::SeqCst);
                if pid != 0 {
                    crate::sys::kill(pid);
                }
            }
        }
    }

    /// Kills every worker at once and reaps it (the process is about to exit: nobody else
    /// would reap them, and PID 1 is not always a good reaper).
    pub(crate) fn kill_all(&self) {
        let pids: Vec<u32> = self.slots.iter().map(|s| s.pid.load(Ordering::SeqCst)).filter(|&p| p != 0).collect();
        for &pid in &pids {
            crate::sys::kill(pid);
        }
        for pid in pids {
            crate::sys::reap(pid);
        }
    }

    fn close(&self) {
        self.shared.terminate();
    }

    /// Encodes and queues one `TASK` frame of `count` arguments.
    pub(crate) fn submit_encoded(
        &self,
        name: &'static str,
        entry: Option<task::Entry>,
        count: u32,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
        notify: Option<(Sender<usize>, usize)>,
    ) -> Arc<Completion> {
        let completion = Completion::new(name, notify);
        let Some(entry) = entry else {
            completion.fail(ErrorKind::NotRegistered);
            return completion;
        };
        if let Some(message) = self.broken.get().cloned() {
            completion.fail(ErrorKind::Spawn { message });
            return completion;
        }
        if self.shared.is_terminating() {
            completion.fail(ErrorKind::ShutDown);
            return completion;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut frame = Vec::with_capacity(64);
        let start = wire::task_header(&mut frame, id, entry.key, count);
        if let Err(message) = encode(&mut frame) {
            completion.fail(ErrorKind::Codec { stage: "encoding the argument", message });
            return completion;
        }
        if let Err(e) = wire::end_frame(&mut frame, start) {
            completion.fail(ErrorKind::Codec { stage: "framing the argument", message: e.0 });
            return completion;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        self.shared.inject(Envelope { id, frame, completion: completion.clone(), epoch });
        completion
    }
}

/// Closes the executor when the last user handle goes (feeder threads hold the `Core` itself).
struct Owner {
    core: Arc<Core>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.core.close();
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
        f.debug_struct("Executor").field("config", &self.core().config).finish()
    }
}

/// What [`Executor::workers`] reports about one worker slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The process id, when a worker process is running in this slot.
    pub pid: Option<u32>,
    /// Tasks sent to the worker and not finished (0: idle).
    pub in_flight: usize,
    /// Tasks finished by this slot's workers, over all of them.
    pub tasks_run: u64,
    /// Worker processes started in this slot.
    pub starts: u64,
    /// Worker processes of this slot that died (crash, kill, timeout).
    pub deaths: u64,
}

/// How [`Executor::shutdown`] treats work that has not finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Run everything already submitted, then stop the workers.
    Wait,
    /// Cancel queued tasks (their handles report `is_cancelled()`), finish the running ones.
    CancelQueued,
}

impl Executor {
    /// A builder; `Executor::builder().workers(4).build()`.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The process-wide executor with default settings ([`cpu_count`](crate::cpu_count)
    /// workers); same as `Executor::builder().reusable()`.
    ///
    /// # Errors
    /// As [`ExecutorBuilder::build`].
    pub fn reusable() -> Result<Executor, BuildError> {
        Executor::builder().reusable()
    }

    fn core(&self) -> &Arc<Core> {
        &self.owner.core
    }

    /// Number of worker slots.
    pub fn num_workers(&self) -> usize {
        self.core().slots.len()
    }

    /// Submits a task; returns at once with a handle to its result.
    ///
    /// Errors that need no worker (an unregistered type, an argument that does not serialize, an
    /// executor that was shut down) are reported through the handle right away.
    pub fn submit<T: Task>(&self, task: T) -> TaskHandle<T::Output> {
        TaskHandle::new(self.submit_with(task, None))
    }

    pub(crate) fn submit_with<T: Task>(&self, task: T, notify: Option<(Sender<usize>, usize)>) -> Arc<Completion> {
        self.core().submit_encoded(
            std::any::type_name::<T>(),
            task::entry_of::<T>(),
            1,
            |out| codec::encode_into(&task, out),
            notify,
        )
    }

    /// Submits many arguments of `T` as one frame (a batch): the worker runs them in order and
    /// returns all outputs together, or the first failure.
    pub(crate) fn submit_batch<T: Task>(&self, tasks: &[T], notify: Option<(Sender<usize>, usize)>) -> Arc<Completion> {
        let encode = |out: &mut Vec<u8>| tasks.iter().try_for_each(|t| codec::encode_into(t, out));
        self.core().submit_encoded(
            std::any::type_name::<T>(),
            task::entry_of::<T>(),
            tasks.len() as u32,
            encode,
            notify,
        )
    }

    /// Runs every task and yields the results **in input order**, streaming: input is pulled
    /// lazily and at most a bounded number of tasks are in flight, so memory stays flat however
    /// long the input. Dropping the iterator cancels what has not been sent to a worker.
    ///
    /// A Ctrl-C (with [`handle_ctrl_c`](crate::handle_ctrl_c)) makes the iterator yield one
    /// `is_interrupted()` error and end.
    pub fn map<T, I>(&self, tasks: I) -> Map<T::Output, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        Map::new(self.clone(), tasks.into_iter())
    }

    /// A snapshot of the worker slots: pids, busy or idle, tasks run, restarts.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.core()
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

    /// Stops the executor and waits until its workers have exited and been reaped.
    ///
    /// Every clone is affected: later submits fail with `ErrorKind::ShutDown`. Handles of tasks
    /// that were cancelled report `is_cancelled()`; the others get their results.
    pub fn shutdown(&self, mode: Shutdown) {
        let core = self.core();
        if mode == Shutdown::CancelQueued {
            core.shared.drain(|env| {
                env.completion.cancel();
            });
        }
        core.close();
        let threads: Vec<_> = core.threads.lock().drain(..).collect();
        let me = std::thread::current().id();
        for thread in threads {
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

/// Configures an [`Executor`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` or `reusable` is called"]
pub struct ExecutorBuilder {
    config: Config,
}

impl Default for ExecutorBuilder {
    fn default() -> Self {
        ExecutorBuilder {
            config: Config {
                workers: 0,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                task_timeout: None,
                max_tasks_per_worker: None,
                max_worker_memory: None,
                handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            },
        }
    }
}

impl ExecutorBuilder {
    /// Number of worker processes; `0` (the default) means [`cpu_count`](crate::cpu_count).
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// How long a worker may sit idle before it exits (default 300 s). The next task starts a
    /// new one.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// A limit on each task's run time. A task past it fails with `is_timeout()`, its worker is
    /// killed and replaced, other tasks carry on. Default: none.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// Replace each worker after it ran `n` tasks (between tasks; no task fails).
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.config.max_tasks_per_worker = Some(n.max(1));
        self
    }

    /// Replace a worker, between tasks, once its resident memory exceeds `bytes`.
    pub fn max_worker_memory(mut self, bytes: u64) -> Self {
        self.config.max_worker_memory = Some(bytes);
        self
    }

    /// How long a new worker has to say hello before it is killed (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    fn resolved(&self) -> Config {
        let mut config = self.config.clone();
        if config.workers == 0 {
            config.workers = crate::cpu_count();
        }
        config
    }

    /// Builds a new executor with its own workers (started lazily, on the first task).
    ///
    /// # Errors
    /// When a feeder thread cannot be started, or when this process is itself a worker that
    /// never called [`init`](crate::init) (starting workers there would be a fork bomb).
    pub fn build(self) -> Result<Executor, BuildError> {
        build(self.resolved())
    }

    /// The process-wide executor for this configuration. The same configuration returns the
    /// same executor (clones share their workers); a different one replaces it — the old
    /// executor finishes every task already submitted to it, then stops its workers. It is
    /// never left broken: after any fault it simply works.
    ///
    /// # Errors
    /// As [`build`](ExecutorBuilder::build).
    pub fn reusable(self) -> Result<Executor, BuildError> {
        static REUSABLE: Mutex<Option<Executor>> = Mutex::new(None);
        let config = self.resolved();
        let mut current = REUSABLE.lock();
        if let Some(existing) = current.as_ref().filter(|e| e.core().config == config) {
            return Ok(existing.clone());
        }
        let executor = build(config)?;
        *current = Some(executor.clone());
        Ok(executor)
    }
}

fn build(config: Config) -> Result<Executor, BuildError> {
    if crate::process::worker::marked_but_not_serving() {
        return Err(BuildError::msg(
            "this process was started as a workpool worker but main() never called workpool::init(), so it \
             may not start workers of its own: call workpool::init() as the first statement of main",
        ));
    }
    let (shared, queues) = Shared::new(config.workers, Order::Fifo);
    let slots: Box<[Arc<Slot>]> = (0..config.workers).map(|_| Arc::new(Slot::default())).collect();
    let threads_per_worker = (crate::cpu_count() / config.workers).max(1);
    let core = Arc::new(Core {
        config,
        shared,
        slots,
        threads_per_worker,
        next_id: AtomicU64::new(0),
        epoch: AtomicU64::new(crate::ctrl_c::interrupts()),
        broken: std::sync::OnceLock::new(),
        threads: Mutex::new(Vec::new()),
    });
    let owner = Arc::new(Owner { core: core.clone() });
    for queue in queues {
        let index = queue.index();
        let feeder = feeder::Feeder::new(core.clone(), queue, core.slots[index].clone());
        let thread = std::thread::Builder::new()
            .name(format!("workpool-feeder-{index}"))
            .spawn(move || feeder.run())
            .map_err(|e| BuildError::io("could not start a feeder thread", e))?;
        core.threads.lock().push(thread);
    }
    crate::ctrl_c::register(&core);
    Ok(Executor { owner })
}

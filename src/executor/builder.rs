//! [`ExecutorBuilder`]: an executor's settings, and building one.

use super::feeder::{Feeder, Initializer};
use super::shared::{self, Config, Shared};
use super::{Executor, Owner};
use crate::codec;
use crate::error::BuildError;
use crate::launcher::Launcher;
use crate::process::wire;
use crate::scheduler::{self, Order};
use crate::task::Task;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Default `idle_timeout`: as loky, five minutes.
///
/// ```
/// assert_eq!(workpool::DEFAULT_IDLE_TIMEOUT, std::time::Duration::from_secs(300));
/// ```
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a new worker has to say hello.
///
/// ```
/// assert_eq!(workpool::DEFAULT_HANDSHAKE_TIMEOUT, std::time::Duration::from_secs(5));
/// ```
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures an [`Executor`].
///
/// Worker processes inherit the environment; for each of `OMP_NUM_THREADS`,
/// `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`, `VECLIB_MAXIMUM_THREADS`, `NUMEXPR_NUM_THREADS` and
/// `RAYON_NUM_THREADS` that the program did not set, a worker gets `max(1, cpu_count / workers)`,
/// so that libraries with thread pools of their own do not oversubscribe the machine (as joblib
/// does).
///
/// ```no_run
/// use std::time::Duration;
/// use workpool::Executor;
///
/// fn main() {
///     workpool::init();
///     let ex = Executor::builder()
///         .workers(4)
///         .idle_timeout(Duration::from_secs(30))
///         .task_timeout(Duration::from_secs(10))
///         .max_tasks_per_worker(10_000)
///         .max_worker_memory(2 << 30)
///         .build()
///         .expect("init() was called");
///     assert_eq!(ex.num_workers(), 4);
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` or `reusable` is called"]
pub struct ExecutorBuilder {
    config: Config,
    /// Why `initializer` could not take its task (unregistered, unencodable): `build` says it.
    initializer_error: Option<String>,
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
                initializer: None,
                launcher: Launcher::local(),
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            initializer_error: None,
        }
    }
}

impl ExecutorBuilder {
    /// Number of worker processes; `0` (the default) means [`cpu_count`](crate::cpu_count).
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(2).build().unwrap();
    /// assert_eq!(ex.num_workers(), 2);
    /// # }
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// How long a worker may sit idle before it exits (default 300 s). The next task starts a
    /// new one.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// // An interactive program: give memory back soon after a burst of work.
    /// let ex = workpool::Executor::builder().idle_timeout(std::time::Duration::from_secs(5)).build().unwrap();
    /// # drop(ex);
    /// # }
    /// ```
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// A limit on each task's run time. A task past it fails with `is_timeout()`, its worker is
    /// killed and replaced, other tasks carry on. Default: none.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// #[workpool::task]
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(Duration::from_millis(ms));
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().task_timeout(Duration::from_millis(200)).build().unwrap();
    ///     assert!(ex.submit(Nap { ms: 10_000 }).join().unwrap_err().is_timeout());
    ///     assert!(ex.submit(Nap { ms: 1 }).join().is_ok()); // on a new worker
    /// }
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.config.task_timeout = Some(timeout);
        self
    }

    /// Replace each worker after it ran `n` tasks (between tasks; no task fails).
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// // Tasks that leak (a C library's caches, say): a fresh process every 1,000 tasks.
    /// let ex = workpool::Executor::builder().max_tasks_per_worker(1_000).build().unwrap();
    /// # drop(ex);
    /// # }
    /// ```
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.config.max_tasks_per_worker = Some(n.max(1));
        self
    }

    /// Replace a worker, between tasks, once its resident memory exceeds `bytes`.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// // A worker whose resident memory grew past 1 GiB is replaced after its current task.
    /// let ex = workpool::Executor::builder().max_worker_memory(1 << 30).build().unwrap();
    /// # drop(ex);
    /// # }
    /// ```
    pub fn max_worker_memory(mut self, bytes: u64) -> Self {
        self.config.max_worker_memory = Some(bytes);
        self
    }

    /// How long a new worker has to say hello before it is killed (default 5 s).
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// // A slow machine, or workers whose start-up (a `static` initialised in `main`) takes long.
    /// let ex = workpool::Executor::builder().handshake_timeout(std::time::Duration::from_secs(30)).build().unwrap();
    /// # drop(ex);
    /// # }
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// A task run once in every worker process before its first task (concurrent.futures'
    /// `initializer`): load a model, open a database, warm a cache, in a process-wide static
    /// the tasks then use. It is encoded once, here, and sent to each new worker.
    ///
    /// If it fails in a worker (panics, kills its worker, runs past
    /// [`task_timeout`](ExecutorBuilder::task_timeout)), that worker's start fails: it is
    /// tried again (a few times, with back-off), and when every try failed the task that waited
    /// fails with [`TaskError::is_spawn`](crate::TaskError::is_spawn), naming the initializer's
    /// error. The executor is not broken: the next task starts a worker again.
    ///
    /// ```no_run
    /// use serde::{Deserialize, Serialize};
    /// use std::sync::OnceLock;
    /// use workpool::{Executor, Task};
    ///
    /// static GREETING: OnceLock<String> = OnceLock::new();
    ///
    /// #[derive(Clone, Serialize, Deserialize)]
    /// struct Setup(String);
    /// impl Task for Setup {
    ///     type Output = ();
    ///     fn run(self) { GREETING.set(self.0).unwrap() }
    /// }
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Greet;
    /// impl Task for Greet {
    ///     type Output = String;
    ///     fn run(self) -> String { GREETING.get().cloned().unwrap_or_default() }
    /// }
    /// workpool::register!(Setup, Greet);
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = Executor::builder().workers(2).initializer(Setup("hello".into())).build().unwrap();
    ///     assert_eq!(ex.submit(Greet).join().unwrap(), "hello");
    /// }
    /// ```
    pub fn initializer<T: Task<Output = ()>>(mut self, task: T) -> Self {
        match initializer_frame(&task) {
            Ok(init) => {
                self.config.initializer = Some(init);
                self.initializer_error = None;
            }
            Err(message) => self.initializer_error = Some(message),
        }
        self
    }

    /// How worker processes are started: [`Launcher::local`] (the default) forks them here;
    /// the others start them on other hosts (or in containers), which connect back to
    /// [`listen`](ExecutorBuilder::listen). With a remote launcher, `workers(0)` (the default)
    /// means the sum of its hosts' slots.
    ///
    /// ```no_run
    /// use workpool::{Executor, Launcher};
    /// # fn main() {
    /// workpool::init();
    /// let ex = Executor::builder().launcher(Launcher::ssh(["node1:8"])).build().unwrap();
    /// # }
    /// ```
    pub fn launcher(mut self, launcher: Launcher) -> Self {
        self.config.launcher = launcher;
        self
    }

    /// Where the executor listens for remote workers (default `127.0.0.1:0`: loopback, any
    /// port). Give an address the hosts can reach, e.g. `"10.0.0.1:0".parse().unwrap()`; port
    /// 0 picks a free one. Not used with [`Launcher::local`].
    ///
    /// ```
    /// let builder = workpool::Executor::builder().listen("0.0.0.0:7070".parse().unwrap());
    /// # let _ = builder;
    /// ```
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.config.listen = address;
        self
    }

    fn resolved(&self) -> Config {
        let mut config = self.config.clone();
        if config.workers == 0 && !config.launcher.is_local() {
            config.workers = config.launcher.slots().max(1);
        }
        if config.workers == 0 {
            config.workers = crate::cpu_count();
        }
        config
    }

    /// Builds a new executor with its own workers (started lazily, on the first task).
    ///
    /// # Errors
    /// When this program never called [`init`](crate::init) (and is not a test binary with
    /// [`test_support!`](crate::test_support)): its worker processes could not serve, so no
    /// process is started; when this process is itself a worker that never called `init()`
    /// (starting workers there would be a fork bomb); when a feeder thread cannot be started.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().workers(2).build().expect("init() was called");
    /// # drop(ex);
    /// # }
    /// ```
    pub fn build(self) -> Result<Executor, BuildError> {
        self.check_initializer()?;
        build(self.resolved())
    }

    fn check_initializer(&self) -> Result<(), BuildError> {
        match &self.initializer_error {
            Some(message) => Err(BuildError::msg(message.clone())),
            None => Ok(()),
        }
    }

    /// The process-wide executor for this configuration. The same configuration returns the
    /// same executor (clones share their workers); a different one replaces it — the old
    /// executor finishes every task already submitted to it, then stops its workers. It is
    /// never left broken: after any fault it simply works.
    ///
    /// # Errors
    /// As [`build`](ExecutorBuilder::build).
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let a = workpool::Executor::builder().workers(2).reusable().unwrap();
    /// let b = workpool::Executor::builder().workers(2).reusable().unwrap();
    /// // Same settings, same executor: b shares a's workers.
    /// # drop((a, b));
    /// # }
    /// ```
    pub fn reusable(self) -> Result<Executor, BuildError> {
        static REUSABLE: Mutex<Option<Executor>> = Mutex::new(None);
        self.check_initializer()?;
        let config = self.resolved();
        let mut current = REUSABLE.lock();
        if let Some(existing) = current.as_ref().filter(|e| e.shared().config == config) {
            return Ok(existing.clone());
        }
        let executor = build(config)?;
        *current = Some(executor.clone());
        Ok(executor)
    }
}

/// The initializer's complete `TASK` frame (id 0, ticket 0: see `feeder/init.rs`).
fn initializer_frame<T: Task>(task: &T) -> Result<Initializer, String> {
    let name = std::any::type_name::<T>();
    let entry = crate::task::entry_of::<T>().ok_or_else(|| {
        format!(
            "the initializer's type {name} is not registered: add `workpool::register!({});` at item level",
            name.rsplit("::").next().unwrap_or(name)
        )
    })?;
    let mut frame = Vec::new();
    let start = wire::task_header(&mut frame, 0, entry.key, 1);
    codec::encode_into(task, &mut frame).map_err(|e| format!("the initializer {name} could not be encoded: {e}"))?;
    wire::end_frame(&mut frame, start).map_err(|e| format!("the initializer {name} could not be framed: {}", e.0))?;
    Ok(Initializer { task: name, frame: frame.into() })
}

fn build(config: Config) -> Result<Executor, BuildError> {
    crate::process::marker::check_serves().map_err(BuildError::msg)?;
    let (queue, queues) = scheduler::Shared::new(config.workers, Order::Fifo);
    let threads_per_worker = (crate::cpu_count() / config.workers).max(1);
    let shared = Arc::new(Shared::new(config, queue, threads_per_worker));
    if !shared.config.launcher.is_local() {
        let cluster = crate::process::remote::Cluster::new(shared.config.launcher.clone(), shared.config.listen)
            .map_err(|e| BuildError::io("could not listen for remote workers (see ExecutorBuilder::listen)", e))?;
        let _ = shared.cluster.set(Arc::new(cluster));
    }
    let owner = Arc::new(Owner { shared: shared.clone() });
    for queue in queues {
        let index = queue.index();
        let feeder = Feeder::new(shared.clone(), queue, shared.slots[index].clone());
        let thread = std::thread::Builder::new()
            .name(format!("workpool-feeder-{index}"))
            .spawn(move || feeder.run())
            .map_err(|e| BuildError::io("could not start a feeder thread", e))?;
        shared.threads.lock().push(thread);
    }
    shared::register(&shared);
    Ok(Executor { owner })
}

//! [`ExecutorBuilder`]: an executor's settings, and building one.

use super::feeder::Feeder;
use super::shared::{self, Config, Shared};
use super::{Executor, Owner};
use crate::error::BuildError;
use crate::launcher::Launcher;
use crate::scheduler::{self, Order};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Default `idle_timeout`: as loky, five minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default time a new worker has to say hello.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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
                launcher: Launcher::local(),
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
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
        if let Some(existing) = current.as_ref().filter(|e| e.shared().config == config) {
            return Ok(existing.clone());
        }
        let executor = build(config)?;
        *current = Some(executor.clone());
        Ok(executor)
    }
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

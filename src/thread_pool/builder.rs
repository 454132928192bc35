//! [`ThreadPoolBuilder`]: thread names, stack size, panic handler, start and exit handlers;
//! starting the threads.

use super::job::JobFifo;
use super::registry::{PanicHandler, PoolThread, Registry, ThreadHandler};
use super::ThreadPool;
use crate::error::BuildError;
use crate::scheduler::{Order, Shared};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Configures a [`ThreadPool`].
///
/// ```
/// let pool = workpool::ThreadPool::builder()
///     .num_threads(2)
///     .thread_name(|i| format!("solver-{i}"))
///     .stack_size(8 << 20)
///     .build()
///     .expect("the system started two threads");
/// assert_eq!(pool.num_threads(), 2);
/// ```
#[derive(Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThreadPoolBuilder {
    num_threads: usize,
    thread_name: Option<Box<dyn FnMut(usize) -> String>>,
    stack_size: Option<usize>,
    panic_handler: Option<Box<PanicHandler>>,
    start_handler: Option<Box<ThreadHandler>>,
    exit_handler: Option<Box<ThreadHandler>>,
}

impl fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("num_threads", &self.num_threads)
            .field("stack_size", &self.stack_size)
            .finish_non_exhaustive()
    }
}

impl ThreadPoolBuilder {
    /// Number of threads; `0` (the default) means [`crate::cpu_count`].
    ///
    /// ```
    /// let pool = workpool::ThreadPool::builder().num_threads(3).build().unwrap();
    /// assert_eq!(pool.num_threads(), 3);
    /// ```
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n;
        self
    }

    /// Names the threads; the closure gets each thread's index. Default: `workpool-thread-{i}`.
    ///
    /// ```
    /// let pool = workpool::ThreadPool::builder().num_threads(1).thread_name(|i| format!("io-{i}")).build().unwrap();
    /// let name = pool.install(|| std::thread::current().name().map(str::to_owned));
    /// assert_eq!(name.as_deref(), Some("io-0"));
    /// ```
    pub fn thread_name(mut self, name: impl FnMut(usize) -> String + 'static) -> Self {
        self.thread_name = Some(Box::new(name));
        self
    }

    /// Stack size of each thread, in bytes (default: the platform's thread default).
    ///
    /// ```
    /// // Deep recursion in each job: 64 MiB stacks.
    /// let pool = workpool::ThreadPool::builder().num_threads(1).stack_size(64 << 20).build().unwrap();
    /// fn depth(n: u64) -> u64 { if n == 0 { 0 } else { 1 + depth(n - 1) } }
    /// assert_eq!(pool.install(|| depth(100_000)), 100_000);
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Called with the payload of any panic in a job started with [`ThreadPool::spawn`].
    ///
    /// ```
    /// use std::sync::mpsc::channel;
    ///
    /// let (tx, rx) = channel();
    /// let tx = std::sync::Mutex::new(tx);
    /// let pool = workpool::ThreadPool::builder()
    ///     .num_threads(1)
    ///     .panic_handler(move |payload| {
    ///         let message = payload.downcast_ref::<&str>().copied().unwrap_or("?");
    ///         tx.lock().unwrap().send(message.to_string()).unwrap();
    ///     })
    ///     .build()
    ///     .unwrap();
    /// pool.spawn(|| panic!("lost in the background"));
    /// assert_eq!(rx.recv().unwrap(), "lost in the background");
    /// ```
    pub fn panic_handler(mut self, handler: impl Fn(Box<dyn Any + Send>) + Send + Sync + 'static) -> Self {
        self.panic_handler = Some(Box::new(handler));
        self
    }

    /// Called on each pool thread, with its index, when it starts: before it runs any job.
    ///
    /// A panic in the handler is caught and goes where a panic in a spawned job goes (the
    /// [`panic_handler`](Self::panic_handler), or stderr); the thread then starts normally.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    ///
    /// thread_local!(static SCRATCH: Cell<usize> = const { Cell::new(usize::MAX) });
    ///
    /// let pool = workpool::ThreadPool::builder()
    ///     .num_threads(2)
    ///     .start_handler(|index| SCRATCH.with(|s| s.set(index)))
    ///     .build()
    ///     .unwrap();
    /// // Every pool thread set up its thread-local state before running anything.
    /// let seen = pool.broadcast(|ctx| SCRATCH.with(|s| s.get()) == ctx.index());
    /// assert_eq!(seen, [true, true]);
    /// ```
    pub fn start_handler(mut self, handler: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.start_handler = Some(Box::new(handler));
        self
    }

    /// Called on each pool thread, with its index, when it exits: after its last job, once the
    /// pool was dropped and every queued job ran. Dropping the pool (from outside it) returns
    /// after every exit handler returned.
    ///
    /// A panic in the handler is caught and reported as for [`start_handler`](Self::start_handler).
    /// The pool is shutting down by then: a job the handler spawns on it may never run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let exited = Arc::new(AtomicUsize::new(0));
    /// let count = exited.clone();
    /// let pool = workpool::ThreadPool::builder()
    ///     .num_threads(3)
    ///     .exit_handler(move |_index| {
    ///         count.fetch_add(1, Ordering::SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// drop(pool);
    /// assert_eq!(exited.load(Ordering::SeqCst), 3);
    /// ```
    pub fn exit_handler(mut self, handler: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.exit_handler = Some(Box::new(handler));
        self
    }

    /// Starts the threads.
    ///
    /// # Errors
    /// When the operating system refuses to start a thread; the threads already started are
    /// stopped and joined.
    ///
    /// ```
    /// let pool = match workpool::ThreadPool::builder().num_threads(4).build() {
    ///     Ok(pool) => pool,
    ///     Err(e) => panic!("no thread pool: {e}"),
    /// };
    /// assert_eq!(pool.num_threads(), 4);
    /// ```
    pub fn build(mut self) -> Result<ThreadPool, BuildError> {
        let n = if self.num_threads == 0 { crate::cpu_count() } else { self.num_threads };
        let (shared, queues) = Shared::new(n, Order::Lifo);
        let registry = Arc::new(Registry {
            shared,
            panic_handler: self.panic_handler.take(),
            start_handler: self.start_handler.take(),
            exit_handler: self.exit_handler.take(),
            fifos: (0..n).map(|_| JobFifo::new()).collect(),
        });
        let mut pool = ThreadPool { registry: registry.clone(), threads: Vec::with_capacity(n) };
        for queue in queues {
            let index = queue.index();
            let name = match &mut self.thread_name {
                Some(name) => name(index),
                None => format!("workpool-thread-{index}"),
            };
            let mut builder = std::thread::Builder::new().name(name);
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            let registry = registry.clone();
            match builder.spawn(move || PoolThread::main_loop(queue, registry)) {
                Ok(handle) => pool.threads.push(handle),
                // Dropping `pool` terminates and joins what was started. The thread whose queue
                // we still hold never existed; its deque is empty, so nothing is lost.
                Err(e) => return Err(BuildError::io("could not start a thread-pool thread", e)),
            }
        }
        Ok(pool)
    }
}

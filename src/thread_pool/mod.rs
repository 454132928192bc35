//! An in-process work-stealing thread pool: `spawn`, `scope` and `join`.
//!
//! Built on [`crate::scheduler`] with type-erased jobs ([`job`]). The design follows rayon-core:
//! `join` pushes its second closure on the worker's own (LIFO) deque, runs the first inline, and
//! then either pops the second back or, if it was stolen, keeps running other jobs until the
//! thief sets the job's latch. Calls made from outside the pool are packaged as a job, injected,
//! and the caller blocks on a [`latch::LockLatch`].

pub(crate) mod job;
pub(crate) mod latch;
mod scope;

pub use scope::Scope;

use crate::error::BuildError;
use crate::scheduler::{Order, Queue, Shared, Wait};
use crate::unwind;
use job::{HeapJob, JobRef, StackJob};
use latch::{LockLatch, Probe, SpinLatch};
use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;

type PanicHandler = dyn Fn(Box<dyn Any + Send>) + Send + Sync;

/// The state shared by a pool's threads (and by the jobs that need to reach them).
pub(crate) struct Registry {
    shared: Arc<Shared<JobRef>>,
    panic_handler: Option<Box<PanicHandler>>,
}

impl Registry {
    #[inline]
    fn wake_worker(&self, index: usize) {
        self.shared.sleep.wake_worker(index);
    }

    /// Queues a job: on the current worker's own deque when called from one of this pool's
    /// workers, otherwise on the injector.
    #[inline]
    fn push(self: &Arc<Self>, job: JobRef) {
        match WorkerThread::current_in(self) {
            Some(worker) => worker.queue.push(job),
            None => self.shared.inject(job),
        }
    }

    /// Runs `op` on a worker of this pool: directly when already on one, otherwise by injecting
    /// it and blocking this thread until it finished.
    #[inline]
    fn in_worker<OP, R>(self: &Arc<Self>, op: OP) -> R
    where
        OP: FnOnce(&WorkerThread) -> R + Send,
        R: Send,
    {
        if let Some(worker) = WorkerThread::current_in(self) {
            return op(worker);
        }
        let job = StackJob::new(
            |_| {
                let worker = WorkerThread::current().expect("injected jobs run on pool workers");
                op(worker)
            },
            LockLatch::new(),
        );
        // SAFETY: we block on the latch below before `job` leaves this frame.
        self.shared.inject(unsafe { job.as_job_ref() });
        job.latch.wait();
        job.into_result()
    }

    fn handle_panic(&self, payload: Box<dyn Any + Send>) {
        match &self.panic_handler {
            Some(handler) => {
                // A panicking handler must not take the worker down with it.
                if unwind::halt_unwinding(|| handler(payload)).is_err() {
                    eprintln!("workpool: the thread pool's panic handler panicked");
                }
            }
            None => eprintln!(
                "workpool: a job spawned on the thread pool panicked: {} (the pool thread lives on)",
                unwind::payload_message(&*payload)
            ),
        }
    }
}

/// A pool thread: its scheduler queue and the registry it belongs to.
pub(crate) struct WorkerThread {
    queue: Queue<JobRef>,
    registry: Arc<Registry>,
}

thread_local! {
    static WORKER_THREAD: Cell<*const WorkerThread> = const { Cell::new(std::ptr::null()) };
}

impl WorkerThread {
    /// The pool worker running on this thread, if any.
    #[inline]
    fn current() -> Option<&'static WorkerThread> {
        let ptr = WORKER_THREAD.with(Cell::get);
        // SAFETY: the pointer is set by `main_loop` for exactly the lifetime of the WorkerThread
        // on that thread's stack, and cleared before it is dropped; only this thread reads it.
        unsafe { ptr.as_ref() }
    }

    /// The current worker if it belongs to `registry`.
    #[inline]
    fn current_in(registry: &Arc<Registry>) -> Option<&'static WorkerThread> {
        Self::current().filter(|w| Arc::ptr_eq(&w.registry, registry))
    }

    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.queue.index()
    }

    #[inline]
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// # Safety
    /// `job` is live and has not run.
    #[inline]
    unsafe fn execute(&self, job: JobRef) {
        // SAFETY: forwarded. Jobs catch their own panics; if one still escaped, the worker's
        // state could be inconsistent, so abort rather than unwind through the loop.
        let guard = unwind::AbortIfPanic;
        unsafe { job.execute() };
        std::mem::forget(guard);
    }

    /// Runs other jobs until `latch` is set, sleeping when there are none.
    fn wait_until<L: Probe>(&self, latch: &L) {
        while !latch.probe() {
            match self.queue.wait(&|| latch.probe(), None, false) {
                // SAFETY: jobs in the scheduler are live until run, and each is popped once.
                Wait::Job(job) => unsafe { self.execute(job) },
                Wait::Ready => return,
                Wait::TimedOut | Wait::Terminated => {}
            }
        }
    }

    fn main_loop(queue: Queue<JobRef>, registry: Arc<Registry>) {
        let worker = WorkerThread { queue, registry };
        WORKER_THREAD.with(|cell| cell.set(&worker));
        while let Wait::Job(job) = worker.queue.wait(&|| false, None, true) {
            // SAFETY: as in `wait_until`.
            unsafe { worker.execute(job) };
        }
        WORKER_THREAD.with(|cell| cell.set(std::ptr::null()));
    }
}

/// A pool of threads that run closures with work stealing.
///
/// # Examples
///
/// ```
/// use workpool::ThreadPool;
///
/// fn fib(pool: &ThreadPool, n: u64) -> u64 {
///     if n < 2 {
///         return n;
///     }
///     let (a, b) = pool.join(|| fib(pool, n - 1), || fib(pool, n - 2));
///     a + b
/// }
///
/// let pool = ThreadPool::new(2);
/// assert_eq!(fib(&pool, 20), 6765);
///
/// let mut squares = vec![0u64; 100];
/// pool.scope(|s| {
///     for (i, slot) in squares.iter_mut().enumerate() {
///         s.spawn(move || *slot = (i * i) as u64);
///     }
/// });
/// assert_eq!(squares[9], 81);
/// ```
pub struct ThreadPool {
    registry: Arc<Registry>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool").field("threads", &self.threads.len()).finish()
    }
}

impl ThreadPool {
    /// A pool of `num_threads` threads (`0` means [`crate::cpu_count`]).
    ///
    /// # Panics
    /// If the operating system refuses to start a thread; use [`ThreadPool::builder`] to get
    /// that as an error instead.
    pub fn new(num_threads: usize) -> ThreadPool {
        ThreadPool::builder().num_threads(num_threads).build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A builder for thread names, stack size and a panic handler.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Number of threads in the pool.
    pub fn num_threads(&self) -> usize {
        self.threads.len()
    }

    /// Runs `f` on the pool, in the background. A panic in `f` is caught: it goes to the
    /// builder's panic handler, or is printed on stderr, and the pool thread lives on.
    ///
    /// Dropping the pool runs every job spawned before, then joins the threads.
    ///
    /// The closure must be `'static`: borrowing from the caller is what [`scope`](Self::scope)
    /// is for.
    ///
    /// ```compile_fail
    /// let pool = workpool::ThreadPool::new(1);
    /// let local = String::from("borrowed");
    /// pool.spawn(|| println!("{local}")); // error: `local` does not live long enough
    /// ```
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let registry = self.registry.clone();
        let job = HeapJob::new(move || {
            if let Err(payload) = unwind::halt_unwinding(f) {
                registry.handle_panic(payload);
            }
        });
        // SAFETY: `f` is 'static and the job is executed exactly once by the scheduler
        // (workers drain every queue before they exit).
        self.registry.push(unsafe { job.into_job_ref() });
    }

    /// Runs `a` and `b`, potentially in parallel, and returns both results.
    ///
    /// `a` runs on the current pool thread (or on a pool thread, when called from outside);
    /// `b` can be stolen by an idle thread. While waiting for a stolen `b`, the thread keeps
    /// running other jobs, so deeply recursive fork-join never deadlocks.
    ///
    /// If either closure panics, the panic is resumed here after **both** have finished.
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        self.registry.in_worker(|worker| join_on(worker, a, b))
    }

    /// Creates a scope in which closures borrowing the caller's stack can be spawned; returns
    /// once every one of them has finished (like [`std::thread::scope`]).
    ///
    /// The scope body runs on a pool thread. A panic in the body or in any spawned closure is
    /// resumed here after all of them have finished.
    ///
    /// Spawned closures may only borrow what outlives the scope:
    ///
    /// ```compile_fail
    /// let pool = workpool::ThreadPool::new(1);
    /// pool.scope(|s| {
    ///     let short = String::from("dropped at the end of the body");
    ///     s.spawn(|| println!("{short}")); // error: `short` does not live long enough
    /// });
    /// ```
    pub fn scope<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R + Send,
        R: Send,
    {
        self.registry.in_worker(|worker| scope::run(worker, f))
    }
}

fn join_on<A, B, RA, RB>(worker: &WorkerThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job_b = StackJob::new(|_| b(), SpinLatch::new(worker));
    // SAFETY: we do not leave this frame before job_b ran (inline, or until its latch is set).
    let job_b_ref = unsafe { job_b.as_job_ref() };
    worker.queue.push(job_b_ref);

    let result_a = match unwind::halt_unwinding(a) {
        Ok(value) => value,
        Err(payload) => {
            // `b` may borrow from the caller's frame: it must finish before we unwind.
            worker.wait_until(&job_b.latch);
            unwind::resume_unwinding(payload)
        }
    };

    while !job_b.latch.probe() {
        match worker.queue.pop() {
            Some(job) if job == job_b_ref => {
                // Nobody stole it: run it right here, panics propagate directly.
                let result_b = job_b.run_inline(false);
                return (result_a, result_b);
            }
            // SAFETY: jobs in the scheduler are live until run.
            Some(job) => unsafe { worker.execute(job) },
            None => {
                worker.wait_until(&job_b.latch);
                break;
            }
        }
    }
    (result_a, job_b.into_result())
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.registry.shared.terminate();
        if WorkerThread::current_in(&self.registry).is_some() {
            // Dropped from inside one of its own jobs: joining would wait for ourselves. The
            // threads still drain the queues and exit on their own.
            return;
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Configures a [`ThreadPool`].
#[derive(Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThreadPoolBuilder {
    num_threads: usize,
    thread_name: Option<Box<dyn FnMut(usize) -> String>>,
    stack_size: Option<usize>,
    panic_handler: Option<Box<PanicHandler>>,
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
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n;
        self
    }

    /// Names the threads; the closure gets each thread's index. Default: `workpool-thread-{i}`.
    pub fn thread_name(mut self, name: impl FnMut(usize) -> String + 'static) -> Self {
        self.thread_name = Some(Box::new(name));
        self
    }

    /// Stack size of each thread, in bytes (default: the platform's thread default).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Called with the payload of any panic in a job started with [`ThreadPool::spawn`].
    pub fn panic_handler(mut self, handler: impl Fn(Box<dyn Any + Send>) + Send + Sync + 'static) -> Self {
        self.panic_handler = Some(Box::new(handler));
        self
    }

    /// Starts the threads.
    ///
    /// # Errors
    /// When the operating system refuses to start a thread; the threads already started are
    /// stopped and joined.
    pub fn build(mut self) -> Result<ThreadPool, BuildError> {
        let n = if self.num_threads == 0 { crate::cpu_count() } else { self.num_threads };
        let (shared, queues) = Shared::new(n, Order::Lifo);
        let registry = Arc::new(Registry { shared, panic_handler: self.panic_handler.take() });
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
            match builder.spawn(move || WorkerThread::main_loop(queue, registry)) {
                Ok(handle) => pool.threads.push(handle),
                // Dropping `pool` terminates and joins what was started. The worker whose queue
                // we still hold never existed; its deque is empty, so nothing is lost.
                Err(e) => return Err(BuildError::io("could not start a thread-pool thread", e)),
            }
        }
        Ok(pool)
    }
}

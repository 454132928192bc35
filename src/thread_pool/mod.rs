//! An in-process work-stealing thread pool: `spawn`, `scope` and `join`.
//!
//! Built on [`crate::scheduler`] with type-erased jobs ([`job`]). The design follows rayon-core:
//! `join` pushes its second closure on the thread's own (LIFO) deque, runs the first inline, and
//! then either pops the second back or, if it was stolen, keeps running other jobs until the
//! thief sets the job's latch. Calls made from outside the pool are packaged as a job, injected,
//! and the caller blocks on a [`latch::LockLatch`].

mod builder;
pub(crate) mod job;
mod join;
pub(crate) mod latch;
pub(crate) mod registry;
mod scope;

pub use builder::ThreadPoolBuilder;
pub use scope::Scope;

use crate::unwind;
use job::HeapJob;
use registry::{PoolThread, Registry};
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;

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
        // (threads drain every queue before they exit).
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
        self.registry.on_pool_thread(|thread| join::join_on(thread, a, b))
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
        self.registry.on_pool_thread(|thread| scope::run(thread, f))
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.registry.shared.terminate();
        if PoolThread::current_in(&self.registry).is_some() {
            // Dropped from inside one of its own jobs: joining would wait for ourselves. The
            // threads still drain the queues and exit on their own.
            return;
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

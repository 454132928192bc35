//! An in-process work-stealing thread pool: `join`, `scope`, `spawn`, `install`, `broadcast`.
//!
//! Built on [`crate::scheduler`] with type-erased jobs ([`job`]). The design follows rayon-core:
//! `join` pushes its second closure on the thread's own (LIFO) deque, runs the first inline, and
//! then either pops the second back or, if it was stolen, keeps running other jobs until the
//! thief sets the job's latch. Calls made from outside the pool are packaged as a job and
//! injected; the caller blocks on a [`latch::LockLatch`], or, when it is a thread of another
//! pool, keeps running that pool's jobs while it waits ([`registry`]'s module docs).
//!
//! Files: `registry.rs` (pool state, pool threads, calls from other threads), `join.rs`,
//! `scope.rs` (`scope` and `scope_fifo`), `broadcast.rs`, `current.rs` (the free functions that
//! ask about the calling thread), `job.rs` (stack jobs, heap jobs, FIFO tokens), `latch.rs`,
//! `builder.rs`.

mod broadcast;
mod builder;
mod current;
pub(crate) mod job;
mod join;
pub(crate) mod latch;
pub(crate) mod registry;
mod scope;

pub use broadcast::BroadcastContext;
pub use builder::ThreadPoolBuilder;
pub use current::{current_num_threads, current_thread_index, yield_now, Yield};
pub use scope::{Scope, ScopeFifo};

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
///
/// # Pools calling pools
///
/// A closure running on one pool may call into another (`other.install`, `other.join`,
/// `other.scope`, `other.broadcast`), as happens when a library with its own pool is used from
/// a program with its own. While the other pool works, the calling thread keeps running its own
/// pool's jobs, so the two can call each other back without deadlock, even with one thread
/// each:
///
/// ```
/// use workpool::ThreadPool;
///
/// let (a, b) = (ThreadPool::new(1), ThreadPool::new(1));
/// let depth = a.install(|| b.install(|| a.install(|| b.install(|| 4))));
/// assert_eq!(depth, 4);
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
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(2);
    /// let (a, b) = pool.join(|| 1 + 1, || 2 + 2);
    /// assert_eq!((a, b), (2, 4));
    /// ```
    pub fn new(num_threads: usize) -> ThreadPool {
        ThreadPool::builder().num_threads(num_threads).build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A builder for thread names, stack size, a panic handler and start/exit handlers.
    ///
    /// ```
    /// let pool = workpool::ThreadPool::builder().num_threads(2).build().unwrap();
    /// assert_eq!(pool.num_threads(), 2);
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// Number of threads in the pool.
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(0); // one thread per CPU
    /// assert_eq!(pool.num_threads(), workpool::cpu_count());
    /// ```
    pub fn num_threads(&self) -> usize {
        self.registry.num_threads()
    }

    /// Number of threads in the pool: the same as [`num_threads`](Self::num_threads), under
    /// rayon's name (a workpool pool never changes size).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(3);
    /// assert_eq!(pool.current_num_threads(), 3);
    /// ```
    pub fn current_num_threads(&self) -> usize {
        self.num_threads()
    }

    /// The index of the calling thread in this pool, or `None` when the caller is not one of
    /// this pool's threads (it may belong to another pool: see [`crate::current_thread_index`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let (pool, other) = (workpool::ThreadPool::new(2), workpool::ThreadPool::new(2));
    /// assert!(pool.install(|| pool.current_thread_index()).is_some_and(|i| i < 2));
    /// assert_eq!(other.install(|| pool.current_thread_index()), None);
    /// assert_eq!(pool.current_thread_index(), None);
    /// ```
    pub fn current_thread_index(&self) -> Option<usize> {
        PoolThread::current_in(&self.registry).map(PoolThread::index)
    }

    /// Runs one pending job of this pool when the caller is one of its threads (see
    /// [`crate::yield_now`]); `None` when it is not.
    ///
    /// # Examples
    ///
    /// ```
    /// use workpool::{ThreadPool, Yield};
    ///
    /// let pool = ThreadPool::new(1);
    /// assert_eq!(pool.yield_now(), None, "not on a thread of this pool");
    /// pool.scope(|s| {
    ///     s.spawn(|| {});
    ///     assert_eq!(pool.yield_now(), Some(Yield::Executed));
    /// });
    /// ```
    pub fn yield_now(&self) -> Option<Yield> {
        PoolThread::current_in(&self.registry).map(current::yield_on)
    }

    /// Runs `op` on a thread of this pool and returns its result, like rayon's `install`.
    ///
    /// From one of this pool's threads, `op` runs right there. From any other thread the call
    /// blocks until a pool thread ran it; a thread of another pool keeps running its own pool's
    /// jobs meanwhile (see "Pools calling pools" above). A panic in `op` is resumed here.
    ///
    /// Inside `op`, [`crate::current_thread_index`] and [`crate::current_num_threads`] describe
    /// this pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = workpool::ThreadPool::builder().num_threads(2).build().unwrap();
    /// let (index, threads) = pool.install(|| (workpool::current_thread_index(), workpool::current_num_threads()));
    /// assert!(index.is_some_and(|i| i < 2));
    /// assert_eq!(threads, 2);
    /// ```
    pub fn install<OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce() -> R + Send,
        R: Send,
    {
        self.registry.in_worker(|_| op())
    }

    /// Runs `op` once on every thread of the pool, and returns the results in thread-index
    /// order, like rayon's `broadcast`.
    ///
    /// Each call gets a [`BroadcastContext`] with its thread's index. A pool thread runs its
    /// call when it is done with the jobs of its own deque, before it looks for other work;
    /// a call from one of the pool's own threads waits for the others by running jobs, its own
    /// call included. A panic in any call is resumed here after every call finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(3);
    /// let indices = pool.broadcast(|ctx| (ctx.index(), ctx.num_threads()));
    /// assert_eq!(indices, [(0, 3), (1, 3), (2, 3)]);
    /// ```
    pub fn broadcast<OP, R>(&self, op: OP) -> Vec<R>
    where
        OP: Fn(BroadcastContext<'_>) -> R + Sync,
        R: Send,
    {
        broadcast::broadcast(&self.registry, op)
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
        let job = self.spawn_job(f);
        // SAFETY: `f` is 'static and the job is executed exactly once by the scheduler
        // (threads drain every queue before they exit).
        self.registry.push_detached(unsafe { job.into_job_ref() });
    }

    /// Like [`spawn`](Self::spawn), but the jobs one pool thread spawns this way start in the
    /// order it spawned them (rayon's `spawn_fifo`); from outside the pool, spawned jobs start
    /// in submission order either way. Other threads may still steal them.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let pool = workpool::ThreadPool::new(1);
    /// let (tx, rx) = mpsc::channel();
    /// pool.install(|| {
    ///     for i in 0..4 {
    ///         let tx = tx.clone();
    ///         pool.spawn_fifo(move || tx.send(i).unwrap());
    ///     }
    /// });
    /// drop(tx);
    /// // One thread, so nothing was stolen: oldest first (`spawn` would give 3, 2, 1, 0).
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [0, 1, 2, 3]);
    /// ```
    pub fn spawn_fifo<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let job = self.spawn_job(f);
        // SAFETY: as in `spawn`.
        unsafe { self.registry.push_fifo(job.into_job_ref()) };
    }

    fn spawn_job<F>(&self, f: F) -> Box<HeapJob<impl FnOnce() + Send + 'static>>
    where
        F: FnOnce() + Send + 'static,
    {
        let registry = self.registry.clone();
        HeapJob::new(move || {
            if let Err(payload) = unwind::halt_unwinding(f) {
                registry.handle_panic(payload);
            }
        })
    }

    /// Runs `a` and `b`, potentially in parallel, and returns both results.
    ///
    /// `a` runs on the current pool thread (or on a pool thread, when called from outside);
    /// `b` can be stolen by an idle thread. While waiting for a stolen `b`, the thread keeps
    /// running other jobs, so deeply recursive fork-join never deadlocks.
    ///
    /// If either closure panics, the panic is resumed here after **both** have finished.
    ///
    /// `a` must not block (on a channel, a lock) until `b` has run: `b` may be queued right
    /// behind it on the same thread, as with rayon. Blocking on a job started with
    /// [`spawn`](Self::spawn) is fine as long as another thread is free to run it.
    ///
    /// ```
    /// fn fib(pool: &workpool::ThreadPool, n: u64) -> u64 {
    ///     if n < 2 {
    ///         return n;
    ///     }
    ///     let (a, b) = pool.join(|| fib(pool, n - 1), || fib(pool, n - 2));
    ///     a + b
    /// }
    ///
    /// let pool = workpool::ThreadPool::new(2);
    /// assert_eq!(fib(&pool, 20), 6765);
    /// ```
    #[inline]
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        // The fast path calls `join_on` with `a` and `b` themselves rather than through a
        // closure that captured them: a closure's captures travel through memory, and reading
        // back two 8-byte stores as one 16-byte load stalls store forwarding on every join.
        match PoolThread::current_in(&self.registry) {
            Some(thread) => join::join_on(thread, a, b),
            None => self.registry.in_worker(|thread| join::join_on(thread, a, b)),
        }
    }

    /// Creates a scope in which closures borrowing the caller's stack can be spawned; returns
    /// once every one of them has finished (like [`std::thread::scope`]).
    ///
    /// The scope body runs on a pool thread. A panic in the body or in any spawned closure is
    /// resumed here after all of them have finished.
    ///
    /// Let the scope do the waiting: a closure that blocks outside the pool (on a channel, a
    /// lock) until a closure it spawned has run may wait for that until other work arrives,
    /// because a spawn goes onto the spawning thread's own deque and that thread is the one
    /// sure to run it.
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
        self.registry.in_worker(|thread| scope::run(thread, f))
    }

    /// Like [`scope`](Self::scope), with [`ScopeFifo::spawn_fifo`]: the closures one thread
    /// spawns start in the order it spawned them (rayon's `scope_fifo`).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(2);
    /// let mut cells = [0u32; 8];
    /// pool.scope_fifo(|s| {
    ///     for (i, cell) in cells.iter_mut().enumerate() {
    ///         s.spawn_fifo(move || *cell = i as u32 * 10);
    ///     }
    /// });
    /// assert_eq!(cells[7], 70);
    /// ```
    pub fn scope_fifo<'env, F, R>(&self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope ScopeFifo<'scope, 'env>) -> R + Send,
        R: Send,
    {
        self.registry.in_worker(|thread| scope::run_fifo(thread, f))
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

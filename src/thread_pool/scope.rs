//! `ThreadPool::scope` and `ThreadPool::scope_fifo`: spawn closures that borrow from the caller's
//! stack.
//!
//! A scope keeps a [`CountLatch`]: one count for the body, one per spawned closure. The body
//! runs on a pool thread; when it returns, that thread drops the body's count and keeps running
//! jobs (its own spawns first) until the count reaches zero. Panics are caught per job; the first
//! one is kept and resumed on the caller once everything finished.
//!
//! The two kinds differ only in the order a thread runs its own spawns: [`Scope::spawn`] pushes
//! on the thread's LIFO deque (newest first: depth-first, cache-warm), [`ScopeFifo::spawn_fifo`]
//! goes through one [`JobFifo`] per pool thread (oldest first, as spawned). Thieves take the
//! oldest either way.

use crate::thread_pool::job::{HeapJob, JobFifo};
use crate::thread_pool::latch::{CountLatch, Latch, SpinLatch};
use crate::thread_pool::registry::{PoolThread, Registry};
use crate::unwind;
use parking_lot::Mutex;
use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// A scope for spawning closures that may borrow anything that outlives it; see
/// [`ThreadPool::scope`](crate::ThreadPool::scope).
///
/// ```
/// let pool = workpool::ThreadPool::new(2);
/// let words = ["alpha", "beta", "gamma"];
/// let mut lengths = vec![0; words.len()];
/// pool.scope(|s| {
///     for (word, len) in words.iter().zip(lengths.iter_mut()) {
///         s.spawn(move || *len = word.len()); // borrows `words` and `lengths`
///     }
/// });
/// assert_eq!(lengths, [5, 4, 5]);
/// ```
pub struct Scope<'scope, 'env: 'scope> {
    base: ScopeBase,
    // Invariance over both lifetimes, exactly as std::thread::Scope.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// A scope whose spawns each thread runs in the order it spawned them; see
/// [`ThreadPool::scope_fifo`](crate::ThreadPool::scope_fifo).
///
/// ```
/// use std::sync::Mutex;
///
/// let pool = workpool::ThreadPool::new(1);
/// let order = Mutex::new(Vec::new());
/// pool.scope_fifo(|s| {
///     for i in 0..4 {
///         let order = &order;
///         s.spawn_fifo(move || order.lock().unwrap().push(i));
///     }
/// });
/// // One thread: the closures ran in the order they were spawned.
/// assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
/// ```
pub struct ScopeFifo<'scope, 'env: 'scope> {
    base: ScopeBase,
    /// One per pool thread, indexed by the spawning thread (each pushed by that thread only).
    fifos: Box<[JobFifo]>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// What both kinds share: the pool, the count of unfinished jobs, the first panic.
struct ScopeBase {
    /// Read on every spawn, from any thread.
    registry: Arc<Registry>,
    /// Written by every job (on its own cache line, see `CountLatch`).
    latch: CountLatch<SpinLatch>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl fmt::Debug for ScopeFifo<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeFifo").finish_non_exhaustive()
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Spawns `f` on the pool; the enclosing `scope` call returns only after it has run.
    ///
    /// A panic in `f` is caught and resumed from `scope` once every spawned closure finished.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let pool = workpool::ThreadPool::new(2);
    /// let total = AtomicU64::new(0);
    /// pool.scope(|s| {
    ///     for n in 1..=100 {
    ///         let total = &total;
    ///         s.spawn(move || {
    ///             total.fetch_add(n, Ordering::Relaxed);
    ///         });
    ///     }
    /// });
    /// assert_eq!(total.into_inner(), 5050);
    /// ```
    #[inline]
    pub fn spawn<F>(&'scope self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        let job = self.base.heap_job(f);
        // SAFETY: `f` borrows only for 'scope, and the scope does not end before the latch
        // counted this job out. The scheduler runs each job once.
        self.base.registry.push(unsafe { job.into_job_ref() });
    }
}

impl<'scope> ScopeFifo<'scope, '_> {
    /// Spawns `f` on the pool; the enclosing `scope_fifo` call returns only after it has run.
    ///
    /// The closures one thread spawns start in the order it spawned them (rayon's
    /// `ScopeFifo::spawn_fifo`); thieves still take them, oldest first. A panic in `f` is caught
    /// and resumed from `scope_fifo` once every spawned closure finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Mutex;
    ///
    /// let pool = workpool::ThreadPool::new(1);
    /// let order = Mutex::new(Vec::new());
    /// pool.scope_fifo(|s| {
    ///     for i in 0..5 {
    ///         let order = &order;
    ///         s.spawn_fifo(move || order.lock().unwrap().push(i));
    ///     }
    /// });
    /// // One thread: it ran its spawns oldest first (`scope` would have run them newest first).
    /// assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    /// ```
    pub fn spawn_fifo<F>(&'scope self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        let job = self.base.heap_job(f);
        // SAFETY: as in `Scope::spawn`.
        let job = unsafe { job.into_job_ref() };
        match PoolThread::current_in(&self.base.registry) {
            // SAFETY: `fifos` lives in the scope, which outlives every job (and token) counted
            // by its latch.
            Some(thread) => thread.queue.push(unsafe { self.fifos[thread.index()].push(job) }),
            None => self.base.registry.shared.inject(job),
        }
    }
}

impl ScopeBase {
    fn new(thread: &PoolThread) -> Self {
        ScopeBase {
            registry: thread.registry().clone(),
            // One count for the body.
            latch: CountLatch::new(1, SpinLatch::new(thread)),
            panic: Mutex::new(None),
        }
    }

    /// Counts one more job and packages `f` so that it records its panic and counts itself out.
    #[inline]
    fn heap_job<'scope, F>(&'scope self, f: F) -> Box<HeapJob<impl FnOnce() + Send + 'scope>>
    where
        F: FnOnce() + Send + 'scope,
    {
        self.latch.increment();
        HeapJob::new(move || {
            if let Err(payload) = unwind::halt_unwinding(f) {
                self.record_panic(payload);
            }
            // SAFETY: last touch of the scope from this job; the owner keeps it alive until the
            // count it waits on reaches zero.
            unsafe { Latch::set(&self.latch) };
        })
    }

    #[cold]
    fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut slot = self.panic.lock();
        if slot.is_none() {
            *slot = Some(payload);
        }
    }

    /// Runs the body, then waits for every spawn; resumes the first panic, the body's last.
    fn complete<R>(&self, thread: &PoolThread, body: impl FnOnce() -> R) -> R {
        let result = unwind::halt_unwinding(body);
        // SAFETY: the scope lives in the caller's frame until after wait_until below.
        unsafe { Latch::set(&self.latch) };
        thread.wait_until(&self.latch);
        if let Some(payload) = self.panic.lock().take() {
            unwind::resume_unwinding(payload);
        }
        match result {
            Ok(value) => value,
            Err(payload) => unwind::resume_unwinding(payload),
        }
    }
}

/// Runs a scope body on `thread` and waits for everything it spawned.
pub(super) fn run<'env, F, R>(thread: &PoolThread, f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope { base: ScopeBase::new(thread), scope: PhantomData, env: PhantomData };
    scope.base.complete(thread, || f(&scope))
}

/// Runs a FIFO scope body on `thread` and waits for everything it spawned.
pub(super) fn run_fifo<'env, F, R>(thread: &PoolThread, f: F) -> R
where
    F: for<'scope> FnOnce(&'scope ScopeFifo<'scope, 'env>) -> R,
{
    let fifos = (0..thread.registry().num_threads()).map(|_| JobFifo::new()).collect();
    let scope = ScopeFifo { base: ScopeBase::new(thread), fifos, scope: PhantomData, env: PhantomData };
    scope.base.complete(thread, || f(&scope))
}

//! What the calling thread can ask about the pool it runs on, if any: rayon's
//! `current_num_threads`, `current_thread_index` and `yield_now`, as free functions.

use super::registry::PoolThread;

/// The number of threads of the pool the calling thread belongs to; outside every pool, the
/// number a pool built with the default thread count would have ([`crate::cpu_count`]).
///
/// rayon answers outside its pools with the size of its global pool; workpool has no global
/// pool, and a default-sized one is what such a caller would get.
///
/// # Examples
///
/// ```
/// let pool = workpool::ThreadPool::new(3);
/// assert_eq!(pool.install(workpool::current_num_threads), 3);
/// assert_eq!(workpool::current_num_threads(), workpool::cpu_count());
/// ```
pub fn current_num_threads() -> usize {
    match PoolThread::current() {
        Some(thread) => thread.registry().num_threads(),
        None => crate::cpu_count(),
    }
}

/// The index of the calling thread in its pool, in `0..current_num_threads()`; `None` outside
/// every pool.
///
/// Indices are stable for the life of the pool: use them to pick per-thread state such as one
/// of `num_threads` buffers.
///
/// # Examples
///
/// ```
/// let pool = workpool::ThreadPool::new(2);
/// let index = pool.install(workpool::current_thread_index).unwrap();
/// assert!(index < 2);
/// assert_eq!(workpool::current_thread_index(), None);
/// ```
pub fn current_thread_index() -> Option<usize> {
    PoolThread::current().map(PoolThread::index)
}

/// Runs one pending job of the calling thread's pool, if there is one: a way to stay useful
/// inside a polling loop.
///
/// The job is looked for as an idle thread would (its own deque, its mailbox, the other
/// threads, the injector), and run to completion right here, with whatever it spawns or joins.
/// Like [`std::thread::yield_now`] this only gives others a turn; unlike it, it never calls the
/// operating system: when it answers [`Yield::Idle`], a polling loop may want to yield to the OS
/// as well.
///
/// Returns `Some(Yield::Executed)` if a job ran, `Some(Yield::Idle)` if none was pending, and
/// `None` when the calling thread belongs to no pool.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use workpool::{yield_now, ThreadPool, Yield};
///
/// let pool = ThreadPool::new(1);
/// let done = AtomicBool::new(false);
/// pool.scope(|s| {
///     s.spawn(|| done.store(true, Ordering::SeqCst));
///     // One thread: the spawned closure runs only when this one gives it a turn.
///     while !done.load(Ordering::SeqCst) {
///         assert_eq!(yield_now(), Some(Yield::Executed));
///     }
///     assert_eq!(yield_now(), Some(Yield::Idle));
/// });
/// assert_eq!(yield_now(), None, "not on a pool thread");
/// ```
pub fn yield_now() -> Option<Yield> {
    PoolThread::current().map(yield_on)
}

/// One turn of [`yield_now`] on `thread`.
pub(super) fn yield_on(thread: &PoolThread) -> Yield {
    if thread.run_one() {
        Yield::Executed
    } else {
        Yield::Idle
    }
}

/// What [`yield_now`] (or [`ThreadPool::yield_now`](crate::ThreadPool::yield_now)) did.
///
/// ```
/// let pool = workpool::ThreadPool::new(1);
/// // Outside any pool there is nothing to run.
/// assert_eq!(workpool::yield_now(), None);
/// // On a pool thread with nothing queued, nothing runs either.
/// assert_eq!(pool.install(workpool::yield_now), Some(workpool::Yield::Idle));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Yield {
    /// A pending job ran.
    Executed,
    /// No job was pending.
    Idle,
}

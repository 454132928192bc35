//! `ThreadPool::broadcast`: run a closure once on every thread of a pool.
//!
//! One [`StackJob`] per pool thread, in the caller's frame, all counted by one [`CountLatch`];
//! job `i` goes to thread `i`'s **mailbox** (`scheduler::Shared::send_to`), which only that
//! thread takes from, right after its own deque and before stealing. The caller waits the way
//! it would wait for any job: a pool thread (of this pool or another) keeps running its own
//! pool's jobs, including its own part of the broadcast; any other thread blocks.

use super::job::StackJob;
use super::latch::{CountLatch, Latch, LockLatch, SpinLatch};
use super::registry::{PoolThread, Registry};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// What a closure run by [`ThreadPool::broadcast`](crate::ThreadPool::broadcast) learns about
/// where it runs.
///
/// ```
/// let pool = workpool::ThreadPool::new(3);
/// let seen = pool.broadcast(|ctx| (ctx.index(), ctx.num_threads()));
/// assert_eq!(seen, [(0, 3), (1, 3), (2, 3)]);
/// ```
pub struct BroadcastContext<'a> {
    index: usize,
    num_threads: usize,
    // Tied to one call on one thread: neither `Send` nor `Sync`, like rayon's.
    _marker: PhantomData<&'a mut dyn Fn()>,
}

impl BroadcastContext<'_> {
    /// The index of the pool thread running this call, in `0..num_threads()`; each index gets
    /// exactly one call.
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(2);
    /// // One scratch buffer per thread, set up on that thread.
    /// let sizes = pool.broadcast(|ctx| vec![0u8; 1024 * (ctx.index() + 1)].len());
    /// assert_eq!(sizes, [1024, 2048]);
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of threads of the pool, which is also the number of calls.
    ///
    /// ```
    /// let pool = workpool::ThreadPool::new(2);
    /// assert_eq!(pool.broadcast(|ctx| ctx.num_threads()), [2, 2]);
    /// ```
    pub fn num_threads(&self) -> usize {
        self.num_threads
    }
}

impl fmt::Debug for BroadcastContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastContext").field("index", &self.index).field("num_threads", &self.num_threads).finish()
    }
}

/// Runs `op` once on each thread of `registry` and returns the results in thread order.
pub(super) fn broadcast<OP, R>(registry: &Arc<Registry>, op: OP) -> Vec<R>
where
    OP: Fn(BroadcastContext<'_>) -> R + Sync,
    R: Send,
{
    let n = registry.num_threads();
    match PoolThread::current() {
        Some(thread) => {
            let latch = if Arc::ptr_eq(thread.registry(), registry) {
                SpinLatch::new(thread)
            } else {
                SpinLatch::cross(thread)
            };
            send_and_wait(registry, &op, CountLatch::new(n, latch), |latch| thread.wait_until(latch))
        }
        None => send_and_wait(registry, &op, CountLatch::new(n, LockLatch::new()), |latch| latch.latch().wait()),
    }
}

fn send_and_wait<OP, R, L>(
    registry: &Registry,
    op: &OP,
    latch: CountLatch<L>,
    wait: impl FnOnce(&CountLatch<L>),
) -> Vec<R>
where
    OP: Fn(BroadcastContext<'_>) -> R + Sync,
    R: Send,
    L: Latch,
{
    let n = registry.num_threads();
    let call = |index| move || op(BroadcastContext { index, num_threads: n, _marker: PhantomData });
    let jobs: Vec<_> = (0..n).map(|index| StackJob::new(call(index), &latch)).collect();
    for (index, job) in jobs.iter().enumerate() {
        // SAFETY: `wait` returns only after every job counted itself out, and `jobs` is neither
        // moved nor dropped before.
        registry.shared.send_to(index, unsafe { job.as_job_ref() });
    }
    wait(&latch);
    // The first panic, in thread order, is resumed; every part finished before.
    jobs.into_iter().map(StackJob::into_result).collect()
}

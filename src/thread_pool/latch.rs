//! Completion signals for jobs whose owner waits.
//!
//! A latch starts unset and is set exactly once, by the thread that finished the work. Setting
//! is the last access the setter makes to the latch's memory: once the owner sees it set, it may
//! leave the frame the latch lives in. So `set` copies whatever it needs (the registry and the
//! owner's index) *before* the store that publishes completion.
//!
//! Which latch a waiter uses depends on what it is:
//!
//! | waiter | latch | while waiting |
//! |---|---|---|
//! | a pool thread, for work of its own pool (`join`, `scope`) | [`SpinLatch`] | runs its pool's jobs, sleeps through the scheduler |
//! | a pool thread of pool A, for work it sent to pool B | [`SpinLatch::cross`] | the same, in pool A: it never blocks A |
//! | any other thread | [`LockLatch`] | blocks on a condition variable |
//!
//! [`CountLatch`] counts several jobs (a scope's spawns, a broadcast's parts) down to one of
//! those.

use crate::thread_pool::registry::{PoolThread, Registry};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Something a finished job can signal.
pub(crate) trait Latch {
    /// Marks the latch set and wakes its owner.
    ///
    /// # Safety
    /// `this` must point to a live latch; after this call the setter must not touch it again.
    unsafe fn set(this: *const Self);
}

/// A latch whose owner can be polled without blocking.
pub(crate) trait Probe {
    fn probe(&self) -> bool;
}

/// A latch held by reference: the jobs of a broadcast share one [`CountLatch`].
impl<L: Latch> Latch for &L {
    #[inline]
    unsafe fn set(this: *const Self) {
        // SAFETY: `this` is live on entry; we read the reference out of it before `set`, which
        // is the last access to the referent, and do not touch `this` afterwards.
        unsafe { L::set(*this) }
    }
}

/// The latch of a pool thread that waits: the owner keeps running jobs of its own pool and
/// sleeps through the scheduler's protocol; `set` wakes exactly that thread.
pub(crate) struct SpinLatch {
    /// Written once (Release) by the setter, who then wakes the owner through
    /// `Sleep::wake_thread` (whose `SeqCst` fence pairs with the one the owner issues before its
    /// last check; see `scheduler::sleep`). Read (Acquire) by the owner.
    done: AtomicBool,
    /// The owner's registry (`Arc::as_ptr` of the owner's `PoolThread::registry`, which the
    /// owner holds for longer than the latch lives).
    registry: *const Registry,
    owner: usize,
    /// Set when the job runs on another pool's thread: that thread holds no reference to the
    /// owner's registry, so `set` takes one for the duration of the wake-up.
    cross: bool,
}

// SAFETY: the registry pointer is only dereferenced while the registry is alive: by threads of
// that registry (which hold an `Arc` to it as long as they run), or, for a cross-pool latch,
// through an `Arc` the setter takes before publishing `done`.
unsafe impl Send for SpinLatch {}
// SAFETY: as above; the only shared mutable state is the atomic flag.
unsafe impl Sync for SpinLatch {}

impl SpinLatch {
    /// A latch for a job of `owner`'s own pool.
    #[inline]
    pub(crate) fn new(owner: &PoolThread) -> Self {
        SpinLatch {
            done: AtomicBool::new(false),
            registry: Arc::as_ptr(owner.registry()),
            owner: owner.index(),
            cross: false,
        }
    }

    /// A latch for a job `owner` sends to another pool (rayon's `SpinLatch::cross`).
    #[inline]
    pub(crate) fn cross(owner: &PoolThread) -> Self {
        SpinLatch { cross: true, ..SpinLatch::new(owner) }
    }
}

impl Probe for SpinLatch {
    #[inline]
    fn probe(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

impl Latch for SpinLatch {
    #[inline]
    unsafe fn set(this: *const Self) {
        // SAFETY: `this` is live until the store below; everything needed afterwards is copied
        // first. A thread of the owner's pool keeps the registry alive by being one of its
        // threads. A thread of another pool takes a reference here, before the store, and holds
        // it until the wake-up is done: once `done` is visible the owner may return, its pool be
        // dropped and its threads exit. The pointer came from `Arc::as_ptr` of a live `Arc`.
        unsafe {
            let (registry, owner) = ((*this).registry, (*this).owner);
            let keep_alive = (*this).cross.then(|| {
                Arc::increment_strong_count(registry);
                Arc::from_raw(registry)
            });
            (*this).done.store(true, Ordering::Release);
            (*registry).wake_thread(owner);
            drop(keep_alive);
        }
    }
}

/// The latch of a thread outside every pool: it blocks on a condition variable.
pub(crate) struct LockLatch {
    done: Mutex<bool>,
    condvar: Condvar,
}

impl LockLatch {
    pub(crate) fn new() -> Self {
        LockLatch { done: Mutex::new(false), condvar: Condvar::new() }
    }

    /// Blocks until set.
    pub(crate) fn wait(&self) {
        let mut done = self.done.lock();
        while !*done {
            self.condvar.wait(&mut done);
        }
    }
}

impl Latch for LockLatch {
    unsafe fn set(this: *const Self) {
        // SAFETY: the owner cannot observe `true` (and free the latch) before this guard drops.
        let this = unsafe { &*this };
        let mut done = this.done.lock();
        *done = true;
        this.condvar.notify_one();
    }
}

/// Counts outstanding jobs down to zero, then sets `latch`.
pub(crate) struct CountLatch<L> {
    /// Incremented (Relaxed is enough: the caller holds a count itself) before each job is
    /// queued; decremented (AcqRel, so the owner sees every job's effects) when a job finishes.
    /// On a cache line of its own: every job of a scope writes it, from any thread, while the
    /// spawning thread reads the scope's other fields on every spawn.
    pending: crossbeam_utils::CachePadded<AtomicUsize>,
    latch: L,
}

impl<L: Latch> CountLatch<L> {
    /// A latch that is set after `count` decrements.
    pub(crate) fn new(count: usize, latch: L) -> Self {
        CountLatch { pending: crossbeam_utils::CachePadded::new(AtomicUsize::new(count)), latch }
    }

    #[inline]
    pub(crate) fn increment(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// The latch the count sets, to wait on.
    pub(crate) fn latch(&self) -> &L {
        &self.latch
    }
}

impl<L: Latch> Latch for CountLatch<L> {
    /// One job done; the last one sets the inner latch.
    #[inline]
    unsafe fn set(this: *const Self) {
        // SAFETY: `this` is live until the count reaches zero, which only this call can observe;
        // the inner `set` is then its last access.
        unsafe {
            if (*this).pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                L::set(&(*this).latch);
            }
        }
    }
}

impl<L: Probe> Probe for CountLatch<L> {
    #[inline]
    fn probe(&self) -> bool {
        self.latch.probe()
    }
}

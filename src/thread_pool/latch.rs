//! Completion signals for jobs whose owner waits.
//!
//! A latch starts unset and is set exactly once, by the thread that finished the work. Setting
//! is the last access the setter makes to the latch's memory: once the owner sees it set, it may
//! leave the frame the latch lives in. So `set` copies whatever it needs (the registry and the
//! owner's index) *before* the store that publishes completion.

use crate::thread_pool::registry::{PoolThread, Registry};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// The latch of a pool thread waiting in `join` or `scope`: the owner keeps running other jobs
/// and sleeps through the scheduler's protocol; `set` wakes exactly that thread.
pub(crate) struct SpinLatch {
    /// Written once (SeqCst) by the setter; read (SeqCst) by the owner, also under its sleep
    /// mutex, which is what makes the targeted wake-up race-free (see `scheduler::sleep`).
    done: AtomicBool,
    registry: *const Registry,
    owner: usize,
}

// SAFETY: the raw registry pointer is only dereferenced by threads of that same registry, which
// hold an `Arc` to it for as long as they run.
unsafe impl Send for SpinLatch {}
// SAFETY: as above; the only shared mutable state is the atomic flag.
unsafe impl Sync for SpinLatch {}

impl SpinLatch {
    #[inline]
    pub(crate) fn new(owner: &PoolThread) -> Self {
        SpinLatch { done: AtomicBool::new(false), registry: &**owner.registry(), owner: owner.index() }
    }
}

impl Probe for SpinLatch {
    #[inline]
    fn probe(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

impl Latch for SpinLatch {
    #[inline]
    unsafe fn set(this: *const Self) {
        // SAFETY: `this` is live until the store below; the copies keep us off it afterwards.
        let (registry, owner) = unsafe { ((*this).registry, (*this).owner) };
        // SAFETY: as above.
        unsafe { (*this).done.store(true, Ordering::SeqCst) };
        // SAFETY: the setting thread is a thread of `registry` and holds an Arc to it.
        unsafe { (*registry).wake_thread(owner) };
    }
}

/// The latch of a thread outside the pool: it blocks on a condition variable.
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

/// Counts outstanding jobs of a scope; set when the count reaches zero.
pub(crate) struct CountLatch {
    /// Incremented (Relaxed is enough: the spawner holds a count itself) before each job is
    /// queued; decremented (AcqRel, so the owner sees every job's effects) when a job finishes.
    pending: AtomicUsize,
    inner: SpinLatch,
}

impl CountLatch {
    /// Starts at one: the scope body's own count.
    pub(crate) fn new(owner: &PoolThread) -> Self {
        CountLatch { pending: AtomicUsize::new(1), inner: SpinLatch::new(owner) }
    }

    pub(crate) fn increment(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// One job done; the last one sets the latch.
    ///
    /// # Safety
    /// As for [`Latch::set`]: when this call may be the last, the caller must not touch the
    /// latch afterwards.
    pub(crate) unsafe fn decrement(this: *const Self) {
        // SAFETY: `this` is live until the count reaches zero, which only this call can observe.
        unsafe {
            if (*this).pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                Latch::set(&(*this).inner);
            }
        }
    }
}

impl Probe for CountLatch {
    fn probe(&self) -> bool {
        self.inner.probe()
    }
}

//! The synchronisation primitives the sleep protocol (`scheduler/sleep.rs`) is written against.
//!
//! Normally these are `std` atomics and `parking_lot`'s mutex and condition variable. Under
//! `--cfg loom` they are loom's, so that `scheduler/loom_tests.rs` can explore every interleaving of
//! the sleep/wake protocol (see `scheduler/sleep.rs`). Only what the protocol needs is here.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use std::time::Instant;

/// A mutex whose guard can be handed to [`Condvar`].
pub(crate) struct Mutex<T>(Inner<T>);

#[cfg(not(loom))]
type Inner<T> = parking_lot::Mutex<T>;
#[cfg(loom)]
type Inner<T> = loom::sync::Mutex<T>;

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.0.lock()
        }
        #[cfg(loom)]
        {
            self.0.lock().unwrap()
        }
    }
}

/// A condition variable; `wait_until` reports whether the deadline passed.
#[derive(Default)]
pub(crate) struct Condvar(#[cfg(not(loom))] parking_lot::Condvar, #[cfg(loom)] loom::sync::Condvar);

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar::default()
    }

    #[cfg(not(loom))]
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let mut guard = guard;
        self.0.wait(&mut guard);
        guard
    }

    #[cfg(loom)]
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap()
    }

    /// Waits until notified or `deadline`; the flag is true when the deadline passed.
    #[cfg(not(loom))]
    pub(crate) fn wait_until<'a, T>(&self, guard: MutexGuard<'a, T>, deadline: Instant) -> (MutexGuard<'a, T>, bool) {
        let mut guard = guard;
        let timed_out = self.0.wait_until(&mut guard, deadline).timed_out();
        (guard, timed_out)
    }

    /// loom has no clock: a timed wait is modelled as a plain wait that is never late.
    #[cfg(loom)]
    pub(crate) fn wait_until<'a, T>(&self, guard: MutexGuard<'a, T>, _deadline: Instant) -> (MutexGuard<'a, T>, bool) {
        (self.0.wait(guard).unwrap(), false)
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }
}

//! The two facts Ctrl-C handling needs from the rest of the crate, kept apart from both the
//! executor and the signal handler so that neither depends on the other:
//!
//! * **who is waiting**: a [`Waiting`] guard lives while a thread is blocked on a result (a
//!   `join`, a `map`, a `Parallel` run). A Ctrl-C with nobody waiting keeps its usual meaning
//!   (exit); with someone waiting it interrupts.
//! * **the interrupt epoch**: a counter bumped by every handled Ctrl-C. Work stamped with an
//!   older epoch was submitted before the interrupt; code that cannot be killed (thread-backed
//!   `Parallel` runs) polls it.
//!
//! `ctrl_c.rs` (above the executor) bumps the epoch and tells every executor; the executor and
//! `Parallel` (below it) only read these.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Threads blocked waiting for a result right now (incremented and decremented by the
/// [`Waiting`] guards of any thread; read by the Ctrl-C handler thread).
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// Ctrl-C presses handled as interrupts so far (written only by the Ctrl-C handler thread).
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Marks the current thread as waiting for a result while it lives.
pub(crate) struct Waiting(());

impl Waiting {
    pub(crate) fn enter() -> Self {
        WAITING.fetch_add(1, Ordering::SeqCst);
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// True when some thread is waiting for a result.
#[cfg(feature = "ctrlc")]
pub(crate) fn anyone_waiting() -> bool {
    WAITING.load(Ordering::SeqCst) > 0
}

/// The number of interrupts so far.
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::SeqCst)
}

/// Starts a new interrupt epoch; returns it.
#[cfg(feature = "ctrlc")]
pub(crate) fn begin() -> u64 {
    EPOCH.fetch_add(1, Ordering::SeqCst) + 1
}

//! Where one task's outcome lands: a small state machine behind a mutex.
//!
//! ```text
//!   Queued ──dispatch──▶ Sent ──STARTED──▶ (still Sent) ──DONE──▶ Done ──wait_take──▶ Taken
//!     │                   │
//!     └─cancel──▶ Done    └─worker died before STARTED──▶ Queued (rescheduled)
//! ```
//!
//! Only a `Queued` task can be cancelled: once its frame is on a worker's socket it will run.

use crate::error::{ErrorKind, TaskError};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

/// The encoded output(s) of a task, or what went wrong.
pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

/// Who to tell, and with which tag, when an outcome lands (unordered iteration over many
/// completions: `Parallel`).
pub(crate) struct Notify {
    pub(crate) sender: Sender<usize>,
    pub(crate) tag: usize,
}

enum State {
    Queued,
    Sent,
    Done(Outcome),
    Taken,
}

/// Where one task's outcome lands. Shared by the submitting side (its handle), the feeder that
/// dispatches it, and whoever cancels or interrupts it; every transition is under `state`.
pub(crate) struct Completion {
    state: Mutex<State>,
    condvar: Condvar,
    /// The task's type name (for errors).
    task: &'static str,
    notify: Option<Notify>,
    /// Run time the worker reported, in ns; written by the feeder before it completes the task,
    /// read by the batch's owner after.
    elapsed_ns: AtomicU64,
}

impl Completion {
    pub(crate) fn new(task: &'static str, notify: Option<Notify>) -> Arc<Self> {
        Arc::new(Completion {
            state: Mutex::new(State::Queued),
            condvar: Condvar::new(),
            task,
            notify,
            elapsed_ns: AtomicU64::new(0),
        })
    }

    /// The task's type name.
    pub(crate) fn task(&self) -> &'static str {
        self.task
    }

    /// Records the run time the worker reported (before completing).
    pub(crate) fn set_elapsed(&self, ns: u64) {
        self.elapsed_ns.store(ns, Ordering::Relaxed);
    }

    /// The run time the worker reported, in ns.
    pub(crate) fn elapsed_ns(&self) -> u64 {
        self.elapsed_ns.load(Ordering::Relaxed)
    }

    /// Queued → Sent; false when the task is no longer queued (cancelled or done).
    pub(crate) fn dispatch(&self) -> bool {
        let mut state = self.state.lock();
        if matches!(*state, State::Queued) {
            *state = State::Sent;
            true
        } else {
            false
        }
    }

    /// Sent → Queued, for a task a dead worker never started.
    pub(crate) fn requeue(&self) {
        let mut state = self.state.lock();
        if matches!(*state, State::Sent) {
            *state = State::Queued;
        }
    }

    /// Stores the outcome unless one is already there.
    pub(crate) fn complete(&self, outcome: Outcome) {
        let mut state = self.state.lock();
        if matches!(*state, State::Done(_) | State::Taken) {
            return;
        }
        *state = State::Done(outcome);
        drop(state);
        self.announce();
    }

    /// Wakes joiners and tells the unordered iterator, once an outcome was stored.
    fn announce(&self) {
        self.condvar.notify_all();
        if let Some(notify) = &self.notify {
            let _ = notify.sender.send(notify.tag);
        }
    }

    /// Fails the task with `kind`.
    pub(crate) fn fail(&self, kind: ErrorKind) {
        self.complete(Err(TaskError::new(kind, self.task)));
    }

    /// Queued → Done(Cancelled); true when it was still queued.
    pub(crate) fn cancel(&self) -> bool {
        let mut state = self.state.lock();
        if !matches!(*state, State::Queued) {
            return false;
        }
        *state = State::Done(Err(TaskError::new(ErrorKind::Cancelled, self.task)));
        drop(state);
        self.announce();
        true
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.state.lock(), State::Done(_) | State::Taken)
    }

    /// Blocks until done (or `deadline`), then takes the outcome.
    pub(crate) fn wait_take(&self, deadline: Option<Instant>) -> Option<Outcome> {
        let _waiting = crate::interrupt::Waiting::enter();
        let mut wait = crate::observe::Wait::new(self.task);
        let mut state = self.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(outcome) => return Some(outcome),
                State::Taken => panic!("a task's outcome was taken twice"),
                other => *state = other,
            }
            wait.blocks();
            match deadline {
                None => self.condvar.wait(&mut state),
                Some(deadline) => {
                    if self.condvar.wait_until(&mut state, deadline).timed_out() && !matches!(*state, State::Done(_)) {
                        return None;
                    }
                }
            }
        }
    }
}

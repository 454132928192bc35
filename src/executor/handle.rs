//! Completions and the handles that wait on them.
//!
//! Every submitted task owns one [`Completion`]: a small state machine behind a mutex.
//!
//! ```text
//!   Queued ──dispatch──▶ Sent ──STARTED──▶ (still Sent) ──DONE──▶ Done
//!     │                   │
//!     └─cancel──▶ Done    └─worker died before STARTED──▶ Queued (rescheduled)
//! ```
//!
//! Only a `Queued` task can be cancelled: once its frame is on a worker's socket it will run.

use crate::codec;
use crate::error::{ErrorKind, TaskError};
use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

enum State {
    Queued,
    Sent,
    Done(Outcome),
    Taken,
}

/// Where one task's outcome lands.
pub(crate) struct Completion {
    state: Mutex<State>,
    condvar: Condvar,
    task: &'static str,
    /// Told `tag` when the outcome lands (unordered iteration).
    notify: Option<(Sender<usize>, usize)>,
    /// Run time the worker reported, in ns (auto-batching reads it).
    elapsed_ns: AtomicU64,
}

impl Completion {
    pub(crate) fn new(task: &'static str, notify: Option<(Sender<usize>, usize)>) -> Arc<Self> {
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

    /// Stores the outcome unless one is already there; true when this call stored it.
    pub(crate) fn complete(&self, outcome: Outcome) -> bool {
        let mut state = self.state.lock();
        if matches!(*state, State::Done(_) | State::Taken) {
            return false;
        }
        *state = State::Done(outcome);
        drop(state);
        self.announce();
        true
    }

    /// Wakes joiners and tells the unordered iterator, once an outcome was stored.
    fn announce(&self) {
        self.condvar.notify_all();
        if let Some((sender, tag)) = &self.notify {
            let _ = sender.send(*tag);
        }
    }

    /// Fails the task with `kind`.
    pub(crate) fn fail(&self, kind: ErrorKind) -> bool {
        self.complete(Err(TaskError::new(kind, self.task)))
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
        let _waiting = crate::ctrl_c::Waiting::enter();
        let mut state = self.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(outcome) => return Some(outcome),
                State::Taken => panic!("a task's outcome was taken twice"),
                other => *state = other,
            }
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

/// Decodes an output sent back by a worker.
pub(crate) fn decode_output<O: DeserializeOwned>(bytes: &[u8], task: &'static str) -> Result<O, TaskError> {
    match codec::decode::<O>(bytes) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(TaskError::new(
            ErrorKind::Codec {
                stage: "decoding the result",
                message: format!("{} bytes left over", bytes.len() - used),
            },
            task,
        )),
        Err(message) => Err(TaskError::new(ErrorKind::Codec { stage: "decoding the result", message }, task)),
    }
}

/// A submitted task: wait for its output with [`join`](TaskHandle::join).
///
/// Dropping a handle does not cancel the task (use [`cancel`](TaskHandle::cancel)); it still runs.
#[must_use = "a task's output and errors are only seen through its handle"]
pub struct TaskHandle<O> {
    pub(crate) completion: Arc<Completion>,
    pub(crate) _output: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task", &self.completion.task)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<O: DeserializeOwned> TaskHandle<O> {
    pub(crate) fn new(completion: Arc<Completion>) -> Self {
        TaskHandle { completion, _output: PhantomData }
    }

    /// Waits for the task and returns its output, or what went wrong.
    ///
    /// # Errors
    /// A [`TaskError`]: the task panicked, its worker died, it timed out, was cancelled or
    /// interrupted, or its data could not be encoded or decoded.
    pub fn join(self) -> Result<O, TaskError> {
        let outcome = self.completion.wait_take(None).expect("no deadline");
        self.finish(outcome)
    }

    /// Like [`join`](TaskHandle::join), but gives the handle back if the task is not finished
    /// within `timeout` (the task keeps running).
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<O, TaskError>, TaskHandle<O>> {
        match self.completion.wait_take(Some(Instant::now() + timeout)) {
            Some(outcome) => Ok(self.finish(outcome)),
            None => Err(self),
        }
    }

    fn finish(&self, outcome: Outcome) -> Result<O, TaskError> {
        decode_output(&outcome?, self.completion.task)
    }
}

impl<O> TaskHandle<O> {
    /// True once the outcome is in (`join` will not block).
    pub fn is_finished(&self) -> bool {
        self.completion.is_done()
    }

    /// Cancels the task if no worker has received it yet; `join` then reports
    /// [`TaskError::is_cancelled`]. Returns false when it was too late (sent to a worker,
    /// running, or finished).
    pub fn cancel(&self) -> bool {
        self.completion.cancel()
    }
}

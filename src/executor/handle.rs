//! [`TaskHandle`]: the typed view of one task's [`Completion`].

use super::completion::{Completion, Outcome};
use crate::codec;
use crate::error::{ErrorKind, TaskError};
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A submitted task: wait for its output with [`join`](TaskHandle::join).
///
/// Dropping a handle does not cancel the task (use [`cancel`](TaskHandle::cancel)); it still runs.
#[must_use = "a task's output and errors are only seen through its handle"]
pub struct TaskHandle<O> {
    completion: Arc<Completion>,
    _output: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task", &self.completion.task())
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
        decode_outputs(&outcome?, self.completion.task(), codec::decode_exact)
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

/// Decodes what a worker sent back with `decode`, as a [`TaskError`] on failure.
pub(crate) fn decode_outputs<T>(
    bytes: &crate::bytes::Encoded,
    task: &'static str,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, TaskError> {
    bytes
        .decode(decode)
        .map_err(|message| TaskError::new(ErrorKind::Codec { stage: "decoding the result", message }, task))
}

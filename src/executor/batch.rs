//! [`Batch`]: many arguments of one task type in one frame, and the typed handle `Parallel`
//! waits on.

use super::completion::Completion;
use super::handle::decode_outputs;
use crate::codec;
use crate::error::TaskError;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// The handle of a batch submitted with `Executor::submit_batch`: the worker ran its tasks in
/// order and sent all outputs back together, or the first failure.
pub(crate) struct Batch<O> {
    completion: Arc<Completion>,
    count: usize,
    _output: PhantomData<fn() -> O>,
}

impl<O: DeserializeOwned> Batch<O> {
    pub(crate) fn new(completion: Arc<Completion>, count: usize) -> Self {
        Batch { completion, count, _output: PhantomData }
    }

    /// Waits for the batch (at once after its notification came); its outputs in order and the
    /// run time its worker reported.
    pub(crate) fn take(self) -> (Result<Vec<O>, TaskError>, Duration) {
        let outcome = self.completion.wait_take(None).expect("no deadline");
        let task = self.completion.task();
        let outputs = outcome.and_then(|bytes| decode_outputs(&bytes, task, |b| codec::decode_many(b, self.count)));
        (outputs, Duration::from_nanos(self.completion.elapsed_ns()))
    }
}

impl<O> Batch<O> {
    /// Cancels the batch if no worker has received it yet.
    pub(crate) fn cancel(&self) {
        self.completion.cancel();
    }
}

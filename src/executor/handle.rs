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
///
/// ```no_run
/// #[workpool::task]
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
///     ms
/// }
///
/// fn main() {
///     workpool::init();
///     let ex = workpool::Executor::builder().workers(2).build().unwrap();
///     let handle = ex.submit(Nap { ms: 50 });
///     // … other work while the task runs in a worker process …
///     assert_eq!(handle.join().unwrap(), 50);
/// }
/// ```
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
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().build().unwrap();
    ///     let handles: Vec<_> = (1..=4).map(|ms| ex.submit(Nap { ms })).collect();
    ///     let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    ///     assert_eq!(total, 10);
    /// }
    /// ```
    pub fn join(self) -> Result<O, TaskError> {
        let outcome = self.completion.wait_take(None).expect("no deadline");
        self.finish(outcome)
    }

    /// Like [`join`](TaskHandle::join), but gives the handle back if the task is not finished
    /// within `timeout` (the task keeps running).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// #[workpool::task]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().build().unwrap();
    ///     let mut handle = ex.submit(Nap { ms: 300 });
    ///     let result = loop {
    ///         match handle.join_timeout(Duration::from_millis(100)) {
    ///             Ok(result) => break result,
    ///             Err(pending) => {
    ///                 eprintln!("still running…");
    ///                 handle = pending;
    ///             }
    ///         }
    ///     };
    ///     assert_eq!(result.unwrap(), 300);
    /// }
    /// ```
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
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().build().unwrap();
    ///     let handle = ex.submit(Nap { ms: 20 });
    ///     while !handle.is_finished() {
    ///         std::thread::yield_now(); // or do something useful
    ///     }
    ///     assert_eq!(handle.join().unwrap(), 20); // does not block
    /// }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.completion.is_done()
    }

    /// Cancels the task if no worker has received it yet; `join` then reports
    /// [`TaskError::is_cancelled`]. Returns false when it was too late (sent to a worker,
    /// running, or finished).
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn nap(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    ///     ms
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let ex = workpool::Executor::builder().workers(1).build().unwrap();
    ///     let first = ex.submit(Nap { ms: 500 });
    ///     let queued: Vec<_> = (0..1000).map(|_| ex.submit(Nap { ms: 500 })).collect();
    ///     // The last ones are still queued behind the first: they can be cancelled.
    ///     let last = queued.last().unwrap();
    ///     assert!(last.cancel());
    ///     assert!(queued.into_iter().last().unwrap().join().unwrap_err().is_cancelled());
    ///     # let _ = first; ex.shutdown(workpool::Shutdown::CancelQueued);
    /// }
    /// ```
    pub fn cancel(&self) -> bool {
        self.completion.cancel()
    }
}

/// Decodes what a worker sent back with `decode`, as a [`TaskError`] on failure.
pub(crate) fn decode_outputs<T>(
    bytes: &[u8],
    task: &'static str,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, TaskError> {
    decode(bytes).map_err(|message| TaskError::new(ErrorKind::Codec { stage: "decoding the result", message }, task))
}

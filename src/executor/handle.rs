//! [`TaskHandle`]: the typed view of one task's [`Completion`], for blocking callers (`join`)
//! and async ones (it is a [`Future`]); [`KillOnDrop`], the guard that kills it when dropped.

use super::completion::{Completion, Outcome};
use crate::codec;
use crate::error::{ErrorKind, TaskError};
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A submitted task: wait for its output with [`join`](TaskHandle::join), or `.await` it.
///
/// Dropping a handle does not cancel the task (use [`cancel`](TaskHandle::cancel) or
/// [`kill`](TaskHandle::kill), or [`kill_on_drop`](TaskHandle::kill_on_drop)); it still runs.
///
/// # Async
///
/// A `TaskHandle<O>` is a [`Future`] with `Output = Result<O, TaskError>`, woken by the feeder
/// thread that receives the result: awaiting it blocks no thread of the runtime, and works
/// under any executor (tokio, smol, `futures::executor::block_on`). The output is decoded on
/// the polling thread, as `join` decodes it on the joining one. Awaiting it does not count as
/// waiting for Ctrl-C's purposes (see [`handle_ctrl_c`](crate::handle_ctrl_c)): an async program
/// that wants to stop gracefully on Ctrl-C awaits [`ctrl_c`](crate::ctrl_c).
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Square(u64);
/// # impl workpool::Task for Square { type Output = u64; fn run(self) -> u64 { self.0 * self.0 } }
/// # workpool::register!(Square);
/// # async fn serve(ex: workpool::Executor) {
/// let squared = ex.submit(Square(7)).await.unwrap();
/// assert_eq!(squared, 49);
/// # }
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

    /// The result, when the outcome is in (it is taken: the handle is spent).
    pub(super) fn take_ready(&mut self) -> Option<Result<O, TaskError>> {
        match self.completion.poll_take(Waker::noop()) {
            Poll::Ready(outcome) => Some(self.finish(outcome)),
            Poll::Pending => None,
        }
    }

    fn finish(&self, outcome: Outcome) -> Result<O, TaskError> {
        decode_outputs(&outcome?, self.completion.task(), codec::decode_exact)
    }
}

impl<O: DeserializeOwned> Future for TaskHandle<O> {
    type Output = Result<O, TaskError>;

    /// Ready once the task's outcome is in. Polling again after `Ready` panics, as for any
    /// future that has completed.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.completion.poll_take(cx.waker()).map(|outcome| self.finish(outcome))
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

    /// Cancels the task if it has not started: it is still queued, or was written ahead to a
    /// worker that has not taken it yet (the executor takes it back from that worker; for this
    /// the call waits for one round of that worker's feeder thread, microseconds).
    /// `join` then reports [`TaskError::is_cancelled`]. Returns false when it was too late
    /// (running or finished): [`kill`](TaskHandle::kill) stops a running task too.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Nap(u64);
    /// # impl workpool::Task for Nap { type Output = (); fn run(self) { std::thread::sleep(std::time::Duration::from_millis(self.0)) } }
    /// # workpool::register!(Nap);
    /// # fn main() { workpool::init();
    /// let ex = workpool::Executor::builder().workers(1).build().unwrap();
    /// let running = ex.submit(Nap(500));
    /// let waiting = ex.submit(Nap(500));
    /// std::thread::sleep(std::time::Duration::from_millis(100));
    /// assert!(waiting.cancel());
    /// assert!(!running.cancel(), "too late: it runs");
    /// assert!(waiting.join().unwrap_err().is_cancelled());
    /// # }
    /// ```
    pub fn cancel(&self) -> bool {
        self.completion.cancel_unstarted()
    }

    /// Stops the task, wherever it is: a queued or prefetched one is cancelled; a running one
    /// is stopped by killing its worker process (with whatever the task started in the
    /// worker's process group), which the executor replaces on demand while the other tasks
    /// carry on (those queued behind it on that worker run elsewhere). The handle reports
    /// [`TaskError::is_cancelled`] at once. Returns false when the task had already finished.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Nap(u64);
    /// # impl workpool::Task for Nap { type Output = (); fn run(self) { std::thread::sleep(std::time::Duration::from_millis(self.0)) } }
    /// # workpool::register!(Nap);
    /// # fn main() { workpool::init();
    /// let ex = workpool::Executor::builder().workers(1).build().unwrap();
    /// let stuck = ex.submit(Nap(60_000));
    /// std::thread::sleep(std::time::Duration::from_millis(200));
    /// assert!(stuck.kill());
    /// assert!(stuck.join().unwrap_err().is_cancelled());
    /// # }
    /// ```
    pub fn kill(&self) -> bool {
        self.completion.kill()
    }

    /// The process id of the worker the task was sent to (running it, about to, or that ran
    /// it); `None` while it waits in the executor's queue.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Pid;
    /// # impl workpool::Task for Pid { type Output = u32; fn run(self) -> u32 { std::process::id() } }
    /// # workpool::register!(Pid);
    /// # fn main() { workpool::init();
    /// let ex = workpool::Executor::builder().workers(1).build().unwrap();
    /// let handle = ex.submit(Pid);
    /// while !handle.is_finished() { std::thread::yield_now() }
    /// let pid = handle.pid();
    /// assert_eq!(pid, Some(handle.join().unwrap()));
    /// # }
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.completion.pid()
    }

    /// Cancels the task only if it is still in the executor's queue (what a dropped `map`
    /// does: no wait for any feeder).
    pub(super) fn cancel_queued(&self) -> bool {
        self.completion.cancel()
    }

    /// Leaves `waker` to be woken when the outcome lands; true when it is in already.
    pub(super) fn register(&self, waker: &Waker) -> bool {
        self.completion.register(waker)
    }

    /// A guard that [`kill`](TaskHandle::kill)s the task when dropped before it finished
    /// (tokio-util's `AbortOnDropHandle`): for a request handler whose client may go away, or
    /// a `select!` whose other branch wins. It is a future and a handle like this one.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Nap(u64);
    /// # impl workpool::Task for Nap { type Output = (); fn run(self) { std::thread::sleep(std::time::Duration::from_millis(self.0)) } }
    /// # workpool::register!(Nap);
    /// # async fn handler(ex: workpool::Executor) {
    /// let guarded = ex.submit(Nap(10_000)).kill_on_drop();
    /// // If this future is dropped here (the client went away), the task's worker is killed.
    /// guarded.await.unwrap();
    /// # }
    /// ```
    pub fn kill_on_drop(self) -> KillOnDrop<O> {
        KillOnDrop { handle: Some(self) }
    }
}

/// A [`TaskHandle`] that kills its task when dropped unfinished; see
/// [`TaskHandle::kill_on_drop`]. Awaiting it gives the task's result, as the handle would.
///
/// ```no_run
/// #[workpool::task]
/// fn nap(ms: u64) -> u64 {
///     std::thread::sleep(std::time::Duration::from_millis(ms));
///     ms
/// }
///
/// async fn handler(ex: workpool::Executor) -> Result<u64, workpool::TaskError> {
///     let guarded: workpool::KillOnDrop<u64> = ex.submit(Nap { ms: 60_000 }).kill_on_drop();
///     // If this future is dropped before the task ends (the client went away, a timeout won a
///     // `select!`), the guard goes with it and the task's worker is killed.
///     guarded.await
/// }
/// ```
#[must_use = "dropping the guard kills the task"]
pub struct KillOnDrop<O> {
    /// `None` only after `into_inner`.
    handle: Option<TaskHandle<O>>,
}

impl<O> fmt::Debug for KillOnDrop<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KillOnDrop").field("handle", &self.handle).finish()
    }
}

impl<O> KillOnDrop<O> {
    /// The handle, with the guard disarmed (dropping it lets the task run on).
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
    ///     let guarded = ex.submit(Nap { ms: 50 }).kill_on_drop();
    ///     let handle = guarded.into_inner(); // no longer killed on drop
    ///     assert_eq!(handle.join().unwrap(), 50);
    /// }
    /// ```
    pub fn into_inner(mut self) -> TaskHandle<O> {
        self.handle.take().expect("present until into_inner")
    }

    /// The guarded handle ([`kill`](TaskHandle::kill), [`pid`](TaskHandle::pid), …).
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
    ///     let guarded = ex.submit(Nap { ms: 50 }).kill_on_drop();
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     println!("running in worker {:?}", guarded.handle().pid());
    /// }
    /// ```
    pub fn handle(&self) -> &TaskHandle<O> {
        self.handle.as_ref().expect("present until into_inner")
    }
}

impl<O: DeserializeOwned> Future for KillOnDrop<O> {
    type Output = Result<O, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(self.handle.as_mut().expect("present until into_inner")).poll(cx)
    }
}

impl<O> Drop for KillOnDrop<O> {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.kill();
        }
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

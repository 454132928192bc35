//! [`as_completed`] and [`MapStream`]: many handles, consumed as they finish (blocking or as a
//! `Stream`) or in input order as a `Stream`.
//!
//! `as_completed` leaves one waker per handle, made from its index: when a task's outcome
//! lands, the feeder's wake pushes that index on a shared ready list (and wakes whoever
//! waits on it: a blocked `next`, or the task polling the stream). No thread per handle, no
//! polling of every handle per step: each step costs what one finished task costs.

use super::handle::TaskHandle;
use super::Executor;
use crate::error::TaskError;
use crate::task::Task;
use futures_core::Stream;
use parking_lot::{Condvar, Mutex};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future as _;
use std::iter::Fuse;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Tasks in flight per worker for `map_stream`, as for `Executor::map`.
const IN_FLIGHT_PER_WORKER: usize = 128;

/// The indices of finished handles, in the order they finished.
#[derive(Default)]
struct ReadyList {
    inner: Mutex<ReadyInner>,
    condvar: Condvar,
}

#[derive(Default)]
struct ReadyInner {
    indices: VecDeque<usize>,
    /// The task polling the stream, if it waits.
    waker: Option<Waker>,
}

impl ReadyList {
    fn push(&self, index: usize) {
        let mut inner = self.inner.lock();
        inner.indices.push_back(index);
        let waker = inner.waker.take();
        drop(inner);
        self.condvar.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The waker left with handle `index`: its wake says "`index` finished".
struct IndexWaker {
    index: usize,
    ready: Arc<ReadyList>,
}

impl Wake for IndexWaker {
    fn wake(self: Arc<Self>) {
        self.ready.push(self.index);
    }
}

/// Yields each task's result as it finishes: `(index, result)`, where `index` is the handle's
/// place in the input (concurrent.futures' `as_completed`). Every handle is yielded exactly
/// once, finished ones first; the iterator blocks until the next one finishes. It is also a
/// [`Stream`](futures_core::Stream) of the same items, for async code.
///
/// # Examples
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Nap(u64);
/// # impl workpool::Task for Nap { type Output = u64; fn run(self) -> u64 { std::thread::sleep(std::time::Duration::from_millis(self.0)); self.0 } }
/// # workpool::register!(Nap);
/// # fn main() { workpool::init();
/// let ex = workpool::Executor::builder().workers(3).build().unwrap();
/// let handles = [300, 100, 200].map(|ms| ex.submit(Nap(ms)));
/// let order: Vec<usize> = workpool::as_completed(handles).map(|(index, _)| index).collect();
/// assert_eq!(order, [1, 2, 0]);
/// # }
/// ```
pub fn as_completed<O, I>(handles: I) -> AsCompleted<O>
where
    O: DeserializeOwned,
    I: IntoIterator<Item = TaskHandle<O>>,
{
    let ready = Arc::new(ReadyList::default());
    let handles: Vec<Option<TaskHandle<O>>> = handles.into_iter().map(Some).collect();
    for (index, handle) in handles.iter().enumerate() {
        let handle = handle.as_ref().expect("all present");
        let waker = Waker::from(Arc::new(IndexWaker { index, ready: ready.clone() }));
        if handle.register(&waker) {
            ready.push(index);
        }
    }
    let left = handles.len();
    AsCompleted { handles, ready, left }
}

/// The iterator (and stream) of [`as_completed`].
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
///     let ex = workpool::Executor::builder().workers(3).build().unwrap();
///     let handles = [300, 10, 100].map(|ms| ex.submit(Nap { ms }));
///     let order: Vec<usize> = workpool::as_completed(handles).map(|(index, _result)| index).collect();
///     assert_eq!(order, [1, 2, 0]); // fastest first
/// }
/// ```
#[must_use = "iterators are lazy: the results are only seen by consuming it"]
pub struct AsCompleted<O> {
    handles: Vec<Option<TaskHandle<O>>>,
    ready: Arc<ReadyList>,
    /// Handles not yet yielded.
    left: usize,
}

impl<O> fmt::Debug for AsCompleted<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted").field("total", &self.handles.len()).field("left", &self.left).finish()
    }
}

impl<O: DeserializeOwned> AsCompleted<O> {
    /// Handles not yet yielded.
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
    ///     let mut done = workpool::as_completed((0..4).map(|_| ex.submit(Nap { ms: 10 })));
    ///     assert_eq!(done.remaining(), 4);
    ///     done.next();
    ///     assert_eq!(done.remaining(), 3);
    /// }
    /// ```
    pub fn remaining(&self) -> usize {
        self.left
    }

    /// Like `next`, but waits at most `timeout`: `None` means nothing
    /// finished in time, `Some(None)` that every handle was yielded
    /// (concurrent.futures' `wait(FIRST_COMPLETED, timeout)`).
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)] struct Nap(u64);
    /// # impl workpool::Task for Nap { type Output = u64; fn run(self) -> u64 { std::thread::sleep(std::time::Duration::from_millis(self.0)); self.0 } }
    /// # workpool::register!(Nap);
    /// # fn main() { workpool::init();
    /// use std::time::Duration;
    /// let ex = workpool::Executor::builder().workers(2).build().unwrap();
    /// let mut done = workpool::as_completed([ex.submit(Nap(2_000)), ex.submit(Nap(10))]);
    /// let first = done.next_timeout(Duration::from_secs(1)).expect("one finished in time");
    /// assert_eq!(first.map(|(index, _)| index), Some(1));
    /// assert!(done.next_timeout(Duration::from_millis(10)).is_none(), "the other runs on");
    /// # }
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Option<(usize, Result<O, TaskError>)>> {
        self.wait_next(Some(Instant::now() + timeout))
    }

    fn wait_next(&mut self, deadline: Option<Instant>) -> Option<Option<(usize, Result<O, TaskError>)>> {
        if self.left == 0 {
            return Some(None);
        }
        let _waiting = crate::interrupt::Waiting::enter();
        let mut inner = self.ready.inner.lock();
        loop {
            if let Some(index) = inner.indices.pop_front() {
                drop(inner);
                return Some(Some(self.take_index(index)));
            }
            match deadline {
                None => self.ready.condvar.wait(&mut inner),
                Some(deadline) => {
                    if self.ready.condvar.wait_until(&mut inner, deadline).timed_out() && inner.indices.is_empty() {
                        return None;
                    }
                }
            }
        }
    }

    fn take_index(&mut self, index: usize) -> (usize, Result<O, TaskError>) {
        let mut handle = self.handles[index].take().expect("each handle finishes once");
        self.left -= 1;
        (index, handle.take_ready().expect("announced as finished"))
    }
}

impl<O: DeserializeOwned> Iterator for AsCompleted<O> {
    type Item = (usize, Result<O, TaskError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.wait_next(None).expect("no deadline")
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<O: DeserializeOwned> Stream for AsCompleted<O> {
    type Item = (usize, Result<O, TaskError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut inner = self.ready.inner.lock();
        match inner.indices.pop_front() {
            Some(index) => {
                drop(inner);
                Poll::Ready(Some(self.take_index(index)))
            }
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<O> Unpin for AsCompleted<O> {}

// ===== the async form of `Executor::map` =====

/// The stream returned by [`Executor::map_stream`]: results in input order, with the bounded
/// window of [`Executor::map`]. Dropping it cancels what has not started.
///
/// ```no_run
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
///
/// #[workpool::task]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// async fn sum(ex: workpool::Executor) -> u64 {
///     let mut stream = ex.map_stream((0..1000).map(|n| Square { n }));
///     let mut total = 0;
///     // `StreamExt::next` from futures or tokio-stream does the same.
///     while let Some(result) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
///         total += result.unwrap();
///     }
///     total
/// }
/// ```
#[must_use = "streams are lazy: nothing is submitted until the stream is polled"]
pub struct MapStream<O, I> {
    executor: Executor,
    input: Fuse<I>,
    window: VecDeque<TaskHandle<O>>,
    limit: usize,
}

impl<O, I> fmt::Debug for MapStream<O, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapStream").field("in_flight", &self.window.len()).field("limit", &self.limit).finish()
    }
}

impl<O, I: Iterator> MapStream<O, I> {
    pub(super) fn new(executor: Executor, input: I) -> Self {
        let limit = executor.num_workers() * IN_FLIGHT_PER_WORKER;
        MapStream { executor, input: input.fuse(), window: VecDeque::new(), limit }
    }
}

impl<O, I> Unpin for MapStream<O, I> {}

impl<T, I> Stream for MapStream<T::Output, I>
where
    T: Task,
    I: Iterator<Item = T>,
    T::Output: DeserializeOwned,
{
    type Item = Result<T::Output, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while this.window.len() < this.limit {
            match this.input.next() {
                Some(task) => this.window.push_back(this.executor.submit(task)),
                None => break,
            }
        }
        let Some(front) = this.window.front_mut() else { return Poll::Ready(None) };
        match Pin::new(front).poll(cx) {
            Poll::Ready(result) => {
                this.window.pop_front();
                Poll::Ready(Some(result))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<O, I> Drop for MapStream<O, I> {
    fn drop(&mut self) {
        for handle in self.window.drain(..) {
            handle.cancel_queued();
        }
    }
}

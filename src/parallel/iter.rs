//! [`ParallelIter`]: a run in progress: the bounded window of batches in flight, the reorder
//! buffer, and Ctrl-C.
//!
//! ```text
//!   input ──(lazily, batch by batch)──▶ pool ──▶ notifications (arrival order)
//!                                                      │
//!                ordered: reorder buffer ◀─────────────┤──▶ unordered: yield at once
//! ```
//!
//! At most `4 × n_jobs` batches are in flight or finished-but-not-yielded; the input is read
//! only as they are consumed, which is the backpressure that keeps memory flat under a slow
//! consumer.

use super::progress::Progress;
use super::runner::{run_batch, Pending, Pool, Runner};
use super::sizer::Sizer;
use super::Parallel;
use crate::error::{ErrorKind, TaskError};
use crate::executor::Announce;
use crate::interrupt;
use crate::observe::ParallelCounter;
use crate::task::Task;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::iter::Fuse;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Batches in flight per job.
const IN_FLIGHT_PER_JOB: usize = 4;

/// The iterator of [`Parallel::iter`] and [`Parallel::iter_unordered`].
///
/// ```no_run
/// use workpool::Parallel;
///
/// #[workpool::task]
/// fn check(n: u64) -> bool {
///     n % 7 != 0
/// }
///
/// fn main() {
///     workpool::init();
///     // Stop at the first input that fails the check: the tasks not yet started are cancelled
///     // when the iterator is dropped.
///     let first_bad = Parallel::new().iter((1..1_000_000).map(|n| Check { n })).position(|ok| !ok.unwrap());
///     assert_eq!(first_bad, Some(6));
/// }
/// ```
#[must_use = "iterators are lazy: nothing runs until the iterator is consumed"]
pub struct ParallelIter<T: Task, I> {
    input: Fuse<I>,
    runner: Runner,
    jobs: usize,
    ordered: bool,
    sizer: Sizer,
    /// Tasks not yet read from the input, when its length is known.
    remaining: Option<usize>,
    /// Tag of the next batch dispatched (input order).
    next_batch: usize,
    /// Tag of the next batch to yield (ordered runs).
    next_to_yield: usize,
    pending: HashMap<usize, Pending<T::Output>>,
    /// Finished batches waiting for their turn (ordered), or to be yielded (unordered).
    ready: BTreeMap<usize, VecDeque<T::Output>>,
    /// Finished batches announce their tag here (senders live in the batches).
    tx: Announce,
    rx: Receiver<usize>,
    /// Raised when the run ends: thread batches not yet begun skip their work.
    abort: Arc<AtomicBool>,
    /// The interrupt epoch when the run began.
    epoch: u64,
    progress: Progress,
    /// What [`ParallelIter::stats`] reports.
    counter: ParallelCounter,
    ended: bool,
    /// While the iterator is being consumed, Ctrl-C interrupts it (even between two `next`
    /// calls, and on the inline runner) instead of exiting the program.
    waiting: Option<interrupt::Waiting>,
}

impl<T: Task, I> fmt::Debug for ParallelIter<T, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelIter").field("jobs", &self.jobs).field("in_flight", &self.pending.len()).finish()
    }
}

impl<T: Task, I: Iterator<Item = T>> ParallelIter<T, I> {
    pub(crate) fn new(options: &Parallel, input: I, ordered: bool) -> Self {
        let jobs = options.effective_n_jobs();
        let (lower, upper) = input.size_hint();
        let remaining = (Some(lower) == upper).then_some(lower);
        let (tx, rx) = Announce::channel();
        ParallelIter {
            input: input.fuse(),
            runner: Runner::choose(options, jobs),
            jobs,
            ordered,
            sizer: Sizer::new(options.batch_size),
            remaining,
            next_batch: 0,
            next_to_yield: 0,
            pending: HashMap::new(),
            ready: BTreeMap::new(),
            tx,
            rx,
            abort: Arc::new(AtomicBool::new(false)),
            epoch: interrupt::epoch(),
            progress: Progress::new(options.progress, options.verbose, remaining, jobs),
            counter: ParallelCounter::new(jobs),
            ended: false,
            waiting: None,
        }
    }

    /// Dispatches batches while the window has room and input remains. Finished batches still
    /// waiting in the reorder buffer count against the window: otherwise one slow batch at the
    /// head would let dispatch (and memory) run arbitrarily far ahead of the consumer.
    fn top_up(&mut self, pool: &Pool) {
        while self.pending.len() + self.ready.len() < IN_FLIGHT_PER_JOB * self.jobs {
            let size = self.sizer.next(self.remaining, self.jobs);
            let batch: Vec<T> = self.input.by_ref().take(size).collect();
            if batch.is_empty() {
                return;
            }
            if let Some(left) = &mut self.remaining {
                *left = left.saturating_sub(batch.len());
            }
            let tag = self.next_batch;
            self.next_batch += 1;
            self.counter.dispatched(batch.len());
            let pending = pool.dispatch(batch, &self.tx, tag, &self.abort);
            self.pending.insert(tag, pending);
        }
    }

    /// Waits for the next finished batch; its outputs, or the error that ends the run.
    fn collect_one(&mut self, pool: &Pool) -> Result<(usize, Vec<T::Output>), TaskError> {
        let mut wait = crate::observe::Wait::new(std::any::type_name::<T>());
        wait.blocks();
        let tag = loop {
            // The iterator holds a sender itself, so the channel never disconnects: an error
            // here is a timeout, the moment to look for a Ctrl-C that threads cannot see.
            if let Ok(tag) = self.rx.recv_timeout(Duration::from_millis(50)) {
                break tag;
            }
            if self.interrupted() && pool.is_threads() {
                return Err(TaskError::new(ErrorKind::Interrupted, std::any::type_name::<T>()));
            }
        };
        drop(wait);
        Ok((tag, self.finish_batch(tag)?))
    }

    /// The outputs of the batch whose tag was announced, accounted for.
    fn finish_batch(&mut self, tag: usize) -> Result<Vec<T::Output>, TaskError> {
        let pending = self.pending.remove(&tag).expect("a batch we dispatched");
        let (outputs, elapsed) = pending.take();
        let outputs = outputs?;
        self.counter.finished(outputs.len(), elapsed);
        self.sizer.record(outputs.len(), elapsed);
        self.progress.advance(outputs.len());
        Ok(outputs)
    }

    fn interrupted(&self) -> bool {
        interrupt::epoch() != self.epoch
    }

    /// One task in the calling thread (`n_jobs(1)`).
    fn next_inline(&mut self) -> Option<Result<T::Output, TaskError>> {
        let Some(task) = self.input.next() else {
            self.stop();
            return None;
        };
        if self.interrupted() {
            self.stop();
            return Some(Err(TaskError::new(ErrorKind::Interrupted, std::any::type_name::<T>())));
        }
        self.counter.dispatched(1);
        let (result, elapsed) = run_batch(vec![task]);
        let result = result.map(|mut out| out.pop().expect("one output"));
        if result.is_ok() {
            self.counter.finished(1, elapsed);
        }
        if result.is_err() {
            self.stop();
        } else {
            self.progress.advance(1);
        }
        Some(result)
    }

    /// An output that is ready to be yielded (in order, or any order), if there is one.
    fn pop_ready(&mut self) -> Option<T::Output> {
        loop {
            let key = if self.ordered { self.next_to_yield } else { *self.ready.keys().next()? };
            let queue = self.ready.get_mut(&key)?;
            if let Some(output) = queue.pop_front() {
                return Some(output);
            }
            self.ready.remove(&key);
            if self.ordered {
                self.next_to_yield += 1;
            }
        }
    }

    /// The next output from a pool: what is ready first, then more.
    fn next_pooled(&mut self, pool: &Pool) -> Option<Result<T::Output, TaskError>> {
        loop {
            if let Some(output) = self.pop_ready() {
                return Some(Ok(output));
            }
            self.top_up(pool);
            if self.pending.is_empty() {
                self.progress.finish();
                if self.ready.is_empty() {
                    self.stop();
                    return None;
                }
                continue;
            }
            match self.collect_one(pool) {
                Ok((tag, outputs)) => {
                    self.ready.insert(tag, outputs.into());
                }
                Err(e) => {
                    self.stop();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<T: Task, I: Iterator<Item = T>> Iterator for ParallelIter<T, I> {
    type Item = Result<T::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        self.waiting.get_or_insert_with(interrupt::Waiting::enter);
        // The common case of a streaming run: an output of a batch that already finished.
        if let Some(output) = self.pop_ready() {
            return Some(Ok(output));
        }
        // The runner is put back before returning: `next_pooled` needs `&mut self` and the pool.
        let runner = std::mem::replace(&mut self.runner, Runner::Inline);
        let next = match &runner {
            Runner::Inline => self.next_inline(),
            Runner::Pool(pool) => self.next_pooled(pool),
            Runner::Unavailable(message) => {
                self.stop();
                let kind = ErrorKind::Spawn { message: message.clone() };
                Some(Err(TaskError::new(kind, std::any::type_name::<T>())))
            }
        };
        self.runner = runner;
        next
    }
}

/// The async form of [`Parallel::iter`](crate::Parallel::iter) and
/// [`iter_unordered`](crate::Parallel::iter_unordered): the same run, with the same bounded
/// window and order, polled instead of waited for. Polling never blocks on a worker: it
/// registers the task's waker with the batches in flight, and a finished batch wakes it. (It
/// reads the input iterator when the window has room, and with `n_jobs(1)` runs each task
/// inline in `poll_next`, as `iter` runs them in `next`.)
///
/// Awaiting a run does not count as waiting for Ctrl-C's purposes (see
/// [`handle_ctrl_c`](crate::handle_ctrl_c)): a Ctrl-C still ends an async program that does not
/// await [`ctrl_c`](crate::ctrl_c).
///
/// ```no_run
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
/// use workpool::Parallel;
///
/// #[workpool::task]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// async fn total() -> u64 {
///     let mut run = Parallel::new().iter((0..1000).map(|n| Square { n }));
///     let mut sum = 0;
///     // `StreamExt::next` from futures or tokio-stream does the same.
///     while let Some(square) = poll_fn(|cx| Pin::new(&mut run).poll_next(cx)).await {
///         sum += square.unwrap();
///     }
///     sum
/// }
/// ```
impl<T: Task, I: Iterator<Item = T> + Unpin> futures_core::Stream for ParallelIter<T, I> {
    type Item = Result<T::Output, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(output) = this.pop_ready() {
            return Poll::Ready(Some(Ok(output)));
        }
        let runner = std::mem::replace(&mut this.runner, Runner::Inline);
        let next = match &runner {
            Runner::Inline => Poll::Ready(this.next_inline()),
            Runner::Pool(pool) => this.poll_pooled(pool, cx),
            Runner::Unavailable(message) => {
                this.stop();
                let kind = ErrorKind::Spawn { message: message.clone() };
                Poll::Ready(Some(Err(TaskError::new(kind, std::any::type_name::<T>()))))
            }
        };
        this.runner = runner;
        next
    }
}

impl<T: Task, I: Iterator<Item = T>> ParallelIter<T, I> {
    /// [`next_pooled`](Self::next_pooled) without blocking: `Pending` (with the waker
    /// registered) until a batch in flight finishes.
    fn poll_pooled(&mut self, pool: &Pool, cx: &mut Context<'_>) -> Poll<Option<Result<T::Output, TaskError>>> {
        loop {
            if let Some(output) = self.pop_ready() {
                return Poll::Ready(Some(Ok(output)));
            }
            self.top_up(pool);
            if self.pending.is_empty() {
                self.progress.finish();
                if self.ready.is_empty() {
                    self.stop();
                    return Poll::Ready(None);
                }
                continue;
            }
            if self.interrupted() && pool.is_threads() {
                self.stop();
                return Poll::Ready(Some(Err(TaskError::new(ErrorKind::Interrupted, std::any::type_name::<T>()))));
            }
            // Register first, then look: a batch that finishes in between wakes us.
            self.tx.register(cx.waker());
            let tag = match self.rx.try_recv() {
                Ok(tag) => tag,
                Err(TryRecvError::Empty) => return Poll::Pending,
                Err(TryRecvError::Disconnected) => unreachable!("the iterator holds a sender itself"),
            };
            match self.finish_batch(tag) {
                Ok(outputs) => {
                    self.ready.insert(tag, outputs.into());
                }
                Err(e) => {
                    self.stop();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl<T: Task, I> ParallelIter<T, I> {
    /// What the run did so far: batches and their sizes, busy and wall time, efficiency and
    /// Amdahl's serial fraction (see [`ParallelStats`](crate::ParallelStats)). Call it while
    /// iterating or after the last item.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Serialize, Deserialize)]
    /// # struct Square(u64);
    /// # impl workpool::Task for Square {
    /// #     type Output = u64;
    /// #     fn run(self) -> u64 { self.0 * self.0 }
    /// # }
    /// # workpool::register!(Square);
    /// workpool::init();
    /// let mut run = workpool::Parallel::new().iter((0..10_000).map(Square));
    /// let sum: u64 = run.by_ref().map(Result::unwrap).sum();
    /// let stats = run.stats();
    /// assert_eq!(stats.tasks, 10_000);
    /// println!("{sum}: {} batches, efficiency {:.2}", stats.batches, stats.efficiency());
    /// ```
    pub fn stats(&self) -> crate::ParallelStats {
        self.counter.snapshot()
    }

    /// Starts recording a timeline of this run, on the process backend: call it before the
    /// first item, and [`finish`](crate::Recording::finish) the recording after the last one.
    /// It records the executor the run uses (its own reusable one, or the one given with
    /// [`Parallel::executor`](crate::Parallel::executor)), so other work on that executor in
    /// the meantime is in it too. `None` on threads or inline (`n_jobs(1)`): those have no
    /// worker slots to draw.
    ///
    /// ```no_run
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     let mut run = workpool::Parallel::new().n_jobs(2).iter((0..1000).map(|n| Square { n }));
    ///     let recording = run.record().expect("the process backend");
    ///     let squares: Vec<u64> = run.by_ref().map(Result::unwrap).collect();
    ///     let timeline = recording.finish();
    ///     assert_eq!((squares.len(), timeline.tasks()), (1000, 1000));
    ///     timeline.write_chrome_json("parallel.json").unwrap();
    /// }
    /// ```
    pub fn record(&self) -> Option<crate::Recording> {
        match &self.runner {
            Runner::Pool(Pool::Processes(executor)) => Some(executor.record()),
            _ => None,
        }
    }

    /// Ends the run: batches not yet started are cancelled, thread batches not yet begun skip
    /// their work, the bar is cleared.
    fn stop(&mut self) {
        self.ended = true;
        self.waiting = None;
        self.abort.store(true, Ordering::Relaxed);
        for (_, pending) in self.pending.drain() {
            pending.cancel();
        }
        self.progress.finish();
    }
}

impl<T: Task, I> Drop for ParallelIter<T, I> {
    fn drop(&mut self) {
        self.stop();
    }
}

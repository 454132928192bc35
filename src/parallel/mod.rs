//! `Parallel`: joblib's one-liner for Rust, on threads or processes, with auto-batching.
//!
//! ```text
//!   input ──(lazily, batch by batch)──▶ backend ──▶ completions (arrival order)
//!                                                      │
//!                ordered: reorder buffer ◀─────────────┤──▶ unordered: yield at once
//! ```
//!
//! # Auto-batching
//!
//! Tiny tasks are grouped into batches whose size adapts to the measured run time of a batch
//! (reported by the worker, so queueing delays do not distort it). Like joblib, sizes start at
//! 1 and grow while batches are short, and shrink when they are long; the constants fit the
//! overheads of this crate rather than Python's:
//!
//! * A batch costs roughly 20–50 µs of fixed overhead (a socket round trip, two wake-ups) on
//!   the process backend and a few µs on threads. Batches that run at least
//!   [`MIN_BATCH`] (2 ms) keep that overhead near 1–2%.
//! * Batches that run over [`MAX_BATCH`] (20 ms) are split again so that results and
//!   progress keep flowing and Ctrl-C or an early error is acted on quickly.
//! * Short batches grow towards [`TARGET_BATCH`] (5 ms), at most 8× per step; long ones shrink
//!   in proportion. (joblib aims at 0.2–2 s, because each of its batches costs milliseconds.)
//! * When the input length is known, no batch takes more than `remaining / (2 × n_jobs)`
//!   tasks, so the tail is spread over every worker instead of one straggler.
//!
//! At most `4 × n_jobs` batches are in flight; the input is read only as they complete, which
//! is the backpressure that keeps memory flat under a slow consumer.

use crate::ctrl_c;
use crate::error::{ErrorKind, TaskError};
use crate::executor::handle::Completion;
use crate::executor::Executor;
use crate::task::Task;
use crate::unwind;
use crate::ThreadPool;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::iter::Fuse;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches shorter than this grow (ns).
pub(crate) const MIN_BATCH: Duration = Duration::from_millis(2);
/// The run time batches are sized for.
pub(crate) const TARGET_BATCH: Duration = Duration::from_millis(5);
/// Batches longer than this shrink.
pub(crate) const MAX_BATCH: Duration = Duration::from_millis(20);
/// Largest automatic batch.
const MAX_BATCH_SIZE: usize = 1 << 20;
/// Batches in flight per job.
const IN_FLIGHT_PER_JOB: usize = 4;

/// Where `Parallel` runs tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Worker processes of the reusable [`Executor`] (the default): crash isolation.
    #[default]
    Processes,
    /// Threads of an in-process [`ThreadPool`]: no serialization, no isolation.
    Threads,
}

/// joblib-style parallel map: `Parallel::new().n_jobs(-1).run(tasks)`.
///
/// The same [`Task`] type runs on either backend. Results come back in input order ([`run`],
/// [`iter`]) or as they finish ([`iter_unordered`]). The first error ends the call: everything
/// not yet started is cancelled, healthy workers are left alone, and the error is returned.
///
/// [`run`]: Parallel::run
/// [`iter`]: Parallel::iter
/// [`iter_unordered`]: Parallel::iter_unordered
///
/// # Examples
///
/// ```no_run
/// use serde::{Deserialize, Serialize};
/// use workpool::{Backend, Parallel, Task};
///
/// #[derive(Serialize, Deserialize)]
/// struct Square(u64);
/// impl Task for Square {
///     type Output = u64;
///     fn run(self) -> u64 { self.0 * self.0 }
/// }
/// workpool::register!(Square);
///
/// fn main() {
///     workpool::init();
///     let squares = Parallel::new().n_jobs(-1).run((0..1_000_000).map(Square)).unwrap();
///     assert_eq!(squares[1000], 1_000_000);
///     let on_threads = Parallel::new().backend(Backend::Threads).run((0..10).map(Square)).unwrap();
///     assert_eq!(on_threads[3], 9);
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use = "Parallel does nothing until `run`, `iter` or `iter_unordered` is called"]
pub struct Parallel {
    n_jobs: isize,
    backend: Backend,
    batch_size: Option<usize>,
    progress: bool,
    verbose: u32,
    executor: Option<Executor>,
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel::new()
    }
}

impl Parallel {
    /// All CPUs, processes, automatic batches, a progress bar on a terminal.
    pub fn new() -> Self {
        Parallel {
            n_jobs: -1,
            backend: Backend::default(),
            batch_size: None,
            progress: true,
            verbose: 0,
            executor: None,
        }
    }

    /// Number of parallel jobs, as joblib counts them: `n ≥ 1` exactly `n`; `-1` every CPU
    /// ([`cpu_count`](crate::cpu_count)); `-2` all but one, and so on (at least one);
    /// `1` runs inline in the calling thread, with no pool at all.
    ///
    /// # Panics
    /// On `0`, which means nothing.
    pub fn n_jobs(mut self, n: isize) -> Self {
        assert!(n != 0, "Parallel::n_jobs(0) means no workers; use -1 for every CPU or 1 for inline");
        self.n_jobs = n;
        self
    }

    /// Threads or processes (default: processes).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Runs on this executor instead of the reusable one (process backend).
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = Some(executor);
        self.backend = Backend::Processes;
        self
    }

    /// A fixed number of tasks per batch instead of automatic sizing.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n.max(1));
        self
    }

    /// Show a progress bar (done/total, rate, ETA) on stderr when it is a terminal (default on).
    pub fn progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// Log lines on stderr instead of (or besides) the bar: `1` a line at every power of two of
    /// finished tasks, `2` and more a line per batch.
    pub fn verbose(mut self, level: u32) -> Self {
        self.verbose = level;
        self
    }

    /// The number of jobs `n_jobs` resolves to on this machine.
    pub fn effective_n_jobs(&self) -> usize {
        resolve_n_jobs(self.n_jobs, crate::cpu_count())
    }

    /// Runs every task; returns the outputs in input order, or the first error.
    ///
    /// # Errors
    /// The first [`TaskError`] of any task; the tasks not yet started are cancelled.
    pub fn run<T, I>(&self, tasks: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        self.iter(tasks).collect()
    }

    /// Outputs in input order, streaming: input is pulled lazily, a bounded window is in
    /// flight. An error is yielded as soon as it happens, and ends the iteration.
    pub fn iter<T, I>(&self, tasks: I) -> ParallelIter<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        ParallelIter::new(self, tasks.into_iter(), true)
    }

    /// Outputs as they finish (batch by batch), streaming with the same bounded window.
    pub fn iter_unordered<T, I>(&self, tasks: I) -> ParallelIter<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        ParallelIter::new(self, tasks.into_iter(), false)
    }
}

/// joblib's `n_jobs` arithmetic.
pub(crate) fn resolve_n_jobs(n: isize, cpus: usize) -> usize {
    if n > 0 {
        n as usize
    } else {
        (cpus as isize + 1 + n).max(1) as usize
    }
}

/// A thread pool per size, kept for the life of the program (like the reusable executor).
fn thread_pool(n: usize) -> Arc<ThreadPool> {
    static POOLS: Mutex<Option<HashMap<usize, Arc<ThreadPool>>>> = Mutex::new(None);
    let mut pools = POOLS.lock();
    pools
        .get_or_insert_with(HashMap::new)
        .entry(n)
        .or_insert_with(|| {
            let pool = ThreadPool::builder().num_threads(n).thread_name(|i| format!("workpool-parallel-{i}"));
            Arc::new(pool.build().unwrap_or_else(|e| panic!("{e}")))
        })
        .clone()
}

enum Runner {
    Inline,
    Threads(Arc<ThreadPool>),
    Processes(Executor),
}

type ThreadSlot<O> = Arc<Mutex<Option<(Result<Vec<O>, TaskError>, u64)>>>;

enum Pending<O> {
    Process { completion: Arc<Completion>, count: usize },
    Thread { slot: ThreadSlot<O> },
}

/// Sizes batches from measured run times (see the module docs).
struct Sizer {
    fixed: Option<usize>,
    size: usize,
}

impl Sizer {
    fn next(&self, remaining: Option<usize>, jobs: usize) -> usize {
        if let Some(n) = self.fixed {
            return n;
        }
        match remaining {
            Some(left) => self.size.min((left / (2 * jobs)).max(1)),
            None => self.size,
        }
    }

    fn record(&mut self, count: usize, elapsed: Duration) {
        if self.fixed.is_some() || count * 2 < self.size {
            return; // a tail batch or an old size: says little about the current size
        }
        let ns = elapsed.as_nanos().max(1) as f64;
        let target = TARGET_BATCH.as_nanos() as f64;
        if elapsed < MIN_BATCH {
            let factor = (target / ns).min(8.0);
            self.size = ((count as f64 * factor) as usize).clamp(self.size, MAX_BATCH_SIZE);
        } else if elapsed > MAX_BATCH {
            self.size = ((count as f64 * target / ns) as usize).max(1);
        }
    }
}

/// Progress: an indicatif bar on a terminal, and/or verbose log lines.
struct Progress {
    bar: Option<ProgressBar>,
    verbose: u32,
    jobs: usize,
    done: usize,
    next_log: usize,
    start: Instant,
}

impl Progress {
    fn new(show: bool, verbose: u32, total: Option<usize>, jobs: usize) -> Self {
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(total.map(|t| t as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} tasks, {per_sec}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        // indicatif hides the bar itself when stderr is not a terminal.
        let bar = bar.filter(|b| !b.is_hidden());
        Progress { bar, verbose, jobs, done: 0, next_log: 1, start: Instant::now() }
    }

    fn advance(&mut self, n: usize) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        if self.verbose >= 2 || (self.verbose == 1 && self.done >= self.next_log) {
            while self.next_log <= self.done {
                self.next_log *= 2;
            }
            eprintln!(
                "[Parallel(n_jobs={})]: Done {} tasks | elapsed: {:.3}s",
                self.jobs,
                self.done,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The iterator of [`Parallel::iter`] and [`Parallel::iter_unordered`].
#[must_use = "iterators are lazy: nothing runs until the iterator is consumed"]
pub struct ParallelIter<T: Task, I> {
    input: Fuse<I>,
    runner: Runner,
    jobs: usize,
    ordered: bool,
    sizer: Sizer,
    remaining: Option<usize>,
    next_batch: usize,
    next_to_yield: usize,
    pending: HashMap<usize, Pending<T::Output>>,
    /// Finished batches waiting for their turn (ordered), or to be yielded (unordered).
    ready: BTreeMap<usize, VecDeque<T::Output>>,
    tx: Sender<usize>,
    rx: Receiver<usize>,
    abort: Arc<AtomicBool>,
    interrupts: u64,
    progress: Progress,
    ended: bool,
    /// While the iterator is being consumed, Ctrl-C interrupts it (even between two `next`
    /// calls, and on the inline runner) instead of exiting the program.
    waiting: Option<ctrl_c::Waiting>,
}

impl<T: Task, I> fmt::Debug for ParallelIter<T, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelIter").field("jobs", &self.jobs).field("in_flight", &self.pending.len()).finish()
    }
}

impl<T: Task, I: Iterator<Item = T>> ParallelIter<T, I> {
    fn new(options: &Parallel, input: I, ordered: bool) -> Self {
        let jobs = options.effective_n_jobs();
        let backend = if crate::process::worker::in_worker() && options.executor.is_none() {
            // Inside a worker task: never a process pool per task.
            Backend::Threads
        } else {
            options.backend
        };
        // `n_jobs(1)` runs inline, unless an executor was given explicitly: then it is used.
        let runner = if jobs == 1 && options.executor.is_none() {
            Runner::Inline
        } else {
            match backend {
                Backend::Threads => Runner::Threads(thread_pool(jobs)),
                Backend::Processes => {
                    let executor = match &options.executor {
                        Some(executor) => Ok(executor.clone()),
                        None => Executor::builder().workers(jobs).reusable(),
                    };
                    match executor {
                        Ok(executor) => Runner::Processes(executor),
                        // Cannot start workers here (a worker that never called init()):
                        // threads give the same results.
                        Err(_) => Runner::Threads(thread_pool(jobs)),
                    }
                }
            }
        };
        let (lower, upper) = input.size_hint();
        let remaining = (Some(lower) == upper).then_some(lower);
        let (tx, rx) = channel();
        ParallelIter {
            input: input.fuse(),
            runner,
            jobs,
            ordered,
            sizer: Sizer { fixed: options.batch_size, size: 1 },
            remaining,
            next_batch: 0,
            next_to_yield: 0,
            pending: HashMap::new(),
            ready: BTreeMap::new(),
            tx,
            rx,
            abort: Arc::new(AtomicBool::new(false)),
            interrupts: ctrl_c::interrupts(),
            progress: Progress::new(options.progress, options.verbose, remaining, jobs),
            ended: false,
            waiting: None,
        }
    }

    /// Dispatches batches while the window has room and input remains. Finished batches still
    /// waiting in the reorder buffer count against the window: otherwise one slow batch at the
    /// head would let dispatch (and memory) run arbitrarily far ahead of the consumer.
    fn top_up(&mut self) {
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
            let pending = match &self.runner {
                Runner::Processes(executor) => {
                    let completion = executor.submit_batch(&batch, Some((self.tx.clone(), tag)));
                    Pending::Process { completion, count: batch.len() }
                }
                Runner::Threads(pool) => {
                    let slot: ThreadSlot<T::Output> = Arc::new(Mutex::new(None));
                    let (slot2, tx, abort) = (slot.clone(), self.tx.clone(), self.abort.clone());
                    pool.spawn(move || {
                        let outcome = if abort.load(Ordering::Relaxed) {
                            (Err(TaskError::new(ErrorKind::Cancelled, std::any::type_name::<T>())), 0)
                        } else {
                            run_batch(batch)
                        };
                        *slot2.lock() = Some(outcome);
                        let _ = tx.send(tag);
                    });
                    Pending::Thread { slot }
                }
                Runner::Inline => unreachable!("inline runs do not dispatch"),
            };
            self.pending.insert(tag, pending);
        }
    }

    /// Waits for the next finished batch; its outputs, or the error that ends the run.
    fn collect_one(&mut self) -> Result<(usize, Vec<T::Output>), TaskError> {
        let tag = loop {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(tag) => break tag,
                Err(RecvTimeoutError::Timeout) => {
                    if self.interrupted() && matches!(self.runner, Runner::Threads(_)) {
                        return Err(TaskError::new(ErrorKind::Interrupted, std::any::type_name::<T>()));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
            }
        };
        let pending = self.pending.remove(&tag).expect("a batch we dispatched");
        let (outputs, elapsed_ns) = match pending {
            Pending::Process { completion, count } => {
                let outcome = completion.wait_take(None).expect("notified after completion");
                (
                    outcome.and_then(|bytes| decode_outputs::<T::Output>(&bytes, count, completion.task())),
                    completion.elapsed_ns(),
                )
            }
            Pending::Thread { slot } => slot.lock().take().expect("set before notifying"),
        };
        let outputs = outputs?;
        self.sizer.record(outputs.len(), Duration::from_nanos(elapsed_ns));
        self.progress.advance(outputs.len());
        Ok((tag, outputs))
    }

    fn interrupted(&self) -> bool {
        ctrl_c::interrupts() != self.interrupts
    }
}

/// Runs a batch on this thread: outputs, or the first panic; and the run time.
fn run_batch<T: Task>(batch: Vec<T>) -> (Result<Vec<T::Output>, TaskError>, u64) {
    let start = Instant::now();
    let mut outputs = Vec::with_capacity(batch.len());
    for task in batch {
        match unwind::halt_unwinding(|| task.run()) {
            Ok(output) => outputs.push(output),
            Err(payload) => {
                let kind = ErrorKind::Panic { message: unwind::payload_message(&*payload), location: None };
                return (Err(TaskError::new(kind, std::any::type_name::<T>())), 0);
            }
        }
    }
    (Ok(outputs), start.elapsed().as_nanos() as u64)
}

/// Decodes `count` consecutive outputs.
fn decode_outputs<O: serde::de::DeserializeOwned>(
    bytes: &[u8],
    count: usize,
    task: &'static str,
) -> Result<Vec<O>, TaskError> {
    let mut outputs = Vec::with_capacity(count);
    let mut rest = bytes;
    for _ in 0..count {
        match crate::codec::decode::<O>(rest) {
            Ok((value, used)) => {
                outputs.push(value);
                rest = &rest[used..];
            }
            Err(message) => {
                return Err(TaskError::new(ErrorKind::Codec { stage: "decoding the result", message }, task))
            }
        }
    }
    if rest.is_empty() {
        Ok(outputs)
    } else {
        let message = format!("{} bytes left over", rest.len());
        Err(TaskError::new(ErrorKind::Codec { stage: "decoding the result", message }, task))
    }
}

impl<T: Task, I: Iterator<Item = T>> Iterator for ParallelIter<T, I> {
    type Item = Result<T::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        self.waiting.get_or_insert_with(ctrl_c::Waiting::enter);
        if let Runner::Inline = self.runner {
            let task = self.input.next();
            let Some(task) = task else {
                self.stop();
                return None;
            };
            if self.interrupted() {
                self.stop();
                return Some(Err(TaskError::new(ErrorKind::Interrupted, std::any::type_name::<T>())));
            }
            let result = match run_batch(vec![task]) {
                (Ok(mut out), _) => Ok(out.pop().expect("one output")),
                (Err(e), _) => Err(e),
            };
            if result.is_err() {
                self.stop();
            } else {
                self.progress.advance(1);
            }
            return Some(result);
        }
        loop {
            // Yield what is ready, in order (or any order).
            let key = if self.ordered { Some(self.next_to_yield) } else { self.ready.keys().next().copied() };
            if let Some(key) = key {
                if let Some(queue) = self.ready.get_mut(&key) {
                    if let Some(output) = queue.pop_front() {
                        return Some(Ok(output));
                    }
                    self.ready.remove(&key);
                    if self.ordered {
                        self.next_to_yield += 1;
                    }
                    continue;
                }
            }
            self.top_up();
            if self.pending.is_empty() {
                self.progress.finish();
                if self.ready.is_empty() {
                    self.stop();
                    return None;
                }
                continue;
            }
            match self.collect_one() {
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

impl<T: Task, I> ParallelIter<T, I> {
    /// Ends the run: batches not yet started are cancelled, thread batches not yet begun skip
    /// their work, the bar is cleared.
    fn stop(&mut self) {
        self.ended = true;
        self.waiting = None;
        self.abort.store(true, Ordering::Relaxed);
        for (_, pending) in self.pending.drain() {
            if let Pending::Process { completion, .. } = pending {
                completion.cancel();
            }
        }
        self.progress.finish();
    }
}

impl<T: Task, I> Drop for ParallelIter<T, I> {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_jobs_follows_joblib() {
        assert_eq!(resolve_n_jobs(3, 8), 3);
        assert_eq!(resolve_n_jobs(-1, 8), 8);
        assert_eq!(resolve_n_jobs(-2, 8), 7);
        assert_eq!(resolve_n_jobs(-20, 8), 1);
        assert_eq!(resolve_n_jobs(1, 8), 1);
    }

    #[test]
    #[should_panic(expected = "n_jobs(0)")]
    fn n_jobs_zero_is_refused() {
        let _ = Parallel::new().n_jobs(0);
    }

    #[test]
    fn sizer_grows_short_batches_and_shrinks_long_ones() {
        let mut s = Sizer { fixed: None, size: 1 };
        s.record(1, Duration::from_micros(1));
        assert_eq!(s.size, 8, "at most 8x per step");
        s.record(8, Duration::from_micros(8));
        assert_eq!(s.size, 64);
        s.size = 1000;
        s.record(1000, Duration::from_millis(100));
        assert_eq!(s.size, 50, "shrinks to the target duration");
        s.record(50, Duration::from_millis(10));
        assert_eq!(s.size, 50, "in range: unchanged");
        assert_eq!(s.next(Some(40), 2), 10, "tail batches spread over the jobs");
        let fixed = Sizer { fixed: Some(7), size: 1 };
        assert_eq!(fixed.next(Some(3), 2), 7);
    }
}

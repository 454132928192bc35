//! `Parallel`: joblib's one-liner for Rust, on threads or processes, with auto-batching.
//!
//! The files:
//!
//! * `mod.rs` (here): the options ([`Parallel`], [`Backend`]) and joblib's `n_jobs` arithmetic.
//! * `runner.rs`: where batches run (inline, a thread pool, the process executor).
//! * `sizer.rs`: auto-batching, sizes from measured run times.
//! * `iter.rs`: [`ParallelIter`], a run in progress (window, reorder buffer, Ctrl-C).
//! * `progress.rs`: the progress bar and the `verbose` lines.

mod iter;
mod progress;
mod runner;
mod sizer;

pub use iter::ParallelIter;

use crate::error::TaskError;
use crate::executor::Executor;
use crate::task::Task;

/// Where `Parallel` runs tasks.
///
/// ```
/// use workpool::{Backend, Parallel};
///
/// #[workpool::task]
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// fn main() {
///     // Threads: no serialization, no isolation; nothing to start. `Backend::Processes` (the
///     // default) needs `workpool::init()` first in `main`.
///     let squares = Parallel::new().backend(Backend::Threads).run((0..10).map(|n| Square { n })).unwrap();
///     assert_eq!(squares[9], 81);
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Worker processes of the reusable [`Executor`] (the default): crash isolation.
    #[default]
    Processes,
    /// Threads of an in-process [`ThreadPool`](crate::ThreadPool): no serialization, no isolation.
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
    /// All CPUs, processes, automatic batches, nothing drawn (no progress bar, no log lines).
    ///
    /// ```
    /// let parallel = workpool::Parallel::new();
    /// assert_eq!(parallel.effective_n_jobs(), workpool::cpu_count());
    /// ```
    pub fn new() -> Self {
        Parallel {
            n_jobs: -1,
            backend: Backend::default(),
            batch_size: None,
            progress: false,
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
    ///
    /// ```
    /// use workpool::Parallel;
    ///
    /// assert_eq!(Parallel::new().n_jobs(3).effective_n_jobs(), 3);
    /// assert_eq!(Parallel::new().n_jobs(-1).effective_n_jobs(), workpool::cpu_count());
    /// assert_eq!(Parallel::new().n_jobs(-2).effective_n_jobs(), (workpool::cpu_count() - 1).max(1));
    /// ```
    pub fn n_jobs(mut self, n: isize) -> Self {
        assert!(n != 0, "Parallel::n_jobs(0) means no workers; use -1 for every CPU or 1 for inline");
        self.n_jobs = n;
        self
    }

    /// Threads or processes (default: processes).
    ///
    /// ```
    /// use workpool::{Backend, Parallel};
    ///
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     let out = Parallel::new().backend(Backend::Threads).run([Square { n: 4 }]).unwrap();
    ///     assert_eq!(out, [16]);
    /// }
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Runs on this executor instead of the reusable one (process backend).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use workpool::{Executor, Parallel};
    ///
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     // Parallel on an executor with settings of its own (here a time limit per task).
    ///     let ex = Executor::builder().workers(2).task_timeout(Duration::from_secs(5)).build().unwrap();
    ///     let out = Parallel::new().executor(ex).run((0..100).map(|n| Square { n })).unwrap();
    ///     assert_eq!(out.len(), 100);
    /// }
    /// ```
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = Some(executor);
        self.backend = Backend::Processes;
        self
    }

    /// A fixed number of tasks per batch instead of automatic sizing.
    ///
    /// ```
    /// use workpool::{Backend, Parallel};
    ///
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     // 1,000 tasks per batch instead of the automatic size (joblib's `batch_size`).
    ///     let out = Parallel::new().backend(Backend::Threads).batch_size(1000).run((0..10_000).map(|n| Square { n })).unwrap();
    ///     assert_eq!(out[100], 10_000);
    /// }
    /// ```
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n.max(1));
        self
    }

    /// Show a progress bar (done/total, rate, ETA) on stderr while the run lasts, when stderr is
    /// a terminal (default off: a library draws nothing it was not asked to). Needs the cargo
    /// feature `progress` (the `indicatif` crate); [`verbose`](Self::verbose) needs none.
    ///
    /// ```no_run
    /// use workpool::{Backend, Parallel};
    ///
    /// #[workpool::task]
    /// fn slow_square(n: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(10));
    ///     n * n
    /// }
    ///
    /// # fn main() {
    /// # workpool::init();
    /// let squares = Parallel::new().progress(true).run((0..500).map(|n| SlowSquare { n })).unwrap();
    /// assert_eq!(squares[20], 400);
    /// # }
    /// ```
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// Log lines on stderr instead of (or besides) the bar: `1` a line at every power of two of
    /// finished tasks, `2` and more a line per batch.
    ///
    /// ```
    /// use workpool::{Backend, Parallel};
    ///
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     // On stderr: "[Parallel(n_jobs=…)]: Done 1 tasks | elapsed: …", then at 2, 4, 8, … tasks.
    ///     let out = Parallel::new().backend(Backend::Threads).verbose(1).run((0..64).map(|n| Square { n })).unwrap();
    ///     assert_eq!(out.len(), 64);
    /// }
    /// ```
    pub fn verbose(mut self, level: u32) -> Self {
        self.verbose = level;
        self
    }

    /// The number of jobs `n_jobs` resolves to on this machine.
    ///
    /// ```
    /// let jobs = workpool::Parallel::new().n_jobs(-2).effective_n_jobs();
    /// println!("running on {jobs} processes");
    /// ```
    pub fn effective_n_jobs(&self) -> usize {
        resolve_n_jobs(self.n_jobs, crate::cpu_count())
    }

    /// Runs every task; returns the outputs in input order, or the first error.
    ///
    /// # Errors
    /// The first [`TaskError`] of any task; the tasks not yet started are cancelled.
    ///
    /// ```no_run
    /// use workpool::Parallel;
    ///
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     // joblib's Parallel(n_jobs=-1)(delayed(square)(n) for n in range(1000))
    ///     let squares = Parallel::new().n_jobs(-1).run((0..1000).map(|n| Square { n })).unwrap();
    ///     assert_eq!(squares[999], 998_001);
    /// }
    /// ```
    pub fn run<T, I>(&self, tasks: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        self.iter(tasks).collect()
    }

    /// Outputs in input order, streaming: input is pulled lazily, a bounded window is in
    /// flight. An error is yielded as soon as it happens, and ends the iteration.
    ///
    /// ```no_run
    /// use workpool::Parallel;
    ///
    /// #[workpool::task]
    /// fn square(n: u64) -> u64 {
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     // Results in input order as soon as each is ready, while later tasks still run.
    ///     for (n, result) in Parallel::new().iter((0..100).map(|n| Square { n })).enumerate() {
    ///         assert_eq!(result.unwrap(), (n * n) as u64);
    ///     }
    /// }
    /// ```
    pub fn iter<T, I>(&self, tasks: I) -> ParallelIter<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T>,
    {
        ParallelIter::new(self, tasks.into_iter(), true)
    }

    /// Outputs as they finish (batch by batch), streaming with the same bounded window.
    ///
    /// ```no_run
    /// use workpool::Parallel;
    ///
    /// #[workpool::task]
    /// fn slow_square(n: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(10 * (n % 3)));
    ///     n * n
    /// }
    ///
    /// fn main() {
    ///     workpool::init();
    ///     // Whatever finishes first comes first: no waiting behind a slow task.
    ///     let mut seen: Vec<u64> = Parallel::new()
    ///         .iter_unordered((0..30).map(|n| SlowSquare { n }))
    ///         .map(Result::unwrap)
    ///         .collect();
    ///     seen.sort_unstable();
    ///     assert_eq!(seen, (0..30).map(|n| n * n).collect::<Vec<_>>());
    /// }
    /// ```
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
}

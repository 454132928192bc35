//! What a `Parallel` run shows while it runs: an indicatif bar on a terminal (feature
//! `progress`), and/or joblib's `verbose` log lines.

#[cfg(feature = "progress")]
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Instant;

/// Without the `progress` feature there is no bar: `Parallel::progress` does not exist, and
/// `show` is always false.
#[cfg(not(feature = "progress"))]
struct ProgressBar;

#[cfg(not(feature = "progress"))]
impl ProgressBar {
    fn inc(&self, _: u64) {}
    fn finish_and_clear(&self) {}
}

/// Progress of one run (owned by its iterator, on the consuming thread).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    verbose: u32,
    jobs: usize,
    done: usize,
    next_log: usize,
    start: Instant,
}

impl Progress {
    #[cfg(not(feature = "progress"))]
    pub(crate) fn new(show: bool, verbose: u32, _total: Option<usize>, jobs: usize) -> Self {
        debug_assert!(!show, "Parallel::progress needs the `progress` feature");
        Progress { bar: None, verbose, jobs, done: 0, next_log: 1, start: Instant::now() }
    }

    #[cfg(feature = "progress")]
    pub(crate) fn new(show: bool, verbose: u32, total: Option<usize>, jobs: usize) -> Self {
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

    /// `n` more tasks finished.
    pub(crate) fn advance(&mut self, n: usize) {
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

    /// Clears the bar (idempotent).
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

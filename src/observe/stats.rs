//! Counters: per worker slot and in total ([`ExecutorStats`]), and for one `Parallel` run
//! ([`ParallelStats`]).
//!
//! A slot's counters are written by its feeder thread only, so each is a relaxed load and store
//! (no locked read-modify-write on the feeder's path); readers take a snapshot that may be a
//! few events behind, never torn (each counter is one atomic word).

use super::DeathCause;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One counter of one slot: written by that slot's feeder thread only.
#[derive(Default)]
pub(super) struct Counter(AtomicU64);

impl Counter {
    pub(super) fn add_u64(&self, n: u64) {
        // Single writer: a load and a store, not a `fetch_add`.
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub(super) fn add(&self, d: Duration) {
        self.add_u64(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An instant as nanoseconds since the executor was built, plus one (0: none); one writer.
#[derive(Default)]
pub(super) struct Since(AtomicU64);

impl Since {
    pub(super) fn set(&self, at: Option<Instant>, built: Instant) {
        let ns = at.map_or(0, |at| at.saturating_duration_since(built).as_nanos() as u64 + 1);
        self.0.store(ns, Ordering::Relaxed);
    }

    /// Time from then until `now`; zero when unset.
    fn until(&self, now: Instant, built: Instant) -> Duration {
        match self.0.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            ns => now.saturating_duration_since(built + Duration::from_nanos(ns - 1)),
        }
    }
}

/// The counters of one slot (see the module docs for who writes them).
#[derive(Default)]
pub(super) struct SlotCounters {
    pub(super) tasks: Counter,
    /// Nanoseconds.
    pub(super) busy: Counter,
    pub(super) idle: Counter,
    /// Since when the slot has been idle (an idle stretch still open counts in snapshots).
    pub(super) idle_since: Since,
    pub(super) starting: Counter,
    pub(super) start_failures: Counter,
    pub(super) bytes_to: Counter,
    pub(super) bytes_from: Counter,
    pub(super) recycled: Counter,
    signal: Counter,
    exit: Counter,
    timeout: Counter,
    stalled: Counter,
    interrupted: Counter,
    killed: Counter,
}

impl SlotCounters {
    pub(super) fn count_death(&self, cause: DeathCause, signalled: bool) {
        match cause {
            DeathCause::Timeout => self.timeout.add_u64(1),
            DeathCause::Stalled => self.stalled.add_u64(1),
            DeathCause::Interrupted => self.interrupted.add_u64(1),
            DeathCause::Killed => self.killed.add_u64(1),
            DeathCause::Crash if signalled => self.signal.add_u64(1),
            DeathCause::Crash => self.exit.add_u64(1),
        }
    }

    fn snapshot(&self, starts: u64, built: Instant, now: Instant) -> SlotStats {
        let ns = |c: &Counter| Duration::from_nanos(c.get());
        SlotStats {
            tasks_run: self.tasks.get(),
            busy: ns(&self.busy),
            idle: ns(&self.idle) + self.idle_since.until(now, built),
            starting: ns(&self.starting),
            starts,
            start_failures: self.start_failures.get(),
            bytes_to_workers: self.bytes_to.get(),
            bytes_from_workers: self.bytes_from.get(),
            recycled: self.recycled.get(),
            deaths: Deaths {
                signal: self.signal.get(),
                exit: self.exit.get(),
                timeout: self.timeout.get(),
                stalled: self.stalled.get(),
                interrupted: self.interrupted.get(),
                killed: self.killed.get(),
            },
        }
    }
}

/// Worker deaths by cause (see [`SlotStats::deaths`]).
///
/// ```no_run
/// # fn main() {
/// # workpool::init();
/// let ex = workpool::Executor::builder().build().unwrap();
/// let deaths: workpool::Deaths = ex.stats().total.deaths;
/// println!("{} crashes, {} timeouts, {} in all", deaths.signal, deaths.timeout, deaths.total());
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deaths {
    /// Crashed or killed by a signal not sent by the executor (SIGSEGV, SIGABRT, an outside
    /// SIGKILL such as the OOM killer's).
    pub signal: u64,
    /// Exited by themselves (`std::process::exit` in a task), or ended some other way that
    /// names no signal (a task that closed the worker's channel).
    pub exit: u64,
    /// Killed by the executor at [`task_timeout`](crate::ExecutorBuilder::task_timeout).
    pub timeout: u64,
    /// Killed by the executor because they did not take their next task within `task_timeout`.
    pub stalled: u64,
    /// Killed by a Ctrl-C (with [`handle_ctrl_c`](crate::handle_ctrl_c)).
    pub interrupted: u64,
    /// Killed by the executor to stop a running task, for [`TaskHandle::kill`](crate::TaskHandle::kill).
    pub killed: u64,
}

impl Deaths {
    /// All deaths, whatever the cause.
    ///
    /// ```
    /// assert_eq!(workpool::Deaths::default().total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.signal + self.exit + self.timeout + self.stalled + self.interrupted + self.killed
    }

    fn add(&mut self, o: &Deaths) {
        self.signal += o.signal;
        self.exit += o.exit;
        self.timeout += o.timeout;
        self.stalled += o.stalled;
        self.interrupted += o.interrupted;
        self.killed += o.killed;
    }
}

/// Where one worker slot's time went, and what crossed its socket (see [`ExecutorStats`]).
///
/// ```no_run
/// # fn main() {
/// # workpool::init();
/// let ex = workpool::Executor::builder().workers(2).build().unwrap();
/// for (slot, s) in ex.stats().slots.iter().enumerate() {
///     println!("slot {slot}: {} tasks, busy {:?}, idle {:?}, starting {:?}", s.tasks_run, s.busy, s.idle, s.starting);
/// }
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotStats {
    /// Task frames finished by this slot's worker processes (a `Parallel` batch counts once).
    pub tasks_run: u64,
    /// Time its workers spent running tasks, as they measured it.
    pub busy: Duration,
    /// Time the slot had no task in flight (with a worker process waiting, or none at all).
    /// `busy + idle + starting` is at most the uptime; the rest is time with tasks in flight
    /// that were not running: frames on their way, results on theirs, a task about to be
    /// killed at its timeout.
    pub idle: Duration,
    /// Time spent starting worker processes (until their hello), retries included.
    pub starting: Duration,
    /// Worker processes started.
    pub starts: u64,
    /// Tries to start a worker process that failed (each is retried with back-off).
    pub start_failures: u64,
    /// Bytes of task frames sent to workers.
    pub bytes_to_workers: u64,
    /// Bytes of results received from workers.
    pub bytes_from_workers: u64,
    /// Worker processes retired between tasks (`max_tasks_per_worker`, `max_worker_memory`).
    pub recycled: u64,
    /// Worker processes that died, by cause.
    pub deaths: Deaths,
}

impl SlotStats {
    fn add(&mut self, o: &SlotStats) {
        self.tasks_run += o.tasks_run;
        self.busy += o.busy;
        self.idle += o.idle;
        self.starting += o.starting;
        self.starts += o.starts;
        self.start_failures += o.start_failures;
        self.bytes_to_workers += o.bytes_to_workers;
        self.bytes_from_workers += o.bytes_from_workers;
        self.recycled += o.recycled;
        self.deaths.add(&o.deaths);
    }
}

/// What [`Executor::stats`](crate::Executor::stats) reports: every slot, and their sum.
///
/// # Examples
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct Nap(u64);
/// # impl workpool::Task for Nap {
/// #     type Output = ();
/// #     fn run(self) { std::thread::sleep(std::time::Duration::from_millis(self.0)) }
/// # }
/// # workpool::register!(Nap);
/// workpool::init();
/// let ex = workpool::Executor::builder().workers(2).build().unwrap();
/// let naps: Vec<_> = (0..4).map(|_| ex.submit(Nap(50))).collect();
/// naps.into_iter().for_each(|n| n.join().unwrap());
/// let stats = ex.stats();
/// assert_eq!(stats.total.tasks_run, 4);
/// assert!(stats.total.busy >= std::time::Duration::from_millis(200));
/// println!("{:.0} % busy", 100.0 * stats.efficiency());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExecutorStats {
    /// One entry per slot, in slot order (as [`Executor::workers`](crate::Executor::workers)).
    pub slots: Vec<SlotStats>,
    /// The sum over the slots.
    pub total: SlotStats,
    /// Time since the executor was built.
    pub uptime: Duration,
}

impl ExecutorStats {
    pub(crate) fn collect(observer: &super::ExecutorObserver, starts: impl Iterator<Item = u64>) -> Self {
        let (built, now) = (observer.built, Instant::now());
        let slots: Vec<SlotStats> =
            observer.slots.iter().zip(starts).map(|(s, n)| s.counters.snapshot(n, built, now)).collect();
        let mut total = SlotStats::default();
        slots.iter().for_each(|s| total.add(s));
        ExecutorStats { slots, total, uptime: now - built }
    }

    /// Busy time over what the slots could have done since the executor was built:
    /// `total.busy / (uptime × slots)`, from 0 to 1.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().build().unwrap();
    /// // … work …
    /// println!("the workers were busy {:.0} % of the time", 100.0 * ex.stats().efficiency());
    /// # }
    /// ```
    pub fn efficiency(&self) -> f64 {
        efficiency(self.total.busy, self.uptime, self.slots.len())
    }
}

fn efficiency(busy: Duration, wall: Duration, workers: usize) -> f64 {
    let capacity = wall.as_secs_f64() * workers as f64;
    if capacity > 0.0 {
        busy.as_secs_f64() / capacity
    } else {
        0.0
    }
}

// ===== Parallel =====

/// What one `Parallel` run did: its batches, its busy time and how well it used its jobs
/// ([`ParallelIter::stats`](crate::ParallelIter::stats)).
///
/// # Examples
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)]
/// # struct Nap(u64);
/// # impl workpool::Task for Nap {
/// #     type Output = ();
/// #     fn run(self) { std::thread::sleep(std::time::Duration::from_millis(self.0)) }
/// # }
/// # workpool::register!(Nap);
/// workpool::init();
/// let mut run = workpool::Parallel::new().n_jobs(2).iter((0..20).map(|_| Nap(10)));
/// for out in run.by_ref() {
///     out.unwrap();
/// }
/// let stats = run.stats();
/// assert_eq!(stats.tasks, 20);
/// println!("efficiency {:.2}, serial fraction {:?}", stats.efficiency(), stats.serial_fraction());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ParallelStats {
    /// The jobs the run used (`n_jobs`, resolved).
    pub jobs: usize,
    /// Tasks whose results came back.
    pub tasks: u64,
    /// Batches whose results came back.
    pub batches: u64,
    /// The batch sizes chosen, in dispatch order, as runs of equal sizes: `(size, batches)`.
    pub batch_sizes: Vec<(usize, u64)>,
    /// Time the batches ran, as their workers (or pool threads) measured it.
    pub busy: Duration,
    /// From the first batch dispatched to the last result received.
    pub wall: Duration,
}

impl ParallelStats {
    /// `busy / (wall × jobs)`: 1 when every job ran tasks all the time.
    ///
    /// ```
    /// assert_eq!(workpool::ParallelStats::default().efficiency(), 0.0);
    /// ```
    pub fn efficiency(&self) -> f64 {
        efficiency(self.busy, self.wall, self.jobs)
    }

    /// `busy / wall`: how much faster than running the same work one task after another.
    ///
    /// ```
    /// assert_eq!(workpool::ParallelStats::default().speedup(), 0.0);
    /// ```
    pub fn speedup(&self) -> f64 {
        let wall = self.wall.as_secs_f64();
        if wall > 0.0 {
            self.busy.as_secs_f64() / wall
        } else {
            0.0
        }
    }

    /// Amdahl's serial fraction as measured (the Karp–Flatt metric, 1990):
    /// `e = (1/S − 1/p) / (1 − 1/p)` for speedup `S` on `p` jobs, clamped to 0..=1. The share of
    /// the run's work that behaved as if it could not be parallelised: dispatch overheads,
    /// stragglers, a tail with fewer tasks than jobs. `None` with one job or no work measured.
    ///
    /// ```
    /// assert_eq!(workpool::ParallelStats::default().serial_fraction(), None);
    /// ```
    pub fn serial_fraction(&self) -> Option<f64> {
        let (s, p) = (self.speedup(), self.jobs as f64);
        if self.jobs < 2 || s <= 0.0 {
            return None;
        }
        Some(((1.0 / s - 1.0 / p) / (1.0 - 1.0 / p)).clamp(0.0, 1.0))
    }
}

/// Collects a `Parallel` run's [`ParallelStats`] (owned by its iterator, on the consuming thread).
#[derive(Default)]
pub(crate) struct ParallelCounter {
    stats: ParallelStats,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl ParallelCounter {
    pub(crate) fn new(jobs: usize) -> Self {
        ParallelCounter { stats: ParallelStats { jobs, ..ParallelStats::default() }, first: None, last: None }
    }

    /// A batch of `size` tasks was dispatched.
    pub(crate) fn dispatched(&mut self, size: usize) {
        self.first.get_or_insert_with(Instant::now);
        match self.stats.batch_sizes.last_mut() {
            Some((last, n)) if *last == size => *n += 1,
            _ => self.stats.batch_sizes.push((size, 1)),
        }
    }

    /// A batch of `count` tasks came back; it ran for `elapsed`.
    pub(crate) fn finished(&mut self, count: usize, elapsed: Duration) {
        self.stats.tasks += count as u64;
        self.stats.batches += 1;
        self.stats.busy += elapsed;
        self.last = Some(Instant::now());
    }

    pub(crate) fn snapshot(&self) -> ParallelStats {
        let wall = match (self.first, self.last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        ParallelStats { wall, ..self.stats.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn karp_flatt_gives_the_serial_fraction_of_an_amdahl_run() {
        // Amdahl with serial fraction 0.2 on 4 jobs: S = 1 / (0.2 + 0.8 / 4) = 2.5.
        let stats = ParallelStats {
            jobs: 4,
            busy: Duration::from_millis(2500),
            wall: Duration::from_secs(1),
            ..Default::default()
        };
        assert!((stats.speedup() - 2.5).abs() < 1e-9);
        assert!((stats.efficiency() - 0.625).abs() < 1e-9);
        assert!((stats.serial_fraction().unwrap() - 0.2).abs() < 1e-9);
        // Perfect scaling: no serial part; one job: no estimate.
        let perfect = ParallelStats { busy: Duration::from_secs(4), ..stats.clone() };
        assert_eq!(perfect.serial_fraction(), Some(0.0));
        assert_eq!(ParallelStats { jobs: 1, ..stats }.serial_fraction(), None);
    }

    #[test]
    fn batch_sizes_are_kept_as_runs() {
        let mut c = ParallelCounter::new(2);
        for size in [1, 1, 8, 8, 8, 3] {
            c.dispatched(size);
        }
        c.finished(3, Duration::from_millis(5));
        let s = c.snapshot();
        assert_eq!(s.batch_sizes, vec![(1, 2), (8, 3), (3, 1)]);
        assert_eq!((s.tasks, s.batches, s.busy), (3, 1, Duration::from_millis(5)));
    }

    #[test]
    fn slot_totals_add_up_and_deaths_are_sorted_by_cause() {
        let c = SlotCounters::default();
        c.count_death(DeathCause::Crash, true);
        c.count_death(DeathCause::Crash, false);
        c.count_death(DeathCause::Timeout, false);
        c.count_death(DeathCause::Interrupted, false);
        c.busy.add(Duration::from_millis(3));
        let built = Instant::now();
        c.idle.add(Duration::from_millis(2));
        c.idle_since.set(Some(built + Duration::from_millis(10)), built);
        let s = c.snapshot(4, built, built + Duration::from_millis(15));
        assert_eq!(s.idle, Duration::from_millis(7), "2 ms closed, 5 ms still open");
        assert_eq!((s.deaths.signal, s.deaths.exit, s.deaths.timeout, s.deaths.interrupted), (1, 1, 1, 1));
        assert_eq!(s.deaths.total(), 4);
        let mut total = SlotStats::default();
        total.add(&s);
        total.add(&s);
        assert_eq!((total.busy, total.starts, total.deaths.total()), (Duration::from_millis(6), 8, 8));
    }
}

//! Seeing where a run's time goes: statistics, a timeline, and log events.
//!
//! Three views of the same facts, fed by small hooks in the feeders (one per worker slot), the
//! `Parallel` iterator, a task's wait and the Ctrl-C handler:
//!
//! * `stats.rs`: counters per slot ([`SlotStats`]: tasks run, busy, idle and starting time,
//!   bytes each way, deaths by cause), always on: each is written by its slot's feeder thread
//!   only, with relaxed loads and stores (no read-modify-write), and read by
//!   [`Executor::stats`](crate::Executor::stats). [`ParallelStats`] for one `Parallel` run.
//! * `timeline.rs`: a [`Recording`] of an executor's run, as Chrome trace-event JSON
//!   ([`Timeline`]). Off unless recording: every hook first does one relaxed load of a flag.
//!   Each feeder records into its own buffer (a mutex only it and the final export take).
//! * `log.rs`: events through the `log` facade (target `workpool`); nothing is printed unless
//!   the program installs a logger.
//!
//! [`SlotObserver`] is the feeder's side: the one object a feeder calls; it keeps the little
//! state the three views need between events (when the slot went idle, where the last span on
//! its track ended).

mod log;
mod stats;
mod timeline;

pub use stats::{Deaths, ExecutorStats, ParallelStats, SlotStats};
pub use timeline::{Recording, Timeline};

pub(crate) use log::connection_dropped;
pub(crate) use stats::ParallelCounter;
#[cfg(feature = "ctrlc")]
pub(crate) use timeline::ctrl_c;
pub(crate) use timeline::Wait;

use stats::SlotCounters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timeline::{Event, SlotEvents};

/// Why a worker process ended abnormally, as the feeder saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeathCause {
    /// Killed by the feeder at `task_timeout`.
    Timeout,
    /// Killed by the feeder: it did not take its next task within `task_timeout`.
    Stalled,
    /// Killed by a Ctrl-C.
    Interrupted,
    /// Killed by the executor for [`TaskHandle::kill`](crate::TaskHandle::kill) of its task.
    Killed,
    /// Anything else: a crash (signal, exit code), a kill from outside, a broken channel.
    Crash,
}

/// What an executor's feeders and its handles share for observing it (one per executor).
pub(crate) struct ExecutorObserver {
    /// When the executor was built (the stats' uptime).
    pub(crate) built: Instant,
    /// True while a [`Recording`] is open: the one relaxed load every timeline hook does first.
    recording: AtomicBool,
    /// How many recordings of this executor are open (`recording` is true while not 0).
    recorders: timeline::Recorders,
    slots: Box<[SlotShared]>,
}

/// One slot's counters and timeline buffer.
struct SlotShared {
    counters: SlotCounters,
    events: SlotEvents,
}

impl ExecutorObserver {
    pub(crate) fn new(workers: usize) -> Arc<Self> {
        let slots =
            (0..workers).map(|_| SlotShared { counters: SlotCounters::default(), events: SlotEvents::default() });
        Arc::new(ExecutorObserver {
            built: Instant::now(),
            recording: AtomicBool::new(false),
            recorders: timeline::Recorders::new(),
            slots: slots.collect(),
        })
    }

    /// The feeder's side for slot `index`.
    pub(crate) fn slot(self: &Arc<Self>, index: usize) -> SlotObserver {
        let mut observer =
            SlotObserver { shared: self.clone(), index, idle_from: None, last_end: None, respawn: false };
        observer.begin_idle(self.built);
        observer
    }

    fn is_recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }
}

/// The feeder's side of observing one slot (owned by that feeder thread).
pub(crate) struct SlotObserver {
    shared: Arc<ExecutorObserver>,
    index: usize,
    /// Since when the slot has had no task in flight (None: it has, or a worker is starting).
    idle_from: Option<Instant>,
    /// Where the last span on this slot's track ended: spans never overlap.
    last_end: Option<Instant>,
    /// The next start replaces a worker that died.
    respawn: bool,
}

impl SlotObserver {
    fn counters(&self) -> &SlotCounters {
        &self.shared.slots[self.index].counters
    }

    fn record(&self, event: Event) {
        self.shared.slots[self.index].events.push(event);
    }

    /// A span from `start` to `end`, moved to begin no earlier than the previous span ended.
    fn span(&mut self, start: Instant, end: Instant) -> (Instant, Instant) {
        let start = self.last_end.map_or(start, |last| start.max(last)).min(end);
        self.last_end = Some(end);
        (start, end)
    }

    fn end_idle(&mut self, now: Instant) {
        if let Some(from) = self.idle_from.take() {
            self.counters().idle.add(now.saturating_duration_since(from));
            self.counters().idle_since.set(None, self.shared.built);
        }
    }

    /// The slot has had nothing in flight since `at` (unless it already was idle).
    fn begin_idle(&mut self, at: Instant) {
        if self.idle_from.is_none() {
            self.idle_from = Some(at);
            self.counters().idle_since.set(Some(at), self.shared.built);
        }
    }

    /// A worker start (with its retries) began at `began` and ended now.
    pub(crate) fn started(&mut self, began: Instant, pid: u32, tries: usize) {
        let now = Instant::now();
        let took = now - began;
        self.end_idle(began);
        self.counters().starting.add(took);
        log::started(self.index, pid, took, tries, self.respawn);
        self.respawn = false;
        // Idle until its first task is dispatched, at once (unless a Ctrl-C came meanwhile).
        self.begin_idle(now);
        if self.shared.is_recording() {
            let (start, end) = self.span(began, now);
            self.record(Event::Spawn { pid, start, end });
        }
    }

    /// One try to start a worker failed; `gave_up` when it was the last.
    pub(crate) fn start_failed(&mut self, began: Instant, message: &str, gave_up: bool) {
        let now = Instant::now();
        self.end_idle(began);
        self.counters().start_failures.add_u64(1);
        if gave_up {
            self.counters().starting.add(now - began);
            self.begin_idle(now);
        }
        log::start_failed(self.index, message, gave_up);
        if self.shared.is_recording() {
            self.record(Event::StartFailed { at: now, message: message.to_string(), gave_up });
        }
    }

    /// A task's frame of `bytes` went into the window; `first` when nothing else was in flight.
    pub(crate) fn dispatched(&mut self, bytes: usize, first: bool) {
        self.counters().bytes_to.add_u64(bytes as u64);
        if first {
            self.end_idle(Instant::now());
        }
    }

    /// A task finished: its worker ran it for `elapsed_ns` and sent `bytes` back. `now` is when
    /// its result was read; `empty` when nothing is left in flight.
    pub(crate) fn done(
        &mut self,
        task: (&'static str, u32, u64, usize),
        elapsed_ns: u64,
        bytes: usize,
        now: Instant,
        empty: bool,
    ) {
        let counters = self.counters();
        counters.tasks.add_u64(1);
        counters.busy.add(Duration::from_nanos(elapsed_ns));
        counters.bytes_from.add_u64(bytes as u64);
        if empty {
            self.begin_idle(now);
        }
        if self.shared.is_recording() {
            let began = now.checked_sub(Duration::from_nanos(elapsed_ns)).unwrap_or(now);
            let (start, end) = self.span(began, now);
            let (name, count, id, bytes_in) = task;
            self.record(Event::Task {
                name,
                count,
                id,
                bytes_in: bytes_in as u64,
                bytes_out: bytes as u64,
                start,
                end,
                failed: None,
            });
        }
    }

    /// The feeder killed its worker (`pid`) at the task timeout (`limit`), or because it did not
    /// take its next task (`limit` is None).
    pub(crate) fn timed_out(&mut self, pid: u32, limit: Option<Duration>) {
        log::timed_out(self.index, pid, limit);
        if self.shared.is_recording() {
            self.record(Event::Timeout { at: Instant::now(), pid, limit });
        }
    }

    /// The worker `pid` died of `cause` (`status` in words). `running`: the task it had
    /// started, with its type name, id, frame size and when it began.
    pub(crate) fn died(
        &mut self,
        pid: u32,
        cause: DeathCause,
        status: &str,
        running: Option<(&'static str, u32, u64, usize, Option<Instant>)>,
    ) {
        let now = Instant::now();
        // Its tasks failed or went back to the queue: the slot has nothing in flight.
        self.begin_idle(now);
        self.respawn = true;
        let signal = signal_in(status);
        self.counters().count_death(cause, signal.is_some());
        log::died(self.index, pid, cause, status, running.map(|r| (r.0, r.2)));
        if self.shared.is_recording() {
            if let Some((name, count, id, bytes_in, since)) = running {
                let (start, end) = self.span(since.unwrap_or(now), now);
                let failed = Some(status.to_string());
                let bytes_in = bytes_in as u64;
                self.record(Event::Task { name, count, id, bytes_in, bytes_out: 0, start, end, failed });
            }
            self.record(Event::Death { at: now, pid, cause, status: status.to_string(), signal });
        }
    }

    /// The worker `pid` is being retired between tasks (`max_tasks_per_worker`,
    /// `max_worker_memory`).
    pub(crate) fn recycling(&mut self, pid: u32, why: &'static str) {
        self.counters().recycled.add_u64(1);
        log::recycling(self.index, pid, why);
        if self.shared.is_recording() {
            self.record(Event::Recycle { at: Instant::now(), pid, why });
        }
    }

    /// The worker `pid` was closed gracefully (idle timeout, recycling, shutdown).
    pub(crate) fn closed(&mut self, pid: u32, idle: bool) {
        log::closed(self.index, pid, idle);
        if self.shared.is_recording() {
            self.record(Event::Closed { at: Instant::now(), pid, idle });
        }
    }
}

/// The signal name in a death's description ("killed by signal SIGSEGV (core dumped)").
fn signal_in(status: &str) -> Option<String> {
    let at = status.find("SIG")?;
    let name: String = status[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    (name.len() > 3).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_found_in_death_descriptions() {
        assert_eq!(signal_in("killed by signal SIGSEGV (core dumped)").as_deref(), Some("SIGSEGV"));
        assert_eq!(signal_in("killed by signal SIGSEGV, a memory fault at address 0x0").as_deref(), Some("SIGSEGV"));
        assert_eq!(signal_in("the task overflowed its stack (killed by signal SIGABRT)").as_deref(), Some("SIGABRT"));
        assert_eq!(signal_in("exited with code 3"), None);
        assert_eq!(signal_in("SIG"), None);
    }

    #[test]
    fn spans_on_a_track_never_overlap() {
        let observer = ExecutorObserver::new(1);
        let mut slot = observer.slot(0);
        let t0 = Instant::now();
        let (a0, a1) = slot.span(t0, t0 + Duration::from_millis(10));
        // A span reported as starting before the previous one ended is moved after it.
        let (b0, b1) = slot.span(t0 + Duration::from_millis(5), t0 + Duration::from_millis(12));
        assert_eq!((a0, a1), (t0, t0 + Duration::from_millis(10)));
        assert_eq!(b0, a1);
        assert!(b1 >= b0);
        // Never a negative length, even when the end is before the previous end.
        let (c0, c1) = slot.span(t0, t0 + Duration::from_millis(11));
        assert!(c0 <= c1);
    }
}

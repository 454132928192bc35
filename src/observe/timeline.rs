//! The timeline: what each slot did and when, recorded while a [`Recording`] is open, written as
//! Chrome trace-event JSON ([`Timeline::to_chrome_json`]), which Perfetto and
//! `chrome://tracing` open.
//!
//! Cost: with no recording open, each hook is one relaxed load of a flag and a branch. While
//! recording, each feeder pushes its events into its own buffer (a mutex that only it takes
//! until the recording is finished: never contended on the task path); the callers' waits and
//! Ctrl-C, which are not per slot, go to one process-wide buffer (one push per wait, not per
//! task on a feeder).
//!
//! The trace: one process; one track (a "thread" in the format) per worker slot, `tid` = slot
//! index, with a complete event (`ph: "X"`) per task (name: the task type; args: id, `tasks`,
//! bytes in and out; a task whose worker died has `failed`) — a batch of a `Parallel` run is one
//! such span, its `tasks` the batch's size, since its worker runs them back to back and reports
//! them together — per worker start, and instant events
//! (`ph: "i"`) for deaths (with the signal), timeouts, recycling and idle exits; one track per
//! calling thread that waited (`tid` ≥ [`CALLER_TID`]); Ctrl-C as a global instant event.
//! Spans on one track never overlap: each begins no earlier than the previous one ended.

use super::{DeathCause, ExecutorObserver};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first track id of calling threads (slots are 0, 1, ...).
pub(super) const CALLER_TID: u64 = 1000;

/// Something that happened on one slot.
#[derive(Clone, Debug)]
pub(super) enum Event {
    /// A task's span, or a `Parallel` batch's (`count` tasks, run one after another).
    Task {
        name: &'static str,
        count: u32,
        id: u64,
        bytes_in: u64,
        bytes_out: u64,
        start: Instant,
        end: Instant,
        /// How its worker died, when it did.
        failed: Option<String>,
    },
    Spawn {
        pid: u32,
        start: Instant,
        end: Instant,
    },
    StartFailed {
        at: Instant,
        message: String,
        gave_up: bool,
    },
    Death {
        at: Instant,
        pid: u32,
        cause: DeathCause,
        status: String,
        signal: Option<String>,
    },
    Timeout {
        at: Instant,
        pid: u32,
        limit: Option<Duration>,
    },
    Recycle {
        at: Instant,
        pid: u32,
        why: &'static str,
    },
    Closed {
        at: Instant,
        pid: u32,
        idle: bool,
    },
}

impl Event {
    /// When it happened (a span: when it ended).
    fn at(&self) -> Instant {
        match self {
            Event::Task { end, .. } | Event::Spawn { end, .. } => *end,
            Event::StartFailed { at, .. }
            | Event::Death { at, .. }
            | Event::Timeout { at, .. }
            | Event::Recycle { at, .. }
            | Event::Closed { at, .. } => *at,
        }
    }
}

/// One slot's buffer: pushed to by its feeder only, read when a recording finishes.
#[derive(Default)]
pub(super) struct SlotEvents(Mutex<Vec<Event>>);

impl SlotEvents {
    pub(super) fn push(&self, event: Event) {
        self.0.lock().push(event);
    }
}

/// What happened outside the slots: a caller's wait, a Ctrl-C.
#[derive(Clone, Debug)]
enum Global {
    Wait {
        thread: u64,
        name: &'static str,
        start: Instant,
        end: Instant,
    },
    #[cfg_attr(not(feature = "ctrlc"), allow(dead_code, reason = "recorded by the Ctrl-C handler"))]
    CtrlC {
        at: Instant,
        epoch: u64,
    },
}

/// Open recordings in this process, over every executor: the callers' waits are recorded only
/// while this is not 0 (written by `Recording::start` and `finish`).
static RECORDINGS: AtomicUsize = AtomicUsize::new(0);
/// Waits and Ctrl-Cs while any recording is open (cleared when the last one finishes).
static GLOBAL: Mutex<Vec<Global>> = Mutex::new(Vec::new());

fn recording_anywhere() -> bool {
    RECORDINGS.load(Ordering::Relaxed) > 0
}

/// A small number for the calling thread, its track in the trace.
fn thread_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static NUMBER: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|n| *n)
}

/// A caller waiting for a result (a `join`, a `Parallel` run's next batch), recorded on the
/// caller's track when it ends, while a recording is open, and only if it really blocked: a
/// `join` of a finished task costs nothing (most of `map`'s joins, on tiny tasks).
pub(crate) struct Wait {
    name: &'static str,
    /// When it began to block (None: it did not, or nothing is being recorded).
    start: Option<Instant>,
}

impl Wait {
    /// A possible wait for `name` (a task type); it begins with [`Wait::blocks`].
    pub(crate) fn new(name: &'static str) -> Self {
        Wait { name, start: None }
    }

    /// The caller is about to block: the wait starts now (once; while a recording is open).
    pub(crate) fn blocks(&mut self) {
        if self.start.is_none() && recording_anywhere() {
            self.start = Some(Instant::now());
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(start) = self.start.take() {
            let end = Instant::now();
            GLOBAL.lock().push(Global::Wait { thread: thread_number(), name: self.name, start, end });
        }
    }
}

/// A Ctrl-C number `epoch` (`waiting`: some call was waiting, so it interrupts).
#[cfg(feature = "ctrlc")]
pub(crate) fn ctrl_c(epoch: u64, waiting: bool) {
    super::log::ctrl_c(epoch, waiting);
    if waiting && recording_anywhere() {
        GLOBAL.lock().push(Global::CtrlC { at: Instant::now(), epoch });
    }
}

/// An open recording of one executor's timeline: from [`Executor::record`](crate::Executor::record)
/// until [`finish`](Recording::finish).
///
/// Dropping it without `finish` stops recording and discards what was recorded.
///
/// # Examples
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
/// let ex = workpool::Executor::builder().workers(2).build().unwrap();
/// let recording = ex.record();
/// let squares: Vec<u64> = ex.map((0..100).map(Square)).map(Result::unwrap).collect();
/// let timeline = recording.finish();
/// timeline.write_chrome_json("timeline.json").unwrap(); // open it in Perfetto
/// # assert_eq!(squares.len(), 100);
/// ```
#[must_use = "a recording is written out by `finish`; dropping it discards it"]
pub struct Recording {
    observer: Arc<ExecutorObserver>,
    start: Instant,
    done: bool,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("since", &self.start.elapsed()).finish()
    }
}

/// Open recordings of one executor (under its observer's recorders lock).
pub(super) struct Recorders(Mutex<usize>);

impl Recorders {
    pub(super) const fn new() -> Self {
        Recorders(Mutex::new(0))
    }
}

impl Recording {
    pub(crate) fn start(observer: &Arc<ExecutorObserver>) -> Recording {
        let mut open = observer.recorders.0.lock();
        *open += 1;
        RECORDINGS.fetch_add(1, Ordering::Relaxed);
        observer.recording.store(true, Ordering::Relaxed);
        drop(open);
        Recording { observer: observer.clone(), start: Instant::now(), done: false }
    }

    /// Stops recording and returns what was recorded since [`Executor::record`](crate::Executor::record).
    ///
    /// Events of tasks still running are not in it (a span is recorded when its task ends).
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().build().unwrap();
    /// let recording = ex.record();
    /// // … submit, map …
    /// let timeline = recording.finish();
    /// println!("{} tasks in {:?}", timeline.tasks(), timeline.duration());
    /// # }
    /// ```
    pub fn finish(mut self) -> Timeline {
        let end = Instant::now();
        let since = self.start;
        let in_window = |at: Instant| at >= since && at <= end;
        let slots = self
            .observer
            .slots
            .iter()
            .map(|s| s.events.0.lock().iter().filter(|e| in_window(e.at())).cloned().collect())
            .collect();
        let global = GLOBAL
            .lock()
            .iter()
            .filter(|g| match g {
                Global::Wait { end, .. } => in_window(*end),
                Global::CtrlC { at, .. } => in_window(*at),
            })
            .cloned()
            .collect();
        self.stop();
        Timeline { start: since, end, slots, global }
    }

    fn stop(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut open = self.observer.recorders.0.lock();
        *open -= 1;
        if *open == 0 {
            self.observer.recording.store(false, Ordering::Relaxed);
            for slot in self.observer.slots.iter() {
                slot.events.0.lock().clear();
            }
        }
        if RECORDINGS.fetch_sub(1, Ordering::Relaxed) == 1 {
            GLOBAL.lock().clear();
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A finished recording ([`Recording::finish`]): write it with
/// [`write_chrome_json`](Timeline::write_chrome_json) and open it in Perfetto
/// (<https://ui.perfetto.dev>) or `chrome://tracing`.
///
/// # Examples
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
/// let ex = workpool::Executor::builder().workers(2).build().unwrap();
/// let recording = ex.record();
/// ex.submit(Square(3)).join().unwrap();
/// let timeline = recording.finish();
/// assert_eq!(timeline.tasks(), 1);
/// let json: String = timeline.to_chrome_json();
/// assert!(json.contains("\"traceEvents\""));
/// ```
#[derive(Clone, Debug)]
pub struct Timeline {
    start: Instant,
    end: Instant,
    /// Per slot, in the order its feeder recorded them.
    slots: Vec<Vec<Event>>,
    global: Vec<Global>,
}

impl Timeline {
    /// How long the recording was open.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().build().unwrap();
    /// let recording = ex.record();
    /// std::thread::sleep(std::time::Duration::from_millis(10));
    /// assert!(recording.finish().duration() >= std::time::Duration::from_millis(10));
    /// # }
    /// ```
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Task spans recorded (finished tasks and tasks whose worker died), over every slot.
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
    ///     let recording = ex.record();
    ///     ex.submit(Nap { ms: 1 }).join().unwrap();
    ///     assert_eq!(recording.finish().tasks(), 1);
    /// }
    /// ```
    ///
    /// A `Parallel` batch counts as the tasks in it (it is one span, see the module docs).
    pub fn tasks(&self) -> usize {
        let count = |e: &Event| match e {
            Event::Task { count, .. } => *count as usize,
            _ => 0,
        };
        self.slots.iter().flatten().map(count).sum()
    }

    /// The Chrome trace-event JSON of the recording (see the module docs of `timeline.rs` for
    /// its layout): `{"traceEvents": [...], "displayTimeUnit": "ms"}`, times in µs from the start
    /// of the recording.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().build().unwrap();
    /// let recording = ex.record();
    /// // … work …
    /// let json = recording.finish().to_chrome_json();
    /// assert!(json.starts_with("{") && json.contains("traceEvents"));
    /// # }
    /// ```
    pub fn to_chrome_json(&self) -> String {
        let pid = std::process::id();
        let us = |t: Instant| t.saturating_duration_since(self.start).as_nanos() as f64 / 1000.0;
        let mut events = vec![json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": {"name": format!("workpool executor ({} slots)", self.slots.len())}})];
        for (slot, list) in self.slots.iter().enumerate() {
            events.push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": slot,
                "args": {"name": format!("slot {slot}")}}));
            events.push(json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": slot,
                "args": {"sort_index": slot}}));
            for event in list {
                events.push(slot_event(event, pid, slot, &us));
            }
        }
        let mut callers: Vec<u64> = Vec::new();
        for g in &self.global {
            match g {
                Global::Wait { thread, name, start, end } => {
                    let tid = CALLER_TID + thread;
                    if !callers.contains(&tid) {
                        callers.push(tid);
                        events.push(json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                            "args": {"name": format!("caller thread {thread}")}}));
                    }
                    events.push(json!({"name": format!("wait {name}"), "cat": "wait", "ph": "X", "pid": pid,
                        "tid": tid, "ts": us(*start), "dur": us(*end) - us(*start)}));
                }
                Global::CtrlC { at, epoch } => {
                    events.push(json!({"name": "Ctrl-C", "cat": "interrupt", "ph": "i", "s": "g", "pid": pid,
                        "tid": 0, "ts": us(*at), "args": {"epoch": epoch}}));
                }
            }
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string()
    }

    /// Writes [`to_chrome_json`](Timeline::to_chrome_json) to `path`.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    ///
    /// ```no_run
    /// # fn main() {
    /// # workpool::init();
    /// let ex = workpool::Executor::builder().build().unwrap();
    /// let recording = ex.record();
    /// // … work …
    /// recording.finish().write_chrome_json("timeline.json").expect("a writable folder");
    /// // Open timeline.json in https://ui.perfetto.dev or chrome://tracing.
    /// # }
    /// ```
    pub fn write_chrome_json(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_chrome_json())
    }
}

fn slot_event(event: &Event, pid: u32, tid: usize, us: &dyn Fn(Instant) -> f64) -> Value {
    let instant = |name: &str, cat: &str, at: Instant, args: Value| json!({"name": name, "cat": cat, "ph": "i", "s": "t", "pid": pid, "tid": tid, "ts": us(at), "args": args});
    match event {
        Event::Task { name, count, id, bytes_in, bytes_out, start, end, failed } => {
            let mut args = json!({"id": id, "tasks": count, "bytes_in": bytes_in, "bytes_out": bytes_out});
            if let Some(failed) = failed {
                args["failed"] = json!(failed);
            }
            json!({"name": name, "cat": "task", "ph": "X", "pid": pid, "tid": tid, "ts": us(*start),
                "dur": us(*end) - us(*start), "args": args})
        }
        Event::Spawn { pid: worker, start, end } => json!({"name": "start worker", "cat": "spawn", "ph": "X",
            "pid": pid, "tid": tid, "ts": us(*start), "dur": us(*end) - us(*start), "args": {"pid": worker}}),
        Event::StartFailed { at, message, gave_up } => {
            instant("start failed", "spawn", *at, json!({"message": message, "gave_up": gave_up}))
        }
        Event::Death { at, pid: worker, cause, status, signal } => {
            let cause = match cause {
                DeathCause::Timeout => "timeout",
                DeathCause::Stalled => "stalled",
                DeathCause::Interrupted => "interrupted",
                DeathCause::Killed => "killed",
                DeathCause::Crash => "crash",
            };
            instant("death", "death", *at, json!({"pid": worker, "cause": cause, "status": status, "signal": signal}))
        }
        Event::Timeout { at, pid: worker, limit } => instant(
            "timeout",
            "timeout",
            *at,
            json!({"pid": worker, "limit_ms": limit.map(|l| l.as_secs_f64() * 1000.0)}),
        ),
        Event::Recycle { at, pid: worker, why } => {
            instant("recycle", "recycle", *at, json!({"pid": worker, "why": why}))
        }
        Event::Closed { at, pid: worker, idle } => {
            instant(if *idle { "idle exit" } else { "stop" }, "stop", *at, json!({"pid": worker}))
        }
    }
}

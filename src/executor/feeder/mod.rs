//! One feeder thread per worker slot: the bridge between the scheduler and a worker process.
//!
//! A feeder is a scheduler worker (it owns a FIFO deque and steals when idle) that, instead of
//! running jobs, writes them to its worker process and reads the results back. Its loop:
//!
//! 1. **Fill.** While the process has fewer than `window` tasks in flight, take work (its own
//!    deque, the injector, other feeders' deques), start the process if there is none (lazily),
//!    and queue the task's frame for writing. The window adapts to measured run times: about
//!    [`PREFETCH_NS`] of work, between [`MIN_WINDOW`] and [`MAX_WINDOW`] tasks, so tiny tasks
//!    stream without a round trip each while long tasks do not queue up behind each other.
//! 2. **Pump.** While anything is in flight: `poll` the socket for reading (and writing, while
//!    frames are unsent), with a timeout at the running task's deadline. Frames are written
//!    with non-blocking vectored writes (coalescing many small frames into one system call);
//!    results are read as they come and complete their handles at once.
//! 3. **Idle.** With nothing in flight, sleep in the scheduler until work arrives, the idle
//!    timeout passes (then the process is closed and reaped; the next task starts a new one),
//!    or the executor terminates with no work left.
//!
//! # Faults
//!
//! End of stream, a hang-up or a failed write means the worker is gone. The feeder first reads
//! whatever the worker managed to send, then reaps it for its exit status. The task it had
//! `STARTED` fails (worker death, or timeout / interrupt when the feeder or Ctrl-C killed it);
//! every task it had not started goes back to the injector and runs elsewhere.

mod faults;
mod init;
mod io;

pub(crate) use init::Initializer;

use super::completion::Completion;
use super::shared::{Config, Envelope, Shared, Slot};
use crate::error::{ErrorKind, TaskError};
use crate::process::spawn::{self as process, Worker};
use crate::process::wire::{self, Done, FrameReader, WireError};
use crate::scheduler::{Queue, Wait};
use crate::sys;
use std::collections::VecDeque;
use std::io::{ErrorKind as IoKind, IoSlice};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work to keep queued in a worker beyond the running task, in nanoseconds of measured run time.
pub(crate) const PREFETCH_NS: f64 = 1_000_000.0;
/// Tasks in flight per worker at least (one running, one ready)...
pub(crate) const MIN_WINDOW: usize = 2;
/// ... and at most.
pub(crate) const MAX_WINDOW: usize = 64;
/// Pauses before the second, third and fourth try of a failed worker start.
const START_BACKOFF: [Duration; 3] = [Duration::from_millis(10), Duration::from_millis(50), Duration::from_millis(250)];
/// Frames per vectored write.
const MAX_IOVECS: usize = 64;
/// How long a worker whose socket reached end of stream may take to be seen exiting before the
/// feeder concludes that its task closed the socket.
const CLOSE_TO_EXIT: Duration = Duration::from_millis(100);
/// A running task longer than this has the tasks queued behind it taken back when another slot
/// idles (a stream of tiny tasks never gets there: its tasks take microseconds).
const LONG_TASK: Duration = Duration::from_millis(2);
/// A worker that has not taken its next task for this long has its queued tasks taken back when
/// another slot idles.
const STALL: Duration = Duration::from_millis(20);
/// How often a feeder with tasks waiting in its window looks whether to take them back.
const RECALL_CHECK: Duration = Duration::from_millis(2);
/// How long a closed worker may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Longest poll, as a safety net against any missed event.
const POLL_TICK: Duration = Duration::from_millis(250);
/// Ids per `FORGET` frame at most.
const FORGET_CHUNK: usize = 1 << 16;
/// How often an idle feeder checks that its idle worker is still alive (so that one killed
/// while idle is reaped promptly instead of lingering as a zombie until the next task).
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Why the feeder itself killed its worker.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// The running task passed `task_timeout`.
    Timeout(Duration),
    /// The worker did not take its next task within `task_timeout`.
    Stalled,
    /// The running task's handle was killed (`TaskHandle::kill`).
    Killed,
}

struct InFlight {
    env: Envelope,
    started: bool,
    /// Its place in the worker's claim ring.
    ticket: u32,
    /// Taken back (see `take_back`): already queued again elsewhere; its frame is still written
    /// out (the stream must stay whole), the worker skips it and says so (`SKIPPED`), and only
    /// then is it forgotten: until then it holds its place in the window, so a worker that
    /// does not read (stopped, or a task ate its input) is given nothing more.
    recalled: bool,
}

/// A live worker process and what is in flight on it.
struct Live {
    process: Worker,
    reader: FrameReader,
    /// Sent or being sent, in the order the worker will run them.
    inflight: VecDeque<InFlight>,
    /// Index in `inflight` of the first frame not completely written.
    unsent: usize,
    /// Bytes of `inflight[unsent]` already written.
    offset: usize,
    /// Tasks handed to this process (for `max_tasks_per_worker`).
    sent: u64,
    /// When the task at the front reported STARTED.
    running_since: Option<Instant>,
    /// Since when the worker owes an answer (`STARTED` or `SKIPPED`) for the first entry of
    /// `inflight`: when that entry became the first, or, for an empty window, was written.
    front_since: Instant,
    /// The next claim ticket (from 1).
    next_ticket: u32,
    /// Tasks were taken back: take no more until the worker answers (a `DONE` of the running
    /// one, or a `SKIPPED` of one taken back).
    held_back: bool,
    /// The worker's count of tasks begun, when last read (see `check_timers`).
    begun_seen: u64,
    /// The program's paused time, when last read (see `check_timers`).
    paused_seen: u64,
    /// No new tasks: close once the in-flight ones are done (recycling).
    retiring: bool,
    kill: Option<Kill>,
    /// The memory fault the running task's worker reported just before it died (signal, address).
    fault: Option<(u32, u64)>,
    /// Segments of finished tasks that the worker said it keeps (`ST_KEPT`): held until the
    /// process is gone, so that none is recycled while it may still read them.
    kept: Vec<Arc<crate::oob::segment::Segment>>,
    idle_since: Instant,
    /// Frames of the feeder's own (`SHARE`, `FORGET`) waiting to be written, whole, between two
    /// task frames; written before the next task frame begins.
    control: Vec<u8>,
    /// Shared-value releases this worker has been told about (`bytes/shared.rs`).
    releases_seen: u64,
    /// Shared values sent ahead to this worker (`SHARE`), by id.
    shared_sent: std::collections::HashSet<u64>,
}

pub(crate) struct Feeder {
    shared: Arc<Shared>,
    queue: Queue<Envelope>,
    slot: Arc<Slot>,
    /// A job taken while idle, to be dispatched by the next fill.
    held: Option<Envelope>,
    live: Option<Live>,
    /// Moving average of task run times reported by workers (ns); 0 until the first report.
    avg_ns: f64,
    /// Stats, timeline and log events of this slot (`src/observe/`).
    observe: crate::observe::SlotObserver,
}

impl Feeder {
    pub(crate) fn new(shared: Arc<Shared>, queue: Queue<Envelope>, slot: Arc<Slot>) -> Self {
        let observe = shared.observe.slot(queue.index());
        Feeder { shared, queue, slot, held: None, live: None, avg_ns: 0.0, observe }
    }

    pub(crate) fn run(mut self) {
        loop {
            self.fill();
            if let Some(live) = &self.live {
                if !live.inflight.is_empty() {
                    self.pump();
                    continue;
                }
                if live.retiring {
                    self.close_process();
                    continue;
                }
            }
            let idle_until = self.live.as_ref().map(|l| l.idle_since + self.shared.config.idle_timeout);
            let wake = idle_until.map(|until| until.min(Instant::now() + IDLE_CHECK));
            let waited = {
                let _idle = Idle::enter(&self.shared, self.live.is_some());
                self.queue.wait(&|| false, wake, true)
            };
            match waited {
                Wait::Job(env) => self.held = Some(env),
                Wait::TimedOut if idle_until.is_some_and(|until| Instant::now() >= until) => self.close_process(),
                Wait::TimedOut => {
                    self.check_idle_process();
                    // An idle worker drops what the parent released within one check.
                    self.forward_releases();
                    if self.live.as_ref().is_some_and(|l| !l.control.is_empty()) && self.write_some().is_err() {
                        self.on_death(None);
                    }
                }
                Wait::Terminated => break,
                Wait::Ready => {}
            }
        }
        self.close_process();
    }

    /// Queues a `FORGET` frame for the shared values released since this worker was last told
    /// (see `bytes/shared.rs`).
    fn forward_releases(&mut self) {
        let Some(live) = self.live.as_mut() else { return };
        if crate::bytes::shared::releases() == live.releases_seen {
            return;
        }
        let (ids, now) = crate::bytes::shared::released_since(live.releases_seen);
        live.releases_seen = now;
        match ids {
            Some(ids) => {
                for id in &ids {
                    live.shared_sent.remove(id);
                }
                ids.chunks(FORGET_CHUNK).for_each(|chunk| wire::forget(&mut live.control, chunk));
            }
            // The log no longer reaches back that far: forget them all.
            None => {
                live.shared_sent.clear();
                wire::forget(&mut live.control, &[]);
            }
        }
    }

    /// Tasks to keep in flight: about [`PREFETCH_NS`] of work, judged by the average run time,
    /// or by the running task's time so far when that is longer (the first long task after a
    /// run of tiny ones must shrink the window at once, not after it finished).
    fn window(&self) -> usize {
        let running = self.live.as_ref().and_then(|l| l.running_since).map_or(0.0, |t| t.elapsed().as_nanos() as f64);
        let expected = self.avg_ns.max(running);
        if expected <= 0.0 {
            return MIN_WINDOW;
        }
        ((PREFETCH_NS / expected) as usize).clamp(MIN_WINDOW, MAX_WINDOW)
    }

    /// Step 1: take work while the window has room. Two rules keep tasks where they start
    /// soonest: a feeder with a task in flight takes no more while another slot is idle (the
    /// idle one runs it now, instead of it waiting behind a task that may be long), and a slot
    /// without a worker process leaves a task to an idle slot that has one (a warm process is
    /// reused instead of starting a second).
    fn fill(&mut self) {
        loop {
            if let Some(live) = &mut self.live {
                if live.held_back && live.inflight.is_empty() {
                    // What was taken back had not been written at all: no answer will come.
                    live.held_back = false;
                }
            }
            if let Some(live) = &self.live {
                // A ticket's word in the claim ring is reused `RING` tickets later: never so far
                // ahead of the oldest task the worker may still claim (cancels of tasks never
                // written skip tickets).
                let ring_full = live.inflight.front().is_some_and(|f| {
                    live.next_ticket.wrapping_sub(f.ticket) as usize >= crate::process::claims::RING - 1
                });
                let full = live.retiring || live.held_back || ring_full || live.inflight.len() >= self.window();
                let leave =
                    !live.inflight.is_empty() && self.held.is_none() && self.shared.idle.load(Ordering::SeqCst) > 0;
                if full || leave {
                    // What a batch steal put in our deque goes to whoever is free.
                    self.queue.spill();
                    return;
                }
            }
            let Some(env) = self.held.take().or_else(|| self.queue.find_work()) else { return };
            if self.live.is_none() && self.shared.idle_warm.load(Ordering::SeqCst) > 0 {
                // Wakes the warm sleeper first (see `Sleep::set_warm`).
                self.shared.queue.inject(env);
                return;
            }
            if env.epoch < crate::interrupt::epoch() {
                env.completion.fail(ErrorKind::Interrupted);
                continue;
            }
            if !env.completion.dispatch() {
                continue; // cancelled while queued
            }
            if self.live.is_none() {
                // Visible as in flight while its worker starts.
                self.slot.inflight.store(1, Ordering::SeqCst);
                if !self.start_process(&env.completion) {
                    self.slot.inflight.store(0, Ordering::SeqCst);
                    continue;
                }
                if env.epoch < crate::interrupt::epoch() {
                    // A Ctrl-C while the worker started (it had no process to kill yet).
                    self.slot.inflight.store(0, Ordering::SeqCst);
                    env.completion.fail(ErrorKind::Interrupted);
                    continue;
                }
            }
            let live = self.live.as_mut().expect("started above");
            if !env.completion.route_to(live.process.pid, &self.slot.doorbell) {
                // Killed (`TaskHandle::kill`) before it was written: it is settled already.
                self.slot.inflight.store(live.inflight.len(), Ordering::SeqCst);
                continue;
            }
            let mut env = env;
            let ticket = live.next_ticket;
            live.next_ticket = live.next_ticket.checked_add(1).unwrap_or(1);
            wire::set_ticket(&mut env.frame, ticket);
            live.process.claims.offer(ticket);
            if live.inflight.is_empty() {
                live.front_since = Instant::now();
            }
            // The shared values it names by id go ahead of it, once per worker process.
            for (id, encoded) in &env.keep.by_id {
                if live.shared_sent.insert(*id) && wire::share(&mut live.control, *id, encoded).is_ok() {
                    self.observe.dispatched(encoded.len() + wire::HEADER, false);
                }
            }
            self.observe.dispatched(env.frame.len(), live.inflight.is_empty());
            live.inflight.push_back(InFlight { env, started: false, ticket, recalled: false });
            live.sent += 1;
            if self.shared.config.max_tasks_per_worker.is_some_and(|max| live.sent >= max) {
                live.retiring = true;
                self.observe.recycling(live.process.pid, "max_tasks_per_worker");
            }
            self.slot.inflight.store(live.inflight.len(), Ordering::Relaxed);
        }
    }

    /// Starts a worker, trying again with back-off when a start fails ([`START_BACKOFF`]); when
    /// every try failed, fails `first` (the task that was waiting for this start) and returns
    /// false. The next task tries again: a failed start never breaks the executor, except for
    /// a worker from another build of this program, which would recur (then everything queued
    /// fails and later submits fail at once).
    fn start_process(&mut self, first: &Completion) -> bool {
        let mut attempt = 0;
        let began = Instant::now();
        let started = loop {
            let handshake = self.shared.config.handshake_timeout;
            let started = match self.shared.cluster.get() {
                Some(cluster) => cluster.start(self.queue.index(), handshake),
                None => process::start(self.shared.threads_per_worker, handshake),
            };
            match started.and_then(|worker| self.initialize(worker)) {
                Ok(worker) => break Ok(worker),
                Err(e) if e.sticky || attempt == START_BACKOFF.len() => break Err(e),
                Err(e) => {
                    self.observe.start_failed(began, &e.message, false);
                    std::thread::sleep(START_BACKOFF[attempt]);
                    attempt += 1;
                }
            }
        };
        match started {
            Ok(process) => {
                self.observe.started(began, process.pid, attempt + 1);
                self.shared.queue.sleep.set_warm(self.queue.index(), true);
                self.slot.pid.store(process.pid, Ordering::SeqCst);
                self.slot.starts.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                self.live = Some(Live {
                    process,
                    reader: FrameReader::new(),
                    inflight: VecDeque::new(),
                    unsent: 0,
                    offset: 0,
                    sent: 0,
                    running_since: None,
                    front_since: now,
                    next_ticket: 1,
                    held_back: false,
                    begun_seen: 0,
                    paused_seen: crate::pause::paused_ns(),
                    retiring: false,
                    kill: None,
                    fault: None,
                    kept: Vec::new(),
                    idle_since: now,
                    control: Vec::new(),
                    // Values released before now can reach this worker with no task.
                    releases_seen: crate::bytes::shared::releases(),
                    shared_sent: std::collections::HashSet::new(),
                });
                true
            }
            Err(e) => {
                self.observe.start_failed(began, &e.message, true);
                let message = if e.sticky {
                    e.message.clone()
                } else {
                    format!("{} ({} tries; the next task will try again)", e.message, START_BACKOFF.len() + 1)
                };
                first.fail(ErrorKind::Spawn { message });
                if e.sticky {
                    self.shared.set_broken(e.message);
                }
                false
            }
        }
    }
}

/// Counts a feeder as idle (and as warm: with a live worker process) while it lives.
struct Idle<'a> {
    shared: &'a Shared,
    warm: bool,
}

impl<'a> Idle<'a> {
    fn enter(shared: &'a Shared, warm: bool) -> Self {
        shared.idle.fetch_add(1, Ordering::SeqCst);
        if warm {
            shared.idle_warm.fetch_add(1, Ordering::SeqCst);
        }
        Idle { shared, warm }
    }
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.shared.idle.fetch_sub(1, Ordering::SeqCst);
        if self.warm {
            self.shared.idle_warm.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

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

use super::completion::Completion;
use super::shared::{Envelope, Shared, Slot};
use crate::error::ErrorKind;
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
}

struct InFlight {
    env: Envelope,
    started: bool,
    /// Its place in the worker's claim ring.
    ticket: u32,
    /// Taken back (see `recall`): already queued again elsewhere; its frame is still written
    /// out (the stream must stay whole) and the worker skips it.
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
    /// When the task at the front became the front (the one the worker should take next).
    front_since: Instant,
    /// The next claim ticket (from 1).
    next_ticket: u32,
    /// Tasks were taken back from behind the running one: take no more until it is done.
    held_back: bool,
    /// No new tasks: close once the in-flight ones are done (recycling).
    retiring: bool,
    kill: Option<Kill>,
    /// The memory fault the running task's worker reported just before it died (signal, address).
    fault: Option<(u32, u64)>,
    idle_since: Instant,
}

/// Forgets the tasks at the front of `inflight` that were taken back and are completely
/// written (`unsent` counts those): the worker skips them without a word, and they were queued
/// again already.
fn drop_skipped(inflight: &mut VecDeque<InFlight>, unsent: &mut usize) {
    while *unsent > 0 && inflight.front().is_some_and(|f| f.recalled) {
        inflight.pop_front();
        *unsent -= 1;
    }
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
}

impl Feeder {
    pub(crate) fn new(shared: Arc<Shared>, queue: Queue<Envelope>, slot: Arc<Slot>) -> Self {
        Feeder { shared, queue, slot, held: None, live: None, avg_ns: 0.0 }
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
                Wait::TimedOut => self.check_idle_process(),
                Wait::Terminated => break,
                Wait::Ready => {}
            }
        }
        self.close_process();
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
                if live.held_back && live.inflight.iter().all(|f| f.recalled) {
                    live.held_back = false; // nothing of ours is left waiting on that worker
                }
            }
            if let Some(live) = &self.live {
                let full = live.retiring || live.held_back || live.inflight.len() >= self.window();
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
            let mut env = env;
            let ticket = live.next_ticket;
            live.next_ticket = live.next_ticket.checked_add(1).unwrap_or(1);
            wire::set_ticket(&mut env.frame, ticket);
            live.process.claims.offer(ticket);
            if live.inflight.is_empty() {
                live.front_since = Instant::now();
            }
            live.inflight.push_back(InFlight { env, started: false, ticket, recalled: false });
            live.sent += 1;
            if self.shared.config.max_tasks_per_worker.is_some_and(|max| live.sent >= max) {
                live.retiring = true;
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
        let started = loop {
            match process::start(self.shared.threads_per_worker, self.shared.config.handshake_timeout) {
                Ok(worker) => break Ok(worker),
                Err(e) if e.sticky || attempt == START_BACKOFF.len() => break Err(e),
                Err(_) => {
                    std::thread::sleep(START_BACKOFF[attempt]);
                    attempt += 1;
                }
            }
        };
        match started {
            Ok(process) => {
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
                    retiring: false,
                    kill: None,
                    fault: None,
                    idle_since: now,
                });
                true
            }
            Err(e) => {
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

    /// Step 2: one round of socket I/O.
    fn pump(&mut self) {
        let live = self.live.as_mut().expect("pump needs a process");
        let want_write = live.unsent < live.inflight.len();
        let mut timeout = POLL_TICK;
        if live.inflight.iter().any(|f| !f.started && !f.recalled) {
            // Something waits in the window: look again soon whether another slot went idle
            // (see `recall_waiting`; an idle feeder does not wake this one).
            timeout = timeout.min(RECALL_CHECK);
        }
        if let (Some(limit), Some(since)) = (self.shared.config.task_timeout, live.running_since) {
            if live.kill.is_none() {
                timeout = timeout.min((since + limit).saturating_duration_since(Instant::now()));
            }
        }
        let watch = [(live.process.socket.as_fd(), want_write), (live.process.exit_fd(), false)];
        let (ready, exited) = match sys::poll_many(&watch, Some(timeout)) {
            Ok(ready) => (ready[0], ready[1].readable || ready[1].hangup),
            Err(e) => return self.on_death(Some(format!("poll failed: {e}"))),
        };
        if exited && !(ready.readable || ready.hangup) {
            // Dead, although its socket is still open (a process it started holds it).
            return self.on_death(None);
        }
        if ready.writable {
            // A failed write means the worker is gone; its exit status says why.
            if self.write_some().is_err() {
                return self.on_death(None);
            }
        }
        if ready.readable || ready.hangup {
            match self.read_some() {
                Ok(true) => {}
                Ok(false) => return self.on_death(None),
                Err(e) => {
                    self.live.as_ref().expect("live").process.kill();
                    return self.on_death(Some(format!("the worker broke the protocol ({e})")));
                }
            }
        }
        self.check_timers();
    }

    /// Writes as many unsent frames as the socket takes.
    fn write_some(&mut self) -> std::io::Result<()> {
        let result = self.write_frames();
        let live = self.live.as_mut().expect("live");
        drop_skipped(&mut live.inflight, &mut live.unsent);
        result
    }

    fn write_frames(&mut self) -> std::io::Result<()> {
        let live = self.live.as_mut().expect("live");
        while live.unsent < live.inflight.len() {
            let mut slices = Vec::with_capacity(MAX_IOVECS);
            slices.push(IoSlice::new(&live.inflight[live.unsent].env.frame[live.offset..]));
            for f in live.inflight.iter().skip(live.unsent + 1).take(MAX_IOVECS - 1) {
                slices.push(IoSlice::new(&f.env.frame));
            }
            match sys::send_vectored(live.process.socket.as_fd(), &slices) {
                Ok(mut n) => {
                    while n > 0 {
                        let left = live.inflight[live.unsent].env.frame.len() - live.offset;
                        if n >= left {
                            n -= left;
                            live.unsent += 1;
                            live.offset = 0;
                        } else {
                            live.offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads and handles everything available; false on end of stream.
    fn read_some(&mut self) -> Result<bool, WireError> {
        loop {
            let live = self.live.as_mut().expect("live");
            let got = live.reader.fill(&mut &live.process.socket);
            match got {
                Ok(0) => {
                    self.handle_frames()?;
                    return Ok(false);
                }
                Ok(_) => self.handle_frames()?,
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(_) => return Ok(false),
            }
        }
    }

    fn handle_frames(&mut self) -> Result<(), WireError> {
        let shared = &self.shared;
        let slot = &self.slot;
        let live = self.live.as_mut().expect("live");
        while let Some(frame) = live.reader.next_frame()? {
            drop_skipped(&mut live.inflight, &mut live.unsent);
            // A task taken back never matches: its id may be in flight again, as a new entry.
            let front = live.inflight.front_mut().filter(|f| !f.recalled && f.env.id == frame.id);
            let Some(front) = front else {
                return Err(WireError(format!("frame kind {} for task {} which is not next", frame.kind, frame.id)));
            };
            match frame.kind {
                wire::STARTED if !front.started && live.unsent > 0 => {
                    front.started = true;
                    live.running_since = Some(Instant::now());
                }
                wire::FAULT if front.started => live.fault = Some(wire::parse_fault(frame.body)?),
                wire::DONE if live.unsent > 0 => {
                    let (done, elapsed_ns) = wire::parse_done(frame.body)?;
                    let f = live.inflight.pop_front().expect("front exists");
                    live.unsent -= 1;
                    drop_skipped(&mut live.inflight, &mut live.unsent);
                    live.running_since = None;
                    live.front_since = Instant::now();
                    live.held_back = false;
                    let sample = elapsed_ns as f64;
                    self.avg_ns = if self.avg_ns <= 0.0 { sample } else { 0.8 * self.avg_ns + 0.2 * sample };
                    // Counters first: whoever `join` wakes must see the task counted as done.
                    slot.tasks_run.fetch_add(1, Ordering::SeqCst);
                    slot.inflight.store(live.inflight.len(), Ordering::SeqCst);
                    f.env.completion.set_elapsed(elapsed_ns);
                    complete(&f.env.completion, done);
                    live.idle_since = Instant::now();
                    // After every task (a read of /proc/PID/statm, a few µs, only when a ceiling
                    // is set): a fresh worker whose first task grows it is caught too.
                    if let Some(ceiling) = shared.config.max_worker_memory {
                        if sys::rss_bytes(live.process.pid).is_some_and(|rss| rss > ceiling) {
                            live.retiring = true;
                        }
                    }
                }
                kind => return Err(WireError(format!("unexpected frame kind {kind} for task {}", frame.id))),
            }
        }
        Ok(())
    }

    /// Takes back the tasks queued behind the front one when they would wait while another
    /// slot idles: the front task has been running longer than [`LONG_TASK`],
    /// or the worker has not taken it for [`STALL`] (stopped, or a task ate its input). Each is
    /// taken back through the claim ring, so it runs exactly once wherever it ends up. With a
    /// `task_timeout`, a worker that does not take its next task within it is killed (no task
    /// fails: none of them started).
    fn recall_waiting(&mut self) {
        let Some(live) = self.live.as_mut() else { return };
        let now = Instant::now();
        let front_started = live.inflight.iter().find(|f| !f.recalled).is_some_and(|f| f.started);
        let waited = match (front_started, live.running_since) {
            (true, Some(since)) => now - since > LONG_TASK,
            _ => now - live.front_since > STALL,
        };
        let waiting = live.inflight.iter().filter(|f| !f.started && !f.recalled).count();
        if !front_started && live.kill.is_none() {
            if let Some(limit) = self.shared.config.task_timeout {
                if waiting > 0 && now - live.front_since > limit {
                    live.kill = Some(Kill::Stalled);
                    live.process.kill();
                    return;
                }
            }
        }
        if waiting == 0 || !waited || self.shared.idle.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut again = Vec::new();
        for i in (0..live.inflight.len()).rev() {
            let f = &live.inflight[i];
            if f.started {
                break;
            }
            if f.recalled {
                continue;
            }
            if !live.process.claims.recall(f.ticket) {
                break; // claimed: it started, and so did every task before it
            }
            f.env.completion.requeue();
            if i > live.unsent || (i == live.unsent && live.offset == 0) {
                // Not a byte of it written yet: it simply leaves.
                again.push(live.inflight.remove(i).expect("in range").env);
            } else {
                let env = &f.env;
                again.push(Envelope {
                    id: env.id,
                    frame: env.frame.clone(),
                    completion: env.completion.clone(),
                    epoch: env.epoch,
                });
                live.inflight[i].recalled = true;
            }
        }
        live.held_back = true;
        self.slot.inflight.store(live.inflight.iter().filter(|f| !f.recalled).count(), Ordering::SeqCst);
        self.shared.queue.inject_many(again);
    }

    fn check_timers(&mut self) {
        self.recall_waiting();
        let Some(live) = self.live.as_mut() else { return };
        if let (Some(limit), Some(since), None) = (self.shared.config.task_timeout, live.running_since, live.kill) {
            if since.elapsed() >= limit {
                live.kill = Some(Kill::Timeout(limit));
                live.process.kill();
            }
        }
    }

    /// An idle worker has nothing to say: a readable or hung-up socket means it died.
    fn check_idle_process(&mut self) {
        let Some(live) = &self.live else { return };
        let healthy = !live.process.has_exited()
            && sys::poll(live.process.socket.as_fd(), false, Some(Duration::ZERO))
                .is_ok_and(|ready| !(ready.readable || ready.hangup));
        if !healthy {
            self.on_death(None);
        }
    }

    /// The worker is gone: settle every task it held, reap it.
    fn on_death(&mut self, broken: Option<String>) {
        // Results the worker wrote before dying are still in the socket: read them first.
        if broken.is_none() {
            let _ = self.read_some();
        }
        let mut live = self.live.take().expect("a process died");
        self.shared.queue.sleep.set_warm(self.queue.index(), false);
        let pid = live.process.pid;
        // End of stream from a worker that lives on: its task closed (or broke) its socket.
        // (An exiting process closes its descriptors just before it is seen to exit.)
        let closed = broken.is_none() && live.kill.is_none() && !live.process.wait_exit(CLOSE_TO_EXIT);
        if closed {
            live.process.kill();
        }
        let status = live.process.finish(EXIT_GRACE);
        let cause = match (broken, closed, live.fault) {
            (Some(broken), _, _) => broken,
            (None, true, _) => "the task closed or broke the worker's channel to the executor (its socket), so the \
                                worker was killed"
                .to_string(),
            // Rust's runtime aborts on a stack overflow, after a fault in a guard page.
            (None, false, Some(_)) if status.contains("SIGABRT") => {
                format!("the task overflowed its stack ({status})")
            }
            (None, false, Some((_, address))) => format!("{status}, a memory fault at address {address:#x}"),
            (None, false, None) => status,
        };
        // A Ctrl-C that killed this worker interrupts the tasks submitted before it; a task
        // submitted after it is not misreported as interrupted (by this death or a later one).
        let interrupt = self.slot.interrupt.swap(0, Ordering::SeqCst);
        let interrupted = |env: &Envelope| interrupt != 0 && env.epoch < interrupt;
        // Counters before any handle is completed (see handle_frames); the death is counted
        // before the pid disappears, so no snapshot shows a vanished worker that did not die.
        self.slot.deaths.fetch_add(1, Ordering::SeqCst);
        self.slot.pid.store(0, Ordering::SeqCst);
        self.slot.inflight.store(0, Ordering::SeqCst);
        let mut again = Vec::new();
        for f in live.inflight.drain(..) {
            let completion = &f.env.completion;
            if f.recalled {
                continue; // already queued again
            }
            if f.started {
                completion.fail(match live.kill {
                    Some(Kill::Timeout(limit)) => ErrorKind::Timeout { limit },
                    Some(Kill::Stalled) => ErrorKind::WorkerDeath { cause: cause.clone(), pid },
                    None if interrupted(&f.env) => ErrorKind::Interrupted,
                    None => ErrorKind::WorkerDeath { cause: cause.clone(), pid },
                });
            } else if interrupted(&f.env) {
                completion.fail(ErrorKind::Interrupted);
            } else {
                completion.requeue();
                again.push(f.env);
            }
        }
        self.shared.queue.inject_many(again);
    }

    /// Graceful stop: close the socket (the worker exits on end of stream) and reap.
    fn close_process(&mut self) {
        if let Some(live) = self.live.take() {
            self.shared.queue.sleep.set_warm(self.queue.index(), false);
            debug_assert!(live.inflight.is_empty());
            // End of stream: the worker exits (it is killed if it lingers); whatever its tasks
            // left running in its process group is stopped.
            let _ = live.process.socket.shutdown(std::net::Shutdown::Both);
            live.process.finish(EXIT_GRACE);
            self.slot.pid.store(0, Ordering::SeqCst);
            self.slot.inflight.store(0, Ordering::Relaxed);
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

/// Completes a handle from a worker's `DONE` report.
fn complete(completion: &Completion, done: Done<'_>) {
    match done {
        Done::Ok(bytes) => {
            completion.complete(Ok(bytes.to_vec()));
        }
        Done::Panic { message, location, .. } => {
            let location = (!location.is_empty()).then(|| location.to_string());
            completion.fail(ErrorKind::Panic { message: message.to_string(), location });
        }
        Done::Decode(message) => {
            completion
                .fail(ErrorKind::Codec { stage: "decoding the argument in the worker", message: message.to_string() });
        }
        Done::Encode(message) => {
            completion
                .fail(ErrorKind::Codec { stage: "encoding the result in the worker", message: message.to_string() });
        }
        Done::Unknown => {
            completion.fail(ErrorKind::NotRegistered);
        }
    }
}

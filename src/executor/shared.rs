//! What an executor's handles, its feeder threads and the Ctrl-C path share: the scheduler of
//! encoded tasks, the slots, and the process-wide list of live executors.

use super::completion::{Completion, Notify};
use super::doorbell::Doorbell;
use crate::error::ErrorKind;
use crate::process::wire;
use crate::scheduler;
use crate::task;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The settings of an executor; two reusable requests with equal configs share workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// Number of slots (worker processes at a time).
    pub(crate) workers: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) max_tasks_per_worker: Option<u64>,
    pub(crate) max_worker_memory: Option<u64>,
    pub(crate) handshake_timeout: Duration,
    /// Run once in every worker before its first task (`ExecutorBuilder::initializer`).
    pub(crate) initializer: Option<super::feeder::Initializer>,
    /// How workers are started (local by default), and where remote ones connect back to.
    pub(crate) launcher: crate::launcher::Launcher,
    pub(crate) listen: std::net::SocketAddr,
}

/// One encoded task on its way to a worker process.
pub(crate) struct Envelope {
    pub(crate) id: u64,
    /// The complete `TASK` frame.
    pub(crate) frame: Vec<u8>,
    /// The shared-memory segments its out-of-band `Bytes` travel in, passed with the frame
    /// (kept until the task is done: a task rescheduled after a crash is sent again with them).
    pub(crate) segments: Vec<Arc<crate::oob::segment::Segment>>,
    /// The shared values it names, alive until the task is done, and those it names by id
    /// only, which its feeder sends ahead (see `bytes/shared.rs`).
    pub(crate) keep: crate::oob::Kept,
    pub(crate) completion: Arc<Completion>,
    /// The interrupt epoch ([`crate::interrupt::epoch`]) at submission: a task submitted before a
    /// Ctrl-C is interrupted by it; one submitted after it, never.
    pub(crate) epoch: u64,
    /// Its own run-time limit (`Executor::submit_with_timeout`), instead of the executor's.
    pub(crate) timeout: Option<Duration>,
}

/// What the outside world can see of one slot: the place of one worker process at a time,
/// served by one feeder thread.
///
/// Every field is written by the slot's feeder thread only, except `interrupt`, which the
/// Ctrl-C path sets before it kills the worker process. `SeqCst` throughout: these are read
/// rarely (snapshots, Ctrl-C) and their order against the handles' completion matters (see
/// the feeder: counters are settled before a handle completes).
#[derive(Default)]
pub(crate) struct Slot {
    /// The pid of the slot's worker process; 0 while it has none.
    pub(crate) pid: AtomicU32,
    /// Tasks written (or being written) to the worker process and not finished.
    pub(crate) inflight: AtomicUsize,
    /// Tasks finished by this slot's worker processes, over all of them.
    pub(crate) tasks_run: AtomicU64,
    /// Worker processes started in this slot.
    pub(crate) starts: AtomicU64,
    /// Worker processes of this slot that died (crash, kill, timeout).
    pub(crate) deaths: AtomicU64,
    /// The interrupt epoch whose Ctrl-C killed the current worker process (0: none): its tasks
    /// from before that epoch failed as interrupted (written by the Ctrl-C thread, consumed by
    /// the feeder when the process is gone).
    pub(crate) interrupt: AtomicU64,
    /// Rung by `TaskHandle::kill` of a task written to this slot's worker (see `doorbell.rs`).
    pub(crate) doorbell: Arc<Doorbell>,
}

/// State shared by an executor's handles and its feeder threads (tokio would call it `Shared`:
/// the per-slot parts live in each feeder).
pub(crate) struct Shared {
    /// Fixed at build.
    pub(crate) config: Config,
    /// Encoded tasks: injected by submitting threads, taken by feeders.
    pub(crate) queue: Arc<scheduler::Shared<Envelope>>,
    pub(crate) slots: Box<[Arc<Slot>]>,
    /// `max(1, cpu_count / workers)`: the thread caps worker processes get (computed once:
    /// cpu_count reads several files).
    pub(crate) threads_per_worker: usize,
    /// Task ids, taken by submitting threads.
    next_id: AtomicU64,
    /// Feeders waiting for work with nothing in flight, and those of them whose worker process
    /// is alive (each feeder counts itself while it waits): dispatch leaves work to them.
    pub(crate) idle: AtomicUsize,
    pub(crate) idle_warm: AtomicUsize,
    /// Set once, by a feeder, when worker processes cannot start at all (no `init()`, wrong
    /// binary): every later submit fails fast.
    broken: OnceLock<String>,
    /// The feeder threads, joined by the first `shutdown`.
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set (and `stopped` notified) by that `shutdown` once every feeder ended, i.e. once every
    /// worker process was reaped: later and concurrent callers wait for it.
    pub(crate) stopped: Mutex<bool>,
    pub(crate) stopped_cv: parking_lot::Condvar,
    /// Stats and the timeline (`src/observe/`).
    pub(crate) observe: Arc<crate::observe::ExecutorObserver>,
    /// The remote side (listener, key) of an executor whose launcher is not local; set at build.
    pub(crate) cluster: OnceLock<Arc<crate::process::remote::Cluster>>,
}

impl Shared {
    pub(crate) fn new(config: Config, queue: Arc<scheduler::Shared<Envelope>>, threads_per_worker: usize) -> Self {
        let slots = (0..config.workers).map(|_| Arc::new(Slot::default())).collect();
        let observe = crate::observe::ExecutorObserver::new(config.workers);
        Shared {
            config,
            queue,
            slots,
            threads_per_worker,
            next_id: AtomicU64::new(0),
            idle: AtomicUsize::new(0),
            idle_warm: AtomicUsize::new(0),
            broken: OnceLock::new(),
            threads: Mutex::new(Vec::new()),
            stopped: Mutex::new(false),
            stopped_cv: parking_lot::Condvar::new(),
            observe,
            cluster: OnceLock::new(),
        }
    }

    /// Marks the executor broken (see `broken`) and fails everything queued.
    pub(crate) fn set_broken(&self, message: String) {
        let _ = self.broken.set(message.clone());
        self.queue.drain(|env| env.completion.fail(ErrorKind::Spawn { message: message.clone() }));
    }

    /// Ctrl-C number `epoch`: fail what was queued before it, kill busy worker processes (their
    /// tasks from before it fail as interrupted). Work submitted since stays queued. A slot
    /// whose worker is still starting has no process to kill: its feeder sees the epoch once
    /// the start is over and fails the task then.
    #[cfg(feature = "ctrlc")]
    fn interrupt(&self, epoch: u64) {
        let mut newer = Vec::new();
        self.queue.drain(|env| {
            if env.epoch < epoch {
                env.completion.fail(ErrorKind::Interrupted);
            } else {
                newer.push(env);
            }
        });
        self.queue.inject_many(newer);
        for slot in self.slots.iter() {
            let pid = slot.pid.load(Ordering::SeqCst);
            if pid != 0 && slot.inflight.load(Ordering::SeqCst) > 0 {
                slot.interrupt.store(epoch, Ordering::SeqCst);
                crate::sys::kill(pid);
            }
        }
    }

    /// Kills every worker process at once and reaps it (the process is about to exit: nobody
    /// else would reap them, and PID 1 is not always a good reaper).
    fn kill_all(&self) {
        let pids: Vec<u32> = self.slots.iter().map(|s| s.pid.load(Ordering::SeqCst)).filter(|&p| p != 0).collect();
        for &pid in &pids {
            crate::sys::kill(pid);
            crate::sys::kill_group(pid);
        }
        for pid in pids {
            // Our own children are reaped here; the fork server reaps its own when it stops.
            crate::sys::reap(pid);
        }
    }

    pub(crate) fn close(&self) {
        self.queue.terminate();
    }

    /// Encodes and queues one `TASK` frame of `count` arguments.
    pub(crate) fn submit_encoded(
        &self,
        name: &'static str,
        entry: Option<task::Entry>,
        count: u32,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
        notify: Option<Notify>,
    ) -> Arc<Completion> {
        self.submit_timed(name, entry, count, encode, notify, None)
    }

    /// [`submit_encoded`](Shared::submit_encoded) with a run-time limit of the task's own.
    pub(crate) fn submit_timed(
        &self,
        name: &'static str,
        entry: Option<task::Entry>,
        count: u32,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
        notify: Option<Notify>,
        timeout: Option<Duration>,
    ) -> Arc<Completion> {
        let completion = Completion::new(name, count, notify);
        let Some(entry) = entry else {
            completion.fail(ErrorKind::NotRegistered);
            return completion;
        };
        if let Some(message) = self.broken.get().cloned() {
            completion.fail(ErrorKind::Spawn { message });
            return completion;
        }
        if self.queue.is_terminating() {
            completion.fail(ErrorKind::ShutDown);
            return completion;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut frame = Vec::with_capacity(64);
        let start = wire::task_header(&mut frame, id, entry.key, count);
        // Over a remote link (TCP) no descriptor can travel: every buffer goes inline.
        let out_of_band = self.config.launcher.is_local();
        let ((encoded, segments), keep) =
            crate::oob::keeping(|| crate::oob::encoding(out_of_band, || encode(&mut frame)));
        if let Err(message) = encoded {
            completion.fail(ErrorKind::Codec { stage: "encoding the argument", message });
            return completion;
        }
        if let Err(e) = wire::end_frame_fds(&mut frame, start, segments.len()) {
            let message = format!(
                "{}; put large data in `workpool::Bytes` fields, which travel in shared memory outside the frame",
                e.0
            );
            completion.fail(ErrorKind::Codec { stage: "framing the argument", message });
            return completion;
        }
        let epoch = crate::interrupt::epoch();
        self.queue.inject(Envelope { id, frame, segments, keep, completion: completion.clone(), epoch, timeout });
        completion
    }
}

// ===== every executor of this process =====

/// Every executor built in this process (dropped ones are pruned on registration).
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Adds an executor to the process-wide list (for Ctrl-C and for the exit hook).
pub(crate) fn register(shared: &Arc<Shared>) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| crate::sys::at_exit(stop_all_workers));
    let mut all = LIVE.lock();
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(shared));
}

/// Interrupts every live executor (Ctrl-C, see `ctrl_c.rs`): queued tasks fail, busy worker
/// processes are killed, the executors stay usable.
#[cfg(feature = "ctrlc")]
pub(crate) fn interrupt_all(epoch: u64) {
    let live: Vec<Arc<Shared>> = LIVE.lock().iter().filter_map(Weak::upgrade).collect();
    for shared in live {
        shared.interrupt(epoch);
    }
}

/// At exit: kill and reap the worker processes of every executor still alive (the reusable one
/// lives in a static and is never dropped). Their feeders would not outlive this process anyway.
extern "C" fn stop_all_workers() {
    // `try_lock`: never block process exit on a lock some other thread might hold.
    let Some(all) = LIVE.try_lock() else { return };
    let live: Vec<_> = all.iter().filter_map(Weak::upgrade).collect();
    drop(all);
    for shared in live {
        shared.kill_all();
    }
    crate::process::forkserver::stop();
}

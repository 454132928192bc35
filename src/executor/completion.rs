//! Where one task's outcome lands: a small state machine behind a mutex.
//!
//! ```text
//!   Queued ──dispatch──▶ Sent ──STARTED──▶ (still Sent) ──DONE──▶ Done ──wait_take──▶ Taken
//!     │                   │  │
//!     └─cancel──▶ Done    │  └─worker died before STARTED, or taken back──▶ Queued (rescheduled)
//!                         └─kill, or cancel answered by the feeder──▶ Done (Cancelled)
//! ```
//!
//! `cancel` settles a `Queued` task itself. For a `Sent` one (written, or about to be written,
//! to a worker) it asks the slot's feeder, through the slot's doorbell (`doorbell.rs`) and the
//! `route`: the feeder takes it back through the claim ring if the worker has not claimed it,
//! and answers. `kill` settles a `Queued` or `Sent` task at once and raises `killed`, which
//! that feeder acts on when its doorbell rings: it takes the task back from the worker's window
//! or, when it already runs, kills that worker. A task not yet routed to a worker (its feeder
//! still starting one) is settled under the route lock, which `route_to` also takes: it is then
//! never written.
//!
//! Async callers: a poll that finds no outcome leaves its [`Waker`] here; every transition to
//! `Done` wakes it (and the condvar of blocking joiners).

use super::doorbell::Doorbell;
use crate::error::{ErrorKind, TaskError};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

/// The encoded output(s) of a task, or what went wrong.
pub(crate) type Outcome = Result<crate::bytes::Encoded, TaskError>;

/// Who to tell, and with which tag, when an outcome lands (unordered iteration over many
/// completions: `Parallel`).
pub(crate) struct Notify {
    pub(crate) sender: Announce,
    pub(crate) tag: usize,
}

/// Where finished batches announce their tag: a channel for a consumer that blocks, and the
/// waker of one that polls (a `ParallelIter` used as a `Stream`).
///
/// No lost wake-up: [`send`](Announce::send) queues the tag, then takes the waker; a poller
/// registers its waker, then looks at the channel. Both steps of each side are ordered by the
/// waker's mutex, so a tag sent after the poller looked finds the waker, and one sent before
/// is in the channel when it looks.
#[derive(Clone)]
pub(crate) struct Announce {
    sender: Sender<usize>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Announce {
    /// A channel and its announcer.
    pub(crate) fn channel() -> (Announce, std::sync::mpsc::Receiver<usize>) {
        let (sender, receiver) = std::sync::mpsc::channel();
        (Announce { sender, waker: Arc::new(Mutex::new(None)) }, receiver)
    }

    /// Announces `tag` (a batch that finished) and wakes the poller, if one waits.
    pub(crate) fn send(&self, tag: usize) {
        let _ = self.sender.send(tag);
        if let Some(waker) = self.waker.lock().take() {
            waker.wake();
        }
    }

    /// The poller's side: wake `waker` on the next announcement (call before looking).
    pub(crate) fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// Which feeder has the task (its doorbell), and whether it was killed there.
struct Route {
    doorbell: Option<Arc<Doorbell>>,
    killed: bool,
    /// `cancel` asks the feeder to take the task back from the worker's window; the feeder
    /// answers here (true: taken back and settled as cancelled; false: it had started).
    answer: Option<bool>,
}

enum State {
    Queued,
    Sent,
    Done(Outcome),
    Taken,
}

/// Where one task's outcome lands. Shared by the submitting side (its handle), the feeder that
/// dispatches it, and whoever cancels or interrupts it; every transition is under `state`.
pub(crate) struct Completion {
    state: Mutex<State>,
    condvar: Condvar,
    /// The task's type name (for errors).
    task: &'static str,
    /// Tasks in it: 1, or a `Parallel` batch's size (for the timeline).
    count: u32,
    notify: Option<Notify>,
    /// Run time the worker reported, in ns; written by the feeder before it completes the task,
    /// read by the batch's owner after.
    elapsed_ns: AtomicU64,
    /// The waker of the last poll that found no outcome (written under `state`'s lock by the
    /// polling task, taken by whoever stores the outcome).
    waker: Mutex<Option<Waker>>,
    /// Where the task was written, and whether `kill` settled it while it was there.
    route: Mutex<Route>,
    /// Notified when the feeder answers a `cancel` (`route.answer`).
    route_answered: Condvar,
    /// `route.killed`, readable without the lock (set under it, SeqCst; read by the feeder).
    killed: AtomicBool,
    /// Raised by `cancel` of a task written to a worker, until the feeder answers (SeqCst).
    cancel_requested: AtomicBool,
    /// The pid of the worker process the task was written to (0: none yet, or taken back);
    /// written by the feeder, read by `TaskHandle::pid`.
    pid: AtomicU32,
}

impl Completion {
    pub(crate) fn new(task: &'static str, count: u32, notify: Option<Notify>) -> Arc<Self> {
        Arc::new(Completion {
            state: Mutex::new(State::Queued),
            condvar: Condvar::new(),
            task,
            count,
            notify,
            elapsed_ns: AtomicU64::new(0),
            waker: Mutex::new(None),
            route: Mutex::new(Route { doorbell: None, killed: false, answer: None }),
            route_answered: Condvar::new(),
            killed: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            pid: AtomicU32::new(0),
        })
    }

    /// The task's type name.
    pub(crate) fn task(&self) -> &'static str {
        self.task
    }

    /// Tasks in it (a batch's size; 1 for one task).
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Records the run time the worker reported (before completing).
    pub(crate) fn set_elapsed(&self, ns: u64) {
        self.elapsed_ns.store(ns, Ordering::Relaxed);
    }

    /// The run time the worker reported, in ns.
    pub(crate) fn elapsed_ns(&self) -> u64 {
        self.elapsed_ns.load(Ordering::Relaxed)
    }

    /// Queued → Sent; false when the task is no longer queued (cancelled or done).
    pub(crate) fn dispatch(&self) -> bool {
        let mut state = self.state.lock();
        if matches!(*state, State::Queued) {
            *state = State::Sent;
            true
        } else {
            false
        }
    }

    /// Sent → Queued, for a task a dead worker never started.
    pub(crate) fn requeue(&self) {
        let mut state = self.state.lock();
        self.pid.store(0, Ordering::SeqCst);
        if matches!(*state, State::Sent) {
            *state = State::Queued;
        }
    }

    /// The feeder is about to write the task to worker `pid`, whose feeder `doorbell` wakes;
    /// false when the task was killed meanwhile (then it must not be written). Under the route
    /// lock, against `kill`: either this sees `killed`, or `kill` sees the doorbell and rings it.
    pub(crate) fn route_to(&self, pid: u32, doorbell: &Arc<Doorbell>) -> bool {
        let mut route = self.route.lock();
        if route.killed {
            return false;
        }
        route.doorbell = Some(doorbell.clone());
        self.pid.store(pid, Ordering::SeqCst);
        true
    }

    /// The worker process the task was written to (running it, about to, or done with it).
    pub(crate) fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|&p| p != 0)
    }

    /// True once `kill` settled this task while it was with a worker: the feeder takes it back
    /// or kills that worker.
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Stores the outcome unless one is already there.
    pub(crate) fn complete(&self, outcome: Outcome) {
        let mut state = self.state.lock();
        if matches!(*state, State::Done(_) | State::Taken) {
            return;
        }
        *state = State::Done(outcome);
        drop(state);
        self.announce();
    }

    /// Wakes joiners, the awaiting task and the unordered iterator, once an outcome was stored.
    fn announce(&self) {
        self.condvar.notify_all();
        if let Some(waker) = self.waker.lock().take() {
            waker.wake();
        }
        if let Some(notify) = &self.notify {
            notify.sender.send(notify.tag);
        }
    }

    /// Fails the task with `kind`.
    pub(crate) fn fail(&self, kind: ErrorKind) {
        self.complete(Err(TaskError::new(kind, self.task)));
    }

    /// Cancels the task unless it started: queued, or written ahead to a worker that has not
    /// taken it (then its feeder takes it back through the claim ring and answers; this waits
    /// for that answer, which comes within one round of the feeder's loop).
    pub(crate) fn cancel_unstarted(&self) -> bool {
        loop {
            let sent = match *self.state.lock() {
                State::Queued => false,
                State::Sent => true,
                State::Done(_) | State::Taken => return false,
            };
            if !sent && self.cancel() {
                return true;
            }
            if sent {
                if let Some(answer) = self.ask_feeder_to_cancel() {
                    return answer;
                }
            }
            // It moved on meanwhile (went back to the queue, or was dispatched): look again.
        }
    }

    /// The `Sent` half of [`cancel_unstarted`](Completion::cancel_unstarted); `None` when the
    /// task is no longer sent (taken back, queued again): try again.
    fn ask_feeder_to_cancel(&self) -> Option<bool> {
        let mut route = self.route.lock();
        let Some(doorbell) = route.doorbell.clone() else {
            // Not routed: its frame is not written, and under this lock `route_to` sees `killed`.
            route.killed = true;
            self.killed.store(true, Ordering::SeqCst);
            drop(route);
            return Some(self.settle_cancelled());
        };
        route.answer = None;
        self.cancel_requested.store(true, Ordering::SeqCst);
        doorbell.ring();
        loop {
            if let Some(answer) = route.answer.take() {
                return Some(answer);
            }
            // A short wait, then a look at the state: a feeder whose worker died requeues the
            // task instead of answering.
            self.route_answered.wait_for(&mut route, std::time::Duration::from_millis(1));
            let sent = matches!(*self.state.lock(), State::Sent);
            if route.answer.is_none() && !sent {
                // Under the route lock the feeder cannot be halfway through an answer.
                self.cancel_requested.store(false, Ordering::SeqCst);
                return None;
            }
            if route.answer.is_none() {
                // Taken back and written to a worker again within the wait: the request stands,
                // and its (perhaps new) feeder hears of it.
                if let Some(doorbell) = &route.doorbell {
                    doorbell.ring();
                }
            }
        }
    }

    /// True while a `cancel` waits for the feeder to take this task back.
    pub(crate) fn is_cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }

    /// The feeder's answer to `cancel`: `taken_back` true when the worker will never run the
    /// task (then it is settled as cancelled here), false when it had started.
    pub(crate) fn answer_cancel(&self, taken_back: bool) {
        // The route lock first (as `ask_feeder_to_cancel` holds it while it looks at `state`).
        let mut route = self.route.lock();
        let answer = taken_back && self.settle_cancelled();
        self.cancel_requested.store(false, Ordering::SeqCst);
        route.answer = Some(answer);
        self.route_answered.notify_all();
    }

    /// Sent → Done(Cancelled); true when it was sent.
    fn settle_cancelled(&self) -> bool {
        let mut state = self.state.lock();
        if !matches!(*state, State::Sent) {
            return false;
        }
        *state = State::Done(Err(TaskError::new(ErrorKind::Cancelled, self.task)));
        drop(state);
        self.announce();
        true
    }

    /// Queued → Done(Cancelled); true when it was still queued.
    pub(crate) fn cancel(&self) -> bool {
        let mut state = self.state.lock();
        if !matches!(*state, State::Queued) {
            return false;
        }
        *state = State::Done(Err(TaskError::new(ErrorKind::Cancelled, self.task)));
        drop(state);
        self.announce();
        true
    }

    /// Queued or Sent → Done(Cancelled); true when it was not finished yet. For a sent task it
    /// raises `killed` (the caller then wakes the feeder that has it).
    pub(crate) fn kill(&self) -> bool {
        let mut state = self.state.lock();
        let sent = match *state {
            State::Queued => false,
            State::Sent => true,
            State::Done(_) | State::Taken => return false,
        };
        *state = State::Done(Err(TaskError::killed(self.task)));
        drop(state);
        if sent {
            let mut route = self.route.lock();
            route.killed = true;
            self.killed.store(true, Ordering::SeqCst);
            if let Some(doorbell) = route.doorbell.take() {
                doorbell.ring();
            }
        }
        self.announce();
        true
    }

    /// Takes the outcome if it is in; otherwise leaves `waker` to be woken when it lands.
    pub(crate) fn poll_take(&self, waker: &Waker) -> Poll<Outcome> {
        let mut state = self.state.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(outcome) => Poll::Ready(outcome),
            State::Taken => panic!("a task's outcome was taken twice (a TaskHandle polled after it completed)"),
            other => {
                *state = other;
                // Under `state`'s lock: an outcome stored after this point finds the waker.
                let mut slot = self.waker.lock();
                if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *slot = Some(waker.clone());
                }
                Poll::Pending
            }
        }
    }

    /// Leaves `waker` to be woken when the outcome lands; true (and nothing left) when it is in
    /// already.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        let state = self.state.lock();
        if matches!(*state, State::Done(_) | State::Taken) {
            return true;
        }
        *self.waker.lock() = Some(waker.clone());
        false
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.state.lock(), State::Done(_) | State::Taken)
    }

    /// Blocks until done (or `deadline`), then takes the outcome.
    pub(crate) fn wait_take(&self, deadline: Option<Instant>) -> Option<Outcome> {
        let _waiting = crate::interrupt::Waiting::enter();
        let mut wait = crate::observe::Wait::new(self.task);
        let mut state = self.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(outcome) => return Some(outcome),
                State::Taken => panic!("a task's outcome was taken twice"),
                other => *state = other,
            }
            wait.blocks();
            match deadline {
                None => self.condvar.wait(&mut state),
                Some(deadline) => {
                    if self.condvar.wait_until(&mut state, deadline).timed_out() && !matches!(*state, State::Done(_)) {
                        return None;
                    }
                }
            }
        }
    }
}

//! The work-stealing scheduler shared by the thread pool and the process executor.
//!
//! A [`Shared`] holds one [`Injector`] for work that comes from outside (any thread), one
//! [`Stealer`] per thread, one **mailbox** per thread (an injector only that thread takes from:
//! a job that must run on that very thread, such as one part of a thread pool's `broadcast`), and
//! the [`Sleep`] state. Each scheduler thread owns a [`Queue`]: its own deque (LIFO for the thread
//! pool, where `join` wants its latest job back first; FIFO for the process executor, where tasks
//! should start in the order they were submitted).
//!
//! The job type `J` is any `Send` value: the thread pool schedules type-erased stack or heap
//! jobs (`thread_pool::job::JobRef`), the process executor schedules encoded task envelopes.
//!
//! # Finding work
//!
//! `Queue::find_work`: pop the local deque; else take from this thread's mailbox; else steal
//! from the other threads, starting at a
//! random victim (xorshift per thread, so two idle threads do not hammer the same victim in
//! lockstep); else move a batch from the injector into the local deque and pop one. A
//! `Steal::Retry` from any source repeats the whole search once the remaining sources were tried
//! (so after a lost race on a peer, the injector may be served first: no job is lost or run
//! twice, only the order bends). This is rayon's order ("finish what we started")
//! rather than crossbeam-deque's documented `find_task` (injector before peers): an empty
//! `Injector::steal_batch_and_pop` still issues a `SeqCst` fence, and thieves in fork-join work
//! look for work constantly. Measured with the in-crate thread-pool bench of the time, same run, 11 runs each
//! (machine loaded by other jobs): injector-first 1.40× rayon's fib(30) time, peers-first 1.32×;
//! tiny scope spawns 1.00× → 1.22× rayon's rate.
//!
//! # Waiting
//!
//! `Queue::wait` searches, spins a bounded number of rounds, then goes through the sleep protocol
//! of [`sleep`] (read its docs for why no wake-up is lost). Every push announces itself and wakes a
//! sleeper only when one exists: a push onto the injector, or a fire-and-forget job onto the
//! caller's own deque, through [`Sleep::new_jobs`] (with the `SeqCst` fence that makes sure no
//! sleeper misses it); a job the caller will wait for, onto its own deque, through
//! [`Sleep::new_local_jobs`] (no fence: its owner runs it if nobody else does); a job put in a
//! thread's mailbox through a targeted [`Sleep::wake_thread`] of that thread.
//!
//! # Termination
//!
//! `Shared::terminate` sets a flag and wakes everyone. A thread's `wait` reports
//! [`Wait::Terminated`] only when it finds no work at all, so queued jobs drain first.

pub(crate) mod sleep;

use crate::rng::XorShift;
use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use sleep::{Sleep, Slept, SPIN_ROUNDS};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The state every thread of one scheduler shares.
pub(crate) struct Shared<J> {
    injector: Injector<J>,
    stealers: Box<[Stealer<J>]>,
    /// One per thread: pushed by any thread ([`Shared::send_to`]), taken only by its owner.
    mailboxes: Box<[Injector<J>]>,
    pub(crate) sleep: Sleep,
    /// Set once by `terminate` (SeqCst, then every thread is woken); read by idle threads.
    terminating: AtomicBool,
}

/// One thread's end of the scheduler: its own deque plus a handle on the shared state.
/// Owned by exactly one thread (the deque is `!Sync`).
pub(crate) struct Queue<J> {
    index: usize,
    deque: Worker<J>,
    /// Picks the first victim of each steal round.
    rng: Cell<XorShift>,
    shared: Arc<Shared<J>>,
}

/// Which end of its own deque a thread pops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Newest first: fork-join (`join` gets its own job back first).
    Lifo,
    /// Oldest first: independent tasks start in submission order.
    Fifo,
}

/// What [`Queue::wait`] came back with.
#[derive(Debug)]
pub(crate) enum Wait<J> {
    /// A job to run.
    Job(J),
    /// The caller's condition became true.
    Ready,
    /// The deadline passed with no work.
    TimedOut,
    /// The scheduler is terminating and no work is left.
    Terminated,
}

impl<J: Send> Shared<J> {
    /// A scheduler for `n` threads, and the queue each of them will own.
    pub(crate) fn new(n: usize, order: Order) -> (Arc<Self>, Vec<Queue<J>>) {
        assert!(n > 0, "a scheduler needs at least one thread");
        let deques: Vec<Worker<J>> = (0..n)
            .map(|_| match order {
                Order::Lifo => Worker::new_lifo(),
                Order::Fifo => Worker::new_fifo(),
            })
            .collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            mailboxes: (0..n).map(|_| Injector::new()).collect(),
            sleep: Sleep::new(n),
            terminating: AtomicBool::new(false),
        });
        let queues = deques
            .into_iter()
            .enumerate()
            .map(|(index, deque)| Queue {
                index,
                deque,
                rng: Cell::new(XorShift::new(index as u64)),
                shared: shared.clone(),
            })
            .collect();
        (shared, queues)
    }

    /// Number of threads.
    #[inline]
    pub(crate) fn threads(&self) -> usize {
        self.stealers.len()
    }

    /// True when no job is queued anywhere (a snapshot).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn is_empty(&self) -> bool {
        self.injector.is_empty()
            && self.stealers.iter().all(Stealer::is_empty)
            && self.mailboxes.iter().all(Injector::is_empty)
    }

    /// Queues a job from any thread.
    #[inline]
    pub(crate) fn inject(&self, job: J) {
        self.injector.push(job);
        self.sleep.new_jobs(1);
    }

    /// Queues several jobs from any thread, waking as many sleepers as there are jobs.
    pub(crate) fn inject_many(&self, jobs: impl IntoIterator<Item = J>) {
        let mut count = 0;
        for job in jobs {
            self.injector.push(job);
            count += 1;
        }
        if count > 0 {
            self.sleep.new_jobs(count);
        }
    }

    /// Queues a job that only thread `index` will take (it looks in its mailbox right after its
    /// own deque), and wakes that thread if it sleeps.
    pub(crate) fn send_to(&self, index: usize, job: J) {
        self.mailboxes[index].push(job);
        self.sleep.wake_thread(index);
    }

    /// Removes every queued job (injector, mailboxes and all deques) and hands each to `f`.
    /// Jobs a thread has already popped are not affected.
    pub(crate) fn drain(&self, mut f: impl FnMut(J)) {
        loop {
            let mut retry = false;
            let injectors = std::iter::once(&self.injector).chain(self.mailboxes.iter());
            let sources = injectors.map(Ok).chain(self.stealers.iter().map(Err));
            for source in sources {
                loop {
                    let steal = match source {
                        Ok(injector) => injector.steal(),
                        Err(stealer) => stealer.steal(),
                    };
                    match steal {
                        Steal::Success(job) => f(job),
                        Steal::Empty => break,
                        Steal::Retry => {
                            retry = true;
                            break;
                        }
                    }
                }
            }
            if !retry {
                return;
            }
        }
    }

    /// Starts termination: idle threads leave once no work is left.
    pub(crate) fn terminate(&self) {
        self.terminating.store(true, Ordering::SeqCst);
        self.sleep.wake_all();
    }

    pub(crate) fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::SeqCst)
    }
}

impl<J: Send> Queue<J> {
    /// This thread's index in `0..threads`.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Pushes onto this thread's own deque (stealable by the others), for a job this thread will
    /// wait for through the scheduler (`join`'s second half, a scope's spawns): announced
    /// without a fence, because this thread runs the job itself if nobody else does (see
    /// "Why a local job is never stranded" in [`sleep`]).
    #[inline]
    pub(crate) fn push(&self, job: J) {
        self.deque.push(job);
        self.shared.sleep.new_local_jobs(1);
    }

    /// Pushes onto this thread's own deque a job it will **not** wait for through the scheduler
    /// (a fire-and-forget spawn: the thread may go on to block on something else). Announced
    /// with the fence, like an injected job, so no sleeping thread misses it.
    #[inline]
    pub(crate) fn push_detached(&self, job: J) {
        self.deque.push(job);
        self.shared.sleep.new_jobs(1);
    }

    /// Jobs in this thread's own deque (a snapshot).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn local_len(&self) -> usize {
        self.deque.len()
    }

    /// Moves every job of this thread's own deque to the injector and wakes sleepers for them:
    /// for a thread that will not run them soon (a feeder whose window is full). Jobs that
    /// `find_work` moved here in a batch would otherwise wait for this thread, or for a thief
    /// that nobody woke.
    pub(crate) fn spill(&self) {
        if self.deque.is_empty() {
            return;
        }
        self.shared.inject_many(std::iter::from_fn(|| self.deque.pop()));
    }

    /// Pops this thread's own deque only.
    #[inline]
    pub(crate) fn pop(&self) -> Option<J> {
        self.deque.pop()
    }

    /// One full search: local deque, then this thread's mailbox, then the other threads from a
    /// random start, then the injector (see the module docs for why peers come first).
    pub(crate) fn find_work(&self) -> Option<J> {
        if let Some(job) = self.deque.pop() {
            return Some(job);
        }
        if let Some(job) = self.take_mail() {
            return Some(job);
        }
        loop {
            let mut retry = false;
            let n = self.shared.stealers.len();
            if n > 1 {
                let start = self.next_random() as usize % n;
                for k in 0..n {
                    let victim = (start + k) % n;
                    if victim == self.index {
                        continue;
                    }
                    match self.shared.stealers[victim].steal() {
                        Steal::Success(job) => return Some(job),
                        Steal::Retry => retry = true,
                        Steal::Empty => {}
                    }
                }
            }
            match self.shared.injector.steal_batch_and_pop(&self.deque) {
                Steal::Success(job) => return Some(job),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            if !retry {
                return None;
            }
        }
    }

    /// Waits for a job, for `ready()` to hold, for `deadline`, or (when `until_terminated`)
    /// for termination with nothing left to do — whichever comes first. Work found is always
    /// returned before any of the others is reported.
    pub(crate) fn wait(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>, until_terminated: bool) -> Wait<J> {
        let done = || {
            if ready() {
                Some(Wait::Ready)
            } else if until_terminated && self.shared.is_terminating() {
                Some(Wait::Terminated)
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                Some(Wait::TimedOut)
            } else {
                None
            }
        };
        let mut round = 0;
        loop {
            if let Some(job) = self.find_work() {
                return Wait::Job(job);
            }
            if let Some(outcome) = done() {
                return outcome;
            }
            if round < SPIN_ROUNDS {
                Sleep::idle_round(round);
                round += 1;
                continue;
            }
            let sleepy = self.shared.sleep.get_sleepy();
            if let Some(job) = self.find_work() {
                return Wait::Job(job);
            }
            let stop = || ready() || self.has_mail() || (until_terminated && self.shared.is_terminating());
            match self.shared.sleep.sleep(self.index, sleepy, &stop, deadline) {
                Slept::Woken | Slept::Aborted => round = SPIN_ROUNDS / 2,
                Slept::TimedOut => {}
            }
        }
    }

    /// A job from this thread's mailbox, if any.
    #[inline]
    fn take_mail(&self) -> Option<J> {
        if !self.has_mail() {
            return None; // two loads of a line that is written only when mail arrives
        }
        loop {
            match self.shared.mailboxes[self.index].steal() {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    #[inline]
    fn has_mail(&self) -> bool {
        !self.shared.mailboxes[self.index].is_empty()
    }

    /// Cheap, and good enough to spread victim choices; seeded per thread, so two idle
    /// threads do not hammer the same victim in lockstep.
    fn next_random(&self) -> u64 {
        let mut rng = self.rng.get();
        let x = rng.next_u64();
        self.rng.set(rng);
        x
    }
}

#[cfg(test)]
mod tests;

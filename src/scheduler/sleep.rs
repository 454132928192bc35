//! The sleep/wake protocol: idle threads block instead of spinning, no injected job or targeted
//! wake-up is ever missed, and no job is ever stranded.
//!
//! # State
//!
//! One `AtomicU64`, `state`, shared by every thread:
//!
//! ```text
//!   bits 63..32  jobs event counter (JEC)     bits 31..0  number of sleeping threads
//! ```
//!
//! An **odd** JEC means "some thread is getting sleepy and has not seen new work since"; an
//! **even** JEC means "nobody is getting sleepy, or new work was announced after they did".
//! Each thread also has a `blocked` flag behind its own mutex, and a condition variable.
//!
//! # A thread going to sleep (`get_sleepy`, then `sleep`)
//!
//! 1. After a bounded number of fruitless search rounds the thread calls `get_sleepy`: if the
//!    JEC is even it increments it to odd (an RMW on `state`), then issues a `SeqCst` fence `F_W`
//!    and remembers the odd value `E`.
//! 2. It searches every queue once more. Work found: it runs it (its sleepiness simply lapses).
//! 3. It locks its own mutex, raises its `awake → blocked` flag `is_blocked` (a `SeqCst` store),
//!    and, with one compare-exchange on `state`, increments the sleeper count **only if the JEC
//!    is still `E`**. If the JEC moved, new work was announced since step 1: it lowers the flag,
//!    unlocks and searches again.
//! 4. It sets `blocked`, issues a `SeqCst` fence `F_C`, checks its wake-up condition one last
//!    time (a latch, its mailbox, termination: whatever targeted wake-ups announce), and waits
//!    on its condition variable until `blocked` is cleared (or its deadline passes, in which
//!    case it clears `blocked` and decrements the count itself).
//!
//! # Announcing work
//!
//! * **Injected work** (`new_jobs`: the injector, a job pushed by a thread that does not own the
//!   queue): after the push, the producer issues a `SeqCst` fence `F_P` and loads `state`. If the
//!   JEC is odd it bumps it to even (compare-exchange loop). If the value it finally observed
//!   counts any sleeper, it wakes one: it looks at the threads' `is_blocked` flags and, for a
//!   raised one, locks that thread's mutex; if `blocked` is set it clears it, decrements the
//!   count and notifies.
//! * **Local work** (`new_local_jobs`: a thread pushed onto its own deque a job it will wait for
//!   through the scheduler): the same, **without the fence**. This is the push of every `join`
//!   and of every scope spawn made on a pool thread, and the fence was most of its cost. In the
//!   common busy case (JEC even, nobody asleep) a local push costs one load of `state`: no fence,
//!   no read-modify-write, no lock. A fire-and-forget job a thread pushes onto its own deque
//!   (`ThreadPool::spawn` from a pool thread) is announced as injected work instead, with the
//!   fence: its pusher may go on to block elsewhere.
//! * **Targeted wake-ups** (`wake_thread`: a latch was set, a job was put in that thread's
//!   mailbox, termination): the caller stores its flag or job, then `wake_thread` issues a
//!   `SeqCst` fence `F_T` and loads the thread's `is_blocked`; only if it is raised does it take
//!   that thread's mutex and clear `blocked`.
//!
//! # Why no injected job is missed
//!
//! Take an injecting push `P` (store to a queue; `F_P`; load of `state`) and a thread `W` that
//! goes to sleep (RMW of `state` in step 1; `F_W`; searches in step 2; registering CAS in step 3).
//! `F_P` and `F_W` are ordered in the single total order of `SeqCst` fences:
//!
//! * If `F_P` comes first, `W`'s search in step 2 (after `F_W`) sees the pushed job (a store
//!   before one fence is visible to loads after a later one). `W` runs it instead of sleeping.
//! * If `F_W` comes first, `P`'s load of `state` (after `F_P`) sees `W`'s step-1 RMW or a later
//!   value. If the JEC it sees is odd it bumps it, so `W`'s step-3 CAS (which demands the JEC
//!   be exactly `E`) fails and `W` searches again — unless that CAS came first, in which case
//!   the value `P`'s bump operates on counts `W` as a sleeper and `P` wakes a sleeper. If the
//!   JEC `P` sees is already even, someone bumped it after `W`'s step 1, and `W`'s step-3 CAS
//!   fails the same way.
//! * Waking "a" sleeper rather than `W` itself is enough: whoever is woken searches all queues.
//! * A waker that read a sleeper count including `W` also sees `W`'s `is_blocked` raised: `W`
//!   raised it before its registering CAS (release), which the waker's load of `state` read
//!   (acquire) before it loaded `is_blocked`. It then locks `W`'s mutex, which `W` holds until
//!   it waits, so it finds `blocked` set.
//! * `blocked` is only set and cleared under the thread's mutex, and the thread checks it
//!   under that mutex before waiting, so a notification cannot fall between check and wait.
//!
//! # Why a local job is never stranded
//!
//! Without `F_P`, the store-buffering argument above fails: a local push and a thread going to
//! sleep can miss each other (the pusher's load of `state` reads the old, even JEC while its
//! store to the deque is not yet visible to `W`'s final search). `W` then sleeps although a job
//! exists. That job is never lost: it is in the deque of the thread that pushed it, that thread
//! is awake (it just pushed), it waits for the job through the scheduler, and a thread takes
//! jobs from its own deque before anything else and never gets sleepy while its deque holds any
//! (`Queue::find_work` pops it first, and every wait starts with a search). The job runs, on its
//! owner; what is lost is parallelism, until the next announcement (local or injected) reads
//! `state` after `W` registered and wakes it. Rayon makes the same trade, for every push onto a
//! thread's own deque ("no fence is needed for work posted to internal queues, since it is ok to
//! overlook work in that case", rayon-core's `sleep/README.md`). What this does not cover is
//! user code that, inside a `join` half or a scope, blocks outside the pool (on a channel, a
//! mutex) until a job it queued itself has run: that job may then wait for the next
//! announcement. Fire-and-forget spawns, whose spawner is expected to do such things, keep the
//! fence for that reason.
//!
//! # Why no targeted wake-up is missed
//!
//! The setter `S` stores its flag, then (in `wake_thread`) `F_T`, then loads `is_blocked`; the
//! sleeper `W` stores `is_blocked` (step 3), then `F_C`, then loads the flag (step 4). If `F_T`
//! comes first in the fence order, `W`'s check after `F_C` sees the flag and `W` does not wait.
//! If `F_C` comes first, `S`'s load after `F_T` sees `is_blocked` raised (or lowered again by
//! `W` itself, which is then awake), and `S` takes the mutex, which `W` holds until it waits, and
//! clears `blocked`. A setter that sees the flag lowered skips the mutex entirely: a latch set
//! while its owner is awake costs no lock (rayon's latches make the same saving). Nothing here
//! needs the setter to belong to this scheduler: a thread of another pool setting the latch of a
//! thread that waits on it across pools is covered by the same argument (the latch keeps the
//! waiter's registry alive for the call, see `thread_pool::latch`).
//!
//! The JEC is 32 bits: a thread that got sleepy at `E` and was descheduled while exactly 2³¹
//! events passed would wrongly register. Like rayon-core, we accept that as impossible in
//! practice.
//!
//! # Bounded spinning
//!
//! Before step 1 a thread spins briefly (see [`SPIN_ROUNDS`]): a few rounds of exponential
//! `spin_loop` hints, then a few `yield_now`s, about 10–20 µs in all. rayon's 32 rounds of
//! `yield_now` made mostly-idle pools burn whole cores (rayon issue 642); an idle pool here
//! costs nothing once its threads are blocked.
//!
//! # Checked by
//!
//! `loom_tests.rs` explores every interleaving (up to a preemption bound) of each of the three
//! kinds of announcement against sleepers, with relaxed or acquire/release accesses to the
//! stand-in queues and flags, so that only the fences above order them.

use crate::sync::{fence, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};
use crossbeam_utils::CachePadded;
use std::time::Instant;

/// Search rounds before a thread gets sleepy: the first [`SPIN_ONLY`] spin, the rest yield.
pub(crate) const SPIN_ROUNDS: u32 = 10;
/// Rounds that only spin (2^round `spin_loop` hints each) before yielding starts.
pub(crate) const SPIN_ONLY: u32 = 7;

const JEC_ONE: u64 = 1 << 32;
const SLEEPERS_MASK: u64 = JEC_ONE - 1;

fn jec(state: u64) -> u32 {
    (state >> 32) as u32
}

fn sleepers(state: u64) -> u64 {
    state & SLEEPERS_MASK
}

/// What a call to [`Sleep::sleep`] ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Slept {
    /// Another thread cleared `blocked`: new work, a latch, or termination.
    Woken,
    /// New work was announced or the wake-up condition held before blocking: search again.
    Aborted,
    /// The deadline passed while blocked.
    TimedOut,
}

struct ThreadSleep {
    /// Set by the thread itself just before it blocks; cleared by whoever wakes it (or by the
    /// thread on a timeout). Only touched under this mutex.
    blocked: Mutex<bool>,
    /// Raised (SeqCst, under the mutex) before the thread registers as a sleeper; lowered
    /// (SeqCst, under the mutex) whenever `blocked` is cleared or the thread gives up sleeping.
    /// Read without the lock by wakers, which skip threads whose flag is down.
    is_blocked: AtomicBool,
    /// A hint set by the thread itself (Relaxed): it holds something costly to recreate (a
    /// feeder with a live worker process). Wakers try warm sleepers first. Correctness never
    /// depends on it: every sleeper is tried in the second pass.
    warm: AtomicBool,
    condvar: Condvar,
}

/// The shared sleep state of one scheduler (see the module docs for the protocol).
pub(crate) struct Sleep {
    /// JEC and sleeper count; every access is `SeqCst`.
    state: CachePadded<AtomicU64>,
    threads: Box<[CachePadded<ThreadSleep>]>,
}

impl Sleep {
    pub(crate) fn new(n: usize) -> Self {
        let threads = (0..n)
            .map(|_| {
                CachePadded::new(ThreadSleep {
                    blocked: Mutex::new(false),
                    is_blocked: AtomicBool::new(false),
                    warm: AtomicBool::new(false),
                    condvar: Condvar::new(),
                })
            })
            .collect();
        Sleep { state: CachePadded::new(AtomicU64::new(0)), threads }
    }

    /// One idle round before getting sleepy: spin, then yield.
    pub(crate) fn idle_round(round: u32) {
        if round < SPIN_ONLY {
            for _ in 0..(1u32 << round) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
    }

    /// Step 1: announce sleepiness; returns the (odd) JEC to hand to [`Sleep::sleep`].
    pub(crate) fn get_sleepy(&self) -> u32 {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            if jec(state) % 2 == 1 {
                fence(Ordering::SeqCst);
                return jec(state);
            }
            match self.state.compare_exchange_weak(
                state,
                state.wrapping_add(JEC_ONE),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    fence(Ordering::SeqCst);
                    return jec(state).wrapping_add(1);
                }
                Err(now) => state = now,
            }
        }
    }

    /// Steps 3 and 4: block thread `index` unless work was announced since `sleepy` or `ready()`
    /// holds. `ready` is checked under the thread's mutex after `blocked` is set, so a thread that
    /// makes it true and then calls [`Sleep::wake_thread`] cannot be missed.
    pub(crate) fn sleep(
        &self,
        index: usize,
        sleepy: u32,
        ready: &dyn Fn() -> bool,
        deadline: Option<Instant>,
    ) -> Slept {
        let me = &self.threads[index];
        let mut blocked = me.blocked.lock();
        me.is_blocked.store(true, Ordering::SeqCst);
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            if jec(state) != sleepy {
                me.is_blocked.store(false, Ordering::SeqCst);
                return Slept::Aborted;
            }
            match self.state.compare_exchange_weak(state, state + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        *blocked = true;
        // F_C: pairs with the fence in `wake_thread` (see "Why no targeted wake-up is missed").
        fence(Ordering::SeqCst);
        if ready() {
            *blocked = false;
            me.is_blocked.store(false, Ordering::SeqCst);
            self.state.fetch_sub(1, Ordering::SeqCst);
            return Slept::Aborted;
        }
        while *blocked {
            match deadline {
                None => blocked = me.condvar.wait(blocked),
                Some(deadline) => {
                    let (guard, late) = me.condvar.wait_until(blocked, deadline);
                    blocked = guard;
                    if late && *blocked {
                        *blocked = false;
                        me.is_blocked.store(false, Ordering::SeqCst);
                        self.state.fetch_sub(1, Ordering::SeqCst);
                        return Slept::TimedOut;
                    }
                }
            }
        }
        Slept::Woken
    }

    /// Announce that `count` new jobs were injected (pushed anywhere but the caller's own deque);
    /// wakes up to `count` sleepers. No sleeper can miss them (see the module docs).
    #[inline]
    pub(crate) fn new_jobs(&self, count: usize) {
        // F_P.
        fence(Ordering::SeqCst);
        self.announce(count);
    }

    /// Announce that the caller pushed `count` jobs onto its own deque: [`Sleep::new_jobs`]
    /// without the fence. A thread getting sleepy at that moment may miss them; their owner runs
    /// them then (see "Why a local job is never stranded").
    #[inline]
    pub(crate) fn new_local_jobs(&self, count: usize) {
        self.announce(count);
    }

    #[inline]
    fn announce(&self, count: usize) {
        let mut state = self.state.load(Ordering::SeqCst);
        while jec(state) % 2 == 1 {
            match self.state.compare_exchange_weak(
                state,
                state.wrapping_add(JEC_ONE),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        let asleep = sleepers(state);
        if asleep > 0 {
            self.wake_sleepers(count.min(asleep as usize));
        }
    }

    #[cold]
    fn wake_sleepers(&self, count: usize) {
        for _ in 0..count {
            if !self.wake_any() {
                break;
            }
        }
    }

    /// Wakes one blocked thread, if any, preferring warm ones; true when one was woken.
    fn wake_any(&self) -> bool {
        let warm = |i: &usize| self.threads[*i].warm.load(Ordering::Relaxed);
        (0..self.threads.len()).filter(warm).any(|i| self.wake_thread(i))
            || (0..self.threads.len()).any(|i| self.wake_thread(i))
    }

    /// Marks thread `index` as warm (see `ThreadSleep::warm`) or not.
    pub(crate) fn set_warm(&self, index: usize, warm: bool) {
        self.threads[index].warm.store(warm, Ordering::Relaxed);
    }

    /// Wakes thread `index` if it is blocked; true when it was. Whatever the caller stored
    /// before this call, thread `index` sees it: either in its last check before it blocks, or
    /// after it is woken here (see "Why no targeted wake-up is missed").
    #[inline]
    pub(crate) fn wake_thread(&self, index: usize) -> bool {
        let thread = &self.threads[index];
        // F_T.
        fence(Ordering::SeqCst);
        if !thread.is_blocked.load(Ordering::SeqCst) {
            return false; // awake: see the module docs for why this cannot miss a sleeper
        }
        let mut blocked = thread.blocked.lock();
        if !*blocked {
            return false;
        }
        *blocked = false;
        thread.is_blocked.store(false, Ordering::SeqCst);
        self.state.fetch_sub(1, Ordering::SeqCst);
        thread.condvar.notify_one();
        true
    }

    /// Wakes every blocked thread (termination).
    pub(crate) fn wake_all(&self) {
        for i in 0..self.threads.len() {
            self.wake_thread(i);
        }
    }

    /// Threads blocked right now (a snapshot, for tests and statistics).
    #[cfg_attr(not(any(test, fuzzing)), expect(dead_code))]
    pub(crate) fn sleeping(&self) -> u64 {
        sleepers(self.state.load(Ordering::SeqCst))
    }
}

#[cfg(all(test, loom))]
#[path = "loom_tests.rs"]
mod loom_tests;

//! Model checks of the sleep protocol with loom: every interleaving (up to a preemption bound)
//! of 1–2 sleepers against each kind of announcement (injected jobs, local jobs, targeted
//! wake-ups of latches and mailboxes, termination, and a wait across two pools), with atomic
//! counters and flags standing in for the queues and latches. Their accesses are `Relaxed` or
//! acquire/release, so only the protocol's own fences order them. A lost wake-up shows up as
//! loom's deadlock report: a sleeper blocked on its condition variable forever while a job it
//! should run is available or its latch is set.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
//! ```

use super::{Sleep, Slept};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// The "queues": a count of available jobs. Pushers increment it (Relaxed: the protocol's own
/// fences must provide the ordering, as they do for crossbeam's deques); sleepers take one with
/// a compare-exchange.
struct Jobs(AtomicUsize);

impl Jobs {
    fn new() -> Arc<Self> {
        Arc::new(Jobs(AtomicUsize::new(0)))
    }

    /// An injecting push (`Shared::inject`).
    fn push(&self, sleep: &Sleep, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
        sleep.new_jobs(n);
    }

    /// A push onto the pusher's own deque (`Queue::push`): no fence.
    fn push_local(&self, sleep: &Sleep) {
        self.0.fetch_add(1, Ordering::Relaxed);
        sleep.new_local_jobs(1);
    }

    fn is_empty(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }

    fn take(&self) -> bool {
        let mut n = self.0.load(Ordering::Relaxed);
        while n > 0 {
            match self.0.compare_exchange(n, n - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }
}

/// A thread that wants exactly one job: search, get sleepy, search again, sleep; repeat.
fn worker_takes_one(index: usize, sleep: &Sleep, jobs: &Jobs) {
    loop {
        if jobs.take() {
            return;
        }
        let sleepy = sleep.get_sleepy();
        if jobs.take() {
            return;
        }
        match sleep.sleep(index, sleepy, &|| false, None) {
            Slept::Woken | Slept::Aborted => {}
            Slept::TimedOut => unreachable!("no deadline"),
        }
    }
}

/// Explores every interleaving with at most `bound` preemptions (LOOM_MAX_PREEMPTIONS, when
/// set, wins).
fn model_bounded(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    builder.check(f);
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(3, f);
}

#[test]
fn loom_one_sleeper_one_pusher() {
    model(|| {
        let sleep = Arc::new(Sleep::new(1));
        let jobs = Arc::new(Jobs(AtomicUsize::new(0)));
        let (s, j) = (sleep.clone(), jobs.clone());
        let pusher = thread::spawn(move || j.push(&s, 1));
        worker_takes_one(0, &sleep, &jobs);
        pusher.join().unwrap();
    });
}

#[test]
fn loom_two_sleepers_one_pusher_of_two_jobs() {
    model(|| {
        let sleep = Arc::new(Sleep::new(2));
        let jobs = Arc::new(Jobs(AtomicUsize::new(0)));
        let (s, j) = (sleep.clone(), jobs.clone());
        let other = thread::spawn(move || worker_takes_one(1, &s, &j));
        let (s, j) = (sleep.clone(), jobs.clone());
        let pusher = thread::spawn(move || j.push(&s, 2));
        worker_takes_one(0, &sleep, &jobs);
        other.join().unwrap();
        pusher.join().unwrap();
    });
}

#[test]
fn loom_two_sleepers_two_pushers() {
    // Four threads: a bound of 3 takes minutes; 2 still covers every lost-wake-up mutation the
    // other scenarios catch.
    model_bounded(2, || {
        let sleep = Arc::new(Sleep::new(2));
        let jobs = Arc::new(Jobs(AtomicUsize::new(0)));
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (s, j) = (sleep.clone(), jobs.clone());
            threads.push(thread::spawn(move || j.push(&s, 1)));
        }
        let (s, j) = (sleep.clone(), jobs.clone());
        threads.push(thread::spawn(move || worker_takes_one(1, &s, &j)));
        worker_takes_one(0, &sleep, &jobs);
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn loom_one_sleeper_two_pushers() {
    model(|| {
        let sleep = Arc::new(Sleep::new(1));
        let jobs = Arc::new(Jobs(AtomicUsize::new(0)));
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (s, j) = (sleep.clone(), jobs.clone());
            threads.push(thread::spawn(move || j.push(&s, 1)));
        }
        // Wants both jobs.
        worker_takes_one(0, &sleep, &jobs);
        worker_takes_one(0, &sleep, &jobs);
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// A latch flag as the real latches use it: `Release` store, `Acquire` load. Nothing but the
/// fences in `Sleep::wake_thread` (after the store) and in `Sleep::sleep` (before the owner's
/// last check) orders the store against the owner's `is_blocked`, so these scenarios check the
/// store-buffering step of the targeted wake-up itself. (loom models `SeqCst` loads and stores
/// as `AcqRel`, but `SeqCst` fences as C11 does: tokio-rs/loom#180.)
fn set(flag: &AtomicBool) {
    flag.store(true, Ordering::Release);
}

fn is_set(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Acquire)
}

/// The waiting side of a latch, as `PoolThread::wait_until` does it through `Queue::wait`.
fn wait_for(index: usize, sleep: &Sleep, flag: &AtomicBool) {
    while !is_set(flag) {
        let sleepy = sleep.get_sleepy();
        if is_set(flag) {
            break;
        }
        sleep.sleep(index, sleepy, &|| is_set(flag), None);
    }
}

#[test]
fn loom_targeted_wake_up_of_a_latch_waiter() {
    model(|| {
        let sleep = Arc::new(Sleep::new(1));
        let flag = Arc::new(AtomicBool::new(false));
        let (s, f) = (sleep.clone(), flag.clone());
        let setter = thread::spawn(move || {
            set(&f);
            s.wake_thread(0);
        });
        wait_for(0, &sleep, &flag);
        setter.join().unwrap();
    });
}

#[test]
fn loom_mail_reaches_a_sleeping_thread() {
    // `Shared::send_to`: a job in thread 0's mailbox (a relaxed counter here), then a targeted
    // wake-up; thread 0 counts "mail is waiting" among its wake-up conditions.
    model(|| {
        let sleep = Arc::new(Sleep::new(1));
        let mail = Jobs::new();
        let (s, m) = (sleep.clone(), mail.clone());
        let sender = thread::spawn(move || {
            m.0.fetch_add(1, Ordering::Relaxed);
            s.wake_thread(0);
        });
        while !mail.take() {
            let sleepy = sleep.get_sleepy();
            if mail.take() {
                break;
            }
            sleep.sleep(0, sleepy, &|| !mail.is_empty(), None);
        }
        sender.join().unwrap();
    });
}

#[test]
fn loom_termination_wakes_every_sleeper() {
    model(|| {
        let sleep = Arc::new(Sleep::new(2));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for index in 0..2 {
            let (s, f) = (sleep.clone(), stop.clone());
            threads.push(thread::spawn(move || wait_for(index, &s, &f)));
        }
        set(&stop);
        sleep.wake_all();
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn loom_a_local_job_is_never_stranded() {
    // Thread 0 pushes onto its own deque without a fence, then (as a pool thread does) looks at
    // its own deque before anything else, and finally terminates the scheduler. Thread 1 may
    // miss the job and sleep (allowed: parallelism lost, not the job), but the job runs exactly
    // once and nobody sleeps through termination.
    model(|| {
        let sleep = Arc::new(Sleep::new(2));
        let jobs = Jobs::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, j, r, f) = (sleep.clone(), jobs.clone(), ran.clone(), stop.clone());
        let thief = thread::spawn(move || {
            while !is_set(&f) {
                if j.take() {
                    r.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let sleepy = s.get_sleepy();
                if j.take() {
                    r.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                s.sleep(1, sleepy, &|| is_set(&f), None);
            }
        });
        jobs.push_local(&sleep);
        if jobs.take() {
            ran.fetch_add(1, Ordering::Relaxed);
        }
        set(&stop);
        sleep.wake_all();
        thief.join().unwrap();
        assert_eq!(ran.load(Ordering::Relaxed), 1, "the local job ran exactly once");
    });
}

#[test]
fn loom_a_wait_across_pools() {
    // `Registry::in_worker_cross`: the only thread of pool A injects a job into pool B and waits
    // for its latch through A's sleep state; the only thread of pool B, asleep or not, takes the
    // job through B's protocol, then sets the latch and wakes the A-thread through A's.
    model(|| {
        let (sleep_a, sleep_b) = (Arc::new(Sleep::new(1)), Arc::new(Sleep::new(1)));
        let jobs_b = Jobs::new();
        let latch = Arc::new(AtomicBool::new(false));
        let (a, b, j, l) = (sleep_a.clone(), sleep_b.clone(), jobs_b.clone(), latch.clone());
        let thread_b = thread::spawn(move || {
            worker_takes_one(0, &b, &j);
            set(&l);
            a.wake_thread(0);
        });
        jobs_b.push(&sleep_b, 1);
        wait_for(0, &sleep_a, &latch);
        thread_b.join().unwrap();
    });
}

//! Model checks of the sleep protocol with loom: every interleaving (up to a preemption bound)
//! of 1–2 sleepers and 1–2 pushers, with an atomic job counter standing in for the queues.
//! A lost wake-up shows up as loom's deadlock report: a sleeper blocked on its condition
//! variable forever while a job it should run is available.
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
    fn push(&self, sleep: &Sleep, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
        sleep.new_jobs(n);
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

/// A latch: the waiter sleeps until a flag is set; the setter sets it and wakes that thread.
/// The flag is checked under the sleep mutex, after `blocked` is set.
fn latch_scenario(flag_set: fn(&AtomicBool), flag_get: fn(&AtomicBool) -> bool) {
    model(move || {
        let sleep = Arc::new(Sleep::new(1));
        let flag = Arc::new(AtomicBool::new(false));
        let (s, f) = (sleep.clone(), flag.clone());
        let setter = thread::spawn(move || {
            flag_set(&f);
            s.wake_thread(0);
        });
        while !flag_get(&flag) {
            let sleepy = sleep.get_sleepy();
            if flag_get(&flag) {
                break;
            }
            sleep.sleep(0, sleepy, &|| flag_get(&flag), None);
        }
        setter.join().unwrap();
    });
}

/// Termination: every sleeper waits for a stop flag; the terminator sets it and wakes all.
fn termination_scenario(flag_set: fn(&AtomicBool), flag_get: fn(&AtomicBool) -> bool) {
    model(move || {
        let sleep = Arc::new(Sleep::new(2));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for index in 0..2 {
            let (s, f) = (sleep.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                while !flag_get(&f) {
                    let sleepy = s.get_sleepy();
                    s.sleep(index, sleepy, &|| flag_get(&f), None);
                }
            }));
        }
        flag_set(&stop);
        sleep.wake_all();
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// A latch flag as loom can check it. The real latches store and load their flag with `SeqCst`,
/// and the targeted wake-up relies on that: the setter stores the flag, then loads the owner's
/// `is_blocked`; the owner stores `is_blocked`, then loads the flag (store buffering, which
/// `SeqCst` on all four accesses forbids in C11). loom models `SeqCst` loads and stores as
/// `AcqRel` (its README, "Unsupported features"; tokio-rs/loom#180), so with plain `SeqCst`
/// accesses it reports a deadlock that C11 rules out (the ignored tests below show it). Here
/// both sides touch the flag with read-modify-writes instead: the owner's check then reads the
/// latest value, and one that reads "unset" comes before the setter's write in the flag's
/// modification order, so it synchronizes with the setter's read-modify-write: the setter then
/// sees `is_blocked` raised. That checks everything in the protocol except the `SeqCst`
/// store-buffering step itself, which is C11's guarantee.
fn rmw_set(flag: &AtomicBool) {
    flag.swap(true, Ordering::SeqCst);
}

fn rmw_get(flag: &AtomicBool) -> bool {
    flag.fetch_or(false, Ordering::SeqCst)
}

fn seqcst_set(flag: &AtomicBool) {
    flag.store(true, Ordering::SeqCst);
}

fn seqcst_get(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

#[test]
fn loom_targeted_wake_up_of_a_latch_waiter() {
    latch_scenario(rmw_set, rmw_get);
}

#[test]
fn loom_termination_wakes_every_sleeper() {
    termination_scenario(rmw_set, rmw_get);
}

#[test]
#[ignore = "loom models SeqCst loads/stores as AcqRel: a false deadlock (see rmw_set)"]
fn loom_targeted_wake_up_with_seqcst_accesses() {
    latch_scenario(seqcst_set, seqcst_get);
}

#[test]
#[ignore = "loom models SeqCst loads/stores as AcqRel: a false deadlock (see rmw_set)"]
fn loom_termination_with_seqcst_accesses() {
    termination_scenario(seqcst_set, seqcst_get);
}

//! Unit tests of the scheduler: the search order, batches from the injector, draining, and
//! threads that sleep and are woken through the protocol.

use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::time::Duration;

/// Iterations: full under a normal build, a handful under Miri (which is ~1000x slower).
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 100).max(2)
    } else {
        n
    }
}

/// Fails the test if `condition` does not hold within `limit`, instead of blocking forever.
fn eventually(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?} (a lost wake-up?)");
        std::thread::sleep(Duration::from_micros(20));
    }
}

fn hang_limit() -> Duration {
    Duration::from_secs(if cfg!(miri) { 600 } else { 20 })
}

fn drained<J: Send>(shared: &Shared<J>) -> Vec<J> {
    let mut all = Vec::new();
    shared.drain(|job| all.push(job));
    all
}

#[test]
fn lifo_deques_pop_newest_first() {
    let (_shared, queues) = Shared::new(1, Order::Lifo);
    for i in 1..=5 {
        queues[0].push(i);
    }
    let popped: Vec<i32> = std::iter::from_fn(|| queues[0].pop()).collect();
    assert_eq!(popped, [5, 4, 3, 2, 1]);
}

#[test]
fn fifo_deques_pop_oldest_first() {
    let (_shared, queues) = Shared::new(1, Order::Fifo);
    for i in 1..=5 {
        queues[0].push(i);
    }
    let popped: Vec<i32> = std::iter::from_fn(|| queues[0].pop()).collect();
    assert_eq!(popped, [1, 2, 3, 4, 5]);
}

#[test]
fn thieves_take_the_oldest_job_in_either_order() {
    for order in [Order::Lifo, Order::Fifo] {
        let (_shared, queues) = Shared::new(2, order);
        for i in 1..=3 {
            queues[0].push(i);
        }
        assert_eq!(queues[1].find_work(), Some(1), "{order:?}");
        assert_eq!(queues[1].find_work(), Some(2), "{order:?}");
        assert_eq!(queues[0].find_work(), Some(3), "{order:?}");
        assert_eq!(queues[1].find_work(), None);
    }
}

#[test]
fn injected_jobs_come_out_in_injection_order_even_in_batches() {
    for order in [Order::Lifo, Order::Fifo] {
        let (shared, queues) = Shared::new(2, order);
        shared.inject_many(0..100);
        let mut seen = Vec::new();
        // One thread takes a batch (the rest of it lands in its own deque, arranged so its pops
        // continue in injection order); the other steals the oldest of what is left.
        while let Some(job) = queues[0].find_work() {
            seen.push(job);
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>(), "{order:?}");
        assert!(queues[0].deque.is_empty() && shared.injector.is_empty());
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri fails compare_exchange_weak spuriously: a Steal::Retry from a peer sends find_work to the injector early"
)]
fn a_batch_from_the_injector_moves_into_the_local_deque() {
    let (shared, queues) = Shared::new(2, Order::Fifo);
    shared.inject_many(0..10);
    assert_eq!(queues[0].find_work(), Some(0));
    let moved = queues[0].deque.len();
    assert!(moved >= 1, "crossbeam moves about half of the injector");
    assert_eq!(moved + shared.injector.len(), 9);
    // The other thread steals the moved jobs first, oldest first, and only then takes from the
    // injector: 1..=9 in order either way.
    for want in 1..10 {
        assert_eq!(queues[1].find_work(), Some(want));
    }
    assert_eq!(queues[1].find_work(), None);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri fails compare_exchange_weak spuriously: a Steal::Retry from a peer sends find_work to the injector early"
)]
fn search_order_is_local_then_peers_then_injector() {
    let (shared, queues) = Shared::new(3, Order::Lifo);
    queues[1].push(100);
    shared.inject(200);
    queues[0].push(300);
    assert_eq!(queues[0].find_work(), Some(300), "own deque first");
    assert_eq!(queues[0].find_work(), Some(100), "then the other threads");
    assert_eq!(queues[0].find_work(), Some(200), "then the injector");
    assert_eq!(queues[0].find_work(), None);
    assert_eq!(queues[2].find_work(), None);
}

#[test]
fn drain_takes_every_queued_job_once() {
    let (shared, queues) = Shared::new(3, Order::Fifo);
    shared.inject_many(0..10);
    queues[1].push(10);
    queues[2].push(11);
    let taken = queues[0].find_work().unwrap();
    let mut all = drained(&shared);
    all.push(taken);
    all.sort_unstable();
    assert_eq!(all, (0..12).collect::<Vec<_>>());
    assert!(drained(&shared).is_empty());
}

#[test]
fn wait_reports_ready_timeout_and_termination_only_without_work() {
    let (shared, queues) = Shared::new(1, Order::Lifo);
    shared.inject(1);
    assert!(matches!(queues[0].wait(&|| true, None, false), Wait::Job(1)), "work before readiness");
    assert!(matches!(queues[0].wait(&|| true, None, false), Wait::Ready));
    let start = Instant::now();
    let deadline = start + Duration::from_millis(20);
    assert!(matches!(queues[0].wait(&|| false, Some(deadline), false), Wait::TimedOut));
    assert!(Instant::now() >= deadline);
    queues[0].push(2);
    shared.terminate();
    assert!(matches!(queues[0].wait(&|| false, None, true), Wait::Job(2)), "queued work drains first");
    assert!(matches!(queues[0].wait(&|| false, None, true), Wait::Terminated));
}

/// Threads that run `u32` jobs from `queue.wait` until termination; each job may push
/// children onto its thread's deque.
struct Pool {
    shared: Arc<Shared<(u32, u8)>>,
    done: Arc<AtomicUsize>,
    exits: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn start(n: usize, order: Order, timed: bool) -> Pool {
        let (shared, queues) = Shared::new(n, order);
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, exits) = mpsc::channel();
        let threads = queues
            .into_iter()
            .map(|queue| {
                let done = done.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    loop {
                        let deadline = timed.then(|| Instant::now() + Duration::from_micros(500));
                        match queue.wait(&|| false, deadline, true) {
                            Wait::Job((id, children)) => {
                                for c in 0..children {
                                    queue.push((id * 10 + u32::from(c), children - 1));
                                }
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            Wait::Terminated => break,
                            Wait::TimedOut | Wait::Ready => {}
                        }
                    }
                    let _ = tx.send(());
                })
            })
            .collect();
        Pool { shared, done, exits, threads }
    }

    fn all_asleep(&self, n: usize) {
        eventually("every thread falls asleep", hang_limit(), || self.shared.sleep.sleeping() as usize == n);
    }

    fn finished(&self, count: usize) {
        eventually("every job of the burst ran", hang_limit(), || self.done.load(Ordering::SeqCst) == count);
    }

    fn stop(self) {
        self.shared.terminate();
        for _ in &self.threads {
            self.exits.recv_timeout(hang_limit()).expect("every thread leaves after terminate");
        }
        for thread in self.threads {
            thread.join().unwrap();
        }
        assert!(drained(&self.shared).is_empty());
    }
}

/// Jobs in a tree where each job has `children` children, each with one child fewer.
fn tree_size(children: u8) -> usize {
    1 + (0..children).map(|_| tree_size(children - 1)).sum::<usize>()
}

#[test]
fn bursts_after_idle_gaps_never_hang() {
    for (n, order, timed) in
        [(1, Order::Lifo, false), (2, Order::Fifo, false), (4, Order::Lifo, false), (3, Order::Fifo, true)]
    {
        let pool = Pool::start(n, order, timed);
        let mut expected = 0;
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for burst in 0..scaled(200) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if !timed {
                // Every thread really is blocked: the next burst must wake them.
                pool.all_asleep(n);
            }
            match rng % 4 {
                0 => {
                    pool.shared.inject((burst as u32, 0));
                    expected += 1;
                }
                1 => {
                    let k = 1 + (rng >> 8) as usize % 8;
                    pool.shared.inject_many((0..k).map(|i| (i as u32, 0)));
                    expected += k;
                }
                _ => {
                    // Fork-join shaped: the threads push the children themselves.
                    let children = (rng >> 8) as u8 % 4;
                    pool.shared.inject((burst as u32, children));
                    expected += tree_size(children);
                }
            }
            pool.finished(expected);
            if rng % 3 == 0 {
                std::thread::sleep(Duration::from_micros((rng >> 20) % 2000));
            }
        }
        pool.stop();
    }
}

#[test]
fn spurious_wake_ups_are_harmless() {
    let n = 2;
    let pool = Pool::start(n, Order::Lifo, false);
    for i in 0..scaled(300) {
        pool.all_asleep(n);
        pool.shared.sleep.wake_thread(i % n);
        pool.shared.sleep.wake_all();
        if i % 2 == 0 {
            pool.shared.inject((i as u32, 1));
            pool.finished(i / 2 * 2 + 2);
        }
    }
    pool.stop();
}

#[test]
fn termination_wakes_sleepers_and_drains_queued_work() {
    for _ in 0..scaled(50) {
        let pool = Pool::start(3, Order::Fifo, false);
        pool.all_asleep(3);
        pool.shared.inject_many((0..20).map(|i| (i, 2)));
        pool.shared.terminate();
        pool.finished(20 * tree_size(2));
        pool.stop();
    }
}

#[test]
fn a_targeted_wake_up_reaches_a_worker_waiting_for_a_condition() {
    // How latches use the protocol: the waiter's condition is checked under its sleep mutex, the
    // setter stores the flag, then wakes exactly that thread.
    for _ in 0..scaled(300) {
        let (shared, mut queues) = Shared::<u32>::new(2, Order::Lifo);
        let flag = Arc::new(AtomicBool::new(false));
        let queue = queues.remove(0);
        let waiter_flag = flag.clone();
        let waiter = std::thread::spawn(move || {
            matches!(queue.wait(&|| waiter_flag.load(Ordering::SeqCst), None, false), Wait::Ready)
        });
        eventually("the waiter sleeps", hang_limit(), || shared.sleep.sleeping() == 1);
        flag.store(true, Ordering::SeqCst);
        shared.sleep.wake_thread(0);
        let deadline = Instant::now() + hang_limit();
        while !waiter.is_finished() {
            assert!(Instant::now() < deadline, "the woken thread did not return");
            std::thread::sleep(Duration::from_micros(20));
        }
        assert!(waiter.join().unwrap());
    }
}

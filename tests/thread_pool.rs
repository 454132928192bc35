//! The in-process work-stealing pool: join, scope, spawn, panics, and pool lifetimes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workpool::ThreadPool;

fn fib(pool: &ThreadPool, n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = pool.join(|| fib(pool, n - 1), || fib(pool, n - 2));
    a + b
}

fn threads_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn fork_join_fib() {
    let pool = ThreadPool::new(2);
    assert_eq!(fib(&pool, 25), 75025);
}

#[test]
fn nested_join_twenty_levels_deep() {
    fn nest(pool: &ThreadPool, depth: u32) -> u32 {
        if depth == 0 {
            return 1;
        }
        let (a, b) = pool.join(|| nest(pool, depth - 1), || depth);
        a + b
    }
    let pool = ThreadPool::new(2);
    assert_eq!(nest(&pool, 20), 1 + (1..=20).sum::<u32>());
    // A full binary tree 20 levels deep: a million leaves.
    fn tree(pool: &ThreadPool, depth: u32) -> u64 {
        if depth == 0 {
            return 1;
        }
        let (a, b) = pool.join(|| tree(pool, depth - 1), || tree(pool, depth - 1));
        a + b
    }
    assert_eq!(tree(&pool, 20), 1 << 20);
}

#[test]
fn join_on_a_one_thread_pool_does_not_deadlock() {
    let pool = ThreadPool::new(1);
    assert_eq!(fib(&pool, 18), 2584);
}

#[test]
fn scopes_borrow_the_stack_and_nest() {
    let pool = ThreadPool::new(2);
    let mut cells = vec![0u64; 64];
    let total = AtomicUsize::new(0);
    pool.scope(|outer| {
        for (i, chunk) in cells.chunks_mut(8).enumerate() {
            let (total, pool) = (&total, &pool);
            outer.spawn(move || {
                pool.scope(|inner| {
                    for (j, cell) in chunk.iter_mut().enumerate() {
                        inner.spawn(move || *cell = (i * 8 + j) as u64);
                    }
                });
                total.fetch_add(chunk.len(), Ordering::Relaxed);
            });
        }
    });
    assert_eq!(cells, (0..64).collect::<Vec<u64>>());
    assert_eq!(total.load(Ordering::Relaxed), 64);
}

#[test]
fn scope_spawns_can_spawn_more_and_all_finish_before_scope_returns() {
    let pool = ThreadPool::new(2);
    let count = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..100 {
            s.spawn(|| {
                for _ in 0..100 {
                    s.spawn(|| {
                        count.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
        }
    });
    assert_eq!(count.load(Ordering::Relaxed), 10_000);
}

#[test]
fn scope_returns_the_body_value() {
    let pool = ThreadPool::new(2);
    let v = pool.scope(|s| {
        s.spawn(|| {});
        42
    });
    assert_eq!(v, 42);
}

fn panics<R>(f: impl FnOnce() -> R) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(p) => {
            p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap()
        }
    }
}

#[test]
fn panics_in_every_position_reach_the_caller_after_all_sides_finished() {
    let pool = ThreadPool::new(2);
    // join: left side, right side, both (one of them wins).
    let b_done = AtomicUsize::new(0);
    let msg = panics(|| {
        pool.join(
            || panic!("left"),
            || {
                std::thread::sleep(Duration::from_millis(20));
                b_done.fetch_add(1, Ordering::SeqCst);
            },
        )
    });
    assert_eq!(msg, "left");
    assert_eq!(b_done.load(Ordering::SeqCst), 1, "the right side finished before the panic was resumed");
    assert_eq!(panics(|| pool.join(|| 1, || -> u32 { panic!("right") })), "right");
    let both = panics(|| pool.join(|| -> u32 { panic!("a") }, || -> u32 { panic!("b") }));
    assert!(both == "a" || both == "b");
    // scope: the body, a spawned closure (the others still run).
    assert_eq!(panics(|| pool.scope(|_| panic!("body"))), "body");
    let ran = AtomicUsize::new(0);
    let msg = panics(|| {
        pool.scope(|s| {
            for i in 0..50 {
                let ran = &ran;
                s.spawn(move || {
                    if i == 25 {
                        panic!("spawned 25");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    });
    assert_eq!(msg, "spawned 25");
    assert_eq!(ran.load(Ordering::SeqCst), 49, "every other spawn finished before scope unwound");
    // Nested: a panic deep inside recursion.
    let deep = panics(|| {
        fn dive(pool: &ThreadPool, d: u32) -> u32 {
            if d == 0 {
                panic!("deep");
            }
            pool.join(|| dive(pool, d - 1), || d).0
        }
        dive(&pool, 10)
    });
    assert_eq!(deep, "deep");
    assert_eq!(fib(&pool, 15), 610, "the pool still works");
}

#[test]
fn a_panic_in_spawn_never_kills_a_pool_thread_and_is_reported() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let pool = ThreadPool::builder()
        .num_threads(2)
        .panic_handler(move |p| sink.lock().unwrap().push(p.downcast_ref::<&str>().unwrap().to_string()))
        .build()
        .unwrap();
    for _ in 0..10 {
        pool.spawn(|| panic!("spawned panic"));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..100 {
        let tx = tx.clone();
        pool.spawn(move || tx.send(i).unwrap());
    }
    let mut got: Vec<i32> = (0..100).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    drop(pool);
    assert_eq!(seen.lock().unwrap().len(), 10);
}

#[test]
fn dropping_the_pool_finishes_queued_work() {
    let count = Arc::new(AtomicUsize::new(0));
    let pool = ThreadPool::new(2);
    for _ in 0..1000 {
        let count = count.clone();
        pool.spawn(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
    }
    drop(pool);
    assert_eq!(count.load(Ordering::SeqCst), 1000);
}

#[test]
fn thousands_of_pools_leak_no_thread() {
    let before = threads_of_this_process();
    for i in 0..2000 {
        let pool = ThreadPool::new(2);
        if i % 2 == 0 {
            assert_eq!(pool.join(|| 1, || 2), (1, 2));
        }
    }
    // Other tests in this binary run concurrently and have their own pools: allow for them.
    let after = threads_of_this_process();
    assert!(after <= before + 16, "threads before {before}, after {after}");
}

#[test]
fn builder_names_threads_and_sets_stack_size() {
    let pool = ThreadPool::builder()
        .num_threads(3)
        .thread_name(|i| format!("crunch-{i}"))
        .stack_size(4 << 20)
        .build()
        .unwrap();
    assert_eq!(pool.num_threads(), 3);
    let (tx, rx) = std::sync::mpsc::channel();
    pool.spawn(move || tx.send(std::thread::current().name().unwrap().to_string()).unwrap());
    assert!(rx.recv().unwrap().starts_with("crunch-"));
    // A deep recursion that needs the bigger stack.
    fn depth(n: u32) -> u32 {
        let pad = [n as u8; 1024];
        if n == 0 {
            pad[0] as u32
        } else {
            depth(n - 1) + pad[1] as u32 / 255
        }
    }
    assert_eq!(pool.join(|| depth(2000), || 0).1, 0);
}

#[test]
fn bursts_separated_by_idle_gaps_never_hang() {
    let pool = ThreadPool::new(2);
    let start = Instant::now();
    for round in 0..300u64 {
        let count = AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..(round % 7 + 1) {
                s.spawn(|| {
                    count.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(count.load(Ordering::Relaxed) as u64, round % 7 + 1);
        if round % 10 == 0 {
            std::thread::sleep(Duration::from_millis(2)); // long enough for workers to sleep
        }
    }
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn join_from_many_outside_threads_at_once() {
    let pool = Arc::new(ThreadPool::new(2));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            std::thread::spawn(move || fib(&pool, 16))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 987);
    }
}

#[test]
fn a_pool_thread_can_block_on_a_job_it_spawned() {
    // ThreadPool::spawn from a pool thread goes onto that thread's own deque; the spawner then
    // blocks outside the pool, so only the other thread can run the job, and it must be woken
    // even when it was falling asleep at that very moment.
    let pool = ThreadPool::new(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let spawner = &pool;
    pool.install(move || {
        for i in 0..300u32 {
            if i % 3 == 0 {
                std::thread::sleep(Duration::from_micros(50 * u64::from(i % 7)));
                // let the other sleep
            }
            let tx = tx.clone();
            spawner.spawn(move || tx.send(i).unwrap());
            assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(i), "the spawned job was never run");
        }
    });
}

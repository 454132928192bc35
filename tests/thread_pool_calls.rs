//! The calls rayon users reach for: `install`, `current_num_threads`, `current_thread_index`,
//! `spawn_fifo` / `scope_fifo`, start and exit handlers, `broadcast`, `yield_now`; with rayon's
//! semantics where the names are shared.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use workpool::{current_num_threads, current_thread_index, yield_now, ThreadPool, Yield};

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

// ===== install, current_num_threads, current_thread_index =====

#[test]
fn install_runs_on_a_pool_thread_and_returns_its_value() {
    let pool = ThreadPool::new(3);
    assert_eq!(current_thread_index(), None);
    let (index, threads, name) = pool
        .install(|| (current_thread_index(), current_num_threads(), std::thread::current().name().map(String::from)));
    assert!(index.is_some_and(|i| i < 3));
    assert_eq!(threads, 3);
    assert!(name.unwrap().starts_with("workpool-thread-"));
    // From a pool thread, install on the same pool runs right there.
    let same = pool.install(|| {
        let outer = current_thread_index();
        pool.install(|| current_thread_index() == outer)
    });
    assert!(same);
    // Borrowing the caller's stack is fine: install blocks until done.
    let mut data = vec![1, 2, 3];
    pool.install(|| data.push(4));
    assert_eq!(data, [1, 2, 3, 4]);
}

#[test]
fn install_resumes_a_panic_and_the_pool_lives_on() {
    let pool = ThreadPool::new(2);
    let err = catch_unwind(AssertUnwindSafe(|| pool.install(|| -> u32 { panic!("installed") }))).unwrap_err();
    assert_eq!(message(err), "installed");
    assert_eq!(pool.install(|| 5), 5);
}

#[test]
fn thread_indices_are_distinct_and_dense() {
    let pool = ThreadPool::new(4);
    let indices = pool.broadcast(|_| (current_thread_index().unwrap(), pool.current_thread_index().unwrap()));
    assert_eq!(indices, [(0, 0), (1, 1), (2, 2), (3, 3)]);
    assert_eq!(pool.current_num_threads(), 4);
    assert_eq!(current_num_threads(), workpool::cpu_count(), "outside every pool: the default size");
    // On another pool's thread, this pool's index is None and the free functions describe
    // the other pool.
    let other = ThreadPool::new(2);
    let seen = other.install(|| (pool.current_thread_index(), current_num_threads()));
    assert_eq!(seen, (None, 2));
}

// ===== spawn_fifo and scope_fifo =====

#[test]
fn spawn_fifo_runs_a_threads_spawns_oldest_first() {
    let pool = ThreadPool::new(1);
    let (tx, rx) = mpsc::channel();
    pool.install(|| {
        for i in 0..100 {
            let tx = tx.clone();
            pool.spawn_fifo(move || tx.send(i).unwrap());
        }
    });
    let got: Vec<i32> = (0..100).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // `spawn` from the same place: newest first, for contrast.
    pool.install(|| {
        for i in 0..5 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).unwrap());
        }
    });
    let lifo: Vec<i32> = (0..5).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(lifo, [4, 3, 2, 1, 0]);
    // From outside the pool: submission order.
    for i in 0..20 {
        let tx = tx.clone();
        pool.spawn_fifo(move || tx.send(i).unwrap());
    }
    let outside: Vec<i32> = (0..20).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
    assert_eq!(outside, (0..20).collect::<Vec<_>>());
}

#[test]
fn spawn_fifo_jobs_all_run_once_under_stealing_and_panics() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let pool = ThreadPool::builder()
        .num_threads(3)
        .panic_handler(move |p| sink.lock().unwrap().push(message(p)))
        .build()
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    pool.install(|| {
        for i in 0..10_000 {
            let count = count.clone();
            pool.spawn_fifo(move || {
                if i % 1000 == 0 {
                    panic!("fifo {i}");
                }
                count.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    drop(pool);
    assert_eq!(count.load(Ordering::Relaxed), 10_000 - 10);
    assert_eq!(seen.lock().unwrap().len(), 10);
}

#[test]
fn scope_fifo_runs_in_spawn_order_on_one_thread_and_borrows() {
    let pool = ThreadPool::new(1);
    let order = Mutex::new(Vec::new());
    let result = pool.scope_fifo(|s| {
        for i in 0..10 {
            let order = &order;
            s.spawn_fifo(move || {
                order.lock().unwrap().push(i);
                // Nested spawns go behind everything spawned before them.
                if i == 0 {
                    s.spawn_fifo(move || order.lock().unwrap().push(100));
                }
            });
        }
        "body"
    });
    assert_eq!(result, "body");
    let mut want: Vec<i32> = (0..10).collect();
    want.push(100);
    assert_eq!(*order.lock().unwrap(), want);
    // With stealing: everything runs exactly once before the scope returns.
    let pool = ThreadPool::new(3);
    let mut cells = vec![0u32; 1000];
    pool.scope_fifo(|s| {
        for (i, cell) in cells.iter_mut().enumerate() {
            s.spawn_fifo(move || *cell += i as u32);
        }
    });
    assert!(cells.iter().enumerate().all(|(i, &c)| c == i as u32));
}

#[test]
fn scope_fifo_resumes_a_spawns_panic_after_all_ran() {
    let pool = ThreadPool::new(2);
    let ran = AtomicUsize::new(0);
    let err = catch_unwind(AssertUnwindSafe(|| {
        pool.scope_fifo(|s| {
            for i in 0..20 {
                let ran = &ran;
                s.spawn_fifo(move || {
                    if i == 3 {
                        panic!("fifo spawn 3");
                    }
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    }))
    .unwrap_err();
    assert_eq!(message(err), "fifo spawn 3");
    assert_eq!(ran.load(Ordering::SeqCst), 19);
}

// ===== start and exit handlers =====

#[test]
fn start_and_exit_handlers_run_once_per_thread_around_its_jobs() {
    thread_local!(static STARTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let started = Arc::new(Mutex::new(Vec::new()));
    let exited = Arc::new(Mutex::new(Vec::new()));
    let (s, e) = (started.clone(), exited.clone());
    let pool = ThreadPool::builder()
        .num_threads(3)
        .start_handler(move |i| {
            STARTED.with(|c| c.set(true));
            s.lock().unwrap().push((i, current_thread_index()));
        })
        .exit_handler(move |i| e.lock().unwrap().push((i, current_thread_index())))
        .build()
        .unwrap();
    // Every job sees its thread's start handler done.
    let all_started = pool.broadcast(|_| STARTED.with(|c| c.get()));
    assert_eq!(all_started, [true, true, true]);
    assert!(exited.lock().unwrap().is_empty(), "no thread exits while the pool lives");
    drop(pool);
    let sorted = |v: &Mutex<Vec<(usize, Option<usize>)>>| {
        let mut v = v.lock().unwrap().clone();
        v.sort_unstable();
        v
    };
    let want: Vec<_> = (0..3).map(|i| (i, Some(i))).collect();
    assert_eq!(sorted(&started), want, "each index once, on that very pool thread");
    assert_eq!(sorted(&exited), want, "every exit handler returned before drop did");
}

#[test]
fn a_panicking_handler_is_reported_and_the_pool_works() {
    let reports = Arc::new(AtomicUsize::new(0));
    let r = reports.clone();
    let pool = ThreadPool::builder()
        .num_threads(2)
        .start_handler(|i| {
            if i == 0 {
                panic!("start handler");
            }
        })
        .exit_handler(|_| panic!("exit handler"))
        .panic_handler(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    assert_eq!(pool.broadcast(|ctx| ctx.index()), [0, 1]);
    drop(pool);
    assert_eq!(reports.load(Ordering::SeqCst), 3, "one start and two exit handlers panicked");
}

// ===== broadcast =====

#[test]
fn broadcast_runs_once_on_every_thread_in_index_order() {
    let pool = ThreadPool::new(4);
    for _ in 0..100 {
        let results = pool.broadcast(|ctx| {
            assert_eq!(ctx.num_threads(), 4);
            assert_eq!(current_thread_index(), Some(ctx.index()));
            (ctx.index(), std::thread::current().id())
        });
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        let ids: HashSet<_> = results.iter().map(|r| r.1).collect();
        assert_eq!(ids.len(), 4, "four distinct threads");
    }
}

#[test]
fn broadcast_from_inside_the_pool_and_while_it_is_busy() {
    let pool = ThreadPool::new(3);
    // From a pool thread, nested in a join: the caller runs its own part while it waits.
    let (nested, _) = pool.join(|| pool.broadcast(|ctx| ctx.index() * 10), || ());
    assert_eq!(nested, [0, 10, 20]);
    // Broadcast inside broadcast: every thread broadcasts to every thread.
    let counts = pool.broadcast(|_| pool.broadcast(|ctx| ctx.index()).len());
    assert_eq!(counts, [3, 3, 3]);
    // While the threads are busy with long jobs: each takes its part when it is done.
    let release = Arc::new(AtomicBool::new(false));
    pool.scope(|s| {
        for _ in 0..3 {
            let release = release.clone();
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::yield_now();
                }
            });
        }
        let release = release.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            release.store(true, Ordering::SeqCst);
        });
        assert_eq!(pool.broadcast(|ctx| ctx.index()), [0, 1, 2]);
        releaser.join().unwrap();
    });
}

#[test]
fn broadcast_resumes_a_panic_after_every_call_finished() {
    let pool = ThreadPool::new(3);
    let finished = AtomicUsize::new(0);
    let err = catch_unwind(AssertUnwindSafe(|| {
        pool.broadcast(|ctx| {
            if ctx.index() == 1 {
                panic!("broadcast 1");
            }
            std::thread::sleep(Duration::from_millis(10));
            finished.fetch_add(1, Ordering::SeqCst);
        })
    }))
    .unwrap_err();
    assert_eq!(message(err), "broadcast 1");
    assert_eq!(finished.load(Ordering::SeqCst), 2);
    assert_eq!(pool.broadcast(|ctx| ctx.index()), [0, 1, 2], "the pool lives on");
}

#[test]
fn broadcast_reaches_threads_that_were_asleep() {
    let pool = ThreadPool::new(2);
    for round in 0..50 {
        if round % 5 == 0 {
            std::thread::sleep(Duration::from_millis(2)); // long enough for the threads to sleep
        }
        assert_eq!(pool.broadcast(|ctx| ctx.index()), [0, 1]);
    }
}

// ===== yield_now =====

#[test]
fn yield_now_runs_pending_work_or_reports_idle() {
    assert_eq!(yield_now(), None);
    let pool = ThreadPool::new(1);
    assert_eq!(pool.yield_now(), None);
    let ran = AtomicUsize::new(0);
    pool.scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                ran.fetch_add(1, Ordering::SeqCst);
            });
        }
        let mut turns = 0;
        while yield_now() == Some(Yield::Executed) {
            turns += 1;
        }
        assert_eq!(turns, 3);
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        assert_eq!(pool.yield_now(), Some(Yield::Idle));
        // Another pool's yield_now is None here.
        let other = ThreadPool::new(1);
        assert_eq!(other.yield_now(), None);
    });
}

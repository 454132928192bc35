//! Pools calling pools: a thread of one pool that waits on another keeps its own pool going, so
//! mutual and deep nesting completes, and a panic crosses back to the caller.
//!
//! Every test runs under a watchdog: a regression (a thread that blocks instead of working)
//! fails the test after a generous limit instead of hanging the suite.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use workpool::ThreadPool;

/// Runs `f` on a thread of its own and fails if it has not returned within `limit` (the stuck
/// thread is left behind; the test binary's exit ends it).
fn within<R: Send + 'static>(what: &str, limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(result);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: no answer within {limit:?}: a pool thread blocked instead of working"),
    }
}

const LIMIT: Duration = Duration::from_secs(30);

fn one_thread_pool() -> ThreadPool {
    ThreadPool::new(1)
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn mutual_install_on_one_thread_pools() {
    // rayon-core's `mutual_install`: A's only thread waits for B, whose only thread waits for A.
    let ok = within("A -> B -> A", LIMIT, || {
        let (a, b) = (one_thread_pool(), one_thread_pool());
        a.install(|| b.install(|| a.install(|| true)))
    });
    assert!(ok);
}

#[test]
fn mutual_scopes_on_one_thread_pools() {
    // The shape: `pool1.scope(|_| pool2.scope(|_| pool1.scope(...)))`, with spawns at
    // every level that must all run.
    let ran = within("scope A -> scope B -> scope A", LIMIT, || {
        let (a, b) = (one_thread_pool(), one_thread_pool());
        let ran = AtomicUsize::new(0);
        a.scope(|sa| {
            sa.spawn(|| {
                ran.fetch_add(1, Ordering::SeqCst);
            });
            b.scope(|sb| {
                sb.spawn(|| {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
                a.scope(|sa2| {
                    sa2.spawn(|| {
                        ran.fetch_add(1, Ordering::SeqCst);
                    });
                });
            });
        });
        ran.into_inner()
    });
    assert_eq!(ran, 3);
}

#[test]
fn mutual_install_when_both_pools_were_asleep() {
    // rayon-core's `mutual_install_sleepy`: the calls arrive while the other pool's thread sleeps.
    let ok = within("sleepy A -> B -> A", LIMIT, || {
        let (a, b) = (one_thread_pool(), one_thread_pool());
        a.install(|| {
            std::thread::sleep(Duration::from_millis(20));
            b.install(|| {
                std::thread::sleep(Duration::from_millis(20));
                a.install(|| true)
            })
        })
    });
    assert!(ok);
}

#[test]
fn a_thread_waiting_on_another_pool_runs_its_own_pools_jobs() {
    // A has one thread. Its scope spawns a job, then calls into B, and B's closure waits until
    // that job ran: only A's thread can run it, and it is the thread waiting for B.
    let ran = within("A's job while A waits for B", LIMIT, || {
        let (a, b) = (one_thread_pool(), ThreadPool::new(2));
        let flag = AtomicBool::new(false);
        a.scope(|s| {
            s.spawn(|| flag.store(true, Ordering::SeqCst));
            b.install(|| {
                let deadline = Instant::now() + LIMIT;
                while !flag.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "A's job never ran");
                    std::thread::yield_now();
                }
            });
        });
        flag.into_inner()
    });
    assert!(ran);
}

#[test]
fn ten_pools_deep_and_back() {
    // A chain through ten pools (join and scope at each level, so each waiting thread's own
    // pool has work of its own), then back into the first, which is busy waiting at that point.
    fn level(pools: &[ThreadPool], depth: usize) -> usize {
        if depth == pools.len() {
            // Back into pool 0, whose thread is waiting for pool 1 by now.
            return pools[0].install(|| 1);
        }
        let pool = &pools[depth];
        pool.install(|| {
            let (inner, side) = pool.join(|| level(pools, depth + 1), || depth);
            let mut spawned = 0;
            pool.scope(|s| s.spawn(|| spawned = 1));
            inner + side + spawned
        })
    }
    for threads in [1, 2] {
        let total = within("ten pools deep", LIMIT, move || {
            let pools: Vec<ThreadPool> = (0..10).map(|_| ThreadPool::new(threads)).collect();
            level(&pools, 0)
        });
        assert_eq!(total, 1 + (0..10).sum::<usize>() + 10, "{threads} thread(s) per pool");
    }
}

#[test]
fn a_ring_of_pools_calling_each_other_concurrently() {
    // Four outside threads at once, each running a chain forty hops long around a ring of four
    // two-thread pools, with a `join` on each hop: every pool is called from the previous one
    // while its own threads are waiting on the next.
    fn hop(pools: &[ThreadPool], at: usize, left: usize) -> usize {
        if left == 0 {
            return 1;
        }
        let next = &pools[(at + 1) % pools.len()];
        let (rest, here) = next.join(|| hop(pools, at + 1, left - 1), || left);
        rest + here
    }
    let done = within("ring of pools", LIMIT, || {
        let pools: Arc<Vec<ThreadPool>> = Arc::new((0..4).map(|_| ThreadPool::new(2)).collect());
        let outside: Vec<_> = (0..4)
            .map(|start| {
                let pools = pools.clone();
                std::thread::spawn(move || pools[start].install(|| hop(&pools, start, 40)))
            })
            .collect();
        outside.into_iter().map(|t| t.join().unwrap()).collect::<Vec<_>>()
    });
    assert_eq!(done, [1 + (1..=40).sum::<usize>(); 4]);
}

#[test]
fn a_panic_crosses_pools_and_both_pools_live_on() {
    within("panics across pools", LIMIT, || {
        let (a, b, c) = (one_thread_pool(), one_thread_pool(), ThreadPool::new(2));
        // install inside install.
        let caught = catch_unwind(AssertUnwindSafe(|| a.install(|| b.install(|| -> u32 { panic!("from B") }))));
        assert_eq!(message(&*caught.unwrap_err()), "from B");
        // Through three pools, from a scope spawn and from a join, each caught one level up.
        let inner = a.install(|| {
            catch_unwind(AssertUnwindSafe(|| {
                b.install(|| c.scope(|s| s.spawn(|| panic!("from C's spawn"))));
            }))
        });
        assert_eq!(message(&*inner.unwrap_err()), "from C's spawn");
        let joined =
            catch_unwind(AssertUnwindSafe(|| b.install(|| c.join(|| 1, || -> u32 { panic!("from C's join") }))));
        assert_eq!(message(&*joined.unwrap_err()), "from C's join");
        // A panic in the outer pool after the inner call returned normally.
        let outer = catch_unwind(AssertUnwindSafe(|| {
            a.install(|| {
                let v = b.install(|| 7);
                assert_eq!(v, 7);
                panic!("from A");
            })
        }));
        assert_eq!(message(&*outer.unwrap_err()), "from A");
        // Every pool still works, in every direction.
        assert_eq!(a.install(|| b.install(|| c.install(|| a.install(|| 5)))), 5);
        assert_eq!(c.join(|| b.join(|| 1, || 2), || a.join(|| 3, || 4)), ((1, 2), (3, 4)));
    });
}

#[test]
fn broadcast_and_spawn_from_another_pool() {
    let (seen, got) = within("broadcast across pools", LIMIT, || {
        let (a, b) = (one_thread_pool(), ThreadPool::new(3));
        let seen = a.install(|| b.broadcast(|ctx| ctx.index()));
        let (tx, rx) = mpsc::channel();
        a.install(|| {
            for i in 0..10 {
                let tx = tx.clone();
                b.spawn(move || tx.send(i).unwrap());
            }
        });
        drop(tx);
        let mut got: Vec<i32> = rx.iter().collect();
        got.sort_unstable();
        (seen, got)
    });
    assert_eq!(seen, [0, 1, 2]);
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

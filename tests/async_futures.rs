//! The futures API beside `join`: what CPython's concurrent.futures tests check, where it applies
//! (as_completed order and completeness, result with a timeout, cancel of a pending task
//! versus a running one), and what it lacks: `kill`, `pid`, per-task timeouts, the worker's
//! end as data, awaiting without a runtime. Every test spawns real processes and leaves none.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use workpool::{as_completed, Executor};

workpool::test_support!();

fn executor(workers: usize) -> Executor {
    Executor::builder().workers(workers).build().expect("executor")
}

/// A minimal `block_on` (what `futures::executor::block_on` does): the handle's waker must
/// work without any runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

// ===== as_completed (test_as_completed, test_future_times_out, test_duplicate_futures) =====

#[test]
fn as_completed_yields_in_completion_order() {
    let ex = executor(3);
    let handles = [600, 50, 300].map(|ms| ex.submit(Nap(ms)));
    let order: Vec<usize> = as_completed(handles).map(|(index, result)| (index, result.unwrap()).0).collect();
    assert_eq!(order, [1, 2, 0]);
}

#[test]
fn as_completed_yields_every_handle_once_finished_and_failed_ones_too() {
    let ex = executor(2);
    let done = ex.submit(Square(3));
    while !done.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let handles = vec![done, ex.submit(Square(4)), ex.submit(Square(5)), ex.submit(Square(6))];
    let failing = ex.submit(Panic("on purpose".into()));
    let mut all = as_completed(handles.into_iter().chain([failing]));
    assert_eq!(all.remaining(), 5);
    let first = all.next().unwrap();
    assert_eq!(first.0, 0, "an already finished handle comes first");
    let mut seen: Vec<(usize, Result<u64, _>)> = vec![first];
    seen.extend(all.by_ref());
    assert_eq!(all.remaining(), 0);
    assert!(all.next().is_none());
    let indices: BTreeSet<usize> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..5).collect());
    for (index, result) in seen {
        match index {
            4 => assert!(result.unwrap_err().is_panic()),
            i => assert_eq!(result.unwrap(), [9, 16, 25, 36][i]),
        }
    }
}

#[test]
fn as_completed_next_timeout_returns_what_finished_in_time() {
    let ex = executor(2);
    let mut all = as_completed([ex.submit(Nap(1_500)), ex.submit(Nap(10))]);
    let first = all.next_timeout(Duration::from_secs(10)).expect("one finished in time");
    assert_eq!(first.map(|(i, r)| (i, r.is_ok())), Some((1, true)));
    let start = Instant::now();
    assert!(all.next_timeout(Duration::from_millis(100)).is_none(), "the other still runs");
    assert!(start.elapsed() >= Duration::from_millis(100));
    let last = all.next_timeout(Duration::from_secs(10)).expect("in time").expect("one left");
    assert_eq!(last.0, 0);
    assert_eq!(all.next_timeout(Duration::ZERO).map(|o| o.is_none()), Some(true), "exhausted");
}

#[test]
fn as_completed_is_a_stream_too() {
    let ex = executor(2);
    let mut all = as_completed([ex.submit(Nap(300)), ex.submit(Nap(20))]);
    let mut order = Vec::new();
    block_on(std::future::poll_fn(|cx| loop {
        match futures_core::Stream::poll_next(Pin::new(&mut all), cx) {
            Poll::Ready(Some((index, result))) => {
                result.unwrap();
                order.push(index);
            }
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }));
    assert_eq!(order, [1, 0]);
}

// ===== result with a timeout (test_result_with_timeout) =====

#[test]
fn join_timeout_gives_the_handle_back_then_the_result() {
    let ex = executor(1);
    let handle = ex.submit(Nap(400));
    let handle = handle.join_timeout(Duration::from_millis(50)).expect_err("not finished in 50 ms");
    assert!(!handle.is_finished());
    let pid = handle.join_timeout(Duration::from_secs(10)).expect("finished").unwrap();
    assert_ne!(pid, std::process::id());
}

// ===== cancel: pending versus running (test_cancel, test_cancelled, test_running) =====

#[test]
fn cancel_succeeds_on_a_pending_task_and_fails_on_a_running_one() {
    let marker = temp_dir("cancel-running").join("started");
    let ex = executor(1);
    let running = ex.submit(Marked { marker: marker.clone(), ms: 800 });
    // Written ahead to the same worker (the prefetch window), but not started.
    let prefetched = ex.submit(Nap(1));
    assert!(wait_until(Duration::from_secs(10), || marker.exists()));
    assert!(prefetched.pid().is_some(), "it was written to the worker already");
    assert!(prefetched.cancel(), "a prefetched task that has not started can be cancelled");
    assert!(!running.cancel(), "a running task cannot be cancelled");
    assert!(!running.cancel(), "nor twice");
    let queued = ex.submit(Nap(1));
    assert!(queued.cancel());
    assert!(!queued.cancel(), "cancelled once");
    assert!(prefetched.join().unwrap_err().is_cancelled());
    assert!(queued.join().unwrap_err().is_cancelled());
    assert!(running.join().is_ok(), "the running task was not disturbed");
    assert_eq!(ex.workers()[0].deaths, 0, "no worker was killed to cancel");
    assert_eq!(ex.submit(Square(3)).join().unwrap(), 9);
}

#[test]
fn cancel_of_a_finished_task_is_false() {
    let ex = executor(1);
    let handle = ex.submit(Square(2));
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!handle.cancel());
    assert!(!handle.kill());
    assert_eq!(handle.join().unwrap(), 4);
}

// ===== kill and pid =====

#[test]
fn kill_stops_a_running_task_by_killing_only_its_worker() {
    let marker = temp_dir("kill-running").join("started");
    let ex = executor(2);
    let victim = ex.submit(Marked { marker: marker.clone(), ms: 60_000 });
    assert!(wait_until(Duration::from_secs(10), || marker.exists()));
    let pid = victim.pid().expect("it runs in a worker");
    let bystander = ex.submit(Nap(300));
    let start = Instant::now();
    assert!(victim.kill());
    assert!(victim.is_finished(), "the handle is settled at once");
    assert!(victim.join().unwrap_err().is_cancelled());
    assert!(wait_until(Duration::from_secs(10), || process_gone(pid)), "its worker was killed");
    assert!(start.elapsed() < Duration::from_secs(5), "promptly: {:?}", start.elapsed());
    assert!(bystander.join().is_ok(), "the other task carried on");
    assert!(!victim_kill_twice_possible(&ex));
    assert_eq!(ex.submit(Square(7)).join().unwrap(), 49, "the slot got a new worker");
}

/// A second kill of a finished task says false (with a fresh handle: `join` consumed the first).
fn victim_kill_twice_possible(ex: &Executor) -> bool {
    let h = ex.submit(Square(1));
    while !h.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    h.kill()
}

#[test]
fn kill_right_after_submit_is_never_lost_whatever_the_timing() {
    // The kill may land before the task is written, after the worker claimed it but before its
    // STARTED frame was read, or while it runs: in every case the long task must stop, or the
    // next task would wait a minute behind it on the only worker.
    let ex = executor(1);
    assert_eq!(ex.submit(Square(1)).join().unwrap(), 1); // a warm worker
    for round in 0..40u64 {
        let long = ex.submit(Nap(60_000));
        if round % 4 != 0 {
            std::thread::sleep(Duration::from_micros(round * 50));
        }
        assert!(long.kill(), "round {round}");
        assert!(long.join().unwrap_err().is_cancelled());
        let next = ex.submit(Square(round));
        let result =
            next.join_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("round {round}: the kill was lost"));
        assert_eq!(result.unwrap(), round * round);
    }
}

#[test]
fn kill_of_a_task_queued_behind_a_running_one_costs_no_worker() {
    let ex = executor(1);
    let long = ex.submit(Nap(500));
    let waiting: Vec<_> = (0..5).map(|_| ex.submit(Nap(1))).collect();
    std::thread::sleep(Duration::from_millis(100));
    for h in &waiting {
        assert!(h.kill());
    }
    assert!(long.join().is_ok());
    for h in waiting {
        assert!(h.join().unwrap_err().is_cancelled());
    }
    assert_eq!(ex.workers()[0].deaths, 0);
}

#[test]
fn pid_is_none_while_queued_and_the_worker_once_sent() {
    let ex = executor(1);
    let first = ex.submit(Nap(300));
    // Far behind a full window: still in the executor's queue.
    let later: Vec<_> = (0..200).map(|_| ex.submit(Square(2))).collect();
    std::thread::sleep(Duration::from_millis(100));
    assert!(later.last().unwrap().pid().is_none());
    let pid = first.pid().expect("sent to the worker");
    assert_eq!(first.join().unwrap(), pid);
    for h in later {
        h.join().unwrap();
    }
}

#[test]
fn kill_on_drop_kills_an_unfinished_task_and_into_inner_disarms() {
    let marker = temp_dir("kill-on-drop").join("started");
    let ex = executor(1);
    let guarded = ex.submit(Marked { marker: marker.clone(), ms: 60_000 }).kill_on_drop();
    assert!(wait_until(Duration::from_secs(10), || marker.exists()));
    let pid = guarded.handle().pid().unwrap();
    drop(guarded);
    assert!(wait_until(Duration::from_secs(10), || process_gone(pid)));
    let kept = ex.submit(Nap(50)).kill_on_drop().into_inner();
    assert!(kept.join().is_ok(), "a disarmed guard lets the task run");
    let awaited = block_on(ex.submit(Square(5)).kill_on_drop());
    assert_eq!(awaited.unwrap(), 25);
}

// ===== per-task timeout =====

#[test]
fn submit_with_timeout_times_out_only_that_task() {
    let ex = executor(1);
    let slow = ex.submit_with_timeout(Nap(30_000), Duration::from_millis(200));
    let after = ex.submit(Nap(300)); // no limit of its own, and none on the executor
    let start = Instant::now();
    let err = slow.join().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(err.pid().is_some());
    assert_eq!(err.signal(), Some(libc::SIGKILL));
    assert!(after.join().is_ok(), "the next task ran past 200 ms without a limit");
    let quick = ex.submit_with_timeout(Square(4), Duration::from_secs(10));
    assert_eq!(quick.join().unwrap(), 16);
}

#[test]
fn a_per_task_timeout_kills_only_its_own_worker_the_other_slot_goes_on() {
    let ex = executor(2);
    // Both workers warm, their pids known.
    let warm: BTreeSet<u32> = [ex.submit(Nap(100)), ex.submit(Nap(100))].map(|h| h.join().unwrap()).into();
    assert_eq!(warm.len(), 2, "two workers");
    let long = ex.submit(Nap(800)); // no limit
    let timed = ex.submit_with_timeout(Nap(30_000), Duration::from_millis(200));
    let err = timed.join().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let killed = err.pid().expect("the timed-out task's worker");
    let survivor = long.join().expect("the other slot's task ran to its end");
    assert_ne!(survivor, killed);
    assert!(warm.contains(&survivor) && warm.contains(&killed), "{warm:?} {survivor} {killed}");
}

#[test]
fn a_dropped_handle_leaves_its_task_running_to_the_end() {
    let ex = executor(1);
    let marker = temp_dir("dropped-handle").join("ran");
    // Dropped at once, never awaited or joined: the task still runs (concurrent.futures' rule).
    drop(ex.submit(Marked { marker: marker.clone(), ms: 0 }));
    assert!(wait_until(Duration::from_secs(30), || marker.exists()), "the task of a dropped handle never ran");
    assert_eq!(ex.submit(Square(3)).join().unwrap(), 9);
}

#[test]
fn a_per_task_timeout_overrides_the_executors() {
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_millis(100)).build().unwrap();
    assert!(ex.submit(Nap(2_000)).join().unwrap_err().is_timeout());
    assert!(ex.submit_with_timeout(Nap(300), Duration::from_secs(10)).join().is_ok());
}

// ===== the worker's end as data =====

#[test]
fn a_worker_death_carries_its_signal_exit_code_and_pid() {
    let ex = executor(1);
    let abort = ex.submit(Crash::Abort).join().unwrap_err();
    assert_eq!(abort.signal(), Some(libc::SIGABRT));
    assert_eq!(abort.exit_code(), None);
    assert!(abort.pid().is_some_and(|pid| pid != std::process::id()));
    let exit = ex.submit(Crash::Exit(3)).join().unwrap_err();
    assert_eq!(exit.exit_code(), Some(3));
    assert_eq!(exit.signal(), None);
    assert_ne!(exit.pid(), abort.pid(), "a new worker");
    let panic = ex.submit(Panic("not a death".into())).join().unwrap_err();
    assert_eq!((panic.signal(), panic.exit_code(), panic.pid()), (None, None, None));
}

// ===== awaiting without a runtime, and map_stream =====

#[test]
fn a_handle_can_be_awaited_without_any_runtime() {
    let ex = executor(2);
    let sum: u64 = block_on(async {
        let mut total = 0;
        for n in 0..50 {
            total += ex.submit(Square(n)).await.unwrap();
        }
        total
    });
    assert_eq!(sum, (0..50).map(|n| n * n).sum::<u64>());
    assert!(block_on(ex.submit(Panic("awaited".into()))).unwrap_err().is_panic());
}

#[test]
fn map_stream_yields_in_input_order_with_a_bounded_window() {
    let ex = executor(2);
    let pulled = std::sync::atomic::AtomicUsize::new(0);
    let input = (0..2_000u64).map(|n| {
        pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Square(n)
    });
    let mut stream = ex.map_stream(input);
    let mut got = Vec::new();
    block_on(std::future::poll_fn(|cx| loop {
        match futures_core::Stream::poll_next(Pin::new(&mut stream), cx) {
            Poll::Ready(Some(r)) => {
                got.push(r.unwrap());
                if got.len() == 1 {
                    let read = pulled.load(std::sync::atomic::Ordering::Relaxed);
                    assert!(read <= 2 * 128 + 1, "the input is pulled lazily: {read} read for the first result");
                }
            }
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }));
    assert_eq!(got, (0..2_000u64).map(|n| n * n).collect::<Vec<_>>());
}

// ===== Parallel::iter / iter_unordered as a Stream =====

/// Polls `stream` to its end on this thread (parking while it is pending); the items, and how
/// many polls returned `Pending` (a stream that never did so might be blocking in `poll_next`).
fn drain<S: futures_core::Stream + Unpin>(mut stream: S) -> (Vec<S::Item>, usize) {
    let mut items = Vec::new();
    let mut pending = 0;
    block_on(std::future::poll_fn(|cx| loop {
        match futures_core::Stream::poll_next(Pin::new(&mut stream), cx) {
            Poll::Ready(Some(item)) => items.push(item),
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => {
                pending += 1;
                return Poll::Pending;
            }
        }
    }));
    (items, pending)
}

#[test]
fn a_parallel_run_is_a_stream_in_order_and_unordered_on_both_backends() {
    let squares: Vec<u64> = (0..300u64).map(|n| n * n).collect();
    for backend in [workpool::Backend::Processes, workpool::Backend::Threads] {
        let parallel = match backend {
            workpool::Backend::Processes => workpool::Parallel::new().executor(executor(2)),
            workpool::Backend::Threads => workpool::Parallel::new().backend(backend).n_jobs(2),
        };
        let (ordered, pending) = drain(parallel.iter((0..300).map(Square)));
        let ordered: Vec<u64> = ordered.into_iter().map(Result::unwrap).collect();
        assert_eq!(ordered, squares, "{backend:?}: in input order");
        assert!(pending > 0, "{backend:?}: the stream waited for batches without blocking in poll_next");
        let (unordered, _) = drain(parallel.iter_unordered((0..300).map(Square)));
        let mut unordered: Vec<u64> = unordered.into_iter().map(Result::unwrap).collect();
        unordered.sort_unstable();
        assert_eq!(unordered, squares, "{backend:?}: every output once");
    }
}

#[test]
fn a_parallel_stream_ends_with_the_first_error_and_lets_the_runtime_run_meanwhile() {
    let parallel = workpool::Parallel::new().executor(executor(2)).batch_size(1);
    let started = Instant::now();
    let (items, pending) = drain(parallel.iter([Nap(300), Nap(1)]));
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(Result::is_ok));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(pending > 0, "a 300 ms task was awaited, not waited for in poll_next");
    // A crash ends the run with its error; the task behind it is not yielded.
    let (items, _) =
        drain(workpool::Parallel::new().executor(executor(1)).batch_size(1).iter([Crash::Abort, Crash::Abort]));
    assert_eq!(items.len(), 1, "the first error ends the run");
    assert!(items[0].as_ref().unwrap_err().is_worker_death());
}

//! The process executor's happy path and every error that bad *data* can cause.

mod common;

use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workpool::{ErrorKind, Executor, Shutdown};

workpool::test_support!();

fn executor(workers: usize) -> Executor {
    Executor::builder().workers(workers).build().expect("executor")
}

#[test]
fn submit_join_and_map_in_order() {
    let ex = executor(2);
    assert_eq!(ex.submit(Square(12)).join().unwrap(), 144);
    let got: Vec<u64> = ex.map((0..3000).map(Square)).map(Result::unwrap).collect();
    assert_eq!(got, (0..3000u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn workers_start_lazily() {
    let ex = executor(2);
    std::thread::sleep(Duration::from_millis(50));
    assert!(worker_pids(&ex).is_empty(), "no task yet, so no worker process");
    ex.submit(Square(1)).join().unwrap();
    assert!(!worker_pids(&ex).is_empty());
}

#[test]
fn worker_counters_are_settled_when_join_returns() {
    let ex = executor(1);
    for i in 1..=300u64 {
        ex.submit(Square(i)).join().unwrap();
        let w = &ex.workers()[0];
        assert_eq!((w.tasks_run, w.in_flight), (i, 0), "snapshot right after join #{i}: {w:?}");
    }
    let pid = ex.workers()[0].pid.unwrap();
    assert!(ex.submit(Crash::Abort).join().unwrap_err().is_worker_death());
    let w = &ex.workers()[0];
    assert_eq!((w.deaths, w.in_flight), (1, 0), "{w:?}");
    assert_ne!(w.pid, Some(pid), "the dead worker is no longer listed: {w:?}");
}

#[test]
fn many_threads_submit_at_once() {
    let ex = executor(2);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let ex = ex.clone();
            std::thread::spawn(move || {
                let handles: Vec<_> = (0..300).map(|i| (t * 1000 + i, ex.submit(Square(t * 1000 + i)))).collect();
                for (x, h) in handles {
                    assert_eq!(h.join().unwrap(), x * x);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn an_unregistered_type_fails_at_once_naming_it() {
    let ex = executor(1);
    let start = Instant::now();
    let err = ex.submit(Stranger).join().unwrap_err();
    assert!(err.is_not_registered());
    assert!(err.to_string().contains("Stranger"), "{err}");
    assert!(err.to_string().contains("register!"), "the error says what to do: {err}");
    assert!(start.elapsed() < Duration::from_millis(500));
    assert!(worker_pids(&ex).is_empty(), "no worker was needed to know that");
}

#[test]
fn an_argument_that_fails_to_serialize_fails_only_its_handle() {
    let ex = executor(1);
    let err = ex.submit(Unserializable).join().unwrap_err();
    assert!(err.is_codec(), "{err:?}");
    assert!(err.to_string().contains("refuses to be serialized"), "{err}");
    assert!(ex.workers().iter().all(|w| w.starts == 0), "no worker was touched");
    assert_eq!(ex.submit(Square(3)).join().unwrap(), 9);
}

#[test]
fn an_argument_that_fails_to_decode_in_the_worker_fails_its_task_and_the_worker_lives() {
    let ex = executor(1);
    let before = ex.submit(Pid).join().unwrap();
    let err = ex.submit(Undecodable(5)).join().unwrap_err();
    assert!(err.is_codec(), "{err:?}");
    assert!(err.to_string().contains("decoding the argument in the worker"), "{err}");
    assert!(err.to_string().contains("Undecodable(5) refuses"), "the codec's message: {err}");
    assert_eq!(ex.submit(Pid).join().unwrap(), before, "same worker process");
}

#[test]
fn a_result_that_fails_to_serialize_fails_its_task_and_the_worker_lives() {
    let ex = executor(1);
    let before = ex.submit(Pid).join().unwrap();
    let err = ex.submit(BadOutput).join().unwrap_err();
    assert!(err.is_codec(), "{err:?}");
    assert!(err.to_string().contains("encoding the result in the worker"), "{err}");
    assert_eq!(ex.submit(Pid).join().unwrap(), before, "same worker process");
}

#[test]
fn one_tasks_bad_data_does_not_touch_its_neighbours() {
    let ex = executor(2);
    let handles: Vec<_> = (0..60u64)
        .map(|i| match i % 3 {
            0 => (i, Some(ex.submit(Square(i)))),
            1 => {
                assert!(ex.submit(Undecodable(i)).join().is_err());
                (i, None)
            }
            _ => {
                assert!(ex.submit(BadOutput).join().is_err());
                (i, None)
            }
        })
        .collect();
    for (i, h) in handles {
        if let Some(h) = h {
            assert_eq!(h.join().unwrap(), i * i);
        }
    }
}

#[test]
fn a_panic_carries_message_and_location_and_the_worker_lives() {
    let ex = executor(1);
    let before = ex.submit(Pid).join().unwrap();
    let err = ex.submit(Panic("it broke: 42".into())).join().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("it broke: 42"));
    match err.kind() {
        ErrorKind::Panic { location: Some(at), .. } => assert!(at.contains("common/mod.rs"), "{at}"),
        other => panic!("expected a panic with a location, got {other:?}"),
    }
    assert_eq!(ex.submit(Pid).join().unwrap(), before);
}

#[test]
fn tasks_may_print_without_disturbing_the_protocol() {
    let ex = executor(2);
    let got: Vec<u64> = ex.map((0..50).map(Noisy)).map(Result::unwrap).collect();
    assert_eq!(got, (1..51).collect::<Vec<_>>());
}

#[test]
fn join_timeout_gives_the_handle_back() {
    let ex = executor(1);
    let h = ex.submit(Nap(300));
    let h = h.join_timeout(Duration::from_millis(20)).expect_err("not finished after 20 ms");
    assert!(!h.is_finished());
    let pid = h.join_timeout(Duration::from_secs(10)).expect("finished").unwrap();
    assert!(pid > 0);
}

#[test]
fn cancel_works_for_queued_tasks_only_and_a_cancelled_task_never_runs() {
    let dir = temp_dir("cancel");
    let log = dir.join("log");
    let ex = executor(1);
    let busy = ex.submit(Nap(400));
    // Let the worker start and take the nap, then queue more behind it.
    while ex.workers()[0].in_flight == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let queued: Vec<_> = (0..5).map(|id| ex.submit(Logged { id, log: log.clone(), crash: false })).collect();
    // The prefetch window may already hold one or two; the last ones are surely still queued.
    assert!(queued[4].cancel(), "a queued task can be cancelled");
    assert!(!queued[4].cancel(), "only once");
    busy.join().unwrap();
    let mut cancelled = Vec::new();
    for (id, h) in queued.into_iter().enumerate() {
        match h.join() {
            Ok(v) => assert_eq!(v, (id * id) as u64),
            Err(e) => {
                assert!(e.is_cancelled(), "{e}");
                cancelled.push(id as u64);
            }
        }
    }
    assert!(cancelled.contains(&4));
    let ran = read_ids(&log);
    for id in &cancelled {
        assert!(!ran.contains(id), "cancelled task {id} ran");
    }
    assert_eq!(ran.len() + cancelled.len(), 5);
    let done = ex.submit(Nap(0));
    assert!(!done.cancel() || done.join().unwrap_err().is_cancelled());
}

#[test]
fn map_pulls_its_input_lazily_and_keeps_a_bounded_window() {
    let ex = executor(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let input = (0..1_000_000u64).map(move |x| {
        counter.fetch_add(1, Ordering::Relaxed);
        Square(x)
    });
    let mut results = ex.map(input);
    for i in 0..1000u64 {
        assert_eq!(results.next().unwrap().unwrap(), i * i);
    }
    let seen = pulled.load(Ordering::Relaxed);
    assert!(seen < 1000 + 2 * 128 + 10, "map pulled {seen} inputs to yield 1000: not bounded");
}

#[test]
fn dropping_a_map_cancels_what_has_not_started() {
    let ex = executor(1);
    let mut results = ex.map((0..200).map(|_| Nap(5)));
    results.next().unwrap().unwrap();
    drop(results);
    std::thread::sleep(Duration::from_millis(200));
    let run: u64 = ex.workers().iter().map(|w| w.tasks_run).sum();
    assert!(run < 60, "{run} tasks ran after the map was dropped at the first result");
}

#[test]
fn dropping_the_executor_loses_no_submitted_work_then_stops_the_workers() {
    let ex = executor(2);
    let handles: Vec<_> = (0..20).map(|_| ex.submit(Nap(20))).collect();
    while worker_pids(&ex).len() < 2 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let pids = worker_pids(&ex);
    drop(ex);
    for h in handles {
        assert!(h.join().is_ok(), "a task submitted before the drop must still run");
    }
    assert!(wait_until(Duration::from_secs(5), || pids.iter().all(|&p| process_gone(p))));
}

#[test]
fn shutdown_cancels_queued_work_on_request_and_waits_for_workers() {
    let ex = executor(1);
    let running = ex.submit(Nap(200));
    while ex.workers()[0].in_flight == 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(30));
    let queued: Vec<_> = (0..10).map(|_| ex.submit(Nap(200))).collect();
    let pids = worker_pids(&ex);
    let start = Instant::now();
    ex.shutdown(Shutdown::CancelQueued);
    assert!(start.elapsed() < Duration::from_secs(3), "cancelled work was not waited for");
    assert!(running.join().is_ok());
    let cancelled = queued.into_iter().filter(|h| !h.is_finished() || h.cancel()).count();
    assert_eq!(cancelled, 0, "every handle is settled after shutdown");
    assert!(pids.iter().all(|&p| process_gone(p)), "shutdown returns after the workers are reaped");
    let late = ex.submit(Square(2)).join().unwrap_err();
    assert!(matches!(late.kind(), ErrorKind::ShutDown), "{late:?}");
}

#[test]
fn idle_workers_exit_and_come_back() {
    let ex = Executor::builder().workers(2).idle_timeout(Duration::from_millis(150)).build().unwrap();
    let first: Vec<u32> = ex.map((0..4).map(|_| Nap(20))).map(Result::unwrap).collect();
    assert!(wait_until(Duration::from_secs(3), || first.iter().all(|&p| process_gone(p))));
    assert!(worker_pids(&ex).is_empty());
    assert_eq!(ex.submit(Square(4)).join().unwrap(), 16);
    let info = ex.workers();
    assert!(info.iter().map(|w| w.starts).sum::<u64>() >= 2, "{info:?}");
    assert_eq!(info.iter().map(|w| w.deaths).sum::<u64>(), 0, "idling out is not a death: {info:?}");
}

#[test]
fn workers_get_thread_caps_unless_the_user_set_them() {
    let ex = executor(2);
    let vars = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"];
    let got = ex.submit(Env(vars.iter().map(|s| s.to_string()).collect())).join().unwrap();
    let expected = (workpool::cpu_count() / 2).max(1).to_string();
    for (var, value) in vars.iter().zip(got) {
        match std::env::var(var) {
            Ok(user) => assert_eq!(value.as_deref(), Some(user.as_str()), "{var}: the user's value wins"),
            Err(_) => assert_eq!(value.as_deref(), Some(expected.as_str()), "{var}"),
        }
    }
    let marker = ex.submit(Env(vec!["WORKPOOL_WORKER".into()])).join().unwrap();
    assert_eq!(marker, vec![None], "tasks' own children must not look like workers");
}

#[test]
fn reusable_executors_under_concurrent_requests_with_different_configs_all_work() {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let ex = Executor::builder().workers(1 + (t as usize % 2)).reusable().unwrap();
                let got: Vec<u64> = ex.map((0..50).map(|i| Square(t * 100 + i))).map(Result::unwrap).collect();
                assert_eq!(got, (0..50).map(|i| (t * 100 + i) * (t * 100 + i)).collect::<Vec<_>>());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = Executor::builder().workers(2).reusable().unwrap();
    let b = Executor::builder().workers(2).reusable().unwrap();
    assert_eq!(a.submit(Pid).join().unwrap() > 0, b.submit(Pid).join().unwrap() > 0);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

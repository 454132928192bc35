//! Seeing a run: log events through the `log` facade, the stats' arithmetic on tasks of known
//! length, and the structure of a recorded timeline (valid Chrome trace-event JSON, one track
//! per slot, spans that do not overlap, a death with its signal). Real worker processes; bounds
//! are generous for a loaded 2-core machine.

mod common;

use common::*;
use parking_lot::Mutex;
use serde_json::Value;
use std::time::Duration;
use workpool::{Executor, Parallel};

workpool::test_support!();

/// Every record logged in this test binary (the logger is process-wide).
static LOGGED: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LOGGED.lock().push((record.level(), record.target().to_string(), record.args().to_string()));
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

fn logged_containing(needle: &str) -> Vec<(log::Level, String, String)> {
    LOGGED.lock().iter().filter(|(_, _, m)| m.contains(needle)).cloned().collect()
}

#[test]
fn a_crash_is_logged_with_its_signal_and_the_respawn_too() {
    capture_logs();
    let ex = Executor::builder().workers(1).build().unwrap();
    assert_eq!(ex.submit(Square(3)).join().unwrap(), 9);
    let pid = ex.workers()[0].pid.expect("a worker runs");
    assert!(!logged_containing(&format!("worker {pid} started")).is_empty(), "{:?}", LOGGED.lock());
    let err = ex.submit(Crash::Abort).join().unwrap_err();
    assert!(err.is_worker_death());
    let deaths = logged_containing(&format!("worker {pid} died"));
    assert_eq!(deaths.len(), 1, "{:?}", LOGGED.lock());
    let (level, target, message) = &deaths[0];
    assert_eq!((*level, target.as_str()), (log::Level::Warn, "workpool"));
    assert!(message.contains("SIGABRT") && message.contains("Crash"), "{message}");
    assert_eq!(ex.submit(Square(4)).join().unwrap(), 16);
    let new_pid = ex.workers()[0].pid.expect("a new worker");
    assert!(!logged_containing(&format!("worker {new_pid} respawned")).is_empty(), "{:?}", LOGGED.lock());
}

#[test]
fn a_timeout_and_a_recycled_worker_are_logged() {
    capture_logs();
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_millis(350)).max_tasks_per_worker(2).build();
    let ex = ex.unwrap();
    let err = ex.submit(Nap(10_000)).join().unwrap_err();
    assert!(err.is_timeout());
    let killed = logged_containing("killed: its task ran past the 350ms task timeout");
    assert_eq!(killed.len(), 1, "{:?}", LOGGED.lock());
    let pid = killed[0].2.split_whitespace().nth(3).unwrap().to_string();
    assert!(!logged_containing(&format!("worker {pid} died")).is_empty());
    let pids: Vec<u32> = (0..2).map(|_| ex.submit(Pid).join().unwrap()).collect();
    assert!(
        wait_until(Duration::from_secs(10), || !logged_containing(&format!("worker {} recycled", pids[1])).is_empty())
    );
    assert_eq!(ex.stats().total.recycled, 1);
    assert_eq!(ex.stats().total.deaths.timeout, 1);
}

/// An initializer that fails: no worker of its executor can start.
#[workpool::task]
fn refuse_to_start() {
    panic!("no licence server");
}

#[test]
fn a_start_failure_and_an_idle_exit_are_logged_and_a_start_failure_is_on_the_timeline() {
    capture_logs();
    let limit = Duration::from_secs(30);
    let ex = Executor::builder().workers(1).initializer(RefuseToStart {}).build().unwrap();
    let recording = ex.record();
    let err = ex.submit(Square(2)).join_timeout(limit).expect("no hang").unwrap_err();
    assert!(err.is_spawn(), "{err}");
    let timeline = recording.finish();
    let given_up = logged_containing("slot 0: no worker could be started");
    assert!(!given_up.is_empty(), "{:?}", LOGGED.lock());
    assert_eq!((given_up[0].0, given_up[0].1.as_str()), (log::Level::Warn, "workpool"));
    assert!(given_up[0].2.contains("no licence server"), "{:?}", given_up[0]);
    let trace: Value = serde_json::from_str(&timeline.to_chrome_json()).unwrap();
    let failed: Vec<&Value> =
        trace["traceEvents"].as_array().unwrap().iter().filter(|e| e["name"] == "start failed").collect();
    assert!(failed.iter().any(|e| e["args"]["gave_up"] == true && e["tid"] == 0), "{failed:?}");

    let idle = Executor::builder().workers(1).idle_timeout(Duration::from_millis(200)).build().unwrap();
    let pid = idle.submit(Pid).join_timeout(limit).expect("no hang").unwrap();
    let exited = format!("worker {pid} exited after its idle timeout");
    assert!(wait_until(Duration::from_secs(10), || !logged_containing(&exited).is_empty()), "{:?}", LOGGED.lock());
    assert_eq!(logged_containing(&exited)[0].0, log::Level::Debug);
}

#[test]
fn stats_add_up_on_tasks_of_known_length() {
    let ex = Executor::builder().workers(2).build().unwrap();
    let started = std::time::Instant::now();
    // 8 naps of 50 ms on 2 workers: 400 ms busy, at least 200 ms of wall time.
    let naps: Vec<_> = (0..8).map(|_| ex.submit(Nap(50))).collect();
    naps.into_iter().for_each(|n| {
        n.join().unwrap();
    });
    let wall = started.elapsed();
    let stats = ex.stats();
    assert_eq!(stats.slots.len(), 2);
    assert_eq!(stats.total.tasks_run, 8);
    assert_eq!(stats.slots.iter().map(|s| s.tasks_run).sum::<u64>(), 8);
    // Each nap sleeps at least 50 ms; a loaded machine may stretch them, not by 30 ms each.
    assert!(stats.total.busy >= Duration::from_millis(400), "{stats:?}");
    assert!(stats.total.busy < Duration::from_millis(400 + 8 * 30) + wall / 2, "{stats:?}");
    let busy_sum: Duration = stats.slots.iter().map(|s| s.busy).sum();
    assert_eq!(busy_sum, stats.total.busy);
    // Both slots started a worker (the prefetch rule leaves work to an idle slot).
    assert_eq!(stats.total.starts, 2, "{stats:?}");
    assert!(stats.total.starting > Duration::ZERO && stats.total.starting < wall, "{stats:?}");
    // Frames: 8 task frames out, 8 results back, each a few dozen bytes.
    assert!(stats.total.bytes_to_workers >= 8 * 16 && stats.total.bytes_to_workers < 8 * 1024, "{stats:?}");
    assert!(stats.total.bytes_from_workers >= 8 * 4, "{stats:?}");
    assert_eq!(stats.total.deaths.total(), 0);
    // Busy, idle and starting time of a slot fit in its lifetime.
    for s in &stats.slots {
        assert!(s.busy + s.idle + s.starting <= stats.uptime + Duration::from_millis(5), "{s:?}");
    }
    assert!(stats.efficiency() > 0.0 && stats.efficiency() <= 1.0, "{}", stats.efficiency());
    // Idle time grows while nothing runs.
    std::thread::sleep(Duration::from_millis(100));
    ex.submit(Square(2)).join().unwrap();
    let later = ex.stats();
    assert!(later.total.idle >= stats.total.idle + Duration::from_millis(100), "{:?} then {:?}", stats, later);
    // `workers()` keeps reporting the same counts.
    assert_eq!(ex.workers().iter().map(|w| w.tasks_run).sum::<u64>(), 9);
}

#[test]
fn deaths_are_counted_by_cause() {
    let ex = Executor::builder().workers(1).task_timeout(Duration::from_millis(300)).build().unwrap();
    assert!(ex.submit(Crash::Segfault).join().unwrap_err().is_worker_death());
    assert!(ex.submit(Crash::Exit(3)).join().unwrap_err().is_worker_death());
    assert!(ex.submit(Nap(10_000)).join().unwrap_err().is_timeout());
    let deaths = ex.stats().total.deaths;
    assert_eq!((deaths.signal, deaths.exit, deaths.timeout, deaths.interrupted), (1, 1, 1, 0), "{deaths:?}");
    assert_eq!(ex.workers()[0].deaths, 3);
}

#[test]
fn parallel_stats_measure_batches_efficiency_and_the_serial_fraction() {
    let ex = Executor::builder().workers(2).build().unwrap();
    // 20 naps of 20 ms, one per batch, on 2 jobs: 400 ms busy in at least 200 ms.
    let mut run = Parallel::new().executor(ex).n_jobs(2).batch_size(1).iter((0..20).map(|_| Nap(20)));
    let outputs: Vec<u32> = run.by_ref().map(Result::unwrap).collect();
    assert_eq!(outputs.len(), 20);
    let stats = run.stats();
    assert_eq!((stats.jobs, stats.tasks, stats.batches), (2, 20, 20));
    assert_eq!(stats.batch_sizes, vec![(1, 20)]);
    assert!(stats.busy >= Duration::from_millis(400) && stats.busy < Duration::from_millis(400 + 20 * 30), "{stats:?}");
    // The first batch is dispatched before any worker exists: the wall time includes the starts.
    assert!(stats.wall >= Duration::from_millis(200) - Duration::from_millis(25), "{stats:?}");
    let e = stats.efficiency();
    assert!((e - stats.busy.as_secs_f64() / (2.0 * stats.wall.as_secs_f64())).abs() < 1e-9);
    assert!(e > 0.3 && e <= 1.05, "efficiency {e}: {stats:?}");
    let serial = stats.serial_fraction().expect("2 jobs");
    let s = stats.speedup();
    assert!((serial - ((1.0 / s - 0.5) / 0.5).clamp(0.0, 1.0)).abs() < 1e-9);
    // Sleeping tasks scale; what is serial is dispatch and start-up (generous for a loaded machine).
    assert!((0.0..=0.9).contains(&serial), "serial fraction {serial}: {stats:?}");
}

// ===== the timeline =====

#[test]
fn one_parallel_call_records_its_timeline_on_processes_and_none_on_threads() {
    let ex = Executor::builder().workers(2).build().unwrap();
    let mut run = Parallel::new().executor(ex).n_jobs(2).batch_size(5).iter((0..100).map(Square));
    let recording = run.record().expect("the process backend records");
    let squares: Vec<u64> = run.by_ref().map(Result::unwrap).collect();
    let timeline = recording.finish();
    assert_eq!(squares.len(), 100);
    // Every task is counted; each batch is one span, of its size, on one of the two slots' tracks.
    assert_eq!(timeline.tasks(), 100);
    let trace: Value = serde_json::from_str(&timeline.to_chrome_json()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let spans: Vec<&Value> = events.iter().filter(|e| e["cat"] == "task").collect();
    assert_eq!(spans.len(), 20, "a span per batch of 5");
    assert!(spans.iter().all(|e| e["args"]["tasks"] == 5 && e["tid"].as_u64().unwrap() < 2), "{spans:?}");
    let threads = Parallel::new().backend(workpool::Backend::Threads).n_jobs(2).iter((0..10).map(Square));
    assert!(threads.record().is_none());
}

fn spans_on(events: &[Value], tid: u64) -> Vec<(f64, f64, String)> {
    let mut spans: Vec<(f64, f64, String)> = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["tid"].as_u64() == Some(tid))
        .map(|e| {
            let ts = e["ts"].as_f64().unwrap();
            (ts, ts + e["dur"].as_f64().unwrap(), e["name"].as_str().unwrap().to_string())
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    spans
}

#[test]
fn a_timeline_is_chrome_trace_json_with_a_track_per_slot_and_deaths() {
    let ex = Executor::builder().workers(2).task_timeout(Duration::from_millis(500)).build().unwrap();
    let recording = ex.record();
    let squares: Vec<u64> = ex.map((0..200).map(Square)).map(Result::unwrap).collect();
    assert_eq!(squares[10], 100);
    let naps: Vec<_> = (0..4).map(|_| ex.submit(Nap(30))).collect();
    naps.into_iter().for_each(|n| {
        n.join().unwrap();
    });
    assert!(ex.submit(Crash::Abort).join().unwrap_err().is_worker_death());
    assert!(ex.submit(Nap(10_000)).join().unwrap_err().is_timeout());
    let timeline = recording.finish();
    assert!(timeline.tasks() >= 206, "{}", timeline.tasks());
    let path = temp_dir("timeline").join("timeline.json");
    timeline.write_chrome_json(&path).unwrap();
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    // One named track per slot, and every slot event on one of them.
    let tracks: Vec<&Value> = events
        .iter()
        .filter(|e| e["name"] == "thread_name" && e["args"]["name"].as_str().unwrap().starts_with("slot"))
        .collect();
    assert_eq!(tracks.len(), 2);
    let task_tids: std::collections::BTreeSet<u64> =
        events.iter().filter(|e| e["cat"] == "task").map(|e| e["tid"].as_u64().unwrap()).collect();
    assert!(task_tids.iter().all(|t| *t < 2), "{task_tids:?}");
    // Task spans: name = the task type, args = id and bytes each way.
    let square = events.iter().find(|e| e["cat"] == "task" && e["name"].as_str().unwrap().ends_with("Square")).unwrap();
    assert!(square["args"]["id"].as_u64().is_some() && square["args"]["bytes_in"].as_u64().unwrap() > 0, "{square}");
    assert!(square["args"]["bytes_out"].as_u64().unwrap() > 0, "{square}");
    // Spans on one track never overlap (nor do they have negative lengths).
    for tid in 0..2 {
        let spans = spans_on(events, tid);
        assert!(!spans.is_empty());
        for pair in spans.windows(2) {
            assert!(pair[0].0 <= pair[0].1, "{pair:?}");
            assert!(pair[0].1 <= pair[1].0 + 1e-3, "overlap on slot {tid}: {pair:?}");
        }
    }
    // Spawns, the death with its signal, the timeout, and the caller's waits.
    assert!(events.iter().filter(|e| e["cat"] == "spawn" && e["ph"] == "X").count() >= 2);
    let deaths: Vec<&Value> = events.iter().filter(|e| e["name"] == "death").collect();
    assert!(deaths.iter().any(|d| d["args"]["signal"] == "SIGABRT" && d["args"]["cause"] == "crash"), "{deaths:?}");
    assert!(deaths.iter().any(|d| d["args"]["cause"] == "timeout"), "{deaths:?}");
    assert_eq!(events.iter().filter(|e| e["name"] == "timeout").count(), 1);
    // The tasks whose workers died have spans too, marked `failed`: the crash and the timeout.
    let failed: Vec<&str> = events
        .iter()
        .filter(|e| e["cat"] == "task" && e["args"]["failed"].is_string())
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().any(|n| n.ends_with("Crash")) && failed.iter().any(|n| n.ends_with("Nap")), "{failed:?}");
    assert!(events.iter().any(|e| e["cat"] == "wait" && e["ph"] == "X"));
    // After finish, nothing more is recorded.
    ex.submit(Square(1)).join().unwrap();
    assert_eq!(ex.record().finish().tasks(), 0);
}

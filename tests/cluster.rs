//! Remote workers through `Launcher::command` on this machine: the same tasks and faults as
//! local workers, over the authenticated TCP link (the ssh and mpirun launchers have tests of
//! their own: `tests/cluster_ssh.rs`, `tests/cluster_mpi.rs`).

use std::time::{Duration, Instant};
use workpool::{Executor, Launcher};

workpool::test_support!();

/// Warnings logged in this test binary (the logger is process-wide).
static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) && record.target() == "workpool" {
            WARNED.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_warnings() {
    let _ = log::set_logger(&Capture); // once per binary; later calls find it set
    log::set_max_level(log::LevelFilter::Warn);
}

#[workpool::task]
fn square(n: u64) -> u64 {
    n * n
}

#[workpool::task]
fn abort_now() -> u64 {
    std::process::abort()
}

#[workpool::task]
fn nap(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// `env -i`: the worker gets none of our environment, as over ssh.
fn launcher() -> Launcher {
    Launcher::command(["env", "-i", "{command}"]).hosts(["localhost:2"])
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// The worker processes under a supervisor (its children).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut all = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    all
}

fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn tasks_run_on_launched_workers() {
    let ex = Executor::builder().launcher(launcher()).build().unwrap();
    assert_eq!(ex.workers().len(), 2, "workers(0) is the launcher's slots");
    let squares: Vec<u64> = ex.map((0..500).map(|n| Square { n })).map(Result::unwrap).collect();
    assert_eq!(squares[499], 499 * 499);
    let pids: Vec<u32> = ex.workers().iter().filter_map(|w| w.pid).collect();
    assert!(!pids.is_empty());
    let workers: Vec<u32> = pids.iter().flat_map(|&p| children(p)).collect();
    drop(ex);
    assert!(wait_gone(&pids, Duration::from_secs(10)), "supervisors left after drop");
    assert!(wait_gone(&workers, Duration::from_secs(10)), "workers left after drop");
}

#[test]
fn a_crash_costs_its_task_and_names_the_signal_and_host() {
    let ex = Executor::builder().launcher(launcher()).workers(1).build().unwrap();
    assert_eq!(ex.submit(Square { n: 3 }).join().unwrap(), 9);
    let err = ex.submit(AbortNow {}).join().unwrap_err();
    assert!(err.is_worker_death(), "{err}");
    let text = err.to_string();
    assert!(text.contains("SIGABRT") && text.contains("localhost"), "{text}");
    // The host asked for, and where the worker says it ran (no Slurm or MPI here: its host name).
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(text.contains(&format!("localhost ({})", hostname.trim())), "{text}");
    assert_eq!(ex.submit(Square { n: 4 }).join().unwrap(), 16, "the slot restarts through the launcher");
}

#[test]
fn a_timeout_kills_the_remote_worker_and_the_slot_goes_on() {
    let ex =
        Executor::builder().launcher(launcher()).workers(1).task_timeout(Duration::from_millis(500)).build().unwrap();
    let first = ex.submit(Nap { ms: 0 }).join().unwrap();
    let err = ex.submit(Nap { ms: 60_000 }).join().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(wait_gone(&[first], Duration::from_secs(10)), "the timed-out worker {first} lives on");
    assert_eq!(ex.submit(Square { n: 5 }).join().unwrap(), 25);
}

#[test]
fn a_stopped_remote_worker_is_found_by_its_silence() {
    let ex = Executor::builder().launcher(launcher()).workers(1).build().unwrap();
    let worker = ex.submit(Nap { ms: 0 }).join().unwrap();
    let handle = ex.submit(Nap { ms: 120_000 });
    std::thread::sleep(Duration::from_millis(300));
    let supervisor = ex.workers()[0].pid.unwrap();
    assert!(children(supervisor).contains(&worker));
    let clock = Instant::now();
    for pid in [supervisor, worker] {
        // SAFETY: kill(2) on processes this test started.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    }
    let err = handle.join().unwrap_err();
    let took = clock.elapsed();
    assert!(err.is_worker_death(), "{err}");
    assert!(err.to_string().contains("silent"), "{err}");
    assert!(took < Duration::from_secs(10), "found after {took:?}");
    // SAFETY: as above.
    unsafe { libc::kill(worker as i32, libc::SIGCONT) };
    assert!(wait_gone(&[supervisor, worker], Duration::from_secs(10)), "a stopped worker was left behind");
    assert_eq!(ex.submit(Square { n: 6 }).join().unwrap(), 36);
}

#[test]
fn a_worker_given_the_wrong_key_never_joins() {
    let wrong = "00".repeat(32);
    let launcher = Launcher::command(["sh", "-c", &format!("echo {wrong} | {{command_line}}")]);
    capture_warnings();
    let ex = Executor::builder().launcher(launcher).build().unwrap();
    let err = ex.submit(Square { n: 2 }).join().unwrap_err();
    assert!(err.is_spawn(), "{err}");
    assert!(err.to_string().contains("did not join"), "{err}");
    let warned = WARNED.lock().unwrap().clone();
    assert!(
        warned.iter().any(|w| w.contains("dropped a connection from") && w.contains("refuses this executor")),
        "the refused challenge is logged: {warned:?}"
    );
}

#[test]
fn a_stranger_on_the_port_is_dropped_and_costs_nothing() {
    capture_warnings();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ex = Executor::builder().launcher(launcher()).workers(1).listen(address).build().unwrap();
    use std::io::{Read, Write};
    let mut stranger = std::net::TcpStream::connect(address).unwrap();
    let mut opening = b"WPR1".to_vec();
    opening.extend_from_slice(&[0; 48]);
    stranger.write_all(&opening).unwrap();
    assert_eq!(ex.submit(Square { n: 7 }).join().unwrap(), 49);
    stranger.write_all(&[0; 32]).unwrap();
    stranger.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = stranger.read_to_end(&mut rest);
    assert_eq!(rest.len(), 64, "only the parent's nonce and tag, then the connection is dropped");
    assert_eq!(ex.submit(Square { n: 8 }).join().unwrap(), 64);
    let from = stranger.local_addr().unwrap().to_string();
    let warned = WARNED.lock().unwrap().clone();
    assert!(
        warned.iter().any(|w| w.contains(&format!("dropped a connection from {from}: no answer to the challenge"))),
        "the dropped connection is logged as a warning: {warned:?}"
    );
}

#[test]
fn another_build_is_a_start_error_naming_the_host_and_not_sticky() {
    let dir = std::env::temp_dir().join(format!("workpool-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("other-build");
    let mut bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    bytes.push(0); // the same program, another build
    std::fs::write(&copy, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ex = Executor::builder().launcher(launcher().hosts(["localhost"]).program(&copy)).build().unwrap();
    let err = ex.submit(Square { n: 2 }).join().unwrap_err();
    assert!(err.is_spawn(), "{err}");
    let text = err.to_string();
    assert!(text.contains("different build") && text.contains("localhost"), "{text}");
    let again = ex.submit(Square { n: 2 }).join().unwrap_err();
    assert!(again.to_string().contains("tries"), "not sticky: the next task tries again: {again}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Returns its buffer, reversed: a `Bytes` both ways.
#[workpool::task]
fn reversed(data: workpool::Bytes) -> workpool::Bytes {
    let mut v = data.into_vec();
    v.reverse();
    v.into()
}

#[test]
fn bytes_of_any_size_cross_a_remote_link_inline() {
    // Over TCP no descriptor can travel: a `Bytes` above the out-of-band threshold goes inline
    // to a remote worker, and comes back inline from it.
    let ex = Executor::builder().launcher(launcher()).workers(1).build().unwrap();
    for len in [10usize, 300 << 10, 4 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let back = ex.submit(Reversed { data: data.clone().into() }).join().unwrap();
        let mut expected = data;
        expected.reverse();
        assert!(back[..] == expected[..], "{len} bytes came back changed");
    }
}

/// The sum of a shared table, and how many values this worker keeps.
#[workpool::task]
fn table_sum(table: workpool::Shared<Vec<u64>>) -> (u64, usize) {
    (table.iter().sum(), workpool::shared_values_cached())
}

#[test]
fn a_shared_value_crosses_a_remote_link_once_per_worker() {
    // No segment can reach a remote worker: the value is sent ahead of the first task that
    // names it, once per worker process; each task carries its id only.
    let ex = Executor::builder().launcher(launcher()).workers(1).build().unwrap();
    let table = workpool::Shared::new((0..100_000u64).collect::<Vec<_>>());
    let expected: u64 = (0..100_000u64).sum();
    let sent = || ex.stats().total.bytes_to_workers;
    let run = |n: usize| {
        for _ in 0..n {
            let (sum, cached) = ex.submit(TableSum { table: table.clone() }).join().unwrap();
            assert_eq!(sum, expected);
            assert_eq!(cached, 1, "the worker keeps the one value it was sent");
        }
    };
    let start = sent();
    run(1);
    let first = sent() - start;
    run(19);
    let rest = sent() - start - first;
    // The first task brings the value (hundreds of kB); the 19 after it, their ids only.
    assert!(first > 100_000, "{first} bytes for the first task");
    assert!(rest < 19 * 1_000, "{rest} bytes for 19 more tasks after {first} for the first");
    // A new worker process in the slot gets it again, once.
    assert!(ex.submit(AbortNow {}).join().unwrap_err().is_worker_death());
    let again = sent();
    run(5);
    let resent = sent() - again;
    assert!(resent > first && resent < first + 5 * 1_000, "{resent} bytes to the new worker for 5 tasks");
}

/// What the initializer set in this worker process (0: it did not run here).
static INITIALIZED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[workpool::task]
fn set_up(value: u64) {
    INITIALIZED.store(value, std::sync::atomic::Ordering::SeqCst);
}

#[workpool::task]
fn initialized() -> (u64, u32) {
    (INITIALIZED.load(std::sync::atomic::Ordering::SeqCst), std::process::id())
}

#[test]
fn the_initializer_runs_in_every_remote_worker_and_again_after_a_crash() {
    let ex = Executor::builder().launcher(launcher()).workers(1).initializer(SetUp { value: 42 }).build().unwrap();
    let (value, pid) = ex.submit(Initialized {}).join().unwrap();
    assert_eq!(value, 42, "the remote worker ran the initializer before its first task");
    assert!(ex.submit(AbortNow {}).join().unwrap_err().is_worker_death());
    let (again, new_pid) = ex.submit(Initialized {}).join().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(again, 42, "the replacement ran it too");
}

#[workpool::task]
fn shared_len(data: workpool::Shared<Vec<u32>>, tag: u32, pad: workpool::Bytes) -> (usize, u32) {
    (data.len() + pad.len(), data.first().copied().unwrap_or(0) ^ tag)
}

#[test]
fn every_task_finds_the_shared_value_it_names_sent_ahead_even_with_frames_in_flight() {
    // A new value for every task, streamed through a window of tasks in flight over the link,
    // with task frames large enough to be written in pieces: each value's SHARE must reach the
    // worker before the task that names it, whatever the socket takes at a time.
    let ex = Executor::builder().launcher(launcher()).workers(1).build().unwrap();
    let tasks: Vec<SharedLen> = (0..200u32)
        .map(|i| SharedLen {
            data: workpool::Shared::new(vec![i; 20_000 + i as usize]),
            tag: i,
            pad: workpool::Bytes::from(vec![7u8; 50_000]),
        })
        .collect();
    let results: Vec<_> = ex.map(tasks).collect();
    for (i, r) in results.into_iter().enumerate() {
        let (len, x) = r.unwrap_or_else(|e| panic!("task {i}: {e}"));
        assert_eq!((len, x), (70_000 + i, 0), "task {i}");
    }
}

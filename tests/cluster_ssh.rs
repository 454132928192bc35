//! The ssh launcher against a real `sshd` on 127.0.0.1 (skipped, saying so, without one):
//! tasks, the environment that is not forwarded, crash, stop, the executor's drop and the
//! parent's SIGKILL, each leaving no remote process behind.

#[path = "support/sshd.rs"]
mod sshd;

use sshd::Sshd;
use std::io::BufRead;
use std::time::{Duration, Instant};
use workpool::Executor;

workpool::test_support!();

#[workpool::task]
fn square(n: u64) -> u64 {
    n * n
}

#[workpool::task]
fn abort_now() -> u64 {
    std::process::abort()
}

/// Sleeps, then says which process ran it and whether the parent's environment reached it.
#[workpool::task]
fn nap(ms: u64) -> (u32, bool) {
    std::thread::sleep(Duration::from_millis(ms));
    (std::process::id(), std::env::var_os("CARGO_MANIFEST_DIR").is_some())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit_once(") ").unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_gone(pids: &[u32], limit: Duration) -> Option<Duration> {
    let clock = Instant::now();
    while clock.elapsed() < limit {
        if pids.iter().all(|&p| !alive(p)) {
            return Some(clock.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn ssh_workers_run_tasks_without_the_parents_environment_and_leave_nothing_on_drop() {
    let Some(sshd) = Sshd::start() else { return };
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "cargo sets it for tests");
    let ex = Executor::builder().launcher(sshd.launcher(2)).build().unwrap();
    assert_eq!(ex.workers().len(), 2);
    let squares: Vec<u64> = ex.map((0..300).map(|n| Square { n })).map(Result::unwrap).collect();
    assert_eq!(squares[299], 299 * 299);
    let (worker, forwarded) = ex.submit(Nap { ms: 0 }).join().unwrap();
    assert!(!forwarded, "the parent's environment must not reach an ssh worker");
    let supervisor = parent_of(worker);
    drop(ex);
    let took = wait_gone(&[worker, supervisor], Duration::from_secs(10));
    assert!(took.is_some(), "remote processes left 10 s after the executor was dropped");
}

#[test]
fn an_ssh_worker_crash_and_stop_cost_their_task_and_the_slot_restarts() {
    let Some(sshd) = Sshd::start() else { return };
    let ex = Executor::builder().launcher(sshd.launcher(1)).build().unwrap();
    let err = ex.submit(AbortNow {}).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("SIGABRT"), "{err}");
    let (worker, _) = ex.submit(Nap { ms: 0 }).join().unwrap();
    let supervisor = parent_of(worker);
    let handle = ex.submit(Nap { ms: 120_000 });
    std::thread::sleep(Duration::from_millis(300));
    let clock = Instant::now();
    for pid in [supervisor, worker] {
        // SAFETY: kill(2) on processes this test started.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    }
    let err = handle.join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("silent"), "{err}");
    assert!(clock.elapsed() < Duration::from_secs(10), "a stopped worker found after {:?}", clock.elapsed());
    for pid in [supervisor, worker] {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    }
    assert!(wait_gone(&[supervisor, worker], Duration::from_secs(10)).is_some(), "a stopped worker was left");
    assert_eq!(ex.submit(Square { n: 9 }).join().unwrap(), 81);
}

/// Run by `remote_workers_die_with_a_killed_parent` as a child: starts one busy ssh worker,
/// prints its pid, waits to be killed.
#[test]
#[ignore = "a helper process of remote_workers_die_with_a_killed_parent"]
fn helper_parent_to_kill() {
    let port: u16 = std::env::var("HELPER_SSHD_PORT").unwrap().parse().unwrap();
    let dir = std::env::var("HELPER_SSHD_DIR").unwrap();
    let launcher = workpool::Launcher::ssh(["127.0.0.1"])
        .port(port)
        .identity_file(format!("{dir}/user"))
        .ssh_option("StrictHostKeyChecking=no")
        .ssh_option("UserKnownHostsFile=/dev/null")
        .ssh_option("LogLevel=ERROR");
    let ex = Executor::builder().launcher(launcher).build().unwrap();
    let (worker, _) = ex.submit(Nap { ms: 0 }).join().unwrap();
    let _busy = ex.submit(Nap { ms: 600_000 });
    std::thread::sleep(Duration::from_millis(200));
    println!("WORKER {worker}");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn remote_workers_die_with_a_killed_parent() {
    let Some(sshd) = Sshd::start() else { return };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["helper_parent_to_kill", "--exact", "--ignored", "--nocapture", "-q"])
        .env("HELPER_SSHD_PORT", sshd.port.to_string())
        .env("HELPER_SSHD_DIR", &sshd.dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let worker: u32 = loop {
        let line = lines.next().expect("the helper printed its worker").unwrap();
        if let Some(pid) = line.strip_prefix("WORKER ") {
            break pid.trim().parse().unwrap();
        }
    };
    let supervisor = parent_of(worker);
    child.kill().unwrap();
    child.wait().unwrap();
    let took = wait_gone(&[worker, supervisor], Duration::from_secs(5));
    assert!(took.is_some(), "remote processes outlived their parent's SIGKILL by 5 s");
}

#[test]
fn a_killed_ssh_client_costs_the_running_task_and_its_remote_worker() {
    let Some(sshd) = Sshd::start() else { return };
    let ex = Executor::builder().launcher(sshd.launcher(1)).build().unwrap();
    let (worker, _) = ex.submit(Nap { ms: 0 }).join().unwrap();
    let supervisor = parent_of(worker);
    let handle = ex.submit(Nap { ms: 120_000 });
    std::thread::sleep(Duration::from_millis(300));
    let ssh = ex.workers()[0].pid.unwrap();
    assert_ne!(ssh, supervisor, "the slot's pid is the local ssh client");
    // SAFETY: kill(2) on the ssh client this executor started.
    unsafe { libc::kill(ssh as i32, libc::SIGKILL) };
    let err = handle.join().unwrap_err();
    assert!(err.is_worker_death(), "{err}");
    assert!(wait_gone(&[worker, supervisor], Duration::from_secs(5)).is_some(), "the remote worker outlived its ssh");
    assert_eq!(ex.submit(Square { n: 3 }).join().unwrap(), 9);
}

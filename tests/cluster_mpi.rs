//! The mpirun launcher with a real Open MPI `mpirun --oversubscribe` on this machine (skipped,
//! saying so, without one): tasks run on the started ranks, a crash costs its task only, and
//! dropping the executor leaves no process.

use std::time::{Duration, Instant};
use workpool::{Executor, Launcher};

workpool::test_support!();

#[workpool::task]
fn rank_pid() -> (u32, Option<String>) {
    (std::process::id(), std::env::var("OMPI_COMM_WORLD_SIZE").ok().or_else(|| std::env::var("PMI_SIZE").ok()))
}

#[workpool::task]
fn abort_now() -> u64 {
    std::process::abort()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[test]
fn mpirun_workers_run_tasks_survive_a_crash_and_leave_nothing() {
    if std::process::Command::new("mpirun").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no mpirun here (apt-get install -y openmpi-bin)");
        return;
    }
    let ex = Executor::builder().launcher(Launcher::mpirun().hosts(["localhost:2"])).build().unwrap();
    assert_eq!(ex.workers().len(), 2);
    let (pid, size) = ex.submit(RankPid {}).join().unwrap();
    // The worker is a child of its supervisor, which mpirun started as a rank.
    assert_eq!(size.as_deref(), Some("1"), "one rank per worker, under mpirun");
    let err = ex.submit(AbortNow {}).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("SIGABRT"), "{err}");
    // Named by where it ran, as MPI placed it.
    assert!(err.to_string().contains(", MPI rank 0 of 1)"), "{err}");
    let results: Vec<_> = ex.map((0..20).map(|_| RankPid {})).map(Result::unwrap).collect();
    assert_eq!(results.len(), 20);
    drop(ex);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "an mpirun worker outlived the executor by 10 s");
}

//! The srun launcher against a running Slurm (skipped, saying so, when `sinfo` reaches no
//! controller). CI starts a single-node Slurm (munged, slurmctld, slurmd) around this test:
//! `.ci/slurm.sh cargo test --test cluster_srun`.

use std::time::{Duration, Instant};
use workpool::{Executor, Launcher};

workpool::test_support!();

/// The worker's pid and the Slurm job step it runs in.
#[workpool::task]
fn placement() -> (u32, Option<String>) {
    (std::process::id(), std::env::var("SLURM_JOB_ID").ok())
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
fn srun_workers_run_in_job_steps_survive_a_crash_and_leave_nothing() {
    let reachable = std::process::Command::new("timeout")
        .args(["10", "sinfo", "-h"])
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty());
    if !reachable {
        eprintln!("SKIPPED: no Slurm controller answers `sinfo` here (CI runs this test under .ci/slurm.sh)");
        return;
    }
    let ex = Executor::builder().launcher(Launcher::srun().hosts(["localhost:2"])).build().unwrap();
    assert_eq!(ex.workers().len(), 2);
    let (pid, job) = ex.submit(Placement {}).join().unwrap();
    assert!(job.is_some(), "the worker runs inside a Slurm job step");
    let err = ex.submit(AbortNow {}).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("SIGABRT"), "{err}");
    let all: Vec<_> = ex.map((0..20).map(|_| Placement {})).map(Result::unwrap).collect();
    assert_eq!(all.len(), 20);
    drop(ex);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "an srun worker outlived the executor by 10 s");
}

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

/// The worker's pid and job, after a nap (so that two of them run at once).
#[workpool::task]
fn nap_placement(ms: u64) -> (u32, Option<String>) {
    std::thread::sleep(Duration::from_millis(ms));
    (std::process::id(), std::env::var("SLURM_JOB_ID").ok())
}

fn slurm_reachable() -> bool {
    let reachable = std::process::Command::new("timeout")
        .args(["10", "sinfo", "-h"])
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty());
    if !reachable {
        eprintln!("SKIPPED: no Slurm controller answers `sinfo` here (CI runs this test under .ci/slurm.sh)");
    }
    reachable
}

#[test]
fn srun_workers_run_in_job_steps_survive_a_crash_and_leave_nothing() {
    if !slurm_reachable() {
        return;
    }
    let ex = Executor::builder().launcher(Launcher::srun().hosts(["localhost:2"])).build().unwrap();
    assert_eq!(ex.workers().len(), 2);
    let (pid, job) = ex.submit(Placement {}).join().unwrap();
    assert!(job.is_some(), "the worker runs inside a Slurm job step");
    let err = ex.submit(AbortNow {}).join().unwrap_err();
    assert!(err.is_worker_death() && err.to_string().contains("SIGABRT"), "{err}");
    // Named by the node and the job step it ran in.
    assert!(err.to_string().contains(", Slurm step "), "{err}");
    let all: Vec<_> = ex.map((0..20).map(|_| Placement {})).map(Result::unwrap).collect();
    assert_eq!(all.len(), 20);
    drop(ex);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "an srun worker outlived the executor by 10 s");
}

/// Runs [`inside_an_allocation`] in this test binary under `salloc -n 2`: as a user's program
/// runs in an allocation.
#[test]
fn in_an_allocation_srun_takes_its_slots_and_places_its_steps_there() {
    if !slurm_reachable() {
        return;
    }
    let out = std::process::Command::new("timeout")
        .args(["120", "salloc", "--ntasks=2", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "inside_an_allocation", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

/// Inside `salloc -n 2` (started by the test above; ignored on its own).
#[test]
#[ignore]
fn inside_an_allocation() {
    let job = std::env::var("SLURM_JOB_ID").expect("run by the test above, inside salloc");
    let ex = Executor::builder().launcher(Launcher::srun()).build().unwrap();
    assert_eq!(ex.workers().len(), 2, "SLURM_NTASKS gives the slots");
    // Two at once: two steps of this allocation run side by side (`--exact`).
    let started = Instant::now();
    let naps: Vec<_> = (0..2).map(|_| ex.submit(NapPlacement { ms: 1500 })).collect();
    let placed: Vec<(u32, Option<String>)> = naps.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(started.elapsed() < Duration::from_millis(1500 * 2), "the two steps ran one after the other");
    assert_ne!(placed[0].0, placed[1].0);
    assert!(placed.iter().all(|(_, j)| j.as_deref() == Some(job.as_str())), "steps of job {job}: {placed:?}");
    let err = ex.submit(AbortNow {}).join().unwrap_err();
    assert!(err.to_string().contains(&format!("a node of the allocation ({}", placed_node())), "{err}");
    assert!(err.to_string().contains(&format!(", Slurm step {job}.")), "{err}");
    let pids: Vec<u32> = placed.iter().map(|p| p.0).collect();
    drop(ex);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pids.iter().all(|&p| !alive(p)), "a worker outlived the executor by 10 s");
}

/// The node Slurm names this machine (this single-node cluster's only node).
fn placed_node() -> String {
    std::env::var("SLURMD_NODENAME").ok().unwrap_or_else(|| {
        let out = std::process::Command::new("hostname").arg("-s").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

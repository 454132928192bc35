//! No leaks, whatever dies: thousands of tasks carrying out-of-band `Bytes` both ways, with
//! random worker crashes and task failures, leave the descriptor and mapping counts of the
//! parent and of its workers where they were, and nothing in /dev/shm. (A file of its own: the
//! parent's counts must not see other tests' buffers.)

mod common;

use common::*;
use std::time::Duration;
use workpool::{Bytes, Executor};

workpool::test_support!();

const MIB: usize = 1 << 20;

/// `len` bytes of `seed`, the last one `seed + 1` (cheap to make and to check in a debug build).
fn pattern(len: usize, seed: u8) -> Bytes {
    let mut data = vec![seed; len];
    data[len - 1] = seed.wrapping_add(1);
    Bytes::from(data)
}

fn checksum(data: &[u8]) -> u64 {
    (data.len() as u64) << 16 | u64::from(data[0]) << 8 | u64::from(data[data.len() - 1])
}

#[workpool::task]
fn sum(data: Bytes) -> u64 {
    checksum(&data)
}

#[workpool::task]
fn echo(data: Bytes) -> Bytes {
    data
}

/// Dies (SIGABRT) with its argument mapped.
#[workpool::task]
fn die_holding(data: Bytes) -> usize {
    if data[0] != u8::MAX {
        std::process::abort();
    }
    data.len()
}

/// Panics with its argument mapped.
#[workpool::task]
fn fail_holding(data: Bytes) -> usize {
    panic!("failed after receiving {} bytes", data.len());
}

fn executor(workers: usize) -> Executor {
    Executor::builder().workers(workers).build().expect("executor")
}

/// Open descriptors and mappings of `pid`.
fn counts(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|m| m.lines().count()).unwrap_or(0);
    (fds, maps)
}

/// Mappings of memfd segments in `pid` (`/memfd:workpool-bytes (deleted)`).
fn segment_maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().filter(|l| l.contains("workpool-bytes")).count())
        .unwrap_or(0)
}

/// Descriptors of `pid` that are memfd segments.
fn segment_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().contains("workpool-bytes"))
                .count()
        })
        .unwrap_or(0)
}

/// The worker alive and idle (a slot whose worker died starts the next one on demand).
fn settle(ex: &Executor) {
    ex.submit(Sum { data: pattern(16, 0) }).join().unwrap();
    assert!(wait_until(Duration::from_secs(30), || ex.workers().iter().all(|w| w.pid.is_some() && w.in_flight == 0)));
}

#[test]
fn thousands_of_tasks_with_random_crashes_leak_no_descriptor_or_mapping() {
    // One worker: the parent's own descriptors (socket, pidfd, claim ring) are then the same
    // before and after, whichever workers died in between.
    let ex = executor(1);
    let me = std::process::id();
    let round = |seed: u64| {
        let mut rng = seed;
        let mut handles = Vec::new();
        for i in 0..500u64 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let data = pattern(MIB + (rng >> 50) as usize, i as u8);
            handles.push(match (rng >> 33) % 40 {
                0 => ex.submit(DieHolding { data }).join().map(|_| ()),
                1 => ex.submit(FailHolding { data }).join().map(|_| ()),
                2..=19 => ex.submit(Echo { data: data.clone() }).join().map(|back| assert_eq!(back, data)),
                _ => ex.submit(Sum { data: data.clone() }).join().map(|r| assert_eq!(r, checksum(&data))),
            });
        }
        handles.iter().filter(|r| r.is_err()).count()
    };
    // A first round warms everything up (threads, allocator arenas, respawned workers).
    let failed = round(1);
    assert!(failed > 0, "the round must contain crashes and failures");
    settle(&ex);
    let parent_before = counts(me);
    let workers_before: Vec<_> = worker_pids(&ex).into_iter().map(counts).collect();
    let mut failed = 0;
    for seed in 2..6 {
        failed += round(seed);
    }
    assert!(failed > 20, "{failed} failures in 2000 tasks");
    // Let the last deaths be handled, then nothing of any segment may remain.
    assert!(
        wait_until(Duration::from_secs(30), || segment_maps(me) == 0),
        "{} segments still mapped in the parent",
        segment_maps(me)
    );
    settle(&ex);
    assert_eq!(segment_fds(me), 0, "segment descriptors left open in the parent");
    let parent_after = counts(me);
    assert!(
        parent_after.0 <= parent_before.0 + 2,
        "descriptors of the parent grew from {} to {}",
        parent_before.0,
        parent_after.0
    );
    assert!(
        parent_after.1 <= parent_before.1 + 4,
        "mappings of the parent grew from {} to {}",
        parent_before.1,
        parent_after.1
    );
    for pid in worker_pids(&ex) {
        let (fds, maps) = counts(pid);
        assert_eq!(segment_maps(pid), 0, "worker {pid} still maps a segment");
        assert_eq!(segment_fds(pid), 0, "worker {pid} still holds a segment's descriptor");
        let (fds_before, maps_before) = workers_before.iter().copied().max().unwrap_or((fds, maps));
        assert!(fds <= fds_before, "worker {pid}: {fds} descriptors, {fds_before} before");
        assert!(maps <= maps_before + 4, "worker {pid}: {maps} mappings, {maps_before} before");
    }
    assert!(!std::fs::read_dir("/dev/shm")
        .unwrap()
        .any(|e| { e.unwrap().file_name().to_string_lossy().contains("workpool") }));
}

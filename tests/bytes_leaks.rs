//! No leaks, whatever dies: thousands of tasks carrying out-of-band `Bytes` both ways, with
//! random worker crashes and task failures, leave the descriptor and mapping counts of the
//! parent and of its workers where they were, and nothing in /dev/shm; a parent killed while it
//! writes large buffers leaves no shared memory behind. (A file of its own: the parent's counts
//! must not see other tests' buffers.)

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use workpool::{Bytes, Executor};

workpool::test_support!();

/// The tests of this file count descriptors and shared memory: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

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
    let _alone = alone();
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

/// The machine's shared memory in use (`Shmem` of /proc/meminfo), in bytes: memfd pages count
/// there.
fn shmem() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = meminfo.lines().find(|l| l.starts_with("Shmem:")).expect("a Shmem line");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

const WRITER: &str = "WORKPOOL_TEST_BYTES_WRITER";

/// Run as a program of its own by the test below: writes 256 MiB buffers into shared memory
/// and sends them to two workers, without end, until it is killed.
#[test]
fn writer_program() {
    if std::env::var_os(WRITER).is_none() {
        return;
    }
    let ex = executor(2);
    let pids: std::collections::BTreeSet<u32> =
        ex.map((0..4).map(|i| Sum { data: pattern(MIB, i) })).map(|r| r.map(|_| 0).unwrap()).collect();
    assert!(!pids.is_empty());
    println!("PIDS {}", worker_pids(&ex).iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    for i in 0u8.. {
        let handles: Vec<_> = (0..2).map(|j| ex.submit(Sum { data: pattern(256 * MIB, i.wrapping_add(j)) })).collect();
        for h in handles {
            h.join().unwrap();
        }
        println!("WROTE {i}");
    }
}

#[test]
fn a_parent_killed_while_it_writes_shared_memory_leaves_none_behind() {
    let _alone = alone();
    become_subreaper(); // its workers become our orphans: reaped here, not left as zombies
    let before = shmem();
    let mut program = Command::new(std::env::current_exe().unwrap())
        .args(["writer_program", "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(WRITER, "1")
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(program.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("PIDS")))
        .expect("the writer's workers")
        .trim_start_matches("PIDS")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let _guard = KillOnDrop(pids.iter().copied().chain([program.id()]).collect());
    // Two rounds written and sent: the segments exist (and are recycled); then kill it in the
    // middle of the next ones, with no handler or destructor running.
    assert!(lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("WROTE 1"))).is_some(), "the writer stopped early");
    std::thread::sleep(Duration::from_millis(150));
    let during = shmem();
    program.kill().unwrap();
    assert!(during > before + 128 * MIB as u64, "the writer's buffers show in Shmem: {before} → {during} bytes");
    program.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || pids.iter().all(|&p| reap_if_ours(p) || process_gone(p))),
        "workers outlived their killed parent"
    );
    // Everything it wrote is freed with the last descriptor and mapping (nothing in /dev/shm or
    // the file system could keep it). Other programs on the machine move Shmem too: the bound
    // is a quarter of one buffer.
    let slack = 64 * MIB as u64;
    assert!(
        wait_until(Duration::from_secs(10), || shmem() <= before + slack),
        "shared memory in use: {} MiB before, {} MiB while it wrote, {} MiB after it was killed",
        before >> 20,
        during >> 20,
        shmem() >> 20
    );
    assert!(!std::fs::read_dir("/dev/shm")
        .unwrap()
        .any(|e| { e.unwrap().file_name().to_string_lossy().contains("workpool") }));
}

//! `workpool::Shared`: one value read by many tasks is decoded at most once per worker process
//! while the parent holds it, leaves the workers' caches soon after the parent has dropped it
//! (idle workers too), fails clearly when it cannot be
//! decoded, leaks nothing when a worker dies holding it, and is an `Arc` on threads.

mod common;

use common::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use workpool::{Backend, Bytes, ErrorKind, Executor, Parallel, Shared};

workpool::test_support!();

/// Decodes of [`Counted`] in this process.
static DECODES: AtomicU64 = AtomicU64::new(0);

/// A `Vec<u64>` whose decodes are counted.
#[derive(Serialize, Clone, PartialEq, Debug)]
struct Counted(Vec<u64>);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::Relaxed);
        Vec::deserialize(d).map(Counted)
    }
}

/// (this worker's pid, decodes of `Counted` here so far, the sum of the table)
#[workpool::task]
fn read_table(table: Shared<Counted>) -> (u32, u64, u64) {
    (std::process::id(), DECODES.load(Ordering::Relaxed), table.0.iter().sum())
}

/// (this worker's pid, shared values it keeps cached)
#[workpool::task]
fn cache_size() -> (u32, usize) {
    (std::process::id(), workpool::shared_values_cached())
}

/// Serializes, refuses to deserialize.
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(7)
    }
}

impl<'de> Deserialize<'de> for Refuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d)?;
        Err(serde::de::Error::custom("Refuses refuses to be decoded"))
    }
}

#[workpool::task]
fn touch_refuses(_value: Shared<Refuses>) -> u32 {
    std::process::id()
}

/// (pid, length, first byte, whether the bytes lie at a page boundary: a mapped segment)
#[workpool::task]
fn read_bytes(data: Shared<Bytes>) -> (u32, usize, u8, bool) {
    (std::process::id(), data.len(), data[0], data.as_ptr() as usize % 4096 == 0)
}

/// Dies (SIGABRT) holding the shared value mapped.
#[workpool::task]
fn die_holding(data: Shared<Bytes>) -> usize {
    if data[0] != u8::MAX {
        std::process::abort();
    }
    data.len()
}

/// The tests of this file one at a time: they count the segments this process maps.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn executor(workers: usize) -> Executor {
    Executor::builder().workers(workers).build().expect("executor")
}

const MIB: usize = 1 << 20;

#[test]
fn a_hundred_tasks_on_two_workers_decode_the_value_at_most_once_per_worker() {
    let _serial = serial();
    let ex = executor(2);
    let table = Shared::new(Counted((0..100_000).collect()));
    let expect: u64 = table.0.iter().sum();
    let results: Vec<_> =
        ex.map((0..100).map(|_| ReadTable { table: table.clone() })).map(|r| r.expect("task")).collect();
    let mut decodes: BTreeMap<u32, u64> = BTreeMap::new();
    for (pid, count, sum) in results {
        assert_eq!(sum, expect);
        let seen = decodes.entry(pid).or_default();
        *seen = (*seen).max(count);
    }
    assert!(!decodes.is_empty() && decodes.len() <= 2, "{decodes:?}");
    assert!(decodes.values().all(|&n| n == 1), "decodes per worker process: {decodes:?}");
    // The parent never decoded it: it was sent, not received.
    assert_eq!(DECODES.load(Ordering::Relaxed), 0);
}

#[test]
fn idle_workers_drop_the_value_soon_after_the_parent_drops_its_last_clone() {
    let _serial = serial();
    let ex = executor(2);
    let data = Shared::new(Bytes::from(vec![5u8; 2 * MIB]));
    // The workers that mapped the value.
    let mut pids = std::collections::BTreeSet::new();
    for r in ex.map((0..20).map(|_| ReadBytes { data: data.clone() })) {
        let (pid, len, first, mapped) = r.expect("task");
        assert_eq!((len, first, mapped), (2 * MIB, 5, true));
        pids.insert(pid);
    }
    let holding: Vec<_> = ex.map((0..10).map(|_| CacheSize)).map(|r| r.expect("task")).collect();
    assert!(holding.iter().any(|&(_, n)| n == 1), "a worker caches the value while it lives: {holding:?}");
    assert!(pids.iter().all(|&pid| segment_maps(pid) == 1), "each worker maps the value once");
    drop(data);
    // No task runs from here on: the executor tells its idle workers, which unmap the value.
    let gone = wait_until(Duration::from_secs(5), || pids.iter().all(|&pid| segment_maps(pid) == 0));
    let left: Vec<_> = pids.iter().map(|&pid| (pid, segment_maps(pid))).collect();
    assert!(gone, "idle workers still map the released value: {left:?}");
    let after: Vec<_> = ex.map((0..10).map(|_| CacheSize)).map(|r| r.expect("task")).collect();
    assert!(after.iter().all(|&(_, n)| n == 0), "{after:?}");
}

#[test]
fn a_value_the_parent_still_holds_is_decoded_once_however_many_tasks_come_between() {
    let _serial = serial();
    let ex = executor(1);
    let table = Shared::new(Counted((0..1000).collect()));
    let (pid, decodes, _) = ex.submit(ReadTable { table: table.clone() }).join().unwrap();
    assert_eq!(decodes, 1);
    // Many tasks without it, and other shared values made and dropped meanwhile.
    for round in 0..5 {
        let other = Shared::new(Bytes::from(vec![round as u8; 2 * MIB]));
        let _: Vec<_> = ex.map((0..20).map(|_| ReadBytes { data: other.clone() })).map(|r| r.unwrap()).collect();
        drop(other);
        let _: Vec<_> = ex.map((0..20).map(|_| CacheSize)).map(|r| r.unwrap()).collect();
    }
    let (same, decodes, sum) = ex.submit(ReadTable { table: table.clone() }).join().unwrap();
    assert_eq!(same, pid, "the same worker");
    assert_eq!(sum, (0..1000u64).sum::<u64>());
    assert_eq!(decodes, 1, "decoded again although the parent never let go of it");
}

#[test]
fn an_undecodable_shared_value_is_a_codec_error_and_the_worker_lives_on() {
    let _serial = serial();
    let ex = executor(1);
    let err = ex.submit(TouchRefuses { _value: Shared::new(Refuses) }).join().unwrap_err();
    match err.kind() {
        ErrorKind::Codec { message, .. } => {
            assert!(message.contains("shared value could not be decoded"), "{message}");
            assert!(message.contains("Refuses refuses to be decoded"), "{message}");
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    let before = worker_pids(&ex);
    let (pid, _) = ex.submit(CacheSize).join().expect("the worker lives on");
    assert!(before.contains(&pid), "the same worker runs the next task");
}

/// Mappings of memfd segments in `pid`.
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

#[test]
fn a_worker_that_dies_holding_a_shared_value_leaks_nothing() {
    let _serial = serial();
    let ex = executor(1);
    let me = std::process::id();
    let data = Shared::new(Bytes::from(vec![1u8; 4 * MIB]));
    for _ in 0..5 {
        // The worker maps and caches the value, then dies with it.
        let (pid, ..) = ex.submit(ReadBytes { data: data.clone() }).join().expect("read");
        assert_eq!(segment_maps(pid), 1, "the worker maps the cached value once");
        let err = ex.submit(DieHolding { data: data.clone() }).join().unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::WorkerDeath { .. }), "{err}");
        assert!(wait_until(Duration::from_secs(30), || process_gone(pid)), "worker {pid} is gone");
    }
    // The parent holds its own segment, once: one descriptor, one mapping (once the free
    // segments earlier tests left for reuse have expired, within 2 s: `oob/pool.rs`).
    let own = || (segment_fds(me), segment_maps(me));
    assert!(wait_until(Duration::from_secs(10), || own() == (1, 1)), "{:?}", own());
    let (pid, n) = ex.submit(CacheSize).join().expect("a fresh worker");
    assert_eq!((n, segment_maps(pid), segment_fds(pid)), (0, 0, 0), "the fresh worker holds nothing");
    drop(data);
    // Kept for reuse by the next `Bytes` of its size for at most 2 s (`oob/pool.rs`), then freed.
    assert!(
        wait_until(Duration::from_secs(10), || (segment_fds(me), segment_maps(me)) == (0, 0)),
        "the parent's segment outlives its last clone: {} descriptors, {} mappings",
        segment_fds(me),
        segment_maps(me)
    );
}

#[test]
fn on_threads_a_shared_is_an_arc() {
    let _serial = serial();
    let before = segment_maps(std::process::id()); // what earlier tests left for reuse, if anything
    let data = Shared::new(Bytes::from(vec![9u8; 2 * MIB]));
    let results = Parallel::new()
        .n_jobs(2)
        .backend(Backend::Threads)
        .run((0..10).map(|_| ReadBytes { data: data.clone() }))
        .expect("threads");
    for (pid, len, first, _) in results {
        assert_eq!((pid, len, first), (std::process::id(), 2 * MIB, 9));
    }
    // Nothing was encoded: no segment was made.
    assert!(segment_maps(std::process::id()) <= before);
}

#[test]
fn serde_json_sees_the_value() {
    let _serial = serial();
    let shared = Shared::new(vec![1u32, 2]);
    assert_eq!(serde_json::to_string(&shared).unwrap(), "[1,2]");
}

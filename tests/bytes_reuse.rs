//! The parent recycles the shared-memory segments of its `Bytes` (`src/oob/pool.rs`): a fresh
//! buffer is written into the pages of one that is free, not into new ones. These tests look at
//! it from outside, through `/proc`: a run of fresh buffers of one size uses the same segment
//! again; a segment a task keeps (stored in a static) is never written again while its worker
//! holds it, and is let go once the worker drops it; whatever a worker kept goes with it when
//! it dies. Every test spawns real processes and leaves none.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;
use workpool::{Bytes, Executor};

workpool::test_support!();

const MIB: usize = 1 << 20;

/// The tests of this file count the parent's segments: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn filled(len: usize, value: u8) -> Bytes {
    Bytes::from(vec![value; len])
}

/// The inode of the memfd that `data` lies in, in this process (`/proc/self/maps`); 0 when it
/// lies in none.
fn inode_of(data: &[u8]) -> u64 {
    let at = data.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines().filter(|l| l.contains("workpool-bytes")) {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap_or("");
        let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
        let (lo, hi) = (usize::from_str_radix(lo, 16).unwrap_or(0), usize::from_str_radix(hi, 16).unwrap_or(0));
        if (lo..hi).contains(&at) {
            return fields.nth(3).and_then(|ino| ino.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// The inode of the segment the worker received `data` in, and whether every byte is `value`.
#[workpool::task]
fn where_is(data: Bytes, value: u8) -> (u64, bool) {
    (inode_of(&data), data.iter().all(|&b| b == value))
}

static STASH: Mutex<Vec<(Bytes, u8)>> = Mutex::new(Vec::new());

/// Keeps `data` in this worker (what a task that caches its input does).
#[workpool::task]
fn stash(data: Bytes, value: u8) -> u32 {
    STASH.lock().unwrap().push((data, value));
    std::process::id()
}

/// Whether every buffer kept so far still holds what it held when it came, and how many.
#[workpool::task]
fn stash_intact() -> (bool, usize) {
    let stash = STASH.lock().unwrap();
    (stash.iter().all(|(data, value)| data.iter().all(|b| b == value)), stash.len())
}

/// Drops what was kept.
#[workpool::task]
fn clear_stash() -> usize {
    std::mem::take(&mut *STASH.lock().unwrap()).len()
}

/// Segment descriptors of this process.
fn own_segment_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().contains("workpool-bytes"))
                .count()
        })
        .unwrap_or(0)
}

fn executor() -> Executor {
    Executor::builder().workers(1).build().expect("executor")
}

#[test]
fn fresh_buffers_of_one_size_reuse_the_segment_of_the_last_one() {
    let _serial = serial();
    let ex = executor();
    let mut inodes = BTreeSet::new();
    for i in 0..20u8 {
        // A new `Vec` each time, with new contents: only the segment is reused.
        let (ino, intact) =
            ex.submit(WhereIs { data: filled(MIB + usize::from(i) * 4096, i), value: i }).join().unwrap();
        assert!(ino != 0, "the worker received the buffer in a segment");
        assert!(intact, "round {i}: the worker saw other bytes than were sent");
        inodes.insert(ino);
    }
    // The parent's `Bytes` is dropped after each task: the next one finds its segment free.
    assert!(inodes.len() <= 2, "20 buffers of about 1 MiB went through {} segments", inodes.len());
    ex.shutdown(workpool::Shutdown::Wait);
}

#[test]
fn a_segment_a_task_keeps_is_not_written_again_until_the_worker_lets_go() {
    let _serial = serial();
    let ex = executor();
    let mut pids = BTreeSet::new();
    for i in 0..20u8 {
        // A buffer the worker keeps, then one it does not: the second is free at once and
        // recycled by the next round; the first must not be.
        pids.insert(ex.submit(Stash { data: filled(MIB, i), value: i }).join().unwrap());
        let (_, intact) = ex.submit(WhereIs { data: filled(MIB, 255 - i), value: 255 - i }).join().unwrap();
        assert!(intact);
    }
    assert_eq!(pids.len(), 1, "one worker kept them all");
    assert_eq!(ex.submit(StashIntact {}).join().unwrap(), (true, 20), "a kept buffer changed under its task");
    // The parent holds what the worker keeps...
    assert!(own_segment_fds() >= 20, "{} segments in the parent", own_segment_fds());
    // ...until the worker says it let go; then they are kept for reuse for at most 2 s.
    assert_eq!(ex.submit(ClearStash {}).join().unwrap(), 20);
    assert!(
        wait_until(Duration::from_secs(10), || own_segment_fds() == 0),
        "{} segments still in the parent after the worker dropped them",
        own_segment_fds()
    );
    ex.shutdown(workpool::Shutdown::Wait);
}

#[test]
fn what_a_dead_worker_kept_is_let_go_with_it() {
    let _serial = serial();
    let ex = executor();
    let pid = ex.submit(Stash { data: filled(MIB, 7), value: 7 }).join().unwrap();
    assert!(own_segment_fds() >= 1);
    let _guard = KillOnDrop(vec![pid]);
    // SAFETY: kill on a worker of ours.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || reap_if_ours(pid) || process_gone(pid)));
    // The next task starts a fresh worker, which holds nothing of the old one's.
    let (ino, intact) = ex.submit(WhereIs { data: filled(MIB, 9), value: 9 }).join().unwrap();
    assert!(ino != 0 && intact);
    assert_eq!(ex.submit(StashIntact {}).join().unwrap(), (true, 0));
    assert!(
        wait_until(Duration::from_secs(10), || own_segment_fds() == 0),
        "{} segments still in the parent after the worker that kept one died",
        own_segment_fds()
    );
    ex.shutdown(workpool::Shutdown::Wait);
}

//! Recycling the parent's segments: a buffer sent to a worker is written into pages that are
//! already there, not into fresh ones.
//!
//! A copy into new shared-memory pages costs the kernel a page allocation and a zeroing per
//! 4 KiB (measured in `benches/bigdata.rs`: about a fifth of the speed of a copy into pages that
//! exist). So the parent keeps the segments of its `Bytes` once they are free, and writes the
//! next buffer of the same size class into one of them. A segment is free when nothing refers
//! to it any more: no `Bytes` in the parent, no task frame in flight, and no worker that kept a
//! mapping (a worker says, with each `DONE`, whether it kept any of the task's segments; the
//! feeder then holds them until that worker process is gone, see `executor/feeder/io.rs`).
//! The last `Arc<Segment>` then gives its descriptor and its writable mapping back here instead
//! of closing them.
//!
//! Recyclable segments are sealed with `F_SEAL_FUTURE_WRITE` instead of `F_SEAL_WRITE`: nobody
//! can write them any more through a descriptor or a new mapping, only through the mapping the
//! parent made before sealing. Workers accept that seal from their parent; the parent accepts a
//! descriptor sealed so only when it is one of its own live segments coming back (found by inode in
//! `segment.rs`'s registry), never from a worker's own making.
//!
//! Bounds: free segments are kept for [`KEEP_FOR`] at most and [`KEEP_BYTES`] of capacity in
//! all; a janitor thread, alive only while something is kept, frees them when they expire, so
//! an idle program holds no shared memory for long. Nothing here touches the file system.

use parking_lot::Mutex;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// How long a free segment is kept for reuse.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(2);
/// Capacity of free segments kept at most, in bytes.
pub(crate) const KEEP_BYTES: usize = 1 << 30;
/// The smallest size class (the out-of-band threshold rounded up to a power of two).
const CLASS_MIN: usize = 256 << 10;

/// A free segment: its descriptor and its writable mapping of `capacity` bytes.
pub(crate) struct Free {
    pub(crate) fd: OwnedFd,
    pub(crate) ptr: NonNull<u8>,
    pub(crate) capacity: usize,
    pub(crate) ino: u64,
    since: Instant,
}

// SAFETY: a free segment is referred to by nobody but the pool; its mapping moves with it.
unsafe impl Send for Free {}

impl Free {
    /// Takes ownership of a descriptor and its writable mapping of `capacity` bytes.
    pub(crate) fn new(fd: OwnedFd, ptr: NonNull<u8>, capacity: usize, ino: u64) -> Free {
        Free { fd, ptr, capacity, ino, since: Instant::now() }
    }

    /// Its parts, for a live segment to own (the mapping is then unmapped by nobody here).
    pub(crate) fn into_parts(self) -> (OwnedFd, NonNull<u8>, usize, u64) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: read once out of a value that is never dropped.
        let fd = unsafe { std::ptr::read(&this.fd) };
        (fd, this.ptr, this.capacity, this.ino)
    }
}

impl Drop for Free {
    fn drop(&mut self) {
        // SAFETY: the writable mapping made by `Segment::recyclable`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.capacity) };
    }
}

struct Pool {
    free: Vec<Free>,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(|| Mutex::new(Pool { free: Vec::new() }));
/// Whether the janitor thread runs.
static JANITOR: AtomicBool = AtomicBool::new(false);
/// Worker processes recycle nothing (their segments are sealed whole, see `segment.rs`).
static DISABLED: AtomicBool = AtomicBool::new(false);

/// The capacity a buffer of `len` bytes gets: a power of two, at least [`CLASS_MIN`]. (Pages
/// past `len` are never written, so they cost no memory.)
pub(crate) fn capacity_for(len: usize) -> usize {
    len.max(CLASS_MIN).checked_next_power_of_two().unwrap_or(len)
}

/// Called once in a worker process: it makes only sealed segments.
pub(crate) fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

pub(crate) fn enabled() -> bool {
    !DISABLED.load(Ordering::Relaxed)
}

/// A free segment of exactly `capacity`, if one is kept.
pub(crate) fn take(capacity: usize) -> Option<Free> {
    let mut pool = POOL.lock();
    let i = pool.free.iter().rposition(|f| f.capacity == capacity)?;
    Some(pool.free.swap_remove(i))
}

/// The last reference to a recyclable segment is gone: keep it for reuse (or free it, past the
/// bounds).
pub(crate) fn give_back(fd: OwnedFd, ptr: NonNull<u8>, capacity: usize, ino: u64) {
    let free = Free::new(fd, ptr, capacity, ino);
    let dropped = {
        let mut pool = POOL.lock();
        pool.free.push(free);
        trim(&mut pool, Instant::now())
    };
    drop(dropped); // unmapped and closed outside the lock
    start_janitor();
}

/// Removes what expired, then the oldest while over [`KEEP_BYTES`]; returns them (to be dropped
/// outside the lock).
fn trim(pool: &mut Pool, now: Instant) -> Vec<Free> {
    let mut dropped = Vec::new();
    let mut i = 0;
    while i < pool.free.len() {
        if now.duration_since(pool.free[i].since) >= KEEP_FOR {
            dropped.push(pool.free.swap_remove(i));
        } else {
            i += 1;
        }
    }
    pool.free.sort_by_key(|f| f.since);
    while pool.free.iter().map(|f| f.capacity).sum::<usize>() > KEEP_BYTES {
        dropped.push(pool.free.remove(0));
    }
    dropped
}

/// Frees every free segment now. For tests that count descriptors and mappings.
pub(crate) fn clear() {
    let dropped = std::mem::take(&mut POOL.lock().free);
    drop(dropped);
}

fn start_janitor() {
    if JANITOR.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new().name("workpool-segments".into()).spawn(|| loop {
        std::thread::sleep(KEEP_FOR / 2);
        let (dropped, empty) = {
            let mut pool = POOL.lock();
            let dropped = trim(&mut pool, Instant::now());
            let empty = pool.free.is_empty();
            if empty {
                JANITOR.store(false, Ordering::Release);
            }
            (dropped, empty)
        };
        drop(dropped);
        if empty {
            return; // the next `give_back` starts another
        }
    });
    if spawned.is_err() {
        // No thread: free what is kept at once rather than keep it with nobody to expire it.
        JANITOR.store(false, Ordering::Release);
        clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_are_powers_of_two_from_the_threshold() {
        assert_eq!(capacity_for(1), CLASS_MIN);
        assert_eq!(capacity_for(CLASS_MIN), CLASS_MIN);
        assert_eq!(capacity_for(CLASS_MIN + 1), 2 * CLASS_MIN);
        assert_eq!(capacity_for(100 << 20), 128 << 20);
    }
}

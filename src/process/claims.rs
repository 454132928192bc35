//! The claim ring: how the executor takes back tasks it already wrote to a worker's socket.
//!
//! A feeder writes a few tasks ahead into its worker's socket (the prefetch window), so that
//! tiny tasks stream without a round trip each. A task written ahead must not be stuck behind a
//! long task, or behind a worker that stopped making progress, while another slot idles; but
//! bytes in a socket cannot be unsent, and the worker reads ahead. So each task written to a
//! worker gets a ticket (1, 2, 3, … per worker) and a word in a page of shared memory (a
//! `memfd`, mapped by the parent and the worker):
//!
//! ```text
//!   word[ticket % RING] = ticket << 2 | state      state: QUEUED, CLAIMED or RECALLED
//! ```
//!
//! * The feeder stores `QUEUED` before it writes the task's frame ([`Claims::offer`]).
//! * The worker, before it runs the task, swaps `QUEUED` for `CLAIMED` ([`Claims::claim`]); if
//!   the word says `RECALLED` it skips the task and answers `SKIPPED`, so the feeder forgets it.
//! * The feeder takes a task back by swapping `QUEUED` for `RECALLED` ([`Claims::recall`]): if
//!   that succeeds, the worker will never run it, and the task is queued again for any slot at
//!   once; if it fails, the task has started (and every one before it too).
//!
//! Both swaps are compare-exchanges on the same word, so exactly one of them wins: a task runs
//! at most once, whatever the timing. At most [`RING`] tickets are outstanding per worker (the
//! window is smaller), so a word is reused only after its previous task was settled.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Words in the ring (more than the largest prefetch window).
pub(crate) const RING: usize = 128;
/// The ring, then two words: the number of tasks the worker began (a batch counts each of its
/// tasks) and when it began the last one (`CLOCK_MONOTONIC`, ns), which the feeder reads to time
/// each task of a batch on its own.
const SIZE: usize = (RING + 2) * 8;

const QUEUED: u64 = 1;
const CLAIMED: u64 = 2;
const RECALLED: u64 = 3;

/// One worker's claim ring, mapped in this process.
pub(crate) struct Claims {
    words: *const AtomicU64,
    /// False for a remote worker's ring, which only this process maps: nothing can be taken
    /// back from it (see [`Claims::none`]).
    recallable: bool,
}

// SAFETY: the mapping is shared memory accessed only through atomics; it lives until `Drop`.
unsafe impl Send for Claims {}
// SAFETY: as above.
unsafe impl Sync for Claims {}

impl Claims {
    /// A new ring (zeroed) and the descriptor a worker maps it with.
    pub(crate) fn create() -> io::Result<(Claims, OwnedFd)> {
        // SAFETY: memfd_create with a static name; the descriptor is ours.
        let fd = unsafe { libc::memfd_create(c"workpool-claims".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created for us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), SIZE as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let claims = Claims::map(fd.as_fd())?;
        Ok((claims, fd))
    }

    /// Maps the ring a parent created.
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<Claims> {
        // SAFETY: a shared read-write mapping of SIZE bytes of a memfd at least that long; the
        // kernel zero-fills it, and every access goes through AtomicU64 (8-byte aligned: the
        // mapping is page-aligned).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Claims { words: ptr.cast(), recallable: true })
    }

    /// A ring that no worker maps (a remote worker's): [`Claims::recall`] always fails, so a
    /// task written ahead is never taken back (it runs where it was sent).
    pub(crate) fn none() -> io::Result<Claims> {
        let (mut claims, _fd) = Claims::create()?;
        claims.recallable = false;
        Ok(claims)
    }

    fn word(&self, ticket: u32) -> &AtomicU64 {
        // SAFETY: the index is below RING and the mapping holds RING words for self's lifetime.
        unsafe { &*self.words.add(ticket as usize % RING) }
    }

    /// The words the worker counts the tasks it begins in, and records when it began the last
    /// one (see `task::TASKS_BEGUN`).
    pub(crate) fn begun(&self) -> &[AtomicU64; 2] {
        // SAFETY: words RING and RING + 1 are inside the mapping (SIZE holds RING + 2 words).
        unsafe { &*self.words.add(RING).cast::<[AtomicU64; 2]>() }
    }

    /// Parent: task `ticket` is about to be written to the worker.
    pub(crate) fn offer(&self, ticket: u32) {
        self.word(ticket).store(u64::from(ticket) << 2 | QUEUED, Ordering::SeqCst);
    }

    /// Worker: may task `ticket` run? False when the executor took it back.
    pub(crate) fn claim(&self, ticket: u32) -> bool {
        self.swap(ticket, CLAIMED)
    }

    /// Parent: take task `ticket` back; true when the worker will never run it.
    pub(crate) fn recall(&self, ticket: u32) -> bool {
        self.recallable && self.swap(ticket, RECALLED)
    }

    fn swap(&self, ticket: u32, to: u64) -> bool {
        let queued = u64::from(ticket) << 2 | QUEUED;
        self.word(ticket)
            .compare_exchange(queued, u64::from(ticket) << 2 | to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `map`; nothing refers to it any more.
        unsafe { libc::munmap(self.words as *mut libc::c_void, SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)]
    fn exactly_one_of_claim_and_recall_wins() {
        let (parent, fd) = Claims::create().unwrap();
        let worker = Claims::map(fd.as_fd()).unwrap();
        parent.offer(1);
        assert!(worker.claim(1));
        assert!(!parent.recall(1), "a claimed task cannot be taken back");
        parent.offer(2);
        assert!(parent.recall(2));
        assert!(!worker.claim(2), "a recalled task is skipped");
        // A word is reused RING tickets later.
        parent.offer(2 + RING as u32);
        assert!(worker.claim(2 + RING as u32));
        // A stale ticket never matches.
        assert!(!parent.recall(2));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn nothing_is_taken_back_from_a_ring_no_worker_maps() {
        let ring = Claims::none().unwrap();
        ring.offer(1);
        assert!(!ring.recall(1), "a remote worker may already run it");
    }
}

//! [`Doorbell`]: how a thread that is not a slot's feeder gets that feeder's attention while it
//! waits in `poll` on its worker's socket (today: `TaskHandle::kill` of a task the feeder has
//! written to its worker).
//!
//! An `eventfd`: [`ring`](Doorbell::ring) adds one to its counter, which makes it readable; the
//! feeder has it in the descriptors it polls and [`drain`](Doorbell::drain)s it before it looks
//! at what changed, so a ring that comes after the drain is seen on the next poll and none is
//! lost. Should the kernel refuse the descriptor (descriptor limit), the doorbell has none and
//! the feeder looks at every round instead ([`Doorbell::fd`] says so).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One slot's doorbell (see the module docs).
pub(crate) struct Doorbell {
    fd: Option<OwnedFd>,
}

impl Default for Doorbell {
    fn default() -> Self {
        // SAFETY: eventfd takes an initial value and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Doorbell { fd: (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }) }
    }
}

impl Doorbell {
    /// Makes the descriptor readable (any thread).
    pub(crate) fn ring(&self) {
        if let Some(fd) = &self.fd {
            let one: u64 = 1;
            // SAFETY: an 8-byte write from a valid u64 to our eventfd. It fails only when the
            // counter would overflow, which leaves it readable anyway.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Resets the counter (the feeder, before it looks at what the rings were for); true when
    /// it had been rung.
    pub(crate) fn drain(&self) -> bool {
        let Some(fd) = &self.fd else { return true };
        let mut count: u64 = 0;
        // SAFETY: an 8-byte read into a valid u64 from our non-blocking eventfd.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        n == 8 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }

    /// The descriptor to poll for readability; `None` when there is none (then every
    /// [`drain`](Doorbell::drain) says it was rung).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // FFI
    fn a_ring_is_seen_once_and_then_drained() {
        let bell = Doorbell::default();
        let fd = bell.fd().expect("an eventfd");
        assert!(!bell.drain(), "a new doorbell was not rung");
        bell.ring();
        bell.ring();
        assert!(crate::sys::poll(fd, false, Some(std::time::Duration::ZERO)).unwrap().readable);
        assert!(bell.drain());
        assert!(!bell.drain(), "one drain takes every ring");
        assert!(!crate::sys::poll(fd, false, Some(std::time::Duration::ZERO)).unwrap().readable);
    }
}

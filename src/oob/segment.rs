//! A sealed shared-memory segment: an anonymous `memfd` written once, sealed, and mapped
//! read-only wherever it is received.
//!
//! Nothing is created in the file system or in /dev/shm: a memfd lives only as long as a
//! descriptor or a mapping refers to it, so whatever dies, the kernel frees the memory with the
//! last reference. The seals (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL`) make
//! the contents immutable for everybody: a peer can neither change the bytes under a reader's
//! `&[u8]` nor shrink the file and make a reader's access a SIGBUS. The receiver checks the seals
//! and the size before it maps anything.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// The seals every segment carries, and that a received descriptor must carry.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;

/// A sealed memfd of `len > 0` bytes and its read-only mapping.
pub(crate) struct Segment {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and its contents are sealed against writes by anyone, so
// sharing `&[u8]` views of it between threads is as safe as sharing a `&'static [u8]`.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// A new segment holding a copy of `bytes` (one copy: `write` into the memfd's pages).
    pub(crate) fn create(bytes: &[u8]) -> io::Result<Segment> {
        if bytes.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a shared-memory segment cannot be empty"));
        }
        // SAFETY: a NUL-terminated name and flags; returns a new descriptor or -1.
        let raw =
            unsafe { libc::memfd_create(c"workpool-bytes".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return Err(context(io::Error::last_os_error(), "memfd_create"));
        }
        // SAFETY: just returned to us, owned by nobody else.
        let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        // A segment that cannot get its memory (a memory-cgroup limit) fails here, with ENOSPC
        // or ENOMEM, and its descriptor is closed on the way out.
        file.write_all(bytes).map_err(|e| context(e, "writing the segment"))?;
        let fd = OwnedFd::from(file);
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
            return Err(context(io::Error::last_os_error(), "sealing the segment"));
        }
        Segment::map(fd, bytes.len())
    }

    /// Maps a segment received from a peer: all of it. Refused unless it is sealed as
    /// [`Segment::create`] seals (the reader of a `Bytes` then checks the length it was told).
    pub(crate) fn receive(fd: OwnedFd) -> io::Result<Segment> {
        // SAFETY: fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & SEALS != SEALS {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the descriptor is not a sealed workpool segment"));
        }
        let file = File::from(fd);
        let len = file.metadata()?.len();
        let len = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "segment too large"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "an empty segment"));
        }
        Segment::map(file.into(), len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Segment> {
        // SAFETY: a fresh read-only shared mapping of `len` bytes of a sealed file at least
        // that long; nothing else is at the address the kernel picks.
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(context(io::Error::last_os_error(), "mapping the segment"));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap does not return null on success");
        Ok(Segment { fd, ptr, len })
    }

    /// The descriptor, to pass to a peer.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`; the seals keep them unchanged
        // and the file from shrinking (no SIGBUS).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no view outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_round_trips_through_its_descriptor() {
        let data: Vec<u8> = (0..3 * 4096 + 5).map(|i| i as u8).collect();
        let made = Segment::create(&data).unwrap();
        assert_eq!(made.as_slice(), &data[..]);
        let again = Segment::receive(made.fd().try_clone_to_owned().unwrap()).unwrap();
        assert_eq!(again.as_slice(), &data[..]);
    }

    #[test]
    fn a_sealed_segment_cannot_be_written_or_shrunk() {
        let made = Segment::create(b"sealed").unwrap();
        let mut file = File::from(made.fd().try_clone_to_owned().unwrap());
        assert!(file.write_all(b"x").is_err());
        assert!(file.set_len(1).is_err());
        assert!(file.set_len(100).is_err());
    }

    #[test]
    fn an_unsealed_descriptor_is_refused() {
        // SAFETY: as in `create`.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: just returned to us.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        file.set_len(8).unwrap();
        let err = Segment::receive(file.into()).err().expect("refused");
        assert!(err.to_string().contains("not a sealed"), "{err}");
    }
}

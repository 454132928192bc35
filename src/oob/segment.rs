//! A sealed shared-memory segment: an anonymous `memfd` written once, sealed, and mapped
//! read-only wherever it is received.
//!
//! Nothing is created in the file system or in /dev/shm: a memfd lives only as long as a
//! descriptor or a mapping refers to it, so whatever dies, the kernel frees the memory with the
//! last reference. The seals (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL`) make
//! the contents immutable for everybody: a peer can neither change the bytes under a reader's
//! `&[u8]` nor shrink the file and make a reader's access a SIGBUS. The receiver checks the seals
//! and the size before it maps anything.
//!
//! The parent's own segments are *recyclable* instead (`pool.rs`): sealed with
//! `F_SEAL_FUTURE_WRITE`, which leaves writable only the mapping the parent made before sealing,
//! and written again through it once nothing else refers to them. Such a segment is larger than
//! its contents (a size class); a `Bytes` says how much of it is its own.

use super::pool;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, LazyLock, Weak};

/// Pages are at least this large (`MADV_POPULATE_WRITE` takes whole pages; a larger page size
/// only makes the rounded length fall inside the same pages).
const PAGE: usize = 4096;

/// The seals every segment carries, and that a received descriptor must carry.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
/// The seals of a recyclable segment: no writes but through its maker's own mapping.
const RECYCLABLE_SEALS: libc::c_int =
    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;

/// A sealed memfd of `len > 0` bytes and its mapping (read-only, except a recyclable segment's
/// in the process that made it).
pub(crate) struct Segment {
    fd: ManuallyDrop<OwnedFd>,
    ptr: NonNull<u8>,
    /// Bytes mapped: the whole file.
    len: usize,
    kind: Kind,
}

/// Where a segment comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Sealed whole: nobody writes it.
    Sealed,
    /// Recyclable, made by this process: it goes back to the pool on drop. Its inode.
    Own(u64),
    /// A parent's recyclable segment, received by this worker. Its inode.
    Parents(u64),
}

/// This process's live recyclable segments by inode, so that one a worker sends back is
/// recognised (and not mapped a second time). An entry goes when its segment is dropped, before
/// the segment is free for reuse.
static LIVE: LazyLock<Mutex<HashMap<u64, Weak<Segment>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

// SAFETY: the mapping's contents are sealed against writes by anyone (a recyclable segment is
// written only by its maker, and only while nothing refers to it: `pool.rs`), so sharing
// `&[u8]` views of it between threads is as safe as sharing a `&'static [u8]`.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

impl Segment {
    /// A new segment holding a copy of `bytes` (one copy: `write` into the memfd's pages).
    pub(crate) fn create(bytes: &[u8]) -> io::Result<Segment> {
        if bytes.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a shared-memory segment cannot be empty"));
        }
        let mut file = File::from(memfd()?);
        // A segment that cannot get its memory (a memory-cgroup limit) fails here, with ENOSPC
        // or ENOMEM, and its descriptor is closed on the way out.
        file.write_all(bytes).map_err(|e| context(e, "writing the segment"))?;
        let fd = OwnedFd::from(file);
        seal(&fd, SEALS)?;
        Segment::map(fd, bytes.len())
    }

    /// A recyclable segment holding a copy of `bytes`: a free one of its size class from the
    /// pool when there is one (one copy into pages that exist), else a new one. In a worker
    /// process, a sealed one ([`Segment::create`]).
    pub(crate) fn recyclable(bytes: &[u8]) -> io::Result<Arc<Segment>> {
        if !pool::enabled() || bytes.is_empty() {
            return Segment::create(bytes).map(Arc::new);
        }
        let capacity = pool::capacity_for(bytes.len());
        let free = match pool::take(capacity) {
            Some(free) => free,
            None => new_recyclable(capacity)?,
        };
        // The pages are allocated (where they are not yet) and mapped in one call, before the
        // copy: a memory limit is then an error here, not a SIGBUS in the copy. A kernel older
        // than 5.14 lacks the call: the segment is made the sealed way instead.
        let populate = bytes.len().div_ceil(PAGE) * PAGE;
        // SAFETY: madvise on our own mapping of `capacity >= populate` bytes.
        if unsafe { libc::madvise(free.ptr.as_ptr().cast(), populate, libc::MADV_POPULATE_WRITE) } != 0 {
            let e = io::Error::last_os_error();
            drop(free);
            return match e.raw_os_error() {
                Some(libc::EINVAL) => Segment::create(bytes).map(Arc::new),
                _ => Err(context(e, "allocating the segment's memory")),
            };
        }
        // SAFETY: the writable mapping of `capacity >= bytes.len()` bytes, referred to by nobody
        // else (a free segment), so nobody reads while it is written.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), free.ptr.as_ptr(), bytes.len()) };
        let (fd, ptr, capacity, ino) = free.into_parts();
        let segment = Arc::new(Segment { fd: ManuallyDrop::new(fd), ptr, len: capacity, kind: Kind::Own(ino) });
        LIVE.lock().insert(ino, Arc::downgrade(&segment));
        Ok(segment)
    }

    /// Maps a segment received from a peer: all of it. Refused unless it is sealed as
    /// [`Segment::create`] seals (the reader of a `Bytes` then checks the length it was told),
    /// or is one of this process's own recyclable segments coming back (then that one is
    /// returned, and `fd` closed).
    pub(crate) fn receive(fd: OwnedFd) -> io::Result<Arc<Segment>> {
        if let Some(own) = inode(&fd).and_then(|ino| LIVE.lock().get(&ino).and_then(Weak::upgrade)) {
            return Ok(own);
        }
        Segment::receive_sealed(fd, SEALS).map(Arc::new)
    }

    /// The inode of a parent's recyclable segment received here (what the worker names when it
    /// lets go of one it kept); `None` for any other.
    pub(crate) fn parents_inode(&self) -> Option<u64> {
        match self.kind {
            Kind::Parents(ino) => Some(ino),
            _ => None,
        }
    }

    /// The inode of one of this process's recyclable segments; `None` for any other.
    pub(crate) fn own_inode(&self) -> Option<u64> {
        match self.kind {
            Kind::Own(ino) => Some(ino),
            _ => None,
        }
    }

    /// Maps a segment that came with a task from the parent: sealed, or recyclable (the parent
    /// writes it only when this worker has said it keeps nothing of it).
    pub(crate) fn receive_from_parent(fd: OwnedFd) -> io::Result<Arc<Segment>> {
        // SAFETY: fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals >= 0 && seals & RECYCLABLE_SEALS == RECYCLABLE_SEALS {
            let ino = inode(&fd).ok_or_else(io::Error::last_os_error)?;
            let mut segment = Segment::receive_sealed(fd, RECYCLABLE_SEALS)?;
            segment.kind = Kind::Parents(ino);
            return Ok(Arc::new(segment));
        }
        Segment::receive_sealed(fd, SEALS).map(Arc::new)
    }

    fn receive_sealed(fd: OwnedFd, wanted: libc::c_int) -> io::Result<Segment> {
        // SAFETY: fcntl on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & wanted != wanted {
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
        Ok(Segment { fd: ManuallyDrop::new(fd), ptr, len, kind: Kind::Sealed })
    }

    /// The descriptor, to pass to a peer.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes mapped (a recyclable segment's size class; a `Bytes` may use fewer of them).
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
        // SAFETY: taken once, here; `self.fd` is not used again.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) };
        match self.kind {
            // Nothing refers to it any more (this was its last `Arc`): the pool keeps it, its
            // writable mapping included.
            Kind::Own(ino) => {
                // Forgotten before the pool can hand it out again (and register it anew).
                let mut live = LIVE.lock();
                if live.get(&ino).is_some_and(|w| w.strong_count() == 0) {
                    live.remove(&ino);
                }
                drop(live);
                pool::give_back(fd, self.ptr, self.len, ino)
            }
            // SAFETY: the mapping made in `map`, unmapped once; no view outlives `self`.
            Kind::Sealed | Kind::Parents(_) => unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            },
        }
    }
}

/// A new memfd that can be sealed.
fn memfd() -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and flags; returns a new descriptor or -1.
    let raw = unsafe { libc::memfd_create(c"workpool-bytes".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(context(io::Error::last_os_error(), "memfd_create"));
    }
    // SAFETY: just returned to us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn seal(fd: &OwnedFd, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(context(io::Error::last_os_error(), "sealing the segment"));
    }
    Ok(())
}

/// The inode of a memfd (which identifies it among live ones).
fn inode(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: fstat into a zeroed struct, on a descriptor we own.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } == 0).then_some(stat.st_ino)
}

/// A new recyclable segment of `capacity` bytes, its pages for `capacity` not yet allocated:
/// sized, mapped writable, then sealed (`F_SEAL_FUTURE_WRITE` leaves that mapping writable).
fn new_recyclable(capacity: usize) -> io::Result<pool::Free> {
    let fd = memfd()?;
    // SAFETY: ftruncate on our memfd (sparse: no memory is allocated).
    if unsafe { libc::ftruncate(fd.as_raw_fd(), capacity as libc::off_t) } < 0 {
        return Err(context(io::Error::last_os_error(), "sizing the segment"));
    }
    // SAFETY: a fresh read-write shared mapping of the whole file; nothing else is there.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            capacity,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(context(io::Error::last_os_error(), "mapping the segment"));
    }
    let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap does not return null on success");
    let ino = inode(&fd);
    // Dropped on any error below: unmapped and closed.
    let free = pool::Free::new(fd, ptr, capacity, ino.unwrap_or(0));
    if ino.is_none() {
        return Err(context(io::Error::last_os_error(), "fstat of the segment"));
    }
    seal(&free.fd, RECYCLABLE_SEALS)?;
    Ok(free)
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

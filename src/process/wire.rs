//! The wire between the executor and its worker processes.
//!
//! Frames travel on a Unix socketpair that is the worker's file descriptor 3 — never on stdin
//! or stdout, so tasks may print freely. Every frame is
//!
//! ```text
//!   u32 len   little-endian, the number of bytes after this field (9 ..= MAX_FRAME)
//!   u8  kind
//!   u64 id    the task id (0 for frames about the connection)
//!   ...       kind-specific body
//! ```
//!
//! | kind | direction | body |
//! |---|---|---|
//! | `TASK` | to worker | `u64` task key, `u32` count, `u32` claim ticket, encoded argument(s) |
//! | `SHUTDOWN` | to worker | — (finish, then exit) |
//! | `SHARE` | to worker | a shared value's encoding; id: the value's id (sent ahead of the first task that names it by id) |
//! | `FORGET` | to worker | `u64` ids (id 0): shared values the parent released, to drop from the worker's cache; none: drop them all |
//! | `HELLO` | from worker | `u32` protocol version, `u64` binary fingerprint, `u32` pid |
//! | `STARTED` | from worker | — (the worker is about to run task `id`) |
//! | `DONE` | from worker | `u8` status (bit [`ST_KEPT`]: the worker keeps some of the task's segments), `u64` run time in ns, status-specific bytes |
//! | `SKIPPED` | from worker | — (task `id` was taken back before the worker claimed it: it does not run here) |
//! | `RELEASED` | from worker | `u64` inodes (id 0): the parent's segments it said it kept and no longer refers to |
//! | `FAULT` | from worker | `u32` signal, `u64` fault address: written by the worker's signal handler just before it dies of a memory fault in task `id` |
//!
//! **Descriptors.** A frame may carry descriptors (the shared-memory segments of out-of-band
//! [`Bytes`](crate::Bytes), see `bytes/`): its kind then has the [`WITH_FDS`] bit set and the
//! last byte of its body is their count (1 ..= 253, the kernel's SCM_MAX_FD); the descriptors
//! themselves travel as SCM_RIGHTS on the `sendmsg` that writes the frame's first byte (or an
//! earlier one). A stream socket delivers them with the first read of those bytes, so when a
//! frame is complete its descriptors are at the front of the reader's queue, in order: the
//! reader pops that many with the frame, and closes them with it if nobody keeps them. A frame
//! without descriptors is byte for byte what it was before; a transport that cannot pass
//! descriptors (TCP) never sets the bit (the codec then writes every buffer inline).
//!
//! A length is checked against [`MAX_FRAME`] before anything is allocated for it, and the reader
//! grows its buffer only as bytes actually arrive, so a forged 4 GiB prefix costs nothing.
//! Anything malformed is a [`WireError`]; the side that sees one treats the peer as broken.

use crate::oob::MAX_FDS;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{BorrowedFd, OwnedFd};

/// Protocol version, carried by `HELLO`; bump on any change to this file's formats.
/// 3: frames may carry descriptors ([`WITH_FDS`]). 4: a worker answers a task it skips
/// ([`SKIPPED`]), and says when it keeps a task's segments ([`ST_KEPT`]); the parent's
/// segments may be recyclable (`oob/pool.rs`). 5: the parent sends shared values ahead of the
/// tasks that name them by id ([`SHARE`]) and tells a worker which it released ([`FORGET`]).
pub(crate) const PROTOCOL_VERSION: u32 = 5;
/// Set in a frame's kind when the last byte of its body counts the descriptors passed with it.
pub(crate) const WITH_FDS: u8 = 0x80;
/// Descriptors a reader holds for frames not complete yet, at most: more is a broken peer.
const MAX_QUEUED_FDS: usize = 4 * MAX_FDS;
/// Largest frame accepted in either direction (1 GiB).
pub(crate) const MAX_FRAME: usize = crate::codec::LIMIT;
/// Bytes before the body: len, kind, id.
pub(crate) const HEADER: usize = 4 + 1 + 8;

pub(crate) const TASK: u8 = 1;
pub(crate) const SHUTDOWN: u8 = 2;
pub(crate) const FORGET: u8 = 3;
pub(crate) const SHARE: u8 = 4;
pub(crate) const HELLO: u8 = 10;
pub(crate) const STARTED: u8 = 11;
pub(crate) const DONE: u8 = 12;
pub(crate) const FAULT: u8 = 13;
pub(crate) const SKIPPED: u8 = 14;
pub(crate) const RELEASED: u8 = 15;

/// Appends a `RELEASED` frame: the worker no longer refers to the parent's segments with these
/// inodes, which it said it kept (`ST_KEPT`).
pub(crate) fn released(out: &mut Vec<u8>, inodes: &[u64]) {
    u64s_frame(out, RELEASED, inodes);
}

/// Appends a `SHARE` frame: the encoding of shared value `id`.
pub(crate) fn share(out: &mut Vec<u8>, id: u64, encoded: &[u8]) -> Result<(), WireError> {
    let start = begin_frame(out, SHARE, id);
    out.extend_from_slice(encoded);
    end_frame(out, start)
}

/// Appends a `FORGET` frame: the parent released the shared values with these ids (none: all).
pub(crate) fn forget(out: &mut Vec<u8>, ids: &[u64]) {
    u64s_frame(out, FORGET, ids);
}

fn u64s_frame(out: &mut Vec<u8>, kind: u8, values: &[u64]) {
    let start = begin_frame(out, kind, 0);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
    end_frame(out, start).expect("a list of at most 64 Ki u64s fits in a frame");
}

/// The u64s of a `RELEASED` (inodes) or `FORGET` (ids) body.
pub(crate) fn parse_u64s(body: &[u8]) -> Result<Vec<u64>, WireError> {
    if body.len() % 8 != 0 {
        return bad("a RELEASED or FORGET body is not a list of u64s");
    }
    Ok(body.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// The complete `FAULT` frame of task `id` (built on the stack: the worker's signal handler
/// writes it, and may not allocate).
pub(crate) fn fault_frame(id: u64, signal: u32, address: u64) -> [u8; HEADER + 12] {
    let mut frame = [0u8; HEADER + 12];
    frame[..4].copy_from_slice(&((HEADER + 12 - 4) as u32).to_le_bytes());
    frame[4] = FAULT;
    frame[5..13].copy_from_slice(&id.to_le_bytes());
    frame[13..17].copy_from_slice(&signal.to_le_bytes());
    frame[17..25].copy_from_slice(&address.to_le_bytes());
    frame
}

/// Signal and address of a `FAULT` body.
pub(crate) fn parse_fault(body: &[u8]) -> Result<(u32, u64), WireError> {
    if body.len() != 12 {
        return bad(format!("fault body of {} bytes, expected 12", body.len()));
    }
    Ok((
        u32::from_le_bytes(body[..4].try_into().expect("4 bytes")),
        u64::from_le_bytes(body[4..].try_into().expect("8 bytes")),
    ))
}

pub(crate) const ST_OK: u8 = 0;
pub(crate) const ST_PANIC: u8 = 1;
pub(crate) const ST_DECODE: u8 = 2;
pub(crate) const ST_ENCODE: u8 = 3;
pub(crate) const ST_UNKNOWN: u8 = 4;
/// Set in a `DONE` status when the worker keeps a reference to one of the task's segments (a
/// `Bytes` it stored, a cached shared value): the parent must not recycle them while that
/// worker lives (see `oob/pool.rs`).
pub(crate) const ST_KEPT: u8 = 0x40;

/// Marks the `DONE` frame that begins at `start` in `out` with [`ST_KEPT`].
pub(crate) fn mark_kept(out: &mut [u8], start: usize) {
    out[start + HEADER] |= ST_KEPT;
}

/// Whether a `DONE` body carries [`ST_KEPT`].
pub(crate) fn done_kept(body: &[u8]) -> bool {
    body.first().is_some_and(|status| status & ST_KEPT != 0)
}

/// A malformed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed frame: {}", self.0)
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(why.into()))
}

/// One frame, borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// Without the [`WITH_FDS`] bit.
    pub(crate) kind: u8,
    pub(crate) id: u64,
    /// Without the descriptor count.
    pub(crate) body: &'a [u8],
    /// Descriptors passed with the frame.
    pub(crate) fds: u8,
}

/// Splits the first frame off `buf`: `Ok(None)` when it is not complete yet.
pub(crate) fn split_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len < HEADER - 4 {
        return bad(format!("length {len} is shorter than a frame header"));
    }
    if len > MAX_FRAME {
        return bad(format!("length {len} is over the {MAX_FRAME}-byte limit"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let (kind, id) = (buf[4], u64::from_le_bytes(buf[5..13].try_into().expect("8 bytes")));
    let mut frame = Frame { kind, id, body: &buf[HEADER..4 + len], fds: 0 };
    if kind & WITH_FDS != 0 {
        let Some((&count, body)) = frame.body.split_last() else {
            return bad("a frame with descriptors has no count");
        };
        if count == 0 || usize::from(count) > MAX_FDS {
            return bad(format!("a frame claims {count} descriptors (1 to {MAX_FDS} may travel with one)"));
        }
        frame = Frame { kind: kind & !WITH_FDS, body, fds: count, ..frame };
    }
    Ok(Some((frame, 4 + len)))
}

/// Starts a frame in `out`; finish it with [`end_frame`] after appending the body.
pub(crate) fn begin_frame(out: &mut Vec<u8>, kind: u8, id: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    start
}

/// Writes the length of the frame begun at `start`.
pub(crate) fn end_frame(out: &mut [u8], start: usize) -> Result<(), WireError> {
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        return bad(format!("a {len}-byte frame is over the {MAX_FRAME}-byte limit"));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// As [`end_frame`], for a frame that carries `fds` descriptors (none: [`end_frame`] itself).
pub(crate) fn end_frame_fds(out: &mut Vec<u8>, start: usize, fds: usize) -> Result<(), WireError> {
    if fds > 0 {
        if fds > MAX_FDS {
            return bad(format!("{fds} descriptors are more than the {MAX_FDS} a frame may carry"));
        }
        out[start + 4] |= WITH_FDS;
        out.push(fds as u8);
    }
    end_frame(out, start)
}

/// A complete frame with no body.
pub(crate) fn empty_frame(out: &mut Vec<u8>, kind: u8, id: u64) {
    let start = begin_frame(out, kind, id);
    end_frame(out, start).expect("an empty frame fits");
}

/// The fixed part of a `TASK` body (its ticket is 0 until [`set_ticket`]).
pub(crate) fn task_header(out: &mut Vec<u8>, id: u64, key: u64, count: u32) -> usize {
    let start = begin_frame(out, TASK, id);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    start
}

/// Writes the claim ticket into a complete `TASK` frame (the feeder does, when it hands the
/// frame to a worker: see `process/claims.rs`).
pub(crate) fn set_ticket(frame: &mut [u8], ticket: u32) {
    frame[HEADER + 12..HEADER + 16].copy_from_slice(&ticket.to_le_bytes());
}

/// A decoded `TASK` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TaskBody<'a> {
    pub(crate) key: u64,
    pub(crate) count: u32,
    /// The task's place in its worker's claim ring (0: none).
    pub(crate) ticket: u32,
    pub(crate) payload: &'a [u8],
}

pub(crate) fn parse_task(body: &[u8]) -> Result<TaskBody<'_>, WireError> {
    if body.len() < 16 {
        return bad("task body shorter than its key, count and ticket");
    }
    let key = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    let ticket = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes"));
    if count == 0 {
        return bad("task with a count of zero");
    }
    Ok(TaskBody { key, count, ticket, payload: &body[16..] })
}

/// `HELLO` from a worker.
pub(crate) fn hello(out: &mut Vec<u8>, fingerprint: u64, pid: u32) {
    let start = begin_frame(out, HELLO, 0);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&pid.to_le_bytes());
    end_frame(out, start).expect("a hello fits");
}

/// Version, fingerprint and pid of a `HELLO` body.
pub(crate) fn parse_hello(body: &[u8]) -> Result<(u32, u64, u32), WireError> {
    if body.len() != 16 {
        return bad(format!("hello body of {} bytes, expected 16", body.len()));
    }
    Ok((
        u32::from_le_bytes(body[..4].try_into().expect("4 bytes")),
        u64::from_le_bytes(body[4..12].try_into().expect("8 bytes")),
        u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")),
    ))
}

/// Starts a `DONE` frame; append the status bytes, then [`end_frame`].
pub(crate) fn begin_done(out: &mut Vec<u8>, id: u64, status: u8, elapsed_ns: u64) -> usize {
    let start = begin_frame(out, DONE, id);
    out.push(status);
    out.extend_from_slice(&elapsed_ns.to_le_bytes());
    start
}

/// Starts the `DONE` frame of a task that is about to run: append its encoded outputs, then
/// finish with [`end_done_ok`], or drop it with `out.truncate(start)` and report a [`Done`]
/// failure with [`done`] instead.
pub(crate) fn begin_done_ok(out: &mut Vec<u8>, id: u64) -> usize {
    begin_done(out, id, ST_OK, 0)
}

/// Finishes a frame begun with [`begin_done_ok`]: the run time goes into its header.
pub(crate) fn end_done_ok(out: &mut Vec<u8>, start: usize, elapsed_ns: u64, fds: usize) -> Result<(), WireError> {
    let at = start + HEADER + 1; // after the status byte
    out[at..at + 8].copy_from_slice(&elapsed_ns.to_le_bytes());
    end_frame_fds(out, start, fds)
}

/// A complete `DONE` frame reporting `report`.
pub(crate) fn done(out: &mut Vec<u8>, id: u64, elapsed_ns: u64, report: &Done<'_>) -> Result<(), WireError> {
    let status = match report {
        Done::Ok(_) => ST_OK,
        Done::Panic { .. } => ST_PANIC,
        Done::Decode(_) => ST_DECODE,
        Done::Encode(_) => ST_ENCODE,
        Done::Unknown => ST_UNKNOWN,
    };
    let start = begin_done(out, id, status, elapsed_ns);
    match report {
        Done::Ok(bytes) => out.extend_from_slice(bytes),
        Done::Panic { index, message, location } => panic_report(out, *index, message, location),
        Done::Decode(message) | Done::Encode(message) => out.extend_from_slice(message.as_bytes()),
        Done::Unknown => {}
    }
    end_frame(out, start)
}

/// What a worker reports about one finished task (or batch).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Done<'a> {
    /// Encoded output(s).
    Ok(&'a [u8]),
    /// Item `index` of the batch panicked.
    Panic { index: u32, message: &'a str, location: &'a str },
    /// The argument did not decode in the worker.
    Decode(&'a str),
    /// The result did not encode in the worker.
    Encode(&'a str),
    /// The worker has no task under that key.
    Unknown,
}

/// Status, run time and details of a `DONE` body.
pub(crate) fn parse_done(body: &[u8]) -> Result<(Done<'_>, u64), WireError> {
    if body.len() < 9 {
        return bad("done body shorter than its status and time");
    }
    let status = body[0] & !ST_KEPT;
    let elapsed = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    let rest = &body[9..];
    let done = match status {
        ST_OK => Done::Ok(rest),
        ST_PANIC => {
            if rest.len() < 8 {
                return bad("panic report shorter than its header");
            }
            let index = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
            let msg_len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
            let Some(message) = rest.get(8..8usize.saturating_add(msg_len)) else {
                return bad("panic message longer than its frame");
            };
            Done::Panic { index, message: text(message)?, location: text(&rest[8 + msg_len..])? }
        }
        ST_DECODE => Done::Decode(text(rest)?),
        ST_ENCODE => Done::Encode(text(rest)?),
        ST_UNKNOWN => Done::Unknown,
        other => return bad(format!("unknown task status {other}")),
    };
    Ok((done, elapsed))
}

fn text(bytes: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|_| WireError("message is not UTF-8".into()))
}

/// Appends a panic report (for a `DONE` with `ST_PANIC`).
pub(crate) fn panic_report(out: &mut Vec<u8>, index: u32, message: &str, location: &str) {
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(location.as_bytes());
}

/// Accumulates bytes from a stream and hands out whole frames.
///
/// The buffer grows only with bytes actually read (at most [`READ_CHUNK`] more per read), never
/// to a length a header merely claims.
#[derive(Default)]
pub(crate) struct FrameReader {
    /// Storage, zeroed once as it grows: bytes `start..end` are buffered, `end..` is free.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Descriptors received and not yet handed out with their frames, in order.
    fds: VecDeque<OwnedFd>,
}

/// Bytes asked of the stream per read.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    pub(crate) fn new() -> Self {
        FrameReader::default()
    }

    /// One `read` of at most [`READ_CHUNK`] bytes into the buffer; returns what `read` returned
    /// (0 means end of stream). The buffer grows (by zeroed memory) only when its free tail is
    /// shorter than a chunk, so a steady stream of small frames costs no memset per read.
    pub(crate) fn fill(&mut self, source: &mut impl Read) -> io::Result<usize> {
        self.make_room();
        let got = source.read(&mut self.buf[self.end..self.end + READ_CHUNK])?;
        self.end += got;
        Ok(got)
    }

    /// As [`fill`](FrameReader::fill), from a Unix socket, keeping the descriptors passed
    /// with the bytes for the frames they belong to.
    pub(crate) fn fill_socket(&mut self, socket: BorrowedFd<'_>) -> io::Result<usize> {
        self.make_room();
        let (got, fds) = crate::sys::recv_with_fds(socket, &mut self.buf[self.end..self.end + READ_CHUNK], MAX_FDS)?;
        self.end += got;
        self.fds.extend(fds);
        if self.fds.len() > MAX_QUEUED_FDS {
            return Err(io::Error::other(format!("more than {MAX_QUEUED_FDS} descriptors ahead of their frames")));
        }
        Ok(got)
    }

    /// Descriptors passed directly (tests and fuzzing).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn push_fds(&mut self, fds: impl IntoIterator<Item = OwnedFd>) {
        self.fds.extend(fds);
    }

    /// The descriptors the next frame claims (0 when none is complete, or it is malformed).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn next_frame_wants(&self) -> usize {
        match split_frame(&self.buf[self.start..self.end]) {
            Ok(Some((frame, _))) => usize::from(frame.fds),
            _ => 0,
        }
    }

    /// Descriptors received and not handed out yet.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn queued_fds(&self) -> usize {
        self.fds.len()
    }

    /// Frees at least [`READ_CHUNK`] bytes at the end of the buffer.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * READ_CHUNK {
                // Give back what a large frame needed once.
                self.buf = Vec::new();
            }
        } else if self.start > 0 && self.buf.len() - self.end < READ_CHUNK {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
    }

    /// Appends bytes directly (tests and fuzzing).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) {
        self.buf.truncate(self.end);
        self.buf.extend_from_slice(bytes);
        self.end = self.buf.len();
    }

    /// The next complete frame, if one is buffered; the descriptors it carries are closed.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, WireError> {
        Ok(self.next_frame_fds()?.map(|(frame, _)| frame))
    }

    /// The next complete frame, if one is buffered, and the descriptors it carries.
    pub(crate) fn next_frame_fds(&mut self) -> Result<Option<(Frame<'_>, Vec<OwnedFd>)>, WireError> {
        let Some((frame, used)) = split_frame(&self.buf[self.start..self.end])? else {
            return Ok(None);
        };
        let wanted = usize::from(frame.fds);
        if self.fds.len() < wanted {
            return bad(format!("a frame claims {wanted} descriptors and {} came with it", self.fds.len()));
        }
        let fds = self.fds.drain(..wanted).collect();
        let at = self.start;
        self.start += used;
        Ok(split_frame(&self.buf[at..at + used])?.map(|(frame, _)| (frame, fds)))
    }

    /// True when a whole frame is waiting in the buffer.
    pub(crate) fn has_frame(&self) -> bool {
        matches!(split_frame(&self.buf[self.start..self.end]), Ok(Some(_)) | Err(_))
    }

    /// Bytes buffered but not yet handed out.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_one_byte_at_a_time() {
        let mut out = Vec::new();
        let start = task_header(&mut out, 42, 7, 3);
        out.extend_from_slice(b"payload");
        end_frame(&mut out, start).unwrap();
        empty_frame(&mut out, SHUTDOWN, 0);
        let mut reader = FrameReader::new();
        let mut seen = Vec::new();
        for byte in &out {
            reader.push_bytes(&[*byte]);
            while let Some(frame) = reader.next_frame().unwrap() {
                seen.push((frame.kind, frame.id, frame.body.to_vec()));
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0, seen[0].1), (TASK, 42));
        let task = parse_task(&seen[0].2).unwrap();
        assert_eq!(task, TaskBody { key: 7, count: 3, ticket: 0, payload: b"payload" });
        assert_eq!((seen[1].0, seen[1].2.len()), (SHUTDOWN, 0));
    }

    #[test]
    fn a_4_gib_length_is_an_error_not_an_allocation() {
        let mut reader = FrameReader::new();
        reader.push_bytes(&u32::MAX.to_le_bytes());
        reader.push_bytes(&[1; 20]);
        assert!(reader.next_frame().is_err());
        assert!(reader.pending() < 100);
    }

    #[test]
    fn short_lengths_and_bodies_are_errors() {
        assert!(split_frame(&[3, 0, 0, 0, 1, 2, 3]).is_err());
        assert!(parse_task(&[0; 15]).is_err());
        assert!(parse_task(&[0; 16]).is_err(), "a count of zero is malformed");
        assert!(parse_hello(&[0; 15]).is_err());
        assert!(parse_done(&[ST_PANIC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]).is_err());
        assert!(parse_done(&[99, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn frames_with_descriptors_split_and_refuse_bad_counts() {
        let mut out = Vec::new();
        let start = begin_frame(&mut out, DONE, 5);
        out.extend_from_slice(b"body");
        end_frame_fds(&mut out, start, 3).unwrap();
        let (frame, used) = split_frame(&out).unwrap().unwrap();
        assert_eq!((frame.kind, frame.id, frame.body, frame.fds, used), (DONE, 5, &b"body"[..], 3, out.len()));
        let mut reader = FrameReader::new();
        reader.push_bytes(&out);
        assert!(reader.next_frame_fds().is_err(), "a frame whose descriptors did not come is malformed");
        for count in [0u8, 254] {
            let mut bad = out.clone();
            *bad.last_mut().unwrap() = count;
            assert!(split_frame(&bad).is_err(), "a count of {count}");
        }
        let mut empty = Vec::new();
        let start = begin_frame(&mut empty, STARTED | WITH_FDS, 1);
        end_frame(&mut empty, start).unwrap();
        assert!(split_frame(&empty).is_err(), "the descriptor bit without a count");
        assert!(end_frame_fds(&mut Vec::from([0u8; HEADER]), 0, MAX_FDS + 1).is_err());
    }

    /// Frames carrying memfds through a real socket, written in pieces and read in pieces: each
    /// frame comes out with exactly its own descriptors.
    #[test]
    fn descriptors_reach_their_frames_through_a_socket() {
        use std::io::IoSlice;
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let inode = |fd: &OwnedFd| std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap().ino();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut sent = Vec::new();
        for (id, fds) in [(1u64, 2usize), (2, 0), (3, 1), (4, 0), (5, 3)] {
            let segments: Vec<_> =
                (0..fds).map(|i| crate::oob::segment::Segment::create(&[id as u8, i as u8]).unwrap()).collect();
            let mut frame = Vec::new();
            let start = begin_frame(&mut frame, DONE, id);
            frame.extend_from_slice(&vec![id as u8; 100 * id as usize]);
            end_frame_fds(&mut frame, start, fds).unwrap();
            let borrowed: Vec<_> = segments.iter().map(|s| s.fd()).collect();
            // The first 7 bytes with the descriptors, the rest after.
            let n = crate::sys::send_vectored_fds(ours.as_fd(), &[IoSlice::new(&frame[..7])], &borrowed).unwrap();
            crate::sys::send_all(ours.as_fd(), &frame[n..]).unwrap();
            let inodes: Vec<u64> = segments.iter().map(|s| inode(&s.fd().try_clone_to_owned().unwrap())).collect();
            sent.push((id, inodes));
        }
        drop(ours);
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        loop {
            while let Some((frame, fds)) = reader.next_frame_fds().unwrap() {
                assert_eq!(frame.body.len(), 100 * frame.id as usize);
                got.push((frame.id, fds.iter().map(inode).collect::<Vec<_>>()));
            }
            if reader.fill_socket(theirs.as_fd()).unwrap() == 0 {
                break;
            }
        }
        assert_eq!(got, sent);
        assert_eq!(reader.queued_fds(), 0);
    }

    #[test]
    fn done_reports_round_trip() {
        let mut out = Vec::new();
        let start = begin_done(&mut out, 9, ST_PANIC, 1234);
        panic_report(&mut out, 2, "boom", "src/x.rs:1:2");
        end_frame(&mut out, start).unwrap();
        let (frame, used) = split_frame(&out).unwrap().unwrap();
        assert_eq!((frame.kind, frame.id, used), (DONE, 9, out.len()));
        let (done, elapsed) = parse_done(frame.body).unwrap();
        assert_eq!(elapsed, 1234);
        assert_eq!(done, Done::Panic { index: 2, message: "boom", location: "src/x.rs:1:2" });
    }
}

//! The bytes between a TCP connection and a local socketpair, on either end of a remote link.
//!
//! Frames pass through unchanged (the relay never buffers a whole frame: it only tracks where
//! each one ends), so the feeder and the worker speak exactly the protocol of local workers.
//! Three frame kinds exist only on the link, added and removed here:
//!
//! | kind | direction | body |
//! |---|---|---|
//! | `HEARTBEAT` | both | — (sent between frames when a side has said nothing for [`HEARTBEAT_EVERY`]) |
//! | `EXIT` | to parent | `i32` wait status of the remote worker process |
//! | `BYE` | to worker | — (the executor closed the worker: finish, then exit) |
//! | `PLACE` | to parent | where the worker runs, in words (sent once, first): its node, and its Slurm step or MPI rank |
//!
//! A side that hears nothing (not even a heartbeat) for [`SILENCE`] treats the other as dead.
//! Only bytes cross the link: no descriptor is ever passed (SCM_RIGHTS cannot cross TCP).

use crate::process::wire::{self, HEADER, MAX_FRAME};
use std::io::{self, Read, Write};
use std::time::Duration;

pub(crate) const HEARTBEAT: u8 = 30;
pub(crate) const EXIT: u8 = 31;
pub(crate) const BYE: u8 = 32;
pub(crate) const PLACE: u8 = 33;
/// The longest body of a link-only frame.
pub(crate) const CONTROL_MAX: usize = 256;

/// How often a quiet side sends a heartbeat.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// How long a side may be silent before it is taken for dead.
pub(crate) const SILENCE: Duration = Duration::from_secs(4);

/// A complete link-only frame with a body.
pub(crate) fn control(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    let start = wire::begin_frame(&mut out, kind, 0);
    out.extend_from_slice(body);
    wire::end_frame(&mut out, start).expect("a control frame fits");
    out
}

/// Follows frame boundaries in a stream and, on the receiving side, takes the link-only frames
/// out of it.
#[derive(Default)]
pub(crate) struct Splitter {
    header: [u8; HEADER],
    have: usize,
    /// Body bytes of the current frame still to come.
    body_left: usize,
    /// The current frame is link-only: its body is collected here.
    control: Option<(u8, Vec<u8>)>,
}

impl Splitter {
    /// True between two frames (a heartbeat may go in here).
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.body_left == 0 && self.control.is_none()
    }

    /// Appends the ordinary frames' bytes of `bytes` to `out` and returns the link-only frames
    /// (kind, body) completed in it, in order. Without `strip` every byte is passed on and only
    /// the boundaries are tracked. A frame header is held back until it is complete (its kind
    /// decides), so `out` may lag the input by at most [`HEADER`] bytes.
    pub(crate) fn split(&mut self, mut bytes: &[u8], strip: bool, out: &mut Vec<u8>) -> io::Result<Vec<(u8, Vec<u8>)>> {
        let mut controls = Vec::new();
        while !bytes.is_empty() {
            if self.body_left == 0 && self.control.is_none() {
                let take = (HEADER - self.have).min(bytes.len());
                self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                self.have += take;
                if self.have < HEADER {
                    continue;
                }
                self.have = 0;
                let len = u32::from_le_bytes(self.header[..4].try_into().expect("4 bytes")) as usize;
                if !(HEADER - 4..=MAX_FRAME).contains(&len) {
                    return Err(io::Error::other(format!("malformed frame on the link: length {len}")));
                }
                self.body_left = len - (HEADER - 4);
                let kind = self.header[4];
                if strip && matches!(kind, HEARTBEAT | EXIT | BYE | PLACE) {
                    if self.body_left > CONTROL_MAX {
                        return Err(io::Error::other(format!("link frame {kind} with a {}-byte body", self.body_left)));
                    }
                    self.control = Some((kind, Vec::new()));
                } else {
                    out.extend_from_slice(&self.header);
                }
            } else {
                let take = self.body_left.min(bytes.len());
                match &mut self.control {
                    Some((_, body)) => body.extend_from_slice(&bytes[..take]),
                    None => out.extend_from_slice(&bytes[..take]),
                }
                bytes = &bytes[take..];
                self.body_left -= take;
            }
            if self.body_left == 0 && self.have == 0 {
                if let Some(done) = self.control.take() {
                    controls.push(done);
                }
            }
        }
        Ok(controls)
    }
}

/// Reads into `buf`, telling a timeout apart: `Ok(None)` when nothing came within the stream's
/// read timeout.
pub(crate) fn read_timeout(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `bytes` (a write that blocks past the stream's write timeout is an error: the
/// peer stopped reading).
pub(crate) fn write_all(stream: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<u8> {
        let mut all = Vec::new();
        let start = wire::task_header(&mut all, 5, 9, 1);
        all.extend_from_slice(&[7; 100]);
        wire::end_frame(&mut all, start).unwrap();
        all.extend_from_slice(&control(HEARTBEAT, &[]));
        wire::empty_frame(&mut all, wire::SHUTDOWN, 0);
        all.extend_from_slice(&control(EXIT, &9i32.to_le_bytes()));
        all
    }

    #[test]
    fn link_frames_are_taken_out_whatever_the_chunking() {
        let all = frames();
        let mut expected = Vec::new();
        let start = wire::task_header(&mut expected, 5, 9, 1);
        expected.extend_from_slice(&[7; 100]);
        wire::end_frame(&mut expected, start).unwrap();
        wire::empty_frame(&mut expected, wire::SHUTDOWN, 0);
        for chunk in [1, 2, 5, 13, 14, 64, all.len()] {
            let mut splitter = Splitter::default();
            let (mut out, mut controls) = (Vec::new(), Vec::new());
            for piece in all.chunks(chunk) {
                controls.extend(splitter.split(piece, true, &mut out).unwrap());
            }
            assert_eq!(out, expected, "chunks of {chunk}");
            assert_eq!(controls, vec![(HEARTBEAT, vec![]), (EXIT, 9i32.to_le_bytes().to_vec())]);
            assert!(splitter.at_boundary());
        }
    }

    #[test]
    fn boundaries_are_tracked_when_nothing_is_stripped() {
        let all = frames();
        let mut splitter = Splitter::default();
        let mut out = Vec::new();
        assert!(splitter.split(&all[..20], false, &mut out).unwrap().is_empty());
        assert!(!splitter.at_boundary());
        splitter.split(&all[20..], false, &mut out).unwrap();
        assert!(splitter.at_boundary());
        assert_eq!(out, all);
    }

    #[test]
    fn a_forged_length_is_an_error() {
        let mut splitter = Splitter::default();
        let mut bad = u32::MAX.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0; 20]);
        assert!(splitter.split(&bad, true, &mut Vec::new()).is_err());
    }
}

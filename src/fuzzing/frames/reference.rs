//! An independent reading of the frame format (from `src/process/wire.rs`'s docs) and the
//! three ways the harness reads a stream with the wire's own code, which must agree with it.

use crate::process::wire::{self, Done, FrameReader, MAX_FRAME, READ_CHUNK};
use crate::rng::XorShift;
use std::io::{self, Read};

/// A frame as the reference reading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RefFrame {
    /// Without the descriptor bit (0x80).
    pub(super) kind: u8,
    pub(super) id: u64,
    /// Without the descriptor count.
    pub(super) body: Vec<u8>,
    /// Descriptors the frame carries.
    pub(super) fds: u8,
}

/// How a stream ends in the reference reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefEnd {
    /// Bytes left that are not a complete frame yet.
    Incomplete(usize),
    /// A length outside 9..=MAX_FRAME, or a frame with the descriptor bit whose count (the
    /// last byte of its body) is missing or outside 1..=253.
    BadLength,
}

pub(super) fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// The format as the module docs of `wire.rs` state it, written independently of that code.
pub(super) fn reference_frames(mut buf: &[u8]) -> (Vec<RefFrame>, RefEnd) {
    let mut frames = Vec::new();
    loop {
        if buf.len() < 4 {
            return (frames, RefEnd::Incomplete(buf.len()));
        }
        let len = le(&buf[..4]);
        if !(9..=MAX_FRAME as u64).contains(&len) {
            return (frames, RefEnd::BadLength);
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            return (frames, RefEnd::Incomplete(buf.len()));
        }
        let (kind, mut body, mut fds) = (buf[4], &buf[13..total], 0);
        if kind & 0x80 != 0 {
            match body.split_last() {
                Some((&count, rest)) if (1..=253).contains(&count) => (body, fds) = (rest, count),
                _ => return (frames, RefEnd::BadLength),
            }
        }
        frames.push(RefFrame { kind: kind & 0x7F, id: le(&buf[5..13]), body: body.to_vec(), fds });
        buf = &buf[total..];
    }
}

/// What a body means to each parser in the reference reading (`None`: malformed).
pub(super) fn reference_task(body: &[u8]) -> Option<(u64, u32, u32, &[u8])> {
    if body.len() < 16 || le(&body[8..12]) == 0 {
        return None;
    }
    Some((le(&body[..8]), le(&body[8..12]) as u32, le(&body[12..16]) as u32, &body[16..]))
}

pub(super) fn reference_hello(body: &[u8]) -> Option<(u32, u64, u32)> {
    (body.len() == 16).then(|| (le(&body[..4]) as u32, le(&body[4..12]), le(&body[12..16]) as u32))
}

pub(super) fn reference_done(body: &[u8]) -> Option<(Done<'_>, u64)> {
    if body.len() < 9 {
        return None;
    }
    let elapsed = le(&body[1..9]);
    let rest = &body[9..];
    let text = |b| std::str::from_utf8(b).ok();
    // Bit 0x40 of the status says the worker kept segments; it changes nothing else.
    let done = match body[0] & !0x40 {
        0 => Done::Ok(rest),
        1 => {
            if rest.len() < 8 {
                return None;
            }
            let index = le(&rest[..4]) as u32;
            let msg_len = le(&rest[4..8]) as usize;
            if msg_len > rest.len() - 8 {
                return None;
            }
            let message = text(&rest[8..8 + msg_len])?;
            let location = text(&rest[8 + msg_len..])?;
            Done::Panic { index, message, location }
        }
        2 => Done::Decode(text(rest)?),
        3 => Done::Encode(text(rest)?),
        4 => Done::Unknown,
        _ => return None,
    };
    Some((done, elapsed))
}

/// A `RELEASED` body: whole little-endian u64s, nothing else.
fn reference_released(body: &[u8]) -> Option<Vec<u64>> {
    if body.len() % 8 != 0 {
        return None;
    }
    Some((0..body.len() / 8).map(|i| le(&body[i * 8..i * 8 + 8])).collect())
}

/// Every parser on every body: no panic, and agreement with the reference.
pub(super) fn check_parsers(body: &[u8]) {
    let task = wire::parse_task(body).ok().map(|t| (t.key, t.count, t.ticket, t.payload));
    assert_eq!(task, reference_task(body), "parse_task of {body:?}");
    assert_eq!(wire::parse_hello(body).ok(), reference_hello(body), "parse_hello of {body:?}");
    assert_eq!(wire::parse_done(body).ok(), reference_done(body), "parse_done of {body:?}");
    assert_eq!(wire::parse_u64s(body).ok(), reference_released(body), "parse_u64s of {body:?}");
}

/// A stream that hands out its bytes in random-sized pieces, with the odd interruption.
pub(super) struct Chunky<'a> {
    data: &'a [u8],
    rng: XorShift,
    max: u64,
}

impl Read for Chunky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.data.is_empty() && self.rng.below(8) == 0 {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = (1 + self.rng.below(self.max) as usize).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The next frame of `reader`, whose descriptors are handed to it just before (as dups of one
/// descriptor: a socket delivers them no later than the frame's first byte, which the process
/// tests and `wire`'s socket test check; here the pairing of a frame with its count is). A
/// frame must come out with exactly the descriptors it claims, and take no others.
fn next_with_fds(reader: &mut FrameReader) -> Result<Option<RefFrame>, wire::WireError> {
    use std::os::fd::AsFd;
    thread_local! {
        static NULL: std::fs::File = std::fs::File::open("/dev/null").expect("/dev/null");
    }
    let wanted = reader.next_frame_wants();
    let before = reader.queued_fds();
    NULL.with(|null| reader.push_fds((0..wanted).map(|_| null.as_fd().try_clone_to_owned().expect("dup"))));
    match reader.next_frame_fds()? {
        None => {
            assert_eq!(wanted, 0, "a frame wanted descriptors and none came out");
            Ok(None)
        }
        Some((frame, fds)) => {
            assert_eq!(fds.len(), usize::from(frame.fds), "a frame came out with other descriptors than it claims");
            let frame = RefFrame { kind: frame.kind, id: frame.id, body: frame.body.to_vec(), fds: frame.fds };
            assert_eq!(reader.queued_fds(), before, "descriptors of other frames were taken");
            Ok(Some(frame))
        }
    }
}

/// What a reader made of a stream: frames, then an error or the bytes left pending.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reading {
    pub(super) frames: Vec<RefFrame>,
    pub(super) end: RefEnd,
}

/// Reads a stream the way the worker and the feeder do: drain buffered frames, then `fill`.
pub(super) fn read_like_a_peer(data: &[u8], seed: u64) -> Reading {
    let mut rng = XorShift::new(seed);
    let max = [1, 3, 13, 64, 4096, READ_CHUNK as u64][rng.below(6) as usize];
    let mut source = Chunky { data, rng: XorShift::new(seed ^ 0xC0FFEE), max };
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    loop {
        while reader.has_frame() {
            match next_with_fds(&mut reader) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => panic!("has_frame() said a frame was buffered, next_frame() found none"),
                Err(_) => {
                    assert!(reader.next_frame().is_err(), "an error must stay an error");
                    return Reading { frames, end: RefEnd::BadLength };
                }
            }
        }
        assert!(reader.pending() <= data.len(), "the reader holds more bytes than it was given");
        match reader.fill(&mut source) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("unexpected read error {e}"),
        }
    }
    assert!(matches!(reader.next_frame(), Ok(None)));
    Reading { frames, end: RefEnd::Incomplete(reader.pending()) }
}

/// The same stream pushed in pieces with `push_bytes`, reading after every piece.
pub(super) fn read_pushed(data: &[u8], seed: u64) -> Reading {
    let mut rng = XorShift::new(seed.wrapping_mul(31));
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        loop {
            match next_with_fds(&mut reader) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => return Reading { frames, end: RefEnd::BadLength },
            }
        }
        if rest.is_empty() {
            return Reading { frames, end: RefEnd::Incomplete(reader.pending()) };
        }
        let n = (1 + rng.below(40) as usize).min(rest.len());
        reader.push_bytes(&rest[..n]);
        rest = &rest[n..];
    }
}

/// `split_frame` directly, frame after frame.
pub(super) fn read_split(mut buf: &[u8]) -> Reading {
    let mut frames = Vec::new();
    loop {
        match wire::split_frame(buf) {
            Ok(Some((frame, used))) => {
                assert!((wire::HEADER..=buf.len()).contains(&used), "split_frame used {used} of {} bytes", buf.len());
                assert_eq!(frame.body.len() + usize::from(frame.fds > 0), used - wire::HEADER);
                frames.push(RefFrame { kind: frame.kind, id: frame.id, body: frame.body.to_vec(), fds: frame.fds });
                buf = &buf[used..];
            }
            Ok(None) => return Reading { frames, end: RefEnd::Incomplete(buf.len()) },
            Err(_) => return Reading { frames, end: RefEnd::BadLength },
        }
    }
}

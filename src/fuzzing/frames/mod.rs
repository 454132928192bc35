//! The wire property: arbitrary bytes through `split_frame`, `FrameReader`, the `parse_*`
//! functions and the worker's handling of `TASK` frames (`worker::run_one`) never panic, never
//! hang, never allocate in proportion to a length the bytes merely claim, and agree with an
//! independent reading of the format in `src/wire.rs`'s docs: malformed input is an error.
//!
//! The first input byte picks between raw mode (the bytes are the stream) and structured mode
//! (the bytes describe frames that are built with the wire's own writers and must read back
//! exactly), and seeds the chunking of the stream.

use super::input::Bytes;
use super::{alloc, EXPECTED_PANIC};
use crate::codec;
use crate::process::wire::{self, Done, FrameReader, TaskBody, MAX_FRAME, READ_CHUNK};
use crate::process::worker;
use crate::rng::XorShift;
use crate::task::{self, Task};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// Echoes its bytes (a `Vec<u8>` argument: length-prefixed on the wire).
#[derive(Serialize, Deserialize, Debug)]
pub struct FzEcho(pub Vec<u8>);
impl Task for FzEcho {
    type Output = Vec<u8>;
    fn run(self) -> Vec<u8> {
        self.0
    }
}

/// The length of a string (a `String` argument must be UTF-8).
#[derive(Serialize, Deserialize, Debug)]
pub struct FzText(pub String);
impl Task for FzText {
    type Output = u64;
    fn run(self) -> u64 {
        self.0.len() as u64
    }
}

/// A struct of varints, an option and a sequence.
#[derive(Serialize, Deserialize, Debug)]
pub struct FzMix {
    /// Varint.
    pub a: u64,
    /// Zig-zag varint.
    pub b: i32,
    /// Tagged option.
    pub c: Option<u16>,
    /// Length-prefixed sequence.
    pub d: Vec<u32>,
}
impl Task for FzMix {
    type Output = u64;
    fn run(self) -> u64 {
        let d: u64 = self.d.iter().map(|&x| u64::from(x)).fold(0, u64::wrapping_add);
        self.a.wrapping_add(self.b as u64).wrapping_add(u64::from(self.c.unwrap_or(7))).wrapping_add(d)
    }
}

/// An enum: the variant index is checked.
#[derive(Serialize, Deserialize, Debug)]
pub enum FzShape {
    /// No data.
    Dot,
    /// One byte.
    Line(u8),
    /// A sequence of pairs.
    Poly(Vec<(i8, i8)>),
}
impl Task for FzShape {
    type Output = usize;
    fn run(self) -> usize {
        match self {
            FzShape::Dot => 0,
            FzShape::Line(n) => n as usize,
            FzShape::Poly(points) => points.len(),
        }
    }
}

/// Panics on odd numbers.
#[derive(Serialize, Deserialize, Debug)]
pub struct FzPanic(pub u8);
impl Task for FzPanic {
    type Output = u8;
    fn run(self) -> u8 {
        assert!(self.0 % 2 == 0, "odd {}", self.0);
        self.0
    }
}

crate::register!(FzEcho, FzText, FzMix, FzShape, FzPanic);

/// Number of test task types; a `TASK` key below 16 is mapped onto one of them (or left
/// unknown), so the fuzzer reaches the tasks without guessing 64-bit hashes.
const TASKS: u64 = 5;

fn key_of(index: u64) -> Option<u64> {
    let entry = match index {
        0 => task::entry_of::<FzEcho>(),
        1 => task::entry_of::<FzText>(),
        2 => task::entry_of::<FzMix>(),
        3 => task::entry_of::<FzShape>(),
        4 => task::entry_of::<FzPanic>(),
        _ => return None,
    };
    Some(entry.expect("the fuzz tasks are registered").key)
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let mode = input.byte();
    let seed = u64::from(input.byte());
    let rest = &data[data.len().min(2)..];
    if mode & 1 == 0 {
        raw(rest, seed);
    } else {
        structured(Bytes::new(rest), seed);
    }
}

/// A frame as the reference reading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefFrame {
    kind: u8,
    id: u64,
    body: Vec<u8>,
}

/// How a stream ends in the reference reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefEnd {
    /// Bytes left that are not a complete frame yet.
    Incomplete(usize),
    /// A length outside 9..=MAX_FRAME.
    BadLength,
}

fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// The format as the module docs of `wire.rs` state it, written independently of that code.
fn reference_frames(mut buf: &[u8]) -> (Vec<RefFrame>, RefEnd) {
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
        frames.push(RefFrame { kind: buf[4], id: le(&buf[5..13]), body: buf[13..total].to_vec() });
        buf = &buf[total..];
    }
}

/// What a body means to each parser in the reference reading (`None`: malformed).
fn reference_task(body: &[u8]) -> Option<(u64, u32, &[u8])> {
    if body.len() < 12 || le(&body[8..12]) == 0 {
        return None;
    }
    Some((le(&body[..8]), le(&body[8..12]) as u32, &body[12..]))
}

fn reference_hello(body: &[u8]) -> Option<(u32, u64, u32)> {
    (body.len() == 16).then(|| (le(&body[..4]) as u32, le(&body[4..12]), le(&body[12..16]) as u32))
}

fn reference_done(body: &[u8]) -> Option<(Done<'_>, u64)> {
    if body.len() < 9 {
        return None;
    }
    let elapsed = le(&body[1..9]);
    let rest = &body[9..];
    let text = |b| std::str::from_utf8(b).ok();
    let done = match body[0] {
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

/// Every parser on every body: no panic, and agreement with the reference.
fn check_parsers(body: &[u8]) {
    let task = wire::parse_task(body).ok().map(|t| (t.key, t.count, t.payload));
    assert_eq!(task, reference_task(body), "parse_task of {body:?}");
    assert_eq!(wire::parse_hello(body).ok(), reference_hello(body), "parse_hello of {body:?}");
    assert_eq!(wire::parse_done(body).ok(), reference_done(body), "parse_done of {body:?}");
}

/// A stream that hands out its bytes in random-sized pieces, with the odd interruption.
struct Chunky<'a> {
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

/// What a reader made of a stream: frames, then an error or the bytes left pending.
#[derive(Debug, PartialEq, Eq)]
struct Reading {
    frames: Vec<RefFrame>,
    end: RefEnd,
}

/// Reads a stream the way the worker and the feeder do: drain buffered frames, then `fill`.
fn read_like_a_peer(data: &[u8], seed: u64) -> Reading {
    let mut rng = XorShift::new(seed);
    let max = [1, 3, 13, 64, 4096, READ_CHUNK as u64][rng.below(6) as usize];
    let mut source = Chunky { data, rng: XorShift::new(seed ^ 0xC0FFEE), max };
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    loop {
        while reader.has_frame() {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(RefFrame { kind: frame.kind, id: frame.id, body: frame.body.to_vec() }),
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
fn read_pushed(data: &[u8], seed: u64) -> Reading {
    let mut rng = XorShift::new(seed.wrapping_mul(31));
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    let mut rest = data;
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(RefFrame { kind: frame.kind, id: frame.id, body: frame.body.to_vec() }),
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
fn read_split(mut buf: &[u8]) -> Reading {
    let mut frames = Vec::new();
    loop {
        match wire::split_frame(buf) {
            Ok(Some((frame, used))) => {
                assert!((wire::HEADER..=buf.len()).contains(&used), "split_frame used {used} of {} bytes", buf.len());
                assert_eq!(frame.body.len(), used - wire::HEADER);
                frames.push(RefFrame { kind: frame.kind, id: frame.id, body: frame.body.to_vec() });
                buf = &buf[used..];
            }
            Ok(None) => return Reading { frames, end: RefEnd::Incomplete(buf.len()) },
            Err(_) => return Reading { frames, end: RefEnd::BadLength },
        }
    }
}

/// The most a reading of `len` input bytes may allocate at once: the buffer grows by
/// `READ_CHUNK` per read and may double; never anything a length prefix claims.
fn wire_allocation_bound(len: usize) -> usize {
    4 * len + 2 * READ_CHUNK + 4096
}

fn raw(data: &[u8], seed: u64) {
    let (frames, peak) = alloc::measure(|| {
        let (frames, end) = reference_frames(data);
        let want = Reading { frames, end };
        assert_eq!(read_split(data), want, "split_frame disagrees with the format");
        assert_eq!(read_pushed(data, seed), want, "FrameReader (push_bytes) disagrees with the format");
        assert_eq!(read_like_a_peer(data, seed), want, "FrameReader (fill) disagrees with the format");
        for frame in &want.frames {
            check_parsers(&frame.body);
        }
        want.frames
    });
    if let Some(peak) = peak {
        let bound = wire_allocation_bound(data.len());
        assert!(peak <= bound, "reading {} bytes allocated {peak} bytes at once (bound {bound})", data.len());
    }
    serve_frames(&frames);
}

/// The worker's dispatch over a stream's frames: tasks run until SHUTDOWN or a frame it must
/// refuse (which ends a worker's connection).
fn serve_frames(frames: &[RefFrame]) {
    for frame in frames {
        match frame.kind {
            wire::TASK => match wire::parse_task(&frame.body) {
                Ok(body) => check_run_one(frame.id, body),
                Err(_) => return,
            },
            _ => return,
        }
    }
}

/// What a task frame should produce, computed with the typed task directly.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Ok(Vec<u8>),
    Panic { index: u32, message: String },
    Decode,
    Unknown,
}

fn expected<T: Task>(payload: &[u8], count: u32) -> Expect {
    let mut rest = payload;
    let mut out = Vec::new();
    for index in 0..count {
        let Ok((value, used)) = codec::decode::<T>(rest) else { return Expect::Decode };
        rest = &rest[used..];
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| value.run())) {
            Ok(output) => codec::encode_into(&output, &mut out).expect("test outputs encode"),
            Err(payload) => {
                let message = crate::unwind::payload_message(&*payload);
                return Expect::Panic { index, message };
            }
        }
    }
    if !rest.is_empty() {
        return Expect::Decode;
    }
    Expect::Ok(out)
}

/// `run_one` on one task frame (keys below 16 remapped onto the test tasks): exactly one
/// well-formed `DONE` frame for that id, saying what the typed task says.
fn check_run_one(id: u64, body: TaskBody<'_>) {
    super::install_quiet_panic_hook();
    let index = (body.key < 16).then_some(body.key % 8).filter(|&i| i < TASKS);
    let key = index.and_then(key_of).unwrap_or(body.key);
    let body = TaskBody { key, ..body };
    let was = EXPECTED_PANIC.with(|e| e.replace(true));
    let want = match index {
        Some(0) => expected::<FzEcho>(body.payload, body.count),
        Some(1) => expected::<FzText>(body.payload, body.count),
        Some(2) => expected::<FzMix>(body.payload, body.count),
        Some(3) => expected::<FzShape>(body.payload, body.count),
        Some(4) => expected::<FzPanic>(body.payload, body.count),
        _ if task::entry_by_key(key).is_some() => {
            // A task of some other test module, named by a forged key: not ours to predict.
            EXPECTED_PANIC.with(|e| e.set(was));
            return;
        }
        _ => Expect::Unknown,
    };
    let payload_len = body.payload.len();
    let count = body.count;
    let (out, peak) = alloc::measure(|| {
        let mut out = Vec::new();
        worker::run_one(id, body, &mut out);
        out
    });
    EXPECTED_PANIC.with(|e| e.set(was));
    if let Some(peak) = peak {
        // bincode may allocate what a length inside the payload claims, up to its limit
        // (MAX_FRAME); see the notes on the codec. Never more than that.
        let bound = MAX_FRAME + 2 * payload_len + 2 * READ_CHUNK;
        assert!(peak <= bound, "run_one on a {payload_len}-byte payload allocated {peak} bytes at once");
    }
    let Ok(Some((frame, used))) = wire::split_frame(&out) else {
        panic!("run_one did not produce a complete frame: {out:?}");
    };
    assert_eq!(used, out.len(), "run_one must produce exactly one frame");
    assert_eq!((frame.kind, frame.id), (wire::DONE, id));
    let (done, _elapsed) = wire::parse_done(frame.body).expect("run_one's report parses");
    match (&want, done) {
        (Expect::Ok(bytes), Done::Ok(got)) => assert_eq!(bytes.as_slice(), got, "outputs of task {index:?}"),
        (Expect::Panic { index, message }, Done::Panic { index: i, message: m, location }) => {
            assert_eq!((*index, message.as_str()), (i, m));
            assert!(location.contains("frames.rs"), "panic location {location:?}");
        }
        (Expect::Decode, Done::Decode(message)) => assert!(!message.is_empty()),
        (Expect::Unknown, Done::Unknown) => {}
        (want, got) => panic!("task frame {key:#x} with count {count}: expected {want:?}, got {got:?}"),
    }
}

/// Structured mode: frames built by the wire's writers read back exactly, through the same
/// readers, and task frames with well-formed arguments run.
fn structured(mut input: Bytes<'_>, seed: u64) {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut written = Vec::new();
    while !input.is_empty() && want.len() < 64 {
        let id = input.u64();
        let start = stream.len();
        let choice = input.below(6);
        written.push(choice);
        match choice {
            0 => {
                // A task with well-formed arguments of a test task.
                let index = input.below(TASKS as usize) as u64;
                let count = 1 + input.below(4) as u32;
                let frame_start = wire::task_header(&mut stream, id, index, count);
                for _ in 0..count {
                    let n = input.byte();
                    let text = String::from_utf8_lossy(input.slice(16)).into_owned();
                    let bytes = input.slice(16).to_vec();
                    let result = match index {
                        0 => codec::encode_into(&FzEcho(bytes), &mut stream),
                        1 => codec::encode_into(&FzText(text), &mut stream),
                        2 => codec::encode_into(
                            &FzMix {
                                a: input.u64(),
                                b: input.u32() as i32,
                                c: (n % 3 != 0).then_some(n.into()),
                                d: bytes.iter().map(|&b| u32::from(b) << (b % 24)).collect(),
                            },
                            &mut stream,
                        ),
                        3 => codec::encode_into(
                            &match n % 3 {
                                0 => FzShape::Dot,
                                1 => FzShape::Line(n),
                                _ => FzShape::Poly(
                                    bytes.chunks(2).map(|c| (c[0] as i8, *c.last().unwrap() as i8)).collect(),
                                ),
                            },
                            &mut stream,
                        ),
                        _ => codec::encode_into(&FzPanic(n), &mut stream),
                    };
                    result.expect("test arguments encode");
                }
                wire::end_frame(&mut stream, frame_start).expect("small frames fit");
            }
            1 => wire::empty_frame(&mut stream, wire::SHUTDOWN, id),
            2 => wire::hello(&mut stream, input.u64(), input.u32()),
            3 => wire::empty_frame(&mut stream, wire::STARTED, id),
            4 => {
                let status = input.below(5) as u8;
                let frame_start = wire::begin_done(&mut stream, id, status, input.u64());
                let text = String::from_utf8_lossy(input.slice(24)).into_owned();
                match status {
                    wire::ST_OK => stream.extend_from_slice(input.slice(24)),
                    wire::ST_PANIC => {
                        let location = String::from_utf8_lossy(input.slice(24)).into_owned();
                        wire::panic_report(&mut stream, input.u32(), &text, &location);
                    }
                    wire::ST_DECODE | wire::ST_ENCODE => stream.extend_from_slice(text.as_bytes()),
                    _ => {}
                }
                wire::end_frame(&mut stream, frame_start).expect("small frames fit");
            }
            _ => {
                // Raw bytes as a frame of any kind.
                let kind = input.byte();
                let frame_start = wire::begin_frame(&mut stream, kind, id);
                stream.extend_from_slice(input.slice(32));
                wire::end_frame(&mut stream, frame_start).expect("small frames fit");
            }
        }
        let id = if choice == 2 { 0 } else { id }; // a hello is about the connection: id 0
        want.push(RefFrame { kind: stream[start + 4], id, body: stream[start + wire::HEADER..].to_vec() });
    }
    let (frames, end) = reference_frames(&stream);
    assert_eq!(frames, want, "the reference disagrees with the writers");
    assert_eq!(end, RefEnd::Incomplete(0));
    let read = Reading { frames, end };
    assert_eq!(read_split(&stream), read);
    assert_eq!(read_pushed(&stream, seed), read);
    assert_eq!(read_like_a_peer(&stream, seed), read);
    for (frame, choice) in read.frames.iter().zip(written) {
        check_parsers(&frame.body);
        match choice {
            0 => check_run_one(frame.id, wire::parse_task(&frame.body).expect("a written task parses")),
            2 => assert!(wire::parse_hello(&frame.body).is_ok(), "a written hello must parse"),
            4 => assert!(wire::parse_done(&frame.body).is_ok(), "a written report must parse"),
            _ => {}
        }
    }
}

/// Length prefixes of 4 GiB, of `MAX_FRAME + 1` and of exactly `MAX_FRAME` through every reader;
/// returns the largest single allocation of the last (a legal length whose body has not come
/// yet: incomplete, not an allocation), or `None` where [`alloc::TrackingAlloc`] is not the
/// global allocator.
pub fn huge_length_prefixes() -> Option<usize> {
    let mut data = vec![0, 0];
    data.extend_from_slice(&u32::MAX.to_le_bytes());
    data.extend_from_slice(&[wire::TASK; 32]);
    run(&data);
    let mut just_over = vec![0, 0];
    just_over.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
    run(&just_over);
    let (_, peak) = alloc::measure(|| {
        let mut reader = FrameReader::new();
        reader.push_bytes(&(MAX_FRAME as u32).to_le_bytes());
        assert!(matches!(reader.next_frame(), Ok(None)));
    });
    peak
}

/// A 30-byte frame: a task whose String argument claims 1 GiB - 64 bytes (varint 0xFC + u32).
/// bincode checks the claim against its limit (MAX_FRAME), then allocates the claimed length,
/// zeroed, before reading a byte of it. Returns the largest single allocation `run_one` made
/// (`None` without the tracking allocator): this records how close a forged frame gets (see
/// the notes on the codec).
pub fn forged_string_length() -> Option<usize> {
    let mut stream = Vec::new();
    let start = wire::task_header(&mut stream, 1, 1, 1);
    stream.extend_from_slice(&[0xFC, 0xC0, 0xFF, 0xFF, 0x3F]); // 2^30 - 64
    wire::end_frame(&mut stream, start).expect("a small frame");
    assert_eq!(stream.len(), 30);
    let (frame, _) = wire::split_frame(&stream).expect("well formed").expect("complete");
    let body = wire::parse_task(frame.body).expect("a task body");
    let body = TaskBody { key: key_of(1).expect("a registered test task"), ..body };
    let (out, peak) = alloc::measure(|| {
        let mut out = Vec::new();
        worker::run_one(1, body, &mut out);
        out
    });
    let (frame, _) = wire::split_frame(&out).expect("well formed").expect("complete");
    assert!(matches!(wire::parse_done(frame.body).expect("a report").0, Done::Decode(_)));
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::cases;

    #[test]
    fn seeded_raw_streams() {
        let mut rng = XorShift::new(0xF4A3_0001);
        for _ in 0..cases(3000, 10) {
            let mut data = rng.bytes(160);
            if let Some(first) = data.first_mut() {
                *first &= !1;
            }
            run(&data);
        }
    }

    #[test]
    fn seeded_raw_streams_of_plausible_frames() {
        // Mostly-valid streams: real headers with mutated bodies and lengths, so the parsers and
        // run_one see well-formed framing far more often than random bytes allow.
        let mut rng = XorShift::new(0xF4A3_0002);
        for _ in 0..cases(2000, 10) {
            let mut data = vec![0, rng.next_u64() as u8];
            for _ in 0..rng.below(4) {
                let body = rng.bytes(40);
                let mut len = (body.len() + 9) as u32;
                if rng.below(10) == 0 {
                    len = len.wrapping_add(rng.next_u64() as u32 % 5).wrapping_sub(2);
                }
                data.extend_from_slice(&len.to_le_bytes());
                data.push([wire::TASK, wire::DONE, wire::HELLO, wire::SHUTDOWN][rng.below(4) as usize]);
                data.extend_from_slice(&rng.below(4).to_le_bytes());
                if rng.below(2) == 0 && body.len() >= 12 {
                    // A task key that names a test task, and a small count.
                    let mut body = body;
                    body[..8].copy_from_slice(&rng.below(8).to_le_bytes());
                    body[8..12].copy_from_slice(&(1 + rng.below(3) as u32).to_le_bytes());
                    data.extend_from_slice(&body);
                } else {
                    data.extend_from_slice(&body);
                }
            }
            run(&data);
        }
    }

    #[test]
    fn seeded_structured_streams() {
        let mut rng = XorShift::new(0xF4A3_0003);
        for _ in 0..cases(2000, 10) {
            let mut data = rng.bytes(300);
            if let Some(first) = data.first_mut() {
                *first |= 1;
            }
            run(&data);
        }
    }

    #[test]
    fn a_4_gib_length_prefix_allocates_nothing_like_it() {
        // Without the tracking allocator (ordinary unit tests) this still runs the frames
        // through every reader; tests/frame_allocations.rs checks the bound itself.
        if let Some(peak) = huge_length_prefixes() {
            assert!(peak < 1 << 20, "{peak}");
        }
    }

    #[test]
    fn a_forged_string_length_costs_at_most_max_frame() {
        if let Some(peak) = forged_string_length() {
            assert!(peak <= MAX_FRAME + 4096, "{peak}");
        }
    }

    #[test]
    fn tasks_run_and_report_through_run_one() {
        let mut stream = Vec::new();
        let start = wire::task_header(&mut stream, 5, 4, 2);
        codec::encode_into(&FzPanic(2), &mut stream).unwrap();
        codec::encode_into(&FzPanic(3), &mut stream).unwrap();
        wire::end_frame(&mut stream, start).unwrap();
        let (frame, _) = wire::split_frame(&stream).unwrap().unwrap();
        check_run_one(frame.id, wire::parse_task(frame.body).unwrap());
    }
}

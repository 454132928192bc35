//! The wire property: arbitrary bytes through `split_frame`, `FrameReader`, the `parse_*`
//! functions and the worker's handling of `TASK` frames (`worker::run_one`) never panic, never
//! hang, never allocate in proportion to a length the bytes merely claim, and agree with an
//! independent reading of the format in `src/process/wire.rs`'s docs: malformed input is an error.
//!
//! The first input byte picks between raw mode (the bytes are the stream) and structured mode
//! (the bytes describe frames that are built with the wire's own writers and must read back
//! exactly), and seeds the chunking of the stream.

mod reference;
mod serve;
#[cfg(test)]
mod tests;

use super::input::Bytes;
use super::{alloc, EXPECTED_PANIC};
use crate::codec;
use crate::process::wire::{self, Done, FrameReader, TaskBody, MAX_FRAME, READ_CHUNK};
use crate::process::worker;
use crate::task::{self, Task};
use reference::{
    check_parsers, read_like_a_peer, read_pushed, read_split, reference_frames, Reading, RefEnd, RefFrame,
};
use serde::{Deserialize, Serialize};
use serve::{check_run_one, serve_frames};

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

/// Structured mode: frames built by the wire's writers read back exactly, through the same
/// readers, and task frames with well-formed arguments run.
fn structured(mut input: Bytes<'_>, seed: u64) {
    let mut stream = Vec::new();
    let mut want = Vec::new();
    let mut written = Vec::new();
    while !input.is_empty() && want.len() < 64 {
        let id = input.u64();
        let start = stream.len();
        let choice = input.below(7);
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
            5 => {
                // Raw bytes as a frame of any kind that carries no descriptors.
                let kind = input.byte() & !wire::WITH_FDS;
                let frame_start = wire::begin_frame(&mut stream, kind, id);
                stream.extend_from_slice(input.slice(32));
                wire::end_frame(&mut stream, frame_start).expect("small frames fit");
            }
            _ => {
                // A frame of any kind carrying 1 to 253 descriptors.
                let kind = input.byte() & !wire::WITH_FDS;
                let fds = 1 + input.below(253);
                let frame_start = wire::begin_frame(&mut stream, kind, id);
                stream.extend_from_slice(input.slice(32));
                wire::end_frame_fds(&mut stream, frame_start, fds).expect("small frames fit");
            }
        }
        let id = if choice == 2 { 0 } else { id }; // a hello is about the connection: id 0
        let (kind, mut body, mut fds) = (stream[start + 4], &stream[start + wire::HEADER..], 0);
        if choice == 6 {
            (body, fds) = (&body[..body.len() - 1], *body.last().expect("a count"));
        }
        want.push(RefFrame { kind: kind & !wire::WITH_FDS, id, body: body.to_vec(), fds });
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

/// A 34-byte frame: a task whose String argument claims 1 GiB - 64 bytes (varint 0xFC + u32).
/// bincode checks the claim against its limit (MAX_FRAME), then allocates the claimed length,
/// zeroed, before reading a byte of it. Returns the largest single allocation `run_one` made
/// (`None` without the tracking allocator): this records how close a forged frame gets (see
/// the notes on the codec).
pub fn forged_string_length() -> Option<usize> {
    let mut stream = Vec::new();
    let start = wire::task_header(&mut stream, 1, 1, 1);
    stream.extend_from_slice(&[0xFC, 0xC0, 0xFF, 0xFF, 0x3F]); // 2^30 - 64
    wire::end_frame(&mut stream, start).expect("a small frame");
    assert_eq!(stream.len(), 34);
    let (frame, _) = wire::split_frame(&stream).expect("well formed").expect("complete");
    let body = wire::parse_task(frame.body).expect("a task body");
    let body = TaskBody { key: key_of(1).expect("a registered test task"), ..body };
    let (out, peak) = alloc::measure(|| {
        let mut out = Vec::new();
        worker::run_one(1, body, Vec::new(), &mut out);
        out
    });
    let (frame, _) = wire::split_frame(&out).expect("well formed").expect("complete");
    assert!(matches!(wire::parse_done(frame.body).expect("a report").0, Done::Decode(_)));
    peak
}

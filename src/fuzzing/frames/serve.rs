//! The worker's side of the frames: every `TASK` frame of a stream goes through
//! `worker::run_one`, whose report must be exactly what the task's own code predicts.

use super::reference::RefFrame;
use super::{alloc, key_of, FzEcho, FzMix, FzPanic, FzShape, FzText, EXPECTED_PANIC, TASKS};
use crate::codec;
use crate::process::wire::{self, Done, TaskBody, MAX_FRAME, READ_CHUNK};
use crate::process::worker;
use crate::task::{self, Task};

/// The worker's dispatch over a stream's frames: tasks run until SHUTDOWN or a frame it must
/// refuse (which ends a worker's connection).
pub(super) fn serve_frames(frames: &[RefFrame]) {
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
pub(super) enum Expect {
    Ok(Vec<u8>),
    Panic { index: u32, message: String },
    Decode,
    Unknown,
}

pub(super) fn expected<T: Task>(payload: &[u8], count: u32) -> Expect {
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
pub(super) fn check_run_one(id: u64, body: TaskBody<'_>) {
    super::super::install_quiet_panic_hook();
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
        worker::run_one(id, body, Vec::new(), &mut out);
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
            assert!(location.contains("fuzzing/frames/mod.rs"), "panic location {location:?}");
        }
        (Expect::Decode, Done::Decode(message)) => assert!(!message.is_empty()),
        (Expect::Unknown, Done::Unknown) => {}
        (want, got) => panic!("task frame {key:#x} with count {count}: expected {want:?}, got {got:?}"),
    }
}

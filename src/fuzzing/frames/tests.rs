//! Seeded runs of the frame harness, and the frames that matter most on their own.

use super::serve::check_run_one;
use super::*;
use crate::fuzzing::cases;
use crate::rng::XorShift;

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
            if rng.below(2) == 0 && body.len() >= 16 {
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

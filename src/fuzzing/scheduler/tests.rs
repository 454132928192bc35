//! Seeded runs of both interpretations.

use super::run;
use crate::fuzzing::cases;
use crate::rng::XorShift;
use std::time::{Duration, Instant};

#[test]
fn seeded_deterministic_programs() {
    let mut rng = XorShift::new(0x5EED_0001);
    for _ in 0..cases(3000, 20) {
        let mut data = rng.bytes(300);
        if let Some(first) = data.first_mut() {
            *first &= 0x7f;
        }
        run(&data);
    }
}

#[test]
fn seeded_threaded_programs() {
    let mut rng = XorShift::new(0x5EED_0002);
    let started = Instant::now();
    for _ in 0..cases(300, 3) {
        let mut data = rng.bytes(80);
        if data.is_empty() {
            data.push(0);
        }
        data[0] = 0x80 | (data[0] & 0x3f);
        run(&data);
        if started.elapsed() > Duration::from_secs(10) {
            break; // a loaded machine: fewer cases rather than a slow suite
        }
    }
}

#[test]
fn empty_and_tiny_inputs() {
    for data in [&[][..], &[0], &[0x80], &[0xff, 0xff], &[0x0f, 14, 0, 8, 1]] {
        run(data);
    }
}

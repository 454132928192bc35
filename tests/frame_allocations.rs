//! The wire's allocation bound, with the tracking allocator installed: no input makes the frame
//! readers allocate what a length prefix merely claims, and a forged argument length costs at
//! most the codec's limit.
//!
//! The harness lives inside the crate (`workpool::fuzzing`, compiled only under `--cfg
//! fuzzing`), and this binary replaces the global allocator, which ordinary tests should not
//! have: so it is empty in a plain `cargo test`, and `.ci/run` runs it as
//! `RUSTFLAGS="--cfg fuzzing" cargo test --test frame_allocations`.
#![cfg(fuzzing)]

use workpool::fuzzing::{alloc, frames};

#[global_allocator]
static ALLOC: alloc::TrackingAlloc = alloc::TrackingAlloc;

#[allow(dead_code)]
#[path = "../src/rng.rs"]
mod rng;

#[test]
fn the_tracking_allocator_measures_the_largest_allocation() {
    let (_, peak) = alloc::measure(|| {
        let a = vec![0u8; 1000];
        let b = String::from("ten bytes!");
        a.len() + b.len()
    });
    assert_eq!(peak, Some(1000));
    let (_, peak) = alloc::measure(|| 1 + 1);
    assert!(peak.expect("installed") <= 1);
}

#[test]
fn a_4_gib_length_prefix_allocates_nothing_like_it() {
    let peak = frames::huge_length_prefixes().expect("the tracking allocator is installed");
    assert!(peak < 1 << 20, "{peak}");
}

#[test]
fn a_forged_string_length_costs_at_most_max_frame() {
    let peak = frames::forged_string_length().expect("the tracking allocator is installed");
    assert!(peak <= (1 << 30) + 4096, "{peak}");
    eprintln!("a 34-byte task frame made run_one allocate {peak} bytes at once");
}

#[test]
fn seeded_streams_stay_within_the_bound() {
    // `frames::run` checks every reading against its bound when it can measure.
    let mut rng = rng::XorShift::new(0xF4A3_0004);
    for _ in 0..3000 {
        frames::run(&rng.bytes(200));
    }
}

//! Arbitrary bytes through the wire's readers and parsers and the worker's task handling
//! (see `workpool::fuzzing::frames`).
#![no_main]

use libfuzzer_sys::fuzz_target;

// Records the largest single allocation, so the harness can check the frame bound.
#[global_allocator]
static ALLOC: workpool::fuzzing::alloc::TrackingAlloc = workpool::fuzzing::alloc::TrackingAlloc;

fuzz_target!(|data: &[u8]| workpool::fuzzing::frames::run(data));

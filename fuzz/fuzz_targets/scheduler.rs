//! Push / pop / steal / sleep / wake / terminate programs against a model of the scheduler
//! (see `workpool::fuzzing::scheduler`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| workpool::fuzzing::scheduler::run(data));

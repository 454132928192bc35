//! Helpers shared by the benches of this crate (`benches/*.rs`).
//!
//! This crate measures workpool as its users get it: an ordinary dependency, built with the
//! release profile and no LTO, so that only what workpool inlines across the crate boundary is
//! inlined. Each bench compares with a peer **in the same process and the same run**, the two
//! alternating which goes first, and reports medians and the median of the per-run ratios
//! (noise between runs cancels in a ratio taken within one run).
//!
//! * [`measure`]: environment knobs, scenario selection, timing, medians.
//! * [`table`]: the markdown table every bench prints.
//! * [`threads`]: CPU time and wake-ups of a pool's own threads, from `/proc/self/task`.

pub mod measure;
pub mod table;
pub mod threads;

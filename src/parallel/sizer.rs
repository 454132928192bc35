//! Auto-batching: how many tasks go into the next batch.
//!
//! Tiny tasks are grouped into batches whose size adapts to the measured run time of a batch
//! (reported by the worker, so queueing delays do not distort it). Like joblib, sizes start at
//! 1 and grow while batches are short, and shrink when they are long; the constants fit the
//! overheads of this crate rather than Python's:
//!
//! * A batch costs roughly 20–50 µs of fixed overhead (a socket round trip, two wake-ups) on
//!   the process backend and a few µs on threads. Batches that run at least
//!   [`MIN_BATCH`] (2 ms) keep that overhead near 1–2%.
//! * Batches that run over [`MAX_BATCH`] (20 ms) are split again so that results and
//!   progress keep flowing and Ctrl-C or an early error is acted on quickly.
//! * Short batches grow towards [`TARGET_BATCH`] (5 ms), at most 8× per step; long ones shrink
//!   in proportion. (joblib aims at 0.2–2 s, because each of its batches costs milliseconds.)
//! * When the input length is known, no batch takes more than `remaining / (2 × n_jobs)`
//!   tasks, so the tail is spread over every worker instead of one straggler.

use std::time::Duration;

/// Batches shorter than this grow.
pub(crate) const MIN_BATCH: Duration = Duration::from_millis(2);
/// The run time batches are sized for.
pub(crate) const TARGET_BATCH: Duration = Duration::from_millis(5);
/// Batches longer than this shrink.
pub(crate) const MAX_BATCH: Duration = Duration::from_millis(20);
/// Largest automatic batch.
const MAX_BATCH_SIZE: usize = 1 << 20;

/// Sizes batches from measured run times (see the module docs).
pub(crate) struct Sizer {
    /// `Parallel::batch_size`: no adaptation at all.
    fixed: Option<usize>,
    /// The current automatic size.
    size: usize,
}

impl Sizer {
    pub(crate) fn new(fixed: Option<usize>) -> Self {
        Sizer { fixed, size: 1 }
    }

    /// The size of the next batch, given how many tasks remain (when known) and the jobs.
    pub(crate) fn next(&self, remaining: Option<usize>, jobs: usize) -> usize {
        if let Some(n) = self.fixed {
            return n;
        }
        match remaining {
            Some(left) => self.size.min((left / (2 * jobs)).max(1)),
            None => self.size,
        }
    }

    /// Learns from a finished batch of `count` tasks that ran for `elapsed`.
    pub(crate) fn record(&mut self, count: usize, elapsed: Duration) {
        if self.fixed.is_some() || count * 2 < self.size {
            return; // a tail batch or an old size: says little about the current size
        }
        let ns = elapsed.as_nanos().max(1) as f64;
        let target = TARGET_BATCH.as_nanos() as f64;
        if elapsed < MIN_BATCH {
            let factor = (target / ns).min(8.0);
            self.size = ((count as f64 * factor) as usize).clamp(self.size, MAX_BATCH_SIZE);
        } else if elapsed > MAX_BATCH {
            self.size = ((count as f64 * target / ns) as usize).max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizer_grows_short_batches_and_shrinks_long_ones() {
        let mut s = Sizer::new(None);
        s.record(1, Duration::from_micros(1));
        assert_eq!(s.size, 8, "at most 8x per step");
        s.record(8, Duration::from_micros(8));
        assert_eq!(s.size, 64);
        s.size = 1000;
        s.record(1000, Duration::from_millis(100));
        assert_eq!(s.size, 50, "shrinks to the target duration");
        s.record(50, Duration::from_millis(10));
        assert_eq!(s.size, 50, "in range: unchanged");
        assert_eq!(s.next(Some(40), 2), 10, "tail batches spread over the jobs");
        let fixed = Sizer::new(Some(7));
        assert_eq!(fixed.next(Some(3), 2), 7);
    }
}

//! The scheduler property: every job runs exactly once, nothing is lost when workers sleep and
//! wake, and termination drains every queue.
//!
//! Two interpretations of the same input:
//!
//! * [`deterministic`]: one thread plays every scheduler thread, one operation at a time, against a
//!   reference model of the deques (LIFO/FIFO local order, FIFO steals, the injector's batch
//!   moves, the search order local → peers → injector) and of the sleep protocol's jobs event
//!   counter. Every result is predicted exactly.
//! * [`threaded`]: real scheduler threads in `Queue::wait` (so they spin, sleep and are woken
//!   through the protocol) while the main thread injects bursts of work separated by idle gaps,
//!   wakes workers at random and finally terminates. Any job not run within a generous deadline
//!   is a lost wake-up; the harness then fails instead of hanging.

mod deterministic;
#[cfg(test)]
mod tests;
mod threaded;

pub use deterministic::deterministic;
pub use threaded::threaded;

use super::input::Bytes;
use crate::scheduler::Order;

/// Runs one input: its first byte picks the interpretation (top three bits: 0–3 deterministic,
/// 4–6 threaded, 7 the thread pool of [`super::pool`]) and the scheduler's shape (low bits).
pub fn run(data: &[u8]) {
    let mut input = Bytes::new(data);
    let mode = input.byte();
    match mode >> 5 {
        0..=3 => deterministic(mode, input),
        4..=6 => threaded(mode, input),
        _ => super::pool::run(&data[1..]),
    }
}

pub(crate) fn shape(mode: u8) -> (usize, Order) {
    let workers = 1 + (mode & 3) as usize;
    let order = if mode & 4 != 0 { Order::Fifo } else { Order::Lifo };
    (workers, order)
}

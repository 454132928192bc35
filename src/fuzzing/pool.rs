//! The thread-pool property: random trees of `join`, `scope` + `spawn` (borrowing the caller's
//! stack) and `ThreadPool::spawn` compute what the same tree computes sequentially; a panic in
//! a `join` branch or a scope spawn surfaces at the caller only after every sibling finished.
//!
//! This is the part of the crate with the most `unsafe` (type-erased stack jobs, latches that
//! let their owner's frame go), so it is also what the Miri run exercises.

use super::expected_panic;
use super::input::Bytes;
use crate::ThreadPool;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A tree of pool operations, read from bytes.
#[derive(Debug)]
enum Node {
    Leaf(u64),
    Join(Box<Node>, Box<Node>),
    /// Every child runs as a scope spawn that writes into its own slot of a local vector.
    Scope(Vec<Node>),
    /// Like `Join`, but the left branch panics after the right one was queued.
    PanicJoin(Box<Node>),
}

fn parse(input: &mut Bytes<'_>, depth: u32, budget: &mut u32) -> Node {
    if *budget == 0 || depth == 0 || input.is_empty() {
        return Node::Leaf(u64::from(input.byte()));
    }
    *budget -= 1;
    match input.byte() % 8 {
        0..=2 => Node::Leaf(u64::from(input.u16())),
        3 | 4 => Node::Join(Box::new(parse(input, depth - 1, budget)), Box::new(parse(input, depth - 1, budget))),
        5 | 6 => {
            let n = input.below(5);
            Node::Scope((0..n).map(|_| parse(input, depth - 1, budget)).collect())
        }
        _ => Node::PanicJoin(Box::new(parse(input, depth - 1, budget))),
    }
}

/// The sequential meaning of a tree (a panicking join contributes nothing), and how many
/// leaves it has.
fn sequential(node: &Node) -> (u64, usize) {
    match node {
        Node::Leaf(v) => (*v, 1),
        Node::Join(a, b) => {
            let (x, m) = sequential(a);
            let (y, n) = sequential(b);
            (x.wrapping_mul(3).wrapping_add(y), m + n)
        }
        Node::Scope(children) => children.iter().enumerate().fold((0, 0), |(acc, n), (i, c)| {
            let (v, m) = sequential(c);
            (acc.wrapping_add(v.wrapping_mul(i as u64 + 1)), n + m)
        }),
        Node::PanicJoin(b) => (0, sequential(b).1),
    }
}

fn on_pool(pool: &ThreadPool, node: &Node, leaves: &AtomicUsize) -> u64 {
    match node {
        Node::Leaf(v) => {
            leaves.fetch_add(1, Ordering::Relaxed);
            *v
        }
        Node::Join(a, b) => {
            let (x, y) = pool.join(|| on_pool(pool, a, leaves), || on_pool(pool, b, leaves));
            x.wrapping_mul(3).wrapping_add(y)
        }
        Node::Scope(children) => {
            let mut slots = vec![0u64; children.len()];
            pool.scope(|s| {
                for (slot, child) in slots.iter_mut().zip(children) {
                    s.spawn(move || *slot = on_pool(pool, child, leaves));
                }
            });
            slots.iter().enumerate().fold(0u64, |acc, (i, v)| acc.wrapping_add(v.wrapping_mul(i as u64 + 1)))
        }
        Node::PanicJoin(b) => {
            let before = leaves.load(Ordering::Relaxed);
            let right_done = AtomicUsize::new(0);
            let result = catch_unwind(AssertUnwindSafe(|| {
                pool.join(
                    || -> u64 { expected_panic("left branch") },
                    || {
                        on_pool(pool, b, leaves);
                        right_done.fetch_add(1, Ordering::SeqCst)
                    },
                )
            }));
            assert!(result.is_err(), "the left branch's panic must reach the caller");
            assert_eq!(right_done.load(Ordering::SeqCst), 1, "join unwound before its right branch finished");
            assert!(leaves.load(Ordering::Relaxed) >= before);
            0
        }
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    super::install_quiet_panic_hook();
    let mut input = Bytes::new(data);
    let threads = 1 + input.below(3);
    let mut budget = if cfg!(miri) { 12 } else { 200 };
    let tree = parse(&mut input, 8, &mut budget);
    let (want, want_leaves) = sequential(&tree);
    let pool = ThreadPool::new(threads);
    let leaves = AtomicUsize::new(0);
    let got = on_pool(&pool, &tree, &leaves);
    assert_eq!(got, want, "the pool computed something else than the sequential tree: {tree:?}");
    assert_eq!(leaves.load(Ordering::Relaxed), want_leaves, "every leaf runs exactly once");

    // A scope whose spawns panic: the panic surfaces after every spawn ran.
    let ran = AtomicUsize::new(0);
    let spawns = 1 + input.below(6);
    let result = catch_unwind(AssertUnwindSafe(|| {
        pool.scope(|s| {
            for i in 0..spawns {
                let ran = &ran;
                s.spawn(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    if i % 2 == 1 {
                        expected_panic("scope spawn");
                    }
                });
            }
        })
    }));
    assert_eq!(result.is_err(), spawns > 1, "a panicking spawn must fail its scope");
    assert_eq!(ran.load(Ordering::SeqCst), spawns, "the scope returned before all its spawns ran");

    // 'static spawns all run before the pool's drop returns.
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let n = input.below(8);
    for _ in 0..n {
        let (count, tx) = (count.clone(), tx.clone());
        pool.spawn(move || {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        });
    }
    drop(pool);
    assert_eq!(count.load(Ordering::SeqCst), n, "dropping the pool must run every spawned job first");
    for _ in 0..n {
        rx.recv_timeout(Duration::from_secs(60)).expect("spawned jobs ran");
    }
}

#[cfg(test)]
mod tests {
    use crate::rng::XorShift;

    #[test]
    fn seeded_pool_programs() {
        let mut rng = XorShift::new(0x9001);
        for _ in 0..if cfg!(miri) { 3 } else { 400 } {
            super::run(&rng.bytes(if cfg!(miri) { 24 } else { 120 }));
        }
    }
}

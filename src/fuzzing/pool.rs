//! The thread-pool property: random trees of `join`, `scope` + `spawn` and `scope_fifo` +
//! `spawn_fifo` (borrowing the caller's stack), `broadcast`, calls into a second pool
//! (`install` from the first pool's threads and back), and `ThreadPool::spawn` / `spawn_fifo`,
//! compute what the same tree computes sequentially; a panic in a `join` branch or a scope spawn
//! surfaces at the caller only after every sibling finished.
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
    /// The same through `scope_fifo` and `spawn_fifo`.
    FifoScope(Vec<Node>),
    /// The child runs on the other pool (`install`), from a thread of this one.
    Cross(Box<Node>),
    /// The child runs once on every thread of the current pool (`broadcast`); the results add up.
    Broadcast(Box<Node>),
    /// Like `Join`, but the left branch panics after the right one was queued.
    PanicJoin(Box<Node>),
}

/// At most this many broadcasts nest on any path (each multiplies the work below it).
const BROADCAST_NESTING: u32 = 2;

fn parse(input: &mut Bytes<'_>, depth: u32, budget: &mut u32, broadcasts: u32) -> Node {
    if *budget == 0 || depth == 0 || input.is_empty() {
        return Node::Leaf(u64::from(input.byte()));
    }
    *budget -= 1;
    let mut child = |input: &mut Bytes<'_>, broadcasts| Box::new(parse(input, depth - 1, budget, broadcasts));
    match input.byte() % 11 {
        0..=2 => Node::Leaf(u64::from(input.u16())),
        3 | 4 => Node::Join(child(input, broadcasts), child(input, broadcasts)),
        5 | 6 | 8 => {
            let n = input.below(5);
            let children = (0..n).map(|_| *child(input, broadcasts)).collect();
            if n % 2 == 0 {
                Node::Scope(children)
            } else {
                Node::FifoScope(children)
            }
        }
        7 => Node::PanicJoin(child(input, broadcasts)),
        9 => Node::Cross(child(input, broadcasts)),
        _ if broadcasts > 0 => Node::Broadcast(child(input, broadcasts - 1)),
        _ => Node::Cross(child(input, broadcasts)),
    }
}

/// The two pools a tree runs on, and which one a node is on.
struct Pools {
    pools: [ThreadPool; 2],
}

/// The sequential meaning of a tree on pool `at` of pools with `threads` threads (a panicking
/// join contributes nothing), and how many leaves run.
fn sequential(node: &Node, threads: [usize; 2], at: usize) -> (u64, usize) {
    let seq = |child: &Node| sequential(child, threads, at);
    match node {
        Node::Leaf(v) => (*v, 1),
        Node::Join(a, b) => {
            let (x, m) = seq(a);
            let (y, n) = seq(b);
            (x.wrapping_mul(3).wrapping_add(y), m + n)
        }
        Node::Scope(children) | Node::FifoScope(children) => {
            children.iter().enumerate().fold((0, 0), |(acc, n), (i, c)| {
                let (v, m) = seq(c);
                (acc.wrapping_add(v.wrapping_mul(i as u64 + 1)), n + m)
            })
        }
        Node::PanicJoin(b) => (0, seq(b).1),
        Node::Cross(child) => sequential(child, threads, 1 - at),
        Node::Broadcast(child) => {
            let (v, m) = seq(child);
            (v.wrapping_mul(threads[at] as u64), m * threads[at])
        }
    }
}

fn weighted_sum(slots: &[u64]) -> u64 {
    slots.iter().enumerate().fold(0u64, |acc, (i, v)| acc.wrapping_add(v.wrapping_mul(i as u64 + 1)))
}

fn on_pool(pools: &Pools, at: usize, node: &Node, leaves: &AtomicUsize) -> u64 {
    let pool = &pools.pools[at];
    let on_pool = |node: &Node| on_pool(pools, at, node, leaves);
    match node {
        Node::Leaf(v) => {
            leaves.fetch_add(1, Ordering::Relaxed);
            *v
        }
        Node::Join(a, b) => {
            let (x, y) = pool.join(|| on_pool(a), || on_pool(b));
            x.wrapping_mul(3).wrapping_add(y)
        }
        Node::Scope(children) => {
            let mut slots = vec![0u64; children.len()];
            pool.scope(|s| {
                for (slot, child) in slots.iter_mut().zip(children) {
                    s.spawn(move || *slot = on_pool(child));
                }
            });
            weighted_sum(&slots)
        }
        Node::FifoScope(children) => {
            let mut slots = vec![0u64; children.len()];
            pool.scope_fifo(|s| {
                for (slot, child) in slots.iter_mut().zip(children) {
                    s.spawn_fifo(move || *slot = on_pool(child));
                }
            });
            weighted_sum(&slots)
        }
        Node::Cross(child) => {
            let other = 1 - at;
            pools.pools[other].install(|| self::on_pool(pools, other, child, leaves))
        }
        Node::Broadcast(child) => {
            let results = pool.broadcast(|ctx| {
                assert_eq!(pool.current_thread_index(), Some(ctx.index()));
                on_pool(child)
            });
            assert_eq!(results.len(), pool.num_threads());
            results.iter().fold(0u64, |acc, v| acc.wrapping_add(*v))
        }
        Node::PanicJoin(b) => {
            let before = leaves.load(Ordering::Relaxed);
            let right_done = AtomicUsize::new(0);
            let result = catch_unwind(AssertUnwindSafe(|| {
                pool.join(
                    || -> u64 { expected_panic("left branch") },
                    || {
                        on_pool(b);
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

/// Runs `tree` from the first pool and compares with its sequential meaning.
fn check_tree(pools: &Pools, tree: &Node) {
    let threads = [pools.pools[0].num_threads(), pools.pools[1].num_threads()];
    let (want, want_leaves) = sequential(tree, threads, 0);
    let leaves = AtomicUsize::new(0);
    let got = on_pool(pools, 0, tree, &leaves);
    assert_eq!(got, want, "the pool computed something else than the sequential tree: {tree:?}");
    assert_eq!(leaves.load(Ordering::Relaxed), want_leaves, "every leaf runs exactly once");
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    super::install_quiet_panic_hook();
    let mut input = Bytes::new(data);
    let threads = [1 + input.below(3), 1 + input.below(3)];
    let mut budget = if cfg!(miri) { 12 } else { 200 };
    let tree = parse(&mut input, 8, &mut budget, BROADCAST_NESTING);
    let pools = Pools { pools: threads.map(ThreadPool::new) };
    check_tree(&pools, &tree);
    let [pool, other] = pools.pools;
    drop(other);

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

    // 'static spawns (LIFO and FIFO) all run before the pool's drop returns.
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let n = input.below(8);
    for _ in 0..n {
        let (count, tx) = (count.clone(), tx.clone());
        let job = move || {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        };
        // From inside the pool (through the thread's FIFO) and from outside.
        match input.below(3) {
            0 => pool.spawn(job),
            1 => pool.spawn_fifo(job),
            _ => pool.install(|| pool.spawn_fifo(job)),
        }
    }
    drop(pool);
    assert_eq!(count.load(Ordering::SeqCst), n, "dropping the pool must run every spawned job first");
    for _ in 0..n {
        rx.recv_timeout(Duration::from_secs(60)).expect("spawned jobs ran");
    }
}

#[cfg(test)]
mod tests {
    use super::{check_tree, Node, Pools};
    use crate::rng::XorShift;
    use crate::ThreadPool;

    /// Every kind of node, nested in every other kind at least once, on pools of one and two
    /// threads: short enough for Miri, which sees few seeded programs.
    #[test]
    fn every_node_kind_nested() {
        super::super::install_quiet_panic_hook();
        let leaf = |v| Box::new(Node::Leaf(v));
        let inner = || Node::Join(leaf(1), Box::new(Node::FifoScope(vec![Node::Leaf(2), Node::Leaf(3)])));
        let tree = Node::Scope(vec![
            Node::Broadcast(Box::new(Node::Cross(Box::new(inner())))),
            Node::Cross(Box::new(Node::Broadcast(Box::new(Node::PanicJoin(Box::new(inner())))))),
            Node::FifoScope(vec![Node::Join(Box::new(Node::Cross(leaf(4))), Box::new(Node::Broadcast(leaf(5))))]),
        ]);
        for threads in [[1, 1], [2, 1], [1, 2]] {
            let pools = Pools { pools: threads.map(ThreadPool::new) };
            check_tree(&pools, &tree);
        }
    }

    #[test]
    fn seeded_pool_programs() {
        let mut rng = XorShift::new(0x9001);
        for _ in 0..if cfg!(miri) { 3 } else { 400 } {
            super::run(&rng.bytes(if cfg!(miri) { 24 } else { 120 }));
        }
    }
}

#!/usr/bin/env bash
# Model checks: loom over the sleep/wake protocol (every interleaving of 1-2 sleepers and 1-2
# pushers up to a preemption bound; a lost wake-up is a deadlock report), then Miri over the
# unit tests of the modules with unsafe code (scheduler, thread pool via fuzzing::pool) when a
# nightly toolchain with Miri is there. Any finding fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "model-check: loom (src/scheduler/loom_tests.rs)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$PWD/target/loom" \
    cargo test --release --lib loom -- --test-threads=2

if cargo +nightly miri --version >/dev/null 2>&1; then
    echo "model-check: miri (scheduler, thread pool, fuzzing harnesses)"
    # Tests that start processes or read /proc are not among these; iteration counts scale
    # down under cfg(miri). Tree Borrows: crossbeam-epoch (under crossbeam-deque) is known not
    # to satisfy Stacked Borrows (crossbeam-rs/crossbeam#545) and runs its own Miri CI under
    # Tree Borrows. Permissive provenance: parking_lot_core and crossbeam-epoch cast integers
    # to pointers, which Miri otherwise warns about on every run. Ignore leaks: crossbeam-epoch's
    # global collector keeps exited threads' `Local`s and their last `SealedBag`s until a later
    # collection that never comes before exit; a job the pool loses instead is caught by the
    # harnesses' own exactly-once counts.
    flags="-Zmiri-tree-borrows -Zmiri-permissive-provenance -Zmiri-ignore-leaks"
    MIRIFLAGS="${MIRIFLAGS:-$flags}" CARGO_TARGET_DIR="$PWD/target/miri" \
        cargo +nightly miri test --lib -- scheduler:: fuzzing::pool fuzzing::scheduler rng:: fuzzing::alloc
else
    echo "model-check: no nightly toolchain with Miri (cargo +nightly miri --version failed); skipping Miri"
fi
echo "model-check: no findings"

#!/usr/bin/env bash
# Bounded fuzzing: each cargo-fuzz target in fuzz/ (scheduler, frames, executor) for
# FUZZ_SECONDS seconds (default 60). Needs a nightly toolchain (cargo-fuzz builds with
# sanitizers); without one it prints a note and exits 0. Any finding (crash, panic, hang past
# the per-input timeout, leak, sanitizer report) fails the script; the input that caused it is
# left in fuzz/artifacts/TARGET/. See fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
read -r -a targets <<<"${FUZZ_TARGETS:-scheduler frames executor}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain (cargo +nightly --version failed); skipping the fuzzers"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "fuzz: building the targets"
cargo +nightly fuzz build -O

for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    echo "fuzz: $target for ${seconds}s"
    # -timeout: one input running longer than this is a finding (a hang). The executor's
    # programs bound every wait at 30 s themselves.
    extra=()
    # Executor programs are a few bytes per operation and run ~20 per second: start at full
    # length instead of letting libFuzzer grow the length limit from 4 bytes.
    [ "$target" = executor ] && extra=(-len_control=0 -max_len=64)
    log="$(mktemp)"
    if ! cargo +nightly fuzz run -O "$target" "$corpus" -- \
        -max_total_time="$seconds" -timeout=60 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
        tail -n 80 "$log"
        rm -f "$log"
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" || true
    rm -f "$log"
done
echo "fuzz: no findings"

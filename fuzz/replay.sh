#!/usr/bin/env bash
# Replays every fuzz target over its committed corpus, once per input and
# without fuzzing: deterministic, so a parser change that breaks on a known
# input fails here (CI runs this; fuzz/run-all.sh is the fuzzing itself).
#
# The inputs are the files git tracks in fuzz/corpus/TARGET/, never what a
# local fuzzing run left beside them. The targets are built with plain cargo
# in the debug profile (overflow checks and debug assertions on) into
# fuzz/target: libFuzzer's main runs the files given as arguments, which
# needs neither cargo-fuzz nor coverage instrumentation. A target without a
# committed input fails, rather than replaying nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --manifest-path fuzz/Cargo.toml --target-dir fuzz/target --bins

failed=()
for source in fuzz/fuzz_targets/*.rs; do
    target=$(basename "$source" .rs)
    mapfile -t inputs < <(git ls-files "fuzz/corpus/$target")
    if ((${#inputs[@]} == 0)); then
        echo "=== $target: no committed corpus in fuzz/corpus/$target" >&2
        failed+=("$target")
        continue
    fi
    log=$(mktemp)
    if "fuzz/target/debug/$target" -timeout=10 "${inputs[@]}" >"$log" 2>&1; then
        echo "=== $target: ${#inputs[@]} inputs replayed"
    else
        echo "=== $target: FAILED on its committed corpus:" >&2
        grep -E 'Running: |panicked at|ERROR|Test unit written' "$log" >&2 || tail -n 20 "$log" >&2
        failed+=("$target")
    fi
    rm -f "$log"
done
if ((${#failed[@]} > 0)); then
    echo "fuzz replay FAILED: ${failed[*]}" >&2
    exit 1
fi

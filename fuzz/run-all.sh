#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30) on the stable toolchain,
# without a sanitizer. Exits non-zero if any target finds a crash, a hang
# (an input taking over 10 s) or fails to build. Extra arguments after
# SECONDS go to libFuzzer, e.g. `fuzz/run-all.sh 60 -max_len=70000`.
set -uo pipefail
seconds=${1:-30}
shift $(($# > 0 ? 1 : 0))
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: $0 [SECONDS] [libFuzzer args...]   (SECONDS > 0, default 30)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed; installing it (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz || exit 2
fi
cargo fuzz build --sanitizer none --fuzz-dir fuzz || exit 2

mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
failed=()
for target in "${targets[@]}"; do
    echo "=== $target: ${seconds}s"
    log=$(mktemp)
    # The summary filter must not touch the pipeline's status: PIPESTATUS[0]
    # is the fuzzer's own exit code.
    cargo fuzz run --sanitizer none --fuzz-dir fuzz "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "$@" 2>&1 | tee "$log" |
        { grep -E '^#[0-9]+[[:space:]]+DONE|^Done|^stat::(number_of_executed_units|average_exec_per_sec)' || true; }
    status=${PIPESTATUS[0]}
    if ((status != 0)); then
        failed+=("$target")
        echo "--- $target FAILED (exit $status):"
        grep -E '^#[0-9]+' "$log" | tail -n 1
        grep -m 1 -A 1 -E 'panicked at|^==[0-9]+== ERROR|ALARM: working on the last Unit' "$log" || true
        sed -n '/^Failing input:/,/^Minimize/p' "$log"
        grep -q '^Failing input:' "$log" || tail -n 20 "$log"
    fi
    rm -f "$log"
done

echo
if ((${#failed[@]} > 0)); then
    echo "FAILED: ${failed[*]} (crashing inputs are in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran ${seconds}s each without a crash"

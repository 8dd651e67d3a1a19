#!/usr/bin/env bash
# Storage under load. For each sync mode (always, batch, none) a fresh server
# with a fresh SQLite data directory, pinned to core 0, and the load pinned to
# core 1:
#   - `switchboard bench stored` with 1, 10 and 100 publishers over raw TCP,
#     each publisher in its own room (so fan-out is one delivery per message
#     and does not dominate), one send outstanding each: acked messages/s,
#     send-to-ack latency and server CPU;
#   - `switchboard bench replay`: a fresh room filled with 100,000 messages,
#     then the time from a `join` with `since: 0` to its `replayed` event.
# Prints a markdown report: machine, the exact commands, the tables.
#   bash bench/storage.sh            (about 2 minutes plus the build)
# Knobs (environment): MODES PUBLISHERS DURATION WARMUP PAYLOAD MESSAGES.
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=${MODES:-always batch none}
PUBLISHERS=${PUBLISHERS:-1 10 100}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
PAYLOAD=${PAYLOAD:-100}
MESSAGES=${MESSAGES:-100000}
# Retention must keep every message the replay fills the room with.
ROOM_MAX=200000
BIN=target/release/switchboard
INVOCATION="bash bench/storage.sh (MODES='$MODES' PUBLISHERS='$PUBLISHERS' DURATION=$DURATION WARMUP=$WARMUP PAYLOAD=$PAYLOAD MESSAGES=$MESSAGES)"

for tool in taskset python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
started=$SECONDS
cargo build --release -q -p switchboard

WORK=$(mktemp -d)
DATA=
SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    if [[ -n $DATA ]]; then
        rm -rf "$DATA"
        DATA=
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Percent of all cores busy over half a second, before a mode starts: other
# work on the machine skews every figure, so the report shows it.
background_busy() {
    python3 -c '
import time
def sample():
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]
(t0, i0) = sample(); time.sleep(0.5); (t1, i1) = sample()
print(round(100 * (1 - (i1 - i0) / max(t1 - t0, 1))))'
}

# Starts a server on core 0 with sync mode $1; sets SERVER_PID, PORT, DATA, SERVER_CMD.
start_server() {
    local mode=$1
    DATA=$(mktemp -d) PORT=$(free_port)
    # One publisher sends up to ~9,000 acked messages a second, past the
    # per-connection rate limits (1,000 a second): this measures storage, so they are off.
    export SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND=0 SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0
    SERVER_CMD="SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND=0 SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0 SWITCHBOARD_STORAGE__ROOM_MAX_MESSAGES=$ROOM_MAX RUST_LOG=info taskset -c 0 $BIN serve --http 127.0.0.1:0 --tcp 127.0.0.1:$PORT --udp 127.0.0.1:0 --data \$(mktemp -d) --storage sqlite --sync $mode"
    SWITCHBOARD_STORAGE__ROOM_MAX_MESSAGES=$ROOM_MAX RUST_LOG=info taskset -c 0 \
        "$BIN" serve --http 127.0.0.1:0 --tcp "127.0.0.1:$PORT" --udp 127.0.0.1:0 --data "$DATA" \
        --storage sqlite --sync "$mode" >"$WORK/server-$mode.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        grep -q 'switchboard listening' "$WORK/server-$mode.log" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "the server did not start; its log:" >&2
    cat "$WORK/server-$mode.log" >&2
    exit 1
}

# Runs one bench command on core 1 and appends `MODE<TAB>SCENARIO<TAB>JSON`
# to results.tsv (a JSON error object if it failed). The first mode's
# commands are recorded.
run_bench() {
    local mode=$1 out
    shift
    local bench=(taskset -c 1 "$BIN" bench "$@" --tcp "127.0.0.1:$PORT" --json)
    [[ $mode == "${MODES%% *}" ]] && echo "${bench[*]}" >>"$WORK/commands.txt"
    if ! out=$(timeout 300 "${bench[@]}" 2>"$WORK/bench.err"); then
        out=$(python3 -c 'import json,sys; print(json.dumps({"error": sys.argv[1][:600]}))' "$(cat "$WORK/bench.err")")
    fi
    printf '%s\t%s\t%s\n' "$mode" "$1" "$out" >>"$WORK/results.tsv"
    echo "$mode: $* done at $((SECONDS - started))s" >&2
}

: >"$WORK/results.tsv" >"$WORK/commands.txt" >"$WORK/background.tsv"
for mode in $MODES; do
    printf '%s\t%s\n' "$mode" "$(background_busy)" >>"$WORK/background.tsv"
    start_server "$mode"
    [[ $mode == "${MODES%% *}" ]] && echo "$SERVER_CMD" >"$WORK/server-command.txt"
    fs=$(df -PT "$DATA" | awk 'NR == 2 { print $2 }')
    for publishers in $PUBLISHERS; do
        run_bench "$mode" stored --publishers "$publishers" --duration "$DURATION" --warmup "$WARMUP" \
            --payload "$PAYLOAD" --pid "$SERVER_PID" --server-core 0
    done
    run_bench "$mode" replay --messages "$MESSAGES" --payload "$PAYLOAD"
    stop_server
done

revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z $(git status --porcelain -- crates Cargo.lock 2>/dev/null) ]] || revision="$revision plus uncommitted changes"
python3 - "$WORK" "$INVOCATION" "$revision" "$fs" "$((SECONDS - started))" "$DURATION" <<'EOF'
import json, os, subprocess, sys, time
work, invocation, revision, fs, elapsed, duration = sys.argv[1:7]
duration = float(duration)
run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
results = [line.rstrip("\n").split("\t", 2) for line in open(os.path.join(work, "results.tsv"))]
background = dict(line.split() for line in open(os.path.join(work, "background.tsv")))
print(f"# Storage: acked sends and replay, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
print(f"Command: `{invocation}`\n")
print(f"Machine: `nproc` {run('nproc')} ({model}), `uname -r` {run('uname', '-r')}; data directory on {fs}; "
      f"switchboard built from {revision}. Server pinned to core 0, load to core 1; a fresh server and data "
      f"directory per sync mode. Script took {elapsed}s. Other work on the machine just before each mode: "
      + ", ".join(f"{mode} {busy}%" for mode, busy in background.items()) + " of all cores.\n")
print("Server: `" + open(os.path.join(work, "server-command.txt")).read().strip() + "` (with `--sync` set per mode)\n")
print("Load (with `--tcp` and `--pid` set per run):\n")
for command in open(os.path.join(work, "commands.txt")):
    print(f"- `{command.strip()}`")
print("\n`bench stored`: each publisher in its own room (one delivery per message: fan-out does not dominate), "
      "one send outstanding each; latency is send to ack; msgs/s counts acks in the measured window. Server CPU is "
      "the process's user+system time; core busy is all of core 0's non-idle time (softirq included); load CPU is "
      "the load generator's own CPU time, all as a share of the window.\n")
print("| mode | publishers | msgs/s | p50 ack ms | p99 ack ms | p99.9 ack ms | max ack ms | server CPU-s per 1000 msgs "
      "| server core busy % | load CPU % | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
f = lambda v, d: "-" if v is None else f"{v:,.{d}f}"
target = None
def failed(mode, r, cells):
    text = " ".join(r["error"].split("Stack backtrace:")[0].split()) or "?"
    return f"| {mode} | failed: {text.replace('|', '/')} |" + " |" * cells
for mode, scenario, out in results:
    r = json.loads(out)
    if scenario != "stored":
        continue
    if "error" in r:
        print(failed(mode, r, 9))
        continue
    lat = r.get("ack_latency_ms") or {}
    errors = "none" if r["errors"] == 0 else f"{r['errors']}: {r['errors_by_code']} (first: {r['first_error']})"
    if r["msg_events_total"] != r["acked_total"] or r["seq_breaks"]:
        errors += f"; {r['acked_total']} acked but {r['msg_events_total']} msg events, {r['seq_breaks']} seq breaks"
    percent = lambda seconds: None if seconds is None else 100 * seconds / duration
    busy, load = percent(r.get("server_core_busy_seconds")), percent(r.get("bench_cpu_seconds"))
    print(f"| {mode} | {r['publishers']} | {r['acked_per_second']:,.0f} | {f(lat.get('p50'), 2)} | {f(lat.get('p99'), 2)} "
          f"| {f(lat.get('p999'), 2)} | {f(lat.get('max'), 2)} | {f(r['server_cpu_seconds_per_1000'], 3)} "
          f"| {f(busy, 0)} | {f(load, 0)} | {errors.replace('|', '/')} |")
    if mode == "always" and r["publishers"] == 100:
        target = r["acked_per_second"]
print("\n`bench replay`: a fresh room filled with stored messages, then a new connection's `join` with `since: 0`; "
      "timed from the join to the `replayed` event, every message checked (seq 1..=N, in order).\n")
print("| mode | messages | fill s | join reply ms | first message ms | replay s | replayed msgs/s |")
print("|---|---|---|---|---|---|---|")
for mode, scenario, out in results:
    r = json.loads(out)
    if scenario != "replay":
        continue
    if "error" in r:
        print(failed(mode, r, 5))
        continue
    print(f"| {mode} | {r['messages']:,} | {r['fill_seconds']:.2f} | {r['join_reply_ms']:.1f} | {r['first_message_ms']:.1f} "
          f"| {r['replay_seconds']:.3f} | {r['replayed_per_second']:,.0f} |")
if target is not None:
    verdict = "met" if target >= 50000 else "NOT met"
    print(f"\nTarget (sync always, 100 publishers, at least 50,000 msgs/s): {verdict}, {target:,.0f} msgs/s.")
EOF

#!/usr/bin/env bash
# Raw transports under load. One publisher fans 100-byte messages out to
# 1000 raw TCP subscribers at 1000 msg/s for 10 s (1M deliveries/s), first
# against switchboard's JSON-lines TCP listener, then against redis pub/sub
# with the same load (`switchboard bench tcp-fanout`). Then switchboard's
# UDP relay: one sender, 100 receivers in one room, at a few rates
# (`switchboard bench udp-relay`), with volatile sends (live only, as game
# state would be sent) and once with stored sends. Each server runs alone, pinned to core 0,
# started fresh for every run; the load generator is pinned to core 1. Every
# case runs REPEATS times. Prints a markdown report: machine, the exact
# commands, and one table row per run.
#   bash bench/raw-vs-redis.sh [REPEATS]   (default 3: about 3 minutes, at most 4 plus the build)
# Knobs (environment): DURATION SUBSCRIBERS RATE SIZE RECEIVERS UDP_RATES, and
# QUIET_BUDGET: seconds the whole script may spend waiting for other work on
# the machine to pass before a run (default 60; a busy run is flagged).
# Needs redis-server on PATH (Debian: apt-get install -y redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${1:-3}
DURATION=${DURATION:-10}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-1000}
SIZE=${SIZE:-100}
RECEIVERS=${RECEIVERS:-100}
UDP_RATES=${UDP_RATES:-1000 5000 20000}
QUIET_BUDGET=${QUIET_BUDGET:-60}
# The UDP sender would otherwise be held to the default 1000 datagrams/s.
UDP_LIMIT=1000000
BIN=target/release/switchboard

if ! command -v redis-server >/dev/null; then
    echo "redis-server is not on PATH. On Debian: apt-get install -y redis-server" >&2
    exit 1
fi
for tool in taskset python3 curl; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
started=$SECONDS
cargo build --release -q -p switchboard

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# A port free for both TCP and UDP (switchboard serves both on one number).
free_port() {
    python3 -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(type=socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()'
}

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "the server did not start; its log:" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

# Starts a server on core 0; sets SERVER_PID, PORT, HTTP and SERVER_CMD.
start_switchboard() {
    HTTP=$(free_port) PORT=$(free_port)
    # The UDP sender's session sends up to 20,000 datagrams a second: past the
    # per-source and the per-connection limits (1,000 a second), so both are lifted.
    SERVER_CMD="SWITCHBOARD_UDP_OPTIONS__DATAGRAMS_PER_SECOND=$UDP_LIMIT SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND=0 SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0 RUST_LOG=warn taskset -c 0 $BIN serve --http 127.0.0.1:$HTTP --tcp 127.0.0.1:$PORT --udp 127.0.0.1:$PORT"
    SWITCHBOARD_UDP_OPTIONS__DATAGRAMS_PER_SECOND=$UDP_LIMIT SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND=0 \
        SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0 RUST_LOG=warn taskset -c 0 \
        "$BIN" serve --http "127.0.0.1:$HTTP" --tcp "127.0.0.1:$PORT" --udp "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT"
}

# Protected mode is off because subscribers connect from 127.0.0.2-9 (to
# spread over more source ports); the server still listens on 127.0.0.1 only.
start_redis() {
    HTTP= PORT=$(free_port)
    SERVER_CMD="taskset -c 0 redis-server --bind 127.0.0.1 --port $PORT --save '' --appendonly no --protected-mode no"
    taskset -c 0 redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --protected-mode no \
        >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$PORT"
}

# Percent of all cores busy over half a second (nothing of ours running):
# other work on the machine skews every figure, so each run records it.
background_busy() {
    python3 -c '
import time
def sample():
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]
(t0, i0) = sample(); time.sleep(0.5); (t1, i1) = sample()
print(round(100 * (1 - (i1 - i0) / max(t1 - t0, 1))))'
}

# One case: REPEATS runs of one bench command, each against a fresh server
# (a UDP session outlives its socket by 30 s; nothing carries over).
#   case_ LABEL SERVER(switchboard|redis) BENCH-ARGS...
CASE=0
case_() {
    local label=$1 server=$2 out counters
    shift 2
    CASE=$((CASE + 1))
    for run in $(seq "$REPEATS"); do
        local background
        background=$(background_busy)
        # Wait for other work to pass, within a budget for the whole script.
        while ((background >= 5 && QUIET_BUDGET > 0)); do
            sleep 1
            QUIET_BUDGET=$((QUIET_BUDGET - 2))
            background=$(background_busy)
        done
        "start_$server"
        local bench=(taskset -c 1 "$BIN" bench "$@" --server "127.0.0.1:$PORT" --pid "$SERVER_PID" --server-core 0 --json)
        if [[ $run == 1 ]]; then
            printf '%s\t%s\t%s\t%s\n' "$CASE" "$label" "$SERVER_CMD" "${bench[*]}" >>"$WORK/cases.tsv"
        fi
        if ! out=$(timeout 120 "${bench[@]}" 2>"$WORK/bench.err"); then
            out=$(python3 -c 'import json,sys; print(json.dumps({"error": sys.argv[1][-300:]}))' "$(cat "$WORK/bench.err")")
        fi
        counters=
        if [[ -n $HTTP ]]; then
            counters=$(curl -s "http://127.0.0.1:$HTTP/metrics" |
                grep -E '^switchboard_(messages_dropped_total|slow_consumer_disconnects_total)' | tr '\n' ';' || true)
        fi
        printf '%s\t%s\t%s\t%s\t%s\n' "$CASE" "$run" "$background" "$counters" "$out" >>"$WORK/runs.tsv"
        stop_server
        echo "case $CASE ($label) run $run done at $((SECONDS - started))s" >&2
    done
}

: >"$WORK/cases.tsv" >"$WORK/runs.tsv"
fanout=(tcp-fanout --subscribers "$SUBSCRIBERS" --rate "$RATE" --duration "$DURATION" --size "$SIZE")
case_ "tcp-fanout switchboard" switchboard "${fanout[@]}" --protocol switchboard
case_ "tcp-fanout redis" redis "${fanout[@]}" --protocol redis
relay=(udp-relay --receivers "$RECEIVERS" --duration "$DURATION" --size "$SIZE")
for rate in $UDP_RATES; do
    case_ "udp-relay $rate/s volatile" switchboard "${relay[@]}" --rate "$rate" --volatile
done
# The same relay with every datagram stored before it is relayed.
case_ "udp-relay 5000/s stored" switchboard "${relay[@]}" --rate 5000

revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -z $(git status --porcelain -- crates Cargo.lock 2>/dev/null) ]] || revision="$revision plus uncommitted changes"
python3 - "$WORK" "$REPEATS" "$((SECONDS - started))" "$(redis-server --version)" "$revision" <<'EOF'
import json, os, platform, subprocess, sys, time
work, repeats, elapsed, redis, revision = sys.argv[1:6]
cases = [line.rstrip("\n").split("\t") for line in open(os.path.join(work, "cases.tsv"))]
runs = [line.rstrip("\n").split("\t", 4) for line in open(os.path.join(work, "runs.tsv"))]
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"# Raw transports: switchboard vs redis, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
print(f"Machine: {nproc} cores ({model}), Linux {platform.release()}; {redis.split(' sha=')[0]}; "
      f"switchboard built from {revision}.")
busy = [int(r[2]) for r in runs]
print(f"Servers pinned to core 0, the load to core 1; {repeats} runs per case, each against a fresh server; "
      f"script took {elapsed}s. Other work on the machine just before each run: {min(busy)}-{max(busy)}% of all cores.\n")
print("| case | run | sent | expected | received | lost | loss % | deliveries/s | p50 ms | p99 ms | p99.9 ms | max ms "
      "| server CPU s | deliveries per CPU-s | core 0 busy s | bench CPU s | notes |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
label = {c[0]: c[1] for c in cases}
def counters(text):
    out = []
    for item in filter(None, text.split(";")):
        name, value = item.rsplit(" ", 1)
        name = name.replace("switchboard_", "").replace("_total", "").replace('{reason="', "[").replace('"}', "]")
        out.append(f"{name} {float(value):,.0f}")
    return ("server counters: " + ", ".join(out)) if out else ""
for case, run, background, server_counters, out in runs:
    r = json.loads(out)
    if "error" in r:
        print(f"| {case}. {label[case]} | {run} | failed: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'} |" + " |" * 14)
        continue
    lat = r.get("latency_ms") or {}
    f = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"
    notes = []
    if r["members_closed"]: notes.append(f"{r['members_closed']} closed: {r['close_reason']}")
    if r["out_of_order"]: notes.append(f"{r['out_of_order']} out of order")
    if r["publisher_errors"]:
        notes.append(f"{r['publisher_errors']} publisher errors, first: {r['publisher_first_error']}")
    if r.get("kernel_drops"): notes.append("kernel drops: server socket {server}, receivers {members}".format(**r["kernel_drops"]))
    if r["send_seconds"] > r["duration_s"] * 1.05: notes.append(f"publishing took {r['send_seconds']:.1f}s")
    if counters(server_counters): notes.append(counters(server_counters))
    if int(background) >= 5: notes.append(f"**machine {background}% busy with other work just before**")
    print(f"| {case}. {label[case]} | {run} | {r['sent']:,} | {r['expected']:,} | {r['received']:,} | {r['lost']:,} "
          f"| {r['loss_percent']:.2f} | {r['deliveries_per_second']:,.0f} | {f(lat.get('p50'), 2)} | {f(lat.get('p99'))} "
          f"| {f(lat.get('p999'))} | {f(lat.get('max'))} | {f(r['server_cpu_seconds'], 2)} "
          f"| {f(r['deliveries_per_server_cpu_second'], 0)} | {f(r['server_core_busy_seconds'], 2)} "
          f"| {f(r['bench_cpu_seconds'], 2)} | {'; '.join(notes).replace('|', '/')} |")
print("\nCommands, as run for each case's first run (later runs differ only in ports and PIDs):\n")
for case, name, server, bench in cases:
    print(f"{case}. {name}\n   - server: `{server}`\n   - load:   `{bench}`")
EOF

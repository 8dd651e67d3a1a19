#!/usr/bin/env bash
# HTTP publish side by side in one run: Switchboard's POST /api/rooms/ROOM/messages beside the
# hyper "hello" peer (bench/peers/hyper-hello: the same hyper and tokio answering every request
# with a fixed text), the machine's ceiling for HTTP requests on one core. Each server is pinned to
# core 0 with taskset, the load generator (`switchboard bench http`, C clients with one request in
# flight each) to core 1, with a fresh server for every run, in keep-alive and new-connection-per-
# request modes, ROUNDS rounds (every server once per round).
#
#   bash bench/http.sh
# Env: SERVERS   (default: "hello switchboard switchboard-volatile switchboard-durable")
#                hello: the peer; switchboard: --storage memory, stored publishes;
#                switchboard-volatile: the same, volatile publishes (not stored);
#                switchboard-durable: SQLite with sync=always (fsync per commit) in a fresh directory
#      MODES     (default: "keep-alive new-connection")
#      ROUNDS    (default 3)   DURATION seconds a run (default 10)   CLIENTS (default 50)
#      OUT       raw JSON reports (default target/http-bench)
#      SWITCHBOARD_BIN  the binary (default: built here)
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-"hello switchboard switchboard-volatile switchboard-durable"}
MODES=${MODES:-"keep-alive new-connection"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-50}
OUT=${OUT:-target/http-bench}
BIN=$(realpath -m "${SWITCHBOARD_BIN:-target/release/switchboard}")
SERVER_CORE=0
LOAD_CORE=1

[ "$(nproc)" -ge 2 ] || { echo "http: needs two cores (server and load apart)" >&2; exit 1; }
[ -n "${SWITCHBOARD_BIN:-}" ] || cargo build --release -q -p switchboard
case " $SERVERS " in
*" hello "*) [ -x bench/peers/hyper-hello/target/release/hyper-hello-peer ] \
    || { echo "http: build the peer first: bash bench/peers/setup.sh" >&2; exit 1; } ;;
esac
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(realpath "$OUT")

. bench/lib.sh
trap stop_server EXIT

# start_server NAME PORT: the server on core 0, listening before this returns.
start_server() {
    local name=$1 port=$2 log="$OUT/$1.server.log"
    case "$name" in
    hello) bash bench/peers/start.sh hyper-hello "$port" "$SERVER_CORE" >>"$log" 2>&1 & ;;
    switchboard | switchboard-volatile)
        RUST_LOG=warn taskset -c "$SERVER_CORE" "$BIN" serve --storage memory --http "127.0.0.1:$port" \
            --tcp 127.0.0.1:0 --udp 127.0.0.1:0 >>"$log" 2>&1 &
        ;;
    switchboard-durable)
        RUST_LOG=warn taskset -c "$SERVER_CORE" "$BIN" serve --storage sqlite --sync always \
            --data "$(mktemp -d "$OUT/data.XXXXXX")" --http "127.0.0.1:$port" \
            --tcp 127.0.0.1:0 --udp 127.0.0.1:0 >>"$log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    wait_listening "$port" && return 0
    echo "http: $name did not start (see $log)" >&2
    return 1
}

# run NAME MODE ROUND: one run against a fresh server; its JSON report goes to $OUT.
run() {
    local name=$1 mode=$2 round=$3 port flags=()
    port=$(free_port)
    start_server "$name" "$port"
    [ "$name" = hello ] && flags+=(--path /)
    [ "$name" = switchboard-volatile ] && flags+=(--volatile)
    [ "$mode" = new-connection ] && flags+=(--new-connection)
    taskset -c "$LOAD_CORE" "$BIN" bench http --server "127.0.0.1:$port" -c "$CLIENTS" \
        --duration "$DURATION" --pid "$SERVER_PID" --json "${flags[@]}" \
        >"$OUT/$name.$mode.$round.json" 2>"$OUT/$name.$mode.$round.err" \
        || echo "http: $name $mode round $round failed (see $OUT/$name.$mode.$round.err)" >&2
    stop_server
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); $CLIENTS clients, ${DURATION}s a run, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        for name in $SERVERS; do
            run "$name" "$mode" "$round"
        done
    done
done

python3 - "$OUT" "$SERVERS" "$MODES" "$ROUNDS" <<'PY'
import json, statistics, sys
out, servers, modes, rounds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
def load(name, mode, r):
    try:
        with open(f"{out}/{name}.{mode}.{r}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
print("| server | mode | requests/s (each round) | median | % of hello | per server CPU-second | p50 / p99 ms | refused |")
print("|---|---|---|---|---|---|---|---|")
medians = {}
for mode in modes:
    for name in servers:
        reports = [load(name, mode, r) for r in range(1, rounds + 1)]
        rates = [rep["ok_per_second"] for rep in reports if rep]
        if not rates:
            print(f"| {name} | {mode} | failed | | | | | |")
            continue
        median = statistics.median(rates)
        medians[(name, mode)] = median
        hello = medians.get(("hello", mode))
        share = f"{100 * median / hello:.0f}%" if hello and name != "hello" else ""
        per_cpu = statistics.median([rep["ok_per_cpu_second"] for rep in reports if rep and rep["ok_per_cpu_second"]] or [0])
        lat = [rep["latency_ms"] for rep in reports if rep and rep["latency_ms"]]
        p50 = statistics.median([l["p50"] for l in lat]) if lat else 0
        p99 = statistics.median([l["p99"] for l in lat]) if lat else 0
        refused = sum(sum(rep["refused"].values()) for rep in reports if rep)
        each = " · ".join(f"{rate:,.0f}" for rate in rates)
        print(f"| {name} | {mode} | {each} | {median:,.0f} | {share} | {per_cpu:,.0f} | {p50:.2f} / {p99:.2f} | {refused} |")
PY

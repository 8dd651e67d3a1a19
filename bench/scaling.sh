#!/usr/bin/env bash
# Scaling curves for Switchboard, printed as two Markdown tables:
#  - server memory per idle, joined WebSocket at 1,000, 5,000 and 15,000
#    connections (100 rooms), each on a fresh server;
#  - fan-out cost against room size: one room of 10, 100, 1,000 and 10,000
#    subscribers at RATE messages/s (default 100) of 100 bytes.
# Server on core 0, load on core 1. The JSON reports stay in OUT
# (scaling.idle-N.json, scaling.fanout-S.json), and after the tables
# bench/charts.py draws them as docs/img/scaling-*.svg.
#
#   bash bench/scaling.sh
#
# Env: RATE (default 100), DURATION (default 10), SWITCHBOARD_BIN,
#      OUT (default target/scaling), NO_WRITE=1 to leave docs/img alone.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-100}
DURATION=${DURATION:-10}
BIN=$(realpath -m "${SWITCHBOARD_BIN:-target/release/switchboard}")
OUT=${OUT:-target/scaling}
[ -n "${SWITCHBOARD_BIN:-}" ] || cargo build --release -q -p switchboard
mkdir -p "$OUT" && rm -f "$OUT"/scaling.*.json "$OUT/server.log"

. bench/lib.sh
trap stop_server EXIT

start_server() {
    PORT=$(free_port)
    taskset -c 0 "$BIN" serve --storage memory --http "127.0.0.1:$PORT" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 \
        >>"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    wait_listening "$PORT" && return 0
    echo "scaling: the server did not start" >&2
    exit 1
}

field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, r))" "$@"; }

echo "| connections | bytes per connection (RssAnon) | all resident (VmRSS) | connects/s |"
echo "|---|---|---|---|"
for n in 1000 5000 15000; do
    idle=$OUT/scaling.idle-$n.json
    start_server
    taskset -c 1 "$BIN" bench idle --server "127.0.0.1:$PORT" -n "$n" --pid "$SERVER_PID" --json >"$idle"
    stop_server
    printf '| %s | %s | %s | %s |\n' "$n" \
        "$(field "$idle" 'f"{server_anon_bytes_per_connection:,.0f}"')" \
        "$(field "$idle" 'f"{server_rss_bytes_per_connection:,.0f}"')" \
        "$(field "$idle" 'f"{connects_per_second:,.0f}"')"
done

echo
echo "| subscribers | deliveries/s | server CPU µs per delivery | deliveries per CPU-second | p50 ms | p99 ms | lost |"
echo "|---|---|---|---|---|---|---|"
for s in 10 100 1000 10000; do
    fan=$OUT/scaling.fanout-$s.json
    start_server
    taskset -c 1 "$BIN" bench fanout --server "127.0.0.1:$PORT" -s "$s" -r "$RATE" --duration "$DURATION" \
        --pid "$SERVER_PID" --server-core 0 --json >"$fan"
    stop_server
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$s" \
        "$(field "$fan" 'f"{deliveries_per_second:,.0f}"')" \
        "$(field "$fan" 'f"{1e6 / deliveries_per_server_cpu_second:.2f}"')" \
        "$(field "$fan" 'f"{deliveries_per_server_cpu_second:,.0f}"')" \
        "$(field "$fan" '"%.2f" % latency_ms["p50"]')" \
        "$(field "$fan" '"%.2f" % latency_ms["p99"]')" \
        "$(field "$fan" 'lost')"
done

# The charts beside the tables in docs/BENCHMARKS.md (stderr: stdout is the tables).
[ -n "${NO_WRITE:-}" ] || python3 bench/charts.py scaling "$OUT" docs/img >&2

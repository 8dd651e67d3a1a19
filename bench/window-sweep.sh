#!/usr/bin/env bash
# What the flush clock's window buys: one room of 1,000 subscribers at 1,000,
# 300 and 100 messages/s of 100 bytes, for each window, on a fresh server each
# time. Prints a Markdown table. Server on core 0, load on core 1.
#
#   bash bench/window-sweep.sh
#
# Each entry of WINDOWS is `write_window` or `write_window/write_window_max`;
# without a maximum the window is fixed (the maximum is the window itself).
# Env: WINDOWS (default "0ms 5ms 5ms/20ms 5ms/40ms 20ms"),
#      RATES (default "1000 300 100"), DURATION (default 10), SWITCHBOARD_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOWS=${WINDOWS:-"0ms 5ms 5ms/20ms 5ms/40ms 20ms"}
RATES=${RATES:-"1000 300 100"}
DURATION=${DURATION:-10}
BIN=$(realpath -m "${SWITCHBOARD_BIN:-target/release/switchboard}")
OUT=$(mktemp -d)
[ -n "${SWITCHBOARD_BIN:-}" ] || cargo build --release -q -p switchboard

. bench/lib.sh
trap 'stop_server; rm -rf "$OUT"' EXIT

echo "| window (growing to) | msg/s | deliveries per CPU-second | socket writes | frames per write | p50 ms | p99 ms | lost |"
echo "|---|---|---|---|---|---|---|---|"
for entry in $WINDOWS; do
    window=${entry%%/*}
    window_max=${entry#*/}
    label=$window
    [ "$window_max" = "$window" ] || label="$window → $window_max"
    for rate in $RATES; do
        port=$(free_port)
        SWITCHBOARD_DELIVERY__WRITE_WINDOW=$window SWITCHBOARD_DELIVERY__WRITE_WINDOW_MAX=$window_max taskset -c 0 "$BIN" serve --storage memory \
            --http "127.0.0.1:$port" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 >>"$OUT/server.log" 2>&1 &
        SERVER_PID=$!
        wait_listening "$port" || { echo "window-sweep: the server did not start" >&2; exit 1; }
        taskset -c 1 "$BIN" bench fanout --server "127.0.0.1:$port" -s 1000 -r "$rate" --duration "$DURATION" \
            --pid "$SERVER_PID" --server-core 0 --json >"$OUT/fan.json"
        writes=$(curl -s "127.0.0.1:$port/metrics" | awk '/^switchboard_socket_writes_total/ {print $2}')
        stop_server
        python3 - "$OUT/fan.json" "$label" "$rate" "$writes" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
window, rate, writes = sys.argv[2], sys.argv[3], int(float(sys.argv[4] or 0))
l = r["latency_ms"] or {}
per_write = r["received"] / writes if writes else 0
print(f'| {window} | {rate} | {r["deliveries_per_server_cpu_second"]:,.0f} | {writes:,} | {per_write:.1f} '
      f'| {l.get("p50", 0):.2f} | {l.get("p99", 0):.2f} | {r["lost"]} |')
PY
    done
done

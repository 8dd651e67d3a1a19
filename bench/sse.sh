#!/usr/bin/env bash
# Server-Sent Events followers beside WebSocket members, in one run: the
# server's anonymous memory per idle connection (`bench idle`, each joined to
# one of 100 rooms, WebSocket then --sse), and fan-out deliveries per server
# CPU-second at SUBSCRIBERS x RATE (`bench fanout`, WebSocket subscribers
# then SSE followers, the publisher on WebSocket both times). The server is
# pinned to core 0 and the load generator to core 1; a fresh server for each
# case; the cases alternate, so that a change in the machine's load during the
# run falls on both alike. The machine's load (uptime) is printed before and
# after.
#   bash bench/sse.sh [IDLE_CONNECTIONS] [REPEATS]
# env: SUBSCRIBERS, RATE  the fan-out (default 1000 x 1000 msg/s)
#      DURATION         seconds of each fan-out run (default 10)
#      OUT              the JSON reports (default target/sse-bench)
#      SWITCHBOARD_BIN  the binary (default: built here)
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-10000}
REPEATS=${2:-3}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
OUT=${OUT:-target/sse-bench}
[ "$(nproc)" -ge 2 ] || { echo "sse: needs two cores (server and load apart)" >&2; exit 1; }
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    cargo build --release -q -p switchboard
fi
BIN=${SWITCHBOARD_BIN:-target/release/switchboard}
mkdir -p "$OUT"

. bench/lib.sh
trap stop_server EXIT

start() {
    local port=$1
    env RUST_LOG=warn taskset -c 0 "$BIN" serve --storage memory --http "127.0.0.1:$port" --tcp 127.0.0.1:0 \
        --udp 127.0.0.1:0 >>"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    wait_listening "$port" || { echo "sse: the server did not start (see $OUT/server.log)" >&2; exit 1; }
}

# idle KIND ROUND: KIND is websocket or sse.
idle() {
    local kind=$1 round=$2 port flag=()
    [ "$kind" = sse ] && flag=(--sse)
    port=$(free_port)
    start "$port"
    taskset -c 1 "$BIN" bench idle --server "127.0.0.1:$port" -n "$CONNECTIONS" --rooms 100 --pid "$SERVER_PID" \
        "${flag[@]}" --json >"$OUT/idle.$kind.$round.json"
    stop_server
}

# fanout KIND ROUND
fanout() {
    local kind=$1 round=$2 port flag=()
    [ "$kind" = sse ] && flag=(--sse)
    port=$(free_port)
    start "$port"
    taskset -c 1 "$BIN" bench fanout --server "127.0.0.1:$port" -s "$SUBSCRIBERS" -r "$RATE" --duration "$DURATION" \
        --pid "$SERVER_PID" "${flag[@]}" --json >"$OUT/fanout.$kind.$round.json"
    stop_server
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r)"
echo "# load before: $(uptime)"
for round in $(seq "$REPEATS"); do
    for kind in websocket sse; do
        idle "$kind" "$round"
        fanout "$kind" "$round"
    done
done
echo "# load after: $(uptime)"

python3 - "$OUT" "$REPEATS" <<'EOF'
import json, sys
out, repeats = sys.argv[1], int(sys.argv[2])
def load(name):
    with open(f"{out}/{name}.json") as f:
        return json.load(f)
for kind in ("websocket", "sse"):
    for round in range(1, repeats + 1):
        idle, fan = load(f"idle.{kind}.{round}"), load(f"fanout.{kind}.{round}")
        lat = fan.get("latency_ms") or {}
        print("%-9s  idle: %6d conns  %5.0f anon B/conn   fanout %dx%d: %8.0f deliveries/CPU-s  loss %.3f%%  p99 %6.2f ms  closed %d" % (
            kind, idle["connections"], idle["server_anon_bytes_per_connection"], fan["members"], fan["rate"],
            fan["deliveries_per_server_cpu_second"] or 0, fan["loss_percent"], lat.get("p99", float("nan")),
            fan["members_closed"]))
EOF

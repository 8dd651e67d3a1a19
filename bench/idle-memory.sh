#!/usr/bin/env bash
# Server memory per idle WebSocket: starts `switchboard serve` pinned to core 0,
# opens N connections from `switchboard bench idle` pinned to core 1 (each
# joined to a room, all still reading), and reports the server's anonymous
# resident memory per connection. Repeats each case, since the allocator's
# free space after the connect burst varies from run to run.
#   bash bench/idle-memory.sh [CONNECTIONS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-10000}
REPEATS=${2:-3}
BIN=target/release/switchboard
cargo build --release -q -p switchboard

run_case() {
    local rooms=$1 port pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    RUST_LOG=warn taskset -c 0 "$BIN" serve --http "127.0.0.1:$port" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    taskset -c 1 "$BIN" bench idle --server "127.0.0.1:$port" -n "$CONNECTIONS" --rooms "$rooms" --pid "$pid" --json
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

SUMMARY='
import json, sys
r = json.load(sys.stdin)
print("rooms=%6d  members/room=%5d  anon bytes/conn=%6.0f  connects/s=%6.0f" % (
    r["rooms"], r["connections"] // r["rooms"], r["server_anon_bytes_per_connection"], r["connects_per_second"]))'
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), $CONNECTIONS connections"
for rooms in 100 "$CONNECTIONS"; do
    for _ in $(seq "$REPEATS"); do
        run_case "$rooms" | python3 -c "$SUMMARY"
    done
done

#!/usr/bin/env bash
# Server memory per idle WebSocket: starts `switchboard serve` pinned to core 0,
# opens N connections from `switchboard bench idle` pinned to core 1 (each
# joined to a room, all still reading), and reports the server's anonymous
# resident memory per connection. Repeats each case, since the allocator's
# free space after the connect burst varies from run to run.
#   bash bench/idle-memory.sh [CONNECTIONS] [REPEATS]
# env: MODES            open (names) and/or token (an HS256 token per connection with a
#                       70-byte `info` claim the server keeps: what auth costs per connection);
#                       default "open token"
#      TLS=1            WSS: the server with a self-signed certificate made here
#                       (openssl), the clients with --tls --insecure
#      SWITCHBOARD_BIN  the binary (default: built here)
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-15000}
REPEATS=${2:-3}
MODES=${MODES:-open token}
SECRET=idle-memory-bench-secret-32-bytes
INFO='{"name":"Ada Lovelace","avatar":"https://cdn.example.com/u/12345.png"}'
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    cargo build --release -q -p switchboard
fi
BIN=${SWITCHBOARD_BIN:-target/release/switchboard}
SERVER_TLS=()
CLIENT_TLS=()
if [ "${TLS:-0}" = 1 ]; then
    certs=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$certs/key.pem" -out "$certs/cert.pem" 2>/dev/null
    SERVER_TLS=(--tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem")
    CLIENT_TLS=(--tls --insecure)
fi

. bench/lib.sh
trap stop_server EXIT

run_case() {
    local rooms=$1 mode=$2 port
    local server_env=() bench_env=()
    if [ "$mode" = token ]; then
        server_env=(SWITCHBOARD_AUTH__JWT_HMAC_SECRET="$SECRET")
        bench_env=(SWITCHBOARD_BENCH_TOKEN_SECRET="$SECRET" SWITCHBOARD_BENCH_TOKEN_INFO="$INFO")
    fi
    port=$(free_port)
    env RUST_LOG=warn "${server_env[@]}" taskset -c 0 "$BIN" serve --http "127.0.0.1:$port" --tcp 127.0.0.1:0 \
        --udp 127.0.0.1:0 "${SERVER_TLS[@]}" >/dev/null 2>&1 &
    SERVER_PID=$!
    wait_listening "$port" || { echo "idle-memory: the server did not start" >&2; exit 1; }
    env "${bench_env[@]}" taskset -c 1 "$BIN" bench idle --server "127.0.0.1:$port" -n "$CONNECTIONS" \
        --rooms "$rooms" --pid "$SERVER_PID" "${CLIENT_TLS[@]}" --json
    stop_server
}

SUMMARY='
import json, sys
r = json.load(sys.stdin)
print("%-5s  rooms=%6d  members/room=%5d  anon bytes/conn=%6.0f  connects/s=%6.0f" % (
    sys.argv[1], r["rooms"], r["connections"] // r["rooms"], r["server_anon_bytes_per_connection"],
    r["connects_per_second"]))'
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), $CONNECTIONS connections${CLIENT_TLS:+ over TLS}"
for mode in $MODES; do
    for rooms in 100 "$CONNECTIONS"; do
        for _ in $(seq "$REPEATS"); do
            run_case "$rooms" "$mode" | python3 -c "$SUMMARY" "$mode"
        done
    done
done

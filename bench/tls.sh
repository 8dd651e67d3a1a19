#!/usr/bin/env bash
# WSS side by side in one run: Switchboard over TLS beside nats-server with
# TLS on its WebSocket listener, and both plain for reference. Each server is
# pinned to core 0 with taskset, the load generator to core 1, with a fresh
# server for every scenario:
#   - handshakes/s: `bench churn --duration 5` (64 loops of connect, TLS
#     handshake, WebSocket upgrade, join, close);
#   - fan-out: `bench fanout -s 1000 -r 1000` in rounds (every server once
#     per round; the summary gives each round and the median), deliveries
#     per server CPU-second and p99;
#   - memory per idle connection: `bench idle -n IDLE_N` (100 rooms).
# The certificate is a self-signed ECDSA P-256 one made here with openssl;
# the load generator offers X25519 only (see crates/bench/src/tls.rs).
#
#   bash bench/tls.sh
# Env: SERVERS   (default: "switchboard-tls nats-tls switchboard nats")
#      ROUNDS    fan-out rounds (default 3)
#      DURATION  seconds of each fan-out run (default 10)
#      IDLE_N    idle connections (default 10000; 0 skips)
#      OUT       raw JSON reports (default target/tls-bench)
#      SWITCHBOARD_BIN  the binary (default: built here)
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-"switchboard-tls nats-tls switchboard nats"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
IDLE_N=${IDLE_N:-10000}
OUT=${OUT:-target/tls-bench}
BIN=$(realpath -m "${SWITCHBOARD_BIN:-target/release/switchboard}")
SERVER_CORE=0
LOAD_CORE=1

[ "$(nproc)" -ge 2 ] || { echo "tls: needs two cores (server and load apart)" >&2; exit 1; }
[ -n "${SWITCHBOARD_BIN:-}" ] || cargo build --release -q -p switchboard
case " $SERVERS " in
*" nats"*) command -v nats-server >/dev/null || { echo "tls: needs nats-server (apt-get install -y nats-server)" >&2; exit 1; } ;;
esac
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(realpath "$OUT")
export TLS_CERT="$OUT/cert.pem" TLS_KEY="$OUT/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null

. bench/lib.sh
trap stop_server EXIT

# start_server NAME PORT: the server on core 0, listening before this returns.
start_server() {
    local name=$1 port=$2 log="$OUT/$1.server.log"
    case "$name" in
    switchboard)
        taskset -c "$SERVER_CORE" "$BIN" serve --storage memory --http "127.0.0.1:$port" \
            --tcp 127.0.0.1:0 --udp 127.0.0.1:0 >>"$log" 2>&1 &
        ;;
    switchboard-tls)
        taskset -c "$SERVER_CORE" "$BIN" serve --storage memory --http "127.0.0.1:$port" \
            --tcp 127.0.0.1:0 --udp 127.0.0.1:0 --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" >>"$log" 2>&1 &
        ;;
    *) bash bench/peers/start.sh "$name" "$port" "$SERVER_CORE" >>"$log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    wait_listening "$port" && return 0
    echo "tls: $name did not start (see $log)" >&2
    return 1
}

# client_flags NAME: the load generator's target and TLS flags for NAME.
client_flags() {
    case "$1" in
    switchboard) echo "--target switchboard" ;;
    switchboard-tls) echo "--target switchboard --tls --insecure" ;;
    nats) echo "--target nats" ;;
    nats-tls) echo "--target nats --tls --insecure" ;;
    esac
}

# run NAME SCENARIO BENCH-ARGS...: one scenario against a fresh server; the
# JSON report (or the error) goes to $OUT/NAME.SCENARIO.json.
run() {
    local name=$1 scenario=$2 port report
    shift 2
    port=$(free_port)
    report="$OUT/$name.$scenario.json"
    echo "tls: $name $scenario ($(uptime | sed 's/.*load average: //'))" >&2
    if ! start_server "$name" "$port"; then
        echo '{"error":"the server did not start"}' >"$report"
        return 0
    fi
    # shellcheck disable=SC2046
    if ! timeout 600 taskset -c "$LOAD_CORE" "$BIN" bench "$@" --server "127.0.0.1:$port" $(client_flags "$name") \
        --pid "$SERVER_PID" --json >"$report" 2>"$OUT/$name.$scenario.err"; then
        python3 -c 'import json,sys; print(json.dumps({"error": open(sys.argv[1]).read().strip()[-300:]}))' \
            "$OUT/$name.$scenario.err" >"$report"
    fi
    stop_server
}

export RUST_BACKTRACE=0 RUST_LOG=warn
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), Switchboard at $(git rev-parse --short HEAD)"
echo "# load before: $(uptime | sed 's/.*load average: //')"
for name in $SERVERS; do
    run "$name" churn churn --duration 5
done
for round in $(seq "$ROUNDS"); do
    for name in $SERVERS; do
        run "$name" "fanout.r$round" fanout -s 1000 -r 1000 --duration "$DURATION" --server-core "$SERVER_CORE"
    done
done
if [ "$IDLE_N" -gt 0 ]; then
    for name in $SERVERS; do
        run "$name" idle idle -n "$IDLE_N" --rooms 100
    done
fi
echo "# load after: $(uptime | sed 's/.*load average: //')"
python3 - "$OUT" "$ROUNDS" $SERVERS <<'EOF'
import json, statistics, sys
out, rounds, servers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def load(name, scenario):
    try:
        with open(f"{out}/{name}.{scenario}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"error": "no report"}
def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"
print("| server | handshakes/s (churn) | server CPU-s per 1,000 handshakes | 1k×1000 deliveries/CPU-s, median (rounds) | p99 ms, median | loss | idle B/conn |")
print("|---|---|---|---|---|---|---|")
for name in servers:
    churn = load(name, "churn")
    cycles = churn.get("cycles_per_second")
    per_cpu = churn.get("cycles_per_cpu_second")
    fan = [load(name, f"fanout.r{r}") for r in range(1, rounds + 1)]
    ok = [r for r in fan if "error" not in r]
    rates = [r.get("deliveries_per_server_cpu_second") for r in ok]
    p99s = [r["latency_ms"]["p99"] for r in ok if r.get("latency_ms")]
    lost = max((r.get("lost", 0) for r in ok), default=None)
    idle = load(name, "idle")
    cells = [name, fmt(cycles), fmt(1000 / per_cpu, 3) if per_cpu else "–",
             f'{fmt(statistics.median([x for x in rates if x]) if any(rates) else None)} ({", ".join(fmt(x) for x in rates)})'
             + (f" [{len(fan) - len(ok)} failed]" if len(ok) < len(fan) else ""),
             fmt(statistics.median(p99s) if p99s else None, 1), fmt(lost), fmt(idle.get("server_anon_bytes_per_connection"))]
    print("| " + " | ".join(cells) + " |")
EOF

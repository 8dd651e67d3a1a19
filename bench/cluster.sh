#!/usr/bin/env bash
# Switchboard on Redis with 1, 2 and 3 nodes, in one run: SUBSCRIBERS
# WebSocket subscribers spread over the nodes (`bench fanout --also`), one
# publisher on the first node sending stored messages at each of RATES, and
# the CPU time of every node and of Redis summed over the measured window
# (`--pid` and `--also-pid`). A single node without Redis (`--storage memory`)
# runs first as the reference. The servers (nodes and Redis) share core 0,
# the load generator has core 1; a fresh Redis and fresh nodes for each case.
# Redis runs with `appendonly yes` and `appendfsync everysec`, a common
# production setting. With ENGINE=cluster the nodes use a Redis Cluster of
# three masters (no replicas, all on core 0) instead of one Redis, and the
# Redis CPU is summed over the three.
#   bash bench/cluster.sh
# env: SUBSCRIBERS (default 1000), RATES (default "100 1000"), DURATION
#      (seconds per case, default 10), NODES (default "1 2 3"), ENGINE
#      ("single", the default, or "cluster"), REPEATS (runs of every case,
#      default 1: with more, the summary gives medians and ranges), OUT
#      (JSON reports, default target/cluster-bench), SWITCHBOARD_BIN
#      (default: built here)
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATES=${RATES:-"100 1000"}
DURATION=${DURATION:-10}
NODES=${NODES:-"1 2 3"}
ENGINE=${ENGINE:-single}
OUT=${OUT:-target/cluster-bench}
REPEATS=${REPEATS:-1}
command -v redis-server >/dev/null || { echo "cluster: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "cluster: needs two cores (servers and load apart)" >&2; exit 1; }
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    cargo build --release -q -p switchboard
fi
BIN=${SWITCHBOARD_BIN:-target/release/switchboard}
mkdir -p "$OUT"
. bench/lib.sh

PIDS=()
REDIS_DIR=
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    [ -n "$REDIS_DIR" ] && rm -rf "$REDIS_DIR"
    REDIS_DIR=
}
trap stop_all EXIT

# start_node PORT [REDIS_URL]: a node on core 0.
start_node() {
    local port=$1 redis=${2:-} flags=(--storage memory)
    [ -n "$redis" ] && flags=(--redis "$redis")
    env RUST_LOG=warn SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND=0 SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0 \
        SWITCHBOARD_CLUSTER__NODE_ID="node-$port" taskset -c 0 "$BIN" serve --http "127.0.0.1:$port" \
        --tcp 127.0.0.1:0 --udp 127.0.0.1:0 "${flags[@]}" >>"$OUT/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$!")
    wait_listening "$port" || { echo "cluster: a node did not start (see $OUT/server.log)" >&2; exit 1; }
}

# start_redis NAME [REDIS ARGS]: a redis-server on core 0 in $REDIS_DIR/NAME
# on a free port (its bus port, 10000 above, free too); sets REDIS_PORT and
# appends its pid to REDIS_PIDS.
start_redis() {
    local name=$1
    shift
    while :; do
        REDIS_PORT=$(free_port)
        [ "$REDIS_PORT" -le 55535 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((REDIS_PORT + 10000))") 2>/dev/null && break
    done
    mkdir -p "$REDIS_DIR/$name"
    taskset -c 0 redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly yes \
        --appendfsync everysec --dir "$REDIS_DIR/$name" "$@" >"$REDIS_DIR/$name/log" 2>&1 &
    PIDS+=("$!")
    REDIS_PIDS+=("$!")
    for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# start_engine: one Redis, or with ENGINE=cluster three masters joined in a
# Redis Cluster; sets REDIS_URL and REDIS_PIDS.
start_engine() {
    REDIS_DIR=$(mktemp -d)
    REDIS_PIDS=()
    if [ "$ENGINE" != cluster ]; then
        start_redis one
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
        return
    fi
    local hosts=()
    for n in 1 2 3; do
        start_redis "master$n" --cluster-enabled yes --cluster-config-file nodes.conf
        hosts+=("127.0.0.1:$REDIS_PORT")
    done
    redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes >"$REDIS_DIR/create.log" 2>&1
    for host in "${hosts[@]}"; do
        for _ in $(seq 100); do
            redis-cli -p "${host#*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && break
            sleep 0.1
        done
    done
    REDIS_URL="redis+cluster://$(IFS=,; echo "${hosts[*]}")"
}

# case NAME NODES RATE REPETITION: NODES 0 is the single node without Redis.
run_case() {
    local name=$1 nodes=$2 rate=$3 redis_url= ports=() also=() pids=()
    local report="$OUT/$name.r$rate.k$4"
    REDIS_PIDS=()
    if [ "$nodes" -gt 0 ]; then
        start_engine
        redis_url=$REDIS_URL
    fi
    for _ in $(seq "$(( nodes > 0 ? nodes : 1 ))"); do
        local port
        port=$(free_port)
        start_node "$port" "$redis_url"
        ports+=("$port")
        pids+=("$SERVER_PID")
    done
    for port in "${ports[@]:1}"; do also+=("127.0.0.1:$port"); done
    local others=("${pids[@]:1}" "${REDIS_PIDS[@]}")
    local extra=()
    [ "${#also[@]}" -gt 0 ] && extra+=(--also "$(IFS=,; echo "${also[*]}")")
    [ "${#others[@]}" -gt 0 ] && extra+=(--also-pid "$(IFS=,; echo "${others[*]}")")
    taskset -c 1 "$BIN" bench fanout --server "127.0.0.1:${ports[0]}" -s "$SUBSCRIBERS" -r "$rate" --stored \
        --duration "$DURATION" --pid "${pids[0]}" "${extra[@]}" --json >"$report.json"
    if [ "$nodes" -gt 0 ]; then
        # Publish scripts the publisher's node ran: messages per round trip.
        curl -s "http://127.0.0.1:${ports[0]}/metrics" |
            awk '/^switchboard_cluster_publish_scripts_total/ {print $2}' >"$report.scripts"
    fi
    if [ "${#REDIS_PIDS[@]}" -gt 0 ]; then
        # Redis's own CPU over the case (every master), to see its work per message.
        for pid in "${REDIS_PIDS[@]}"; do cat "/proc/$pid/stat"; done |
            awk '{ticks += $14 + $15} END {print ticks}' >"$report.redis-ticks"
    fi
    stop_all
}

echo "load before: $(uptime)"
rm -f "$OUT"/*.json "$OUT"/*.scripts "$OUT"/*.redis-ticks
# Repetitions outermost, so a change in the machine's load over the run
# falls on every setup alike.
for repetition in $(seq "$REPEATS"); do
    for rate in $RATES; do
        run_case single 0 "$rate" "$repetition"
        for nodes in $NODES; do
            run_case "nodes$nodes" "$nodes" "$rate" "$repetition"
        done
    done
done
echo "load after: $(uptime)"
python3 bench/cluster_summary.py "$OUT" "$SUBSCRIBERS"

#!/usr/bin/env bash
# Switchboard and every peer in bench/peers/ through the same scenarios, in
# one run; each server pinned to core 0 with taskset, the load generator to
# core 1. Writes the table into docs/BENCHMARKS.md (between the compare
# markers) with the command, the date and the machine, and its charts into
# docs/img/compare-*.svg (bench/charts.py), shown below the table.
#
#   bash bench/compare.sh
#
# Env: SERVERS   which servers (default: switchboard switchboard-token node-ws
#                socketio python-websockets axum-chat nats; switchboard-token is
#                Switchboard in token mode, every connection with its own HS256 token)
#      IDLE_N    idle connections (default 15000)
#      DURATION  seconds of each fan-out run (default 10)
#      OUT       raw JSON reports (default target/compare)
#      NO_WRITE  set to 1 to leave docs/BENCHMARKS.md and docs/img alone
#      WIDE_WINDOW  Switchboard's 1,000 × 1,000 run is repeated with
#                `delivery.write_window_max` at this (default 40ms), to show
#                what a longer window buys and costs; "none" skips it
#      ROUNDS    how many times the fan-out scenarios run (default 3)
# Each server is restarted for every scenario, so one scenario's leftovers
# (memory, rooms) cannot colour the next. The fan-out scenarios run in
# rounds, every server once per round, so that a change in the machine's
# own delay during the run (it varies by the hour here) falls on every
# server alike rather than on whichever ran in the bad minutes; the table
# shows each figure's median over the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${SERVERS:-"switchboard switchboard-token node-ws socketio python-websockets axum-chat nats"}
TOKEN_SECRET=compare-bench-secret-of-32-bytes
IDLE_N=${IDLE_N:-15000}
DURATION=${DURATION:-10}
OUT=${OUT:-target/compare}
WIDE_WINDOW=${WIDE_WINDOW:-40ms}
ROUNDS=${ROUNDS:-3}
BIN=$(realpath -m "${SWITCHBOARD_BIN:-target/release/switchboard}")
SERVER_CORE=0
LOAD_CORE=1

[ "$(nproc)" -ge 2 ] || { echo "compare: needs two cores (server and load apart)" >&2; exit 1; }
[ -n "${SWITCHBOARD_BIN:-}" ] || cargo build --release -q -p switchboard
bash bench/peers/setup.sh >&2
rm -rf "$OUT" && mkdir -p "$OUT"

. bench/lib.sh
trap stop_server EXIT

# start_server NAME PORT: the server on core 0, listening before this returns.
start_server() {
    local name=$1 port=$2 log="$OUT/$1.server.log"
    if [ "$name" = switchboard ] || [ "$name" = switchboard-token ]; then
        # Memory storage: every scenario here is volatile, as no peer stores anything.
        env ${TOKEN_ENV:+SWITCHBOARD_AUTH__JWT_HMAC_SECRET=$TOKEN_SECRET} taskset -c "$SERVER_CORE" "$BIN" serve \
            --storage memory --http "127.0.0.1:$port" --tcp 127.0.0.1:0 --udp 127.0.0.1:0 >>"$log" 2>&1 &
    else
        bash bench/peers/start.sh "$name" "$port" "$SERVER_CORE" >>"$log" 2>&1 &
    fi
    SERVER_PID=$!
    wait_listening "$port" && return 0
    echo "compare: $name did not start (see $log)" >&2
    return 1
}

# run NAME SCENARIO BENCH-ARGS...: one scenario against a fresh server; the
# JSON report (or the error) goes to $OUT/NAME.SCENARIO.json.
run() {
    local name=$1 scenario=$2 port report TOKEN_ENV=
    shift 2
    [ "$name" = switchboard-token ] && TOKEN_ENV=1
    port=$(free_port)
    report="$OUT/$name.$scenario.json"
    echo "compare: $name $scenario" >&2
    if ! start_server "$name" "$port"; then
        echo '{"error":"the server did not start"}' >"$report"
        return 0
    fi
    # A scenario that runs past 10 minutes is reported as failed.
    if ! env ${TOKEN_ENV:+SWITCHBOARD_BENCH_TOKEN_SECRET=$TOKEN_SECRET} timeout 600 taskset -c "$LOAD_CORE" \
        "$BIN" bench "$@" --server "127.0.0.1:$port" --target "${name%-token}" --pid "$SERVER_PID" --json \
        >"$report" 2>"$OUT/$name.$scenario.err"; then
        python3 -c 'import json,sys; print(json.dumps({"error": open(sys.argv[1]).read().strip()[-300:]}))' \
            "$OUT/$name.$scenario.err" >"$report"
    fi
    stop_server
}

# The machine's own delay: Switchboard's p99 to 10 subscribers at 100 msg/s,
# where the server's sweep takes about 0.05 ms; before each round and at the end.
floor() {
    run switchboard "floor-$1" fanout -s 10 -r 100 --duration "$DURATION" --server-core "$SERVER_CORE"
}

# The axum chat example broadcasts "NAME joined." to everyone and drops a
# client that falls 100 messages behind: opened 128 at a time, its clients
# are dropped mid-join; 16 at a time it keeps them. (Its idle figure
# includes that join storm: n joins announced to up to n clients.)
concurrency() { if [ "$1" = axum-chat ]; then echo 16; else echo 128; fi; }

export RUST_BACKTRACE=0
for name in $SERVERS; do
    run "$name" idle idle -n "$IDLE_N" --concurrency "$(concurrency "$name")"
done
for round in $(seq "$ROUNDS"); do
    floor "r$round"
    for name in $SERVERS; do
        for rate in 1000 300 100; do
            run "$name" "fanout-$rate.r$round" fanout -s 1000 -r "$rate" --duration "$DURATION" \
                --server-core "$SERVER_CORE" --concurrency "$(concurrency "$name")"
        done
        if [ "$name" = switchboard ] && [ "$WIDE_WINDOW" != none ]; then
            SWITCHBOARD_DELIVERY__WRITE_WINDOW_MAX=$WIDE_WINDOW run "$name" "fanout-1000-wide.r$round" fanout \
                -s 1000 -r 1000 --duration "$DURATION" --server-core "$SERVER_CORE" --concurrency 128
        fi
    done
done
for name in $SERVERS; do
    run "$name" churn churn --duration 5
    # One connection sending as fast as round trips allow is past the default
    # per-connection rates (1,000 messages a second) by design: lifted here.
    SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND=0 SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0 \
        run "$name" echo echo -c 1 --duration 5
done
floor end

COMMAND="SERVERS=\"$SERVERS\" IDLE_N=$IDLE_N DURATION=$DURATION WIDE_WINDOW=$WIDE_WINDOW ROUNDS=$ROUNDS bash bench/compare.sh"
WIDE_WINDOW=$WIDE_WINDOW python3 bench/compare_table.py "$OUT" "$COMMAND" "${NO_WRITE:+-}" docs/BENCHMARKS.md

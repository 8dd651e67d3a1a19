#!/usr/bin/env bash
# The server's user-space instructions per delivery in fan-out, counted by
# valgrind's callgrind: a figure this machine's noise does not move, for
# comparing two builds (CPU-seconds move 10-20% from one half hour to the
# next here). Kernel time (about 70% of the server's CPU in fan-out) is not
# counted, and valgrind slows the server about 50 times, so the rates are low.
#
# Each run starts the server under callgrind, runs `switchboard bench fanout`
# for SHORT and then for LONG seconds (a fresh server each), and reads the
# server's instruction total and the messages the subscribers received. The
# difference between the two runs divided by the difference in messages
# leaves out start-up, connecting, joining and leaving, which both runs do
# alike. The load generator checks that nothing was lost.
#
# With SCENARIO=http it counts instructions per HTTP publish instead:
# `switchboard bench http` with SUBSCRIBERS clients (keep-alive, stored
# publishes unless HTTP_FLAGS says --volatile), the requests answered taking
# the deliveries' place; RATE is unused.
#
# usage: bash bench/instructions.sh [SUBSCRIBERS] [RATE] [SHORT] [LONG]
#   defaults: 200 subscribers, 100 messages/s, 4 s and 12 s
# env: SCENARIO         fanout (default) or http
#      HTTP_FLAGS       extra `bench http` flags, e.g. --volatile
# env: SWITCHBOARD_BIN  the server binary to measure (default: built here)
#      CLIENT_BIN       the load generator (default: SWITCHBOARD_BIN)
#      WINDOW, WINDOW_MAX  the flush clock's windows (default: 5ms, 20ms)
#      OUT              where callgrind's files go (default: target/instructions)
#      EXIT_WAIT        seconds the server may take to exit and write its totals (default: 120)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SUBS=${1:-200}
RATE=${2:-100}
SHORT=${3:-4}
LONG=${4:-12}
OUT=${OUT:-target/instructions}
SCENARIO=${SCENARIO:-fanout}
WINDOW=${WINDOW:-5ms}
WINDOW_MAX=${WINDOW_MAX:-20ms}
EXIT_WAIT=${EXIT_WAIT:-120}
command -v valgrind >/dev/null || { echo "instructions: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
    cargo build --release --quiet
    SWITCHBOARD_BIN=target/release/switchboard
fi
CLIENT_BIN=${CLIENT_BIN:-$SWITCHBOARD_BIN}
mkdir -p "$OUT"
trap stop_server EXIT

# run SECONDS: writes "INSTRUCTIONS RECEIVED LOST" for one server under
# callgrind to $OUT/result.SECONDS.
run() {
    local seconds=$1 port out report
    port=$(free_port)
    out="$OUT/callgrind.$seconds.out"
    report="$OUT/bench.$seconds.json"
    rm -f "$out"
    SWITCHBOARD_DELIVERY__WRITE_WINDOW=$WINDOW SWITCHBOARD_DELIVERY__WRITE_WINDOW_MAX=$WINDOW_MAX \
        taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$SWITCHBOARD_BIN" serve --storage memory --http "127.0.0.1:$port" >"$OUT/server.$seconds.log" 2>&1 &
    SERVER_PID=$!
    # Valgrind takes a few seconds to start the server (wait_listening gives 10 s a call).
    local tries=0
    until wait_listening "$port"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 6 ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "instructions: the server did not start under valgrind (see $OUT/server.$seconds.log)" >&2
            exit 1
        fi
    done
    if [ "$SCENARIO" = http ]; then
        # shellcheck disable=SC2086
        taskset -c 1 "$CLIENT_BIN" bench http --server "127.0.0.1:$port" -c "$SUBS" \
            --duration "$seconds" --json ${HTTP_FLAGS:-} >"$report"
    else
        taskset -c 1 "$CLIENT_BIN" bench fanout --server "127.0.0.1:$port" -s "$SUBS" -r "$RATE" \
            --duration "$seconds" --json >"$report"
    fi
    # Callgrind writes its totals when the server exits, which takes longer
    # than stop_server waits before its SIGKILL: wait up to EXIT_WAIT.
    kill "$SERVER_PID"
    if ! timeout "$EXIT_WAIT" tail --pid="$SERVER_PID" -f /dev/null; then
        echo "instructions: the server did not exit within ${EXIT_WAIT}s of SIGTERM; killed, so callgrind's totals are lost (see $OUT/server.$seconds.log)" >&2
        exit 1
    fi
    wait "$SERVER_PID" || true
    SERVER_PID=
    local instructions
    instructions=$(awk '/^totals:/{print $2}' "$out")
    if [ -z "$instructions" ]; then
        echo "instructions: callgrind wrote no totals to $out" >&2
        exit 1
    fi
    # An HTTP run's "deliveries" are the requests answered; its refusals count as lost.
    echo "$instructions $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
print(r["ok"], sum(r["refused"].values())) if "ok" in r else print(r["received"], r["lost"])' "$report")" \
        >"$OUT/result.$seconds"
}

run "$SHORT"
run "$LONG"
read -r short_ir short_received short_lost <"$OUT/result.$SHORT"
read -r long_ir long_received long_lost <"$OUT/result.$LONG"
if [ "$short_lost" != 0 ] || [ "$long_lost" != 0 ]; then
    echo "instructions: messages were lost ($short_lost, $long_lost): the server did not keep up under valgrind; lower the rate" >&2
    exit 1
fi
python3 - "$short_ir" "$short_received" "$long_ir" "$long_received" <<'EOF'
import sys
short_ir, short_received, long_ir, long_received = map(float, sys.argv[1:])
received = long_received - short_received
if received <= 0:
    sys.exit("instructions: the longer run delivered no more than the shorter one")
print(f"{received:.0f} more deliveries (HTTP: requests answered) in the longer run")
print(f"user-space instructions per delivery (HTTP: per request): {(long_ir - short_ir) / received:.0f}")
EOF

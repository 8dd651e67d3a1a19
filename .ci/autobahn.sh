#!/usr/bin/env bash
# Autobahn|Testsuite conformance against the bare echo endpoint, with permessage-deflate
# enabled on the server: sections 1-10 (RFC 6455; their clients offer no compression) and
# 12-13 (RFC 7692: compressed echoes, offers with and without context takeover and windows).
#   bash .ci/autobahn.sh          # after: cargo build --release -p switchboard
# Env: SWITCHBOARD_BIN (default target/release/switchboard),
#      AUTOBAHN_CACHE  (default /tmp/ab; the installed suite is reused across runs),
#      AUTOBAHN_FULL=1 (also run 12.x.15-18 and 13.x.15-18: 1000 messages of 128 KiB each
#                       per case, auto-fragmented into small frames; slow on two cores).
# Reports: target/autobahn/reports/index.html
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$(realpath -m "${SWITCHBOARD_BIN:-target/release/switchboard}")
CACHE=${AUTOBAHN_CACHE:-/tmp/ab}
OUT=$PWD/target/autobahn
AGENT=switchboard
CASES=("1.*" "2.*" "3.*" "4.*" "5.*" "6.*" "7.*" "9.*" "10.*" "12.*" "13.*")   # there is no section 8
# Sections 1-10 hold 301 cases in wstest 25.10.1 and kosoku 0.1.0; 12 holds 5 data sets x 18
# message sizes and 13 holds 7 offers x 18 sizes: 517 in all. By default the four slowest
# sizes of each (x.y.15-18: 128 KiB messages in frames of 256 bytes to 32 KiB) are skipped.
EXCLUDE=()
if [ "${AUTOBAHN_FULL:-0}" = 1 ]; then
    EXPECT_CASES=517
    RUNNER_TIMEOUT=2400
else
    for section in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
        for size in 15 16 17 18; do EXCLUDE+=("$section.$size"); done
    done
    EXPECT_CASES=469
    RUNNER_TIMEOUT=1200
fi

[ -x "$BIN" ] || { echo "autobahn: no server binary at $BIN (cargo build --release -p switchboard)" >&2; exit 1; }

# wstest is the reference suite but needs Python 2.7 (pyenv's; Debian has none).
# `if install_wstest` disables set -e inside it, hence the && chain.
install_wstest() {
    "$CACHE/venv2/bin/wstest" --help >/dev/null 2>&1 && return 0
    local py2
    py2="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")/versions/2.7.18/bin/python2.7"
    [ -x "$py2" ] || return 1
    echo "autobahn: installing wstest into $CACHE/venv2" >&2
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_PYTHON_VERSION_WARNING=1
    "$py2" -m pip install -q --target "$CACHE/venvtool" 'virtualenv<20.22' &&
        PYTHONPATH="$CACHE/venvtool" "$py2" -m virtualenv -q "$CACHE/venv2" &&
        "$CACHE/venv2/bin/pip" install -q autobahntestsuite==25.10.1
}

# Python 3 runner over Autobahn's own case files: the fallback where wstest can't run.
install_kosoku() {
    [ -x "$CACHE/venv3/bin/kosoku" ] && return 0
    echo "autobahn: no Python 2.7, installing kosoku into $CACHE/venv3" >&2
    python3 -m venv "$CACHE/venv3" && "$CACHE/venv3/bin/pip" install -q kosoku
}

SERVER_PID=
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT

mkdir -p "$CACHE"
if install_wstest; then RUNNER=wstest; else install_kosoku; RUNNER=kosoku; fi

# A stale index.json must never pass for this run's verdict.
rm -rf "$OUT" && mkdir -p "$OUT"

# Section 9 sends messages of up to 16 MiB and expects them echoed whole. The
# per-connection byte rate is off: /ws/echo runs no commands and is not rate-limited
# anyway, but a rate's burst must hold a whole message, and 16 MiB bursts would not
# be a default anyone runs.
# Run from $OUT so whatever the server writes to its cwd stays out of the tree.
# Every listener binds port 0; the server logs the address it got ("switchboard
# listening ... address=127.0.0.1:PORT", at info level from its server module).
(
    cd "$OUT"
    export SWITCHBOARD_LIMITS__MAX_MESSAGE_SIZE=20000000 SWITCHBOARD_LIMITS__BYTES_PER_SECOND=0 \
        SWITCHBOARD_LIMITS__OUTBOUND_QUEUE_BYTES=67108864 SWITCHBOARD_WEBSOCKET__COMPRESSION=true \
        RUST_LOG=warn,switchboard_server::server=info NO_COLOR=1
    exec "$BIN" serve --http 127.0.0.1:0 --tcp 127.0.0.1:0 --udp 127.0.0.1:0
) >"$OUT/server.log" 2>&1 &
SERVER_PID=$!

PORT=
for _ in $(seq 300); do   # up to 30 s
    PORT=$(sed -n 's/.*switchboard listening.* address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$OUT/server.log" | head -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "autobahn: server exited at startup:" >&2; cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$PORT" ] || { echo "autobahn: the server logged no listening address within 30 s:" >&2; cat "$OUT/server.log" >&2; exit 1; }
URL=ws://127.0.0.1:$PORT/ws/echo

echo "autobahn: $RUNNER against $URL"
rc=0
if [ "$RUNNER" = wstest ]; then
    cases_json=$(printf '"%s",' "${CASES[@]}")
    exclude_json=$( ((${#EXCLUDE[@]} > 0)) && printf '"%s",' "${EXCLUDE[@]}" || true)
    cat >"$OUT/fuzzingclient.json" <<EOF
{"outdir": "$OUT/reports",
 "servers": [{"agent": "$AGENT", "url": "$URL"}],
 "cases": [${cases_json%,}], "exclude-cases": [${exclude_json%,}], "exclude-agent-cases": {}}
EOF
    (cd "$OUT" && timeout "$RUNNER_TIMEOUT" "$CACHE/venv2/bin/wstest" -m fuzzingclient -s fuzzingclient.json) >"$OUT/runner.log" 2>&1 || rc=$?
    check_args=(--expect "$EXPECT_CASES" "$OUT/reports/index.json" "$AGENT")
else
    # kosoku exits 1 when a case fails; the checker below gives the verdict either way.
    timeout "$RUNNER_TIMEOUT" "$CACHE/venv3/bin/kosoku" -m fuzzingclient "$URL" "${CASES[@]/#/-i}" \
        ${EXCLUDE[@]+"${EXCLUDE[@]/#/-x}"} -o "$OUT/reports" >"$OUT/runner.log" 2>&1 || rc=$?
    # kosoku names the agent itself: the `Server` header, else host:port.
    check_args=(--expect "$EXPECT_CASES" "$OUT/reports/index.json")
fi

status=0
if [ "$rc" -eq 124 ]; then echo "autobahn: FAIL: $RUNNER timed out after $RUNNER_TIMEOUT s" >&2; status=1; fi
kill -0 "$SERVER_PID" 2>/dev/null || { echo "autobahn: FAIL: server died during the suite" >&2; status=1; }
python3 .ci/check_autobahn.py "${check_args[@]}" || status=1
if [ "$status" -ne 0 ]; then
    echo "--- $RUNNER log tail ($OUT/runner.log)"; tail -n 20 "$OUT/runner.log"
    echo "--- server log tail ($OUT/server.log)"; tail -n 20 "$OUT/server.log"
fi
exit "$status"

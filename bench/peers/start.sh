#!/usr/bin/env bash
# Start one benchmark peer in the foreground, pinned to one core.
#
#   bash bench/peers/start.sh NAME PORT [CORE]
#
# NAME: node-ws | socketio | python-websockets | axum-chat | hyper-hello | nats | nats-tls
# nats-tls is nats with TLS on its WebSocket listener: it needs TLS_CERT and
# TLS_KEY in the environment (PEM files).
# The peer listens on 127.0.0.1:PORT (WebSocket). CORE (default 0) is passed
# to `taskset -c`. The script execs the server, so `$!` of a caller that ran
# `bash start.sh ... &` is the server's own pid (taskset execs it in turn).
# Nothing is printed to stdout; the servers log to stderr only.
# Run bench/peers/setup.sh once first.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    echo "usage: $0 NAME PORT [CORE]   (NAME: node-ws socketio python-websockets axum-chat hyper-hello nats nats-tls)" >&2
    exit 2
}

[ $# -ge 2 ] && [ $# -le 3 ] || usage
name="$1"
port="$2"
core="${3:-0}"
case "$port" in '' | *[!0-9]*) usage ;; esac
case "$core" in '' | *[!0-9,-]*) usage ;; esac

need() {
    if [ ! -e "$1" ]; then
        echo "start.sh: $1 is missing: run bash $here/setup.sh first" >&2
        exit 1
    fi
}

case "$name" in
node-ws)
    need "$here/node-ws/node_modules/ws"
    cd "$here/node-ws"
    exec taskset -c "$core" node server.js "$port" >&2
    ;;
socketio)
    need "$here/socketio/node_modules/socket.io"
    cd "$here/socketio"
    exec taskset -c "$core" node server.js "$port" >&2
    ;;
python-websockets)
    need "$here/python-websockets/.venv/bin/python"
    cd "$here/python-websockets"
    exec taskset -c "$core" "$here/python-websockets/.venv/bin/python" server.py "$port" >&2
    ;;
axum-chat)
    bin="$here/axum-chat/target/release/axum-chat-peer"
    need "$bin"
    exec taskset -c "$core" "$bin" "$port" >&2
    ;;
hyper-hello)
    bin="$here/hyper-hello/target/release/hyper-hello-peer"
    need "$bin"
    exec taskset -c "$core" "$bin" "$port" >&2
    ;;
nats)
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "start.sh: nats-server is not installed: run bash $here/setup.sh first" >&2
        exit 1
    fi
    # One config file per port, rewritten on every start (no pile-up in /tmp).
    conf="${TMPDIR:-/tmp}/switchboard-peer-nats-$port.conf"
    sed "s/127\.0\.0\.1:PORT/127.0.0.1:$port/" "$here/nats/nats.conf" >"$conf"
    exec taskset -c "$core" nats-server -c "$conf" >&2
    ;;
nats-tls)
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "start.sh: nats-server is not installed: run bash $here/setup.sh first" >&2
        exit 1
    fi
    [ -n "${TLS_CERT:-}" ] && [ -n "${TLS_KEY:-}" ] || { echo "start.sh: nats-tls needs TLS_CERT and TLS_KEY" >&2; exit 1; }
    conf="${TMPDIR:-/tmp}/switchboard-peer-nats-tls-$port.conf"
    sed -e "s/127\.0\.0\.1:PORT/127.0.0.1:$port/" -e "s|CERT|$TLS_CERT|" -e "s|KEY|$TLS_KEY|" \
        "$here/nats/nats-tls.conf" >"$conf"
    exec taskset -c "$core" nats-server -c "$conf" >&2
    ;;
*)
    usage
    ;;
esac

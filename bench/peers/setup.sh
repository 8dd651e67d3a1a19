#!/usr/bin/env bash
# Install everything the benchmark peers need. Idempotent: a second run only
# checks, and rebuilds or reinstalls what is missing or out of date.
#
#   bash bench/peers/setup.sh
#
# - nats-server from Debian (apt-get update first only if the package is unknown)
# - npm ci in node-ws/ and socketio/ (exact versions from package-lock.json)
# - a venv at python-websockets/.venv with requirements.txt installed
# - cargo build --release of axum-chat/ and hyper-hello/ (their own workspaces, output in */target)
# Progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { echo "setup: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root for: $*"
        return 1
    fi
}

for tool in node npm python3 cargo taskset; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        say "$tool is required but not installed"
        exit 1
    fi
done

# --- nats-server (Debian) ---------------------------------------------------
if command -v nats-server >/dev/null 2>&1; then
    say "nats-server present: $(nats-server --version)"
else
    if ! apt-cache show nats-server >/dev/null 2>&1; then
        say "apt-get update (nats-server not in the package lists yet)"
        as_root apt-get update >&2
    fi
    say "apt-get install -y nats-server"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server >&2
    # The package ships a systemd unit; the benchmark never uses it.
fi

# --- Node peers ---------------------------------------------------------------
for dir in node-ws socketio; do
    stamp="$here/$dir/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ "$stamp" -nt "$here/$dir/package-lock.json" ]; then
        say "$dir: node_modules up to date"
    else
        say "$dir: npm ci"
        (cd "$here/$dir" && npm ci --no-audit --no-fund --prefer-offline >&2)
    fi
done

# --- Python websockets peer ---------------------------------------------------
venv="$here/python-websockets/.venv"
if [ ! -x "$venv/bin/python" ]; then
    say "python-websockets: creating venv with $(python3 --version)"
    python3 -m venv "$venv"
fi
say "python-websockets: pip install -r requirements.txt"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/python-websockets/requirements.txt" >&2

# --- axum chat peer -------------------------------------------------------------
say "axum-chat: cargo build --release"
CARGO_TARGET_DIR="$here/axum-chat/target" \
    cargo build --release --locked --quiet --manifest-path "$here/axum-chat/Cargo.toml" >&2

# --- hyper hello peer (the HTTP ceiling) -------------------------------------------
say "hyper-hello: cargo build --release"
CARGO_TARGET_DIR="$here/hyper-hello/target" \
    cargo build --release --locked --quiet --manifest-path "$here/hyper-hello/Cargo.toml" >&2

say "done"

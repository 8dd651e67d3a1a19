#!/usr/bin/env bash
# Smoke test of the benchmark peers.
#
#   bash bench/peers/check.sh [NAME...]      (default: all five)
#
# For each peer: start it with start.sh on a free loopback port, connect two
# raw WebSocket clients (Python `websockets` from the peer venv, no
# compression offered, no client pings), have client 1 publish a 100-byte
# payload in that peer's own wire format, check that client 2 (and client 1,
# since every peer echoes to the sender) receives it framed exactly as
# README.md says, then stop the server. Exits non-zero if any peer fails.
# Run bench/peers/setup.sh first.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/python-websockets/.venv/bin/python"
if [ ! -x "$py" ]; then
    echo "check.sh: $py is missing: run bash $here/setup.sh first" >&2
    exit 1
fi

if [ $# -gt 0 ]; then
    peers=("$@")
else
    peers=(node-ws socketio python-websockets axum-chat nats)
fi

# The two-client check, one peer per run: client.py NAME PORT.
read -r -d '' client <<'PY'
import asyncio
import json
import socket
import sys
import time

from websockets.asyncio.client import connect

NAME, PORT = sys.argv[1], int(sys.argv[2])
PAYLOAD = ("switchboard-peer-check-" + "0123456789" * 10)[:100]  # 100 ASCII bytes, JSON-safe
assert len(PAYLOAD.encode()) == 100
TIMEOUT = 5.0
OPTS = dict(compression=None, ping_interval=None, max_size=None, open_timeout=TIMEOUT)


class Fail(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


async def recv(ws):
    try:
        return await asyncio.wait_for(ws.recv(), TIMEOUT)
    except asyncio.TimeoutError:
        raise Fail("timed out waiting for a message") from None


def wait_for_port():
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise Fail(f"nothing listening on 127.0.0.1:{PORT} after 10 s")
            time.sleep(0.05)


async def check_plain(uri):
    # node-ws and python-websockets: a text frame in, the same text frame to all.
    async with connect(uri, **OPTS) as c1, connect(uri, **OPTS) as c2:
        # Warm-up: c2 speaks first, so both are known to be registered and the
        # sender is shown to get its own message back.
        await c2.send("ready")
        expect(await recv(c2) == "ready", "sender did not get its own message")
        expect(await recv(c1) == "ready", "c1 did not get c2's warm-up")
        await c1.send(PAYLOAD)
        for who, c in (("c2", c2), ("c1", c1)):
            m = await recv(c)
            expect(isinstance(m, str), f"{who}: expected a text frame, got {type(m).__name__}")
            expect(m == PAYLOAD, f"{who}: got {m!r}")
    return "text frame in -> identical text frame to every client, sender included"


async def check_socketio(uri):
    # Engine.IO v4 over WebSocket, then the Socket.IO default namespace.
    async def open_sio(c):
        m = await recv(c)
        expect(isinstance(m, str) and m.startswith("0{"), f"expected open packet 0{{...}}, got {m!r}")
        info = json.loads(m[1:])
        for k in ("sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"):
            expect(k in info, f"open packet lacks {k}: {m!r}")
        await c.send("40")
        m = await recv(c)
        expect(m.startswith("40{"), f"expected 40{{\"sid\":...}}, got {m!r}")
        expect("sid" in json.loads(m[2:]), f"connect ack lacks sid: {m!r}")
        return info

    async def recv_sio(c):
        while True:
            m = await recv(c)
            if m == "2":  # Engine.IO ping: must be answered with a pong
                await c.send("3")
                continue
            return m

    async with connect(uri, **OPTS) as c1, connect(uri, **OPTS) as c2:
        info = await open_sio(c1)
        await open_sio(c2)
        frame = "42" + json.dumps(["chat message", PAYLOAD], separators=(",", ":"))
        await c1.send(frame)
        for who, c in (("c2", c2), ("c1", c1)):
            m = await recv_sio(c)
            expect(isinstance(m, str), f"{who}: expected a text frame")
            expect(m == frame, f"{who}: expected {frame!r}, got {m!r}")
    return (f"0{{...}} / 40 / 40{{sid}} / 42[\"chat message\",...] ok; "
            f"pingInterval={info['pingInterval']} pingTimeout={info['pingTimeout']} "
            f"maxPayload={info['maxPayload']}")


async def check_axum(uri):
    async with connect(uri, **OPTS) as c1, connect(uri, **OPTS) as c2:
        await c1.send("alice")
        expect(await recv(c1) == "alice joined.", "c1 did not see its own join")
        await c2.send("bob")
        expect(await recv(c2) == "bob joined.", "c2 did not see its own join")
        expect(await recv(c1) == "bob joined.", "c1 did not see bob join")
        await c1.send(PAYLOAD)
        want = "alice: " + PAYLOAD
        for who, c in (("c2", c2), ("c1", c1)):
            m = await recv(c)
            expect(isinstance(m, str) and m == want, f"{who}: expected {want!r}, got {m!r}")
        # A taken username is refused with one text message, then the socket ends.
        async with connect(uri, **OPTS) as c3:
            await c3.send("alice")
            m = await recv(c3)
            expect(m == "Username already taken.", f"duplicate name: got {m!r}")
    return "first text = username; 'NAME joined.'; text -> 'NAME: text' to all; duplicate name refused"


class Nats:
    """Raw NATS protocol over one WebSocket: a byte stream cut into frames."""

    def __init__(self, ws):
        self.ws, self.buf, self.frames = ws, bytearray(), []

    async def fill(self):
        m = await recv(self.ws)
        expect(isinstance(m, bytes), f"NATS should send binary frames, got text {m!r}")
        self.frames.append(m)
        self.buf += m

    async def op(self):
        """Next protocol message: (line, payload or None). Answers PING."""
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                await self.fill()
                continue
            line = bytes(self.buf[:i])
            if line.startswith(b"MSG "):
                n = int(line.split()[-1])
                while len(self.buf) < i + 2 + n + 2:
                    await self.fill()
                payload = bytes(self.buf[i + 2 : i + 2 + n])
                expect(self.buf[i + 2 + n : i + 4 + n] == b"\r\n", "MSG payload not followed by CRLF")
                del self.buf[: i + 4 + n]
                return line, payload
            del self.buf[: i + 2]
            if line == b"PING":
                await self.ws.send(b"PONG\r\n")
                continue
            return line, None


async def check_nats(uri):
    async def join(c):
        n = Nats(c)
        line, _ = await n.op()
        expect(line.startswith(b"INFO {"), f"expected INFO first, got {line!r}")
        info = json.loads(line[5:])
        await c.send(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        await c.send(b"SUB room 1\r\n")
        await c.send(b"PING\r\n")
        line, _ = await n.op()
        expect(line == b"PONG", f"expected PONG, got {line!r}")
        return n, info

    async with connect(uri, **OPTS) as c1, connect(uri, **OPTS) as c2:
        n1, info = await join(c1)
        n2, _ = await join(c2)
        body = PAYLOAD.encode()
        await c1.send(b"PUB room %d\r\n" % len(body) + body + b"\r\n")
        for who, n in (("c2", n2), ("c1", n1)):
            line, payload = await n.op()
            expect(line == b"MSG room 1 100", f"{who}: expected 'MSG room 1 100', got {line!r}")
            expect(payload == body, f"{who}: payload differs")
        # Batching: 20 publishes in one frame; count the frames c2 gets them in.
        k = 20
        await c1.send((b"PUB room %d\r\n" % len(body) + body + b"\r\n") * k)
        before = len(n2.frames)
        for _ in range(k):
            line, payload = await n2.op()
            expect(line == b"MSG room 1 100" and payload == body, f"batch: got {line!r}")
        frames = len(n2.frames) - before
    return (f"server {info.get('version')}; binary frames; INFO/CONNECT/SUB/PING->PONG/PUB->MSG ok; "
            f"{k} MSGs published in one frame arrived in {frames} frame(s)")


async def main():
    wait_for_port()
    base = f"ws://127.0.0.1:{PORT}"
    if NAME in ("node-ws", "python-websockets"):
        return await check_plain(base + "/")
    if NAME == "socketio":
        return await check_socketio(base + "/socket.io/?EIO=4&transport=websocket")
    if NAME == "axum-chat":
        return await check_axum(base + "/websocket")
    if NAME == "nats":
        return await check_nats(base + "/")
    raise Fail(f"unknown peer {NAME}")


try:
    print(asyncio.run(main()))
except Fail as e:
    print(f"FAILED: {e}")
    sys.exit(1)
except Exception as e:  # connection refused, closed early, ...
    print(f"FAILED: {type(e).__name__}: {e}")
    sys.exit(1)
PY

logdir="$(mktemp -d "${TMPDIR:-/tmp}/peer-check.XXXXXX")"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$logdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
for name in "${peers[@]}"; do
    port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    log="$logdir/$name.log"
    bash "$here/start.sh" "$name" "$port" "${CHECK_CORE:-0}" >"$logdir/$name.stdout" 2>"$log" &
    pid=$!
    result="$(timeout 60 "$py" -c "$client" "$name" "$port" 2>&1)"
    rc=$?
    if ! kill -0 "$pid" 2>/dev/null; then
        result="$result (server exited early)"
        rc=1
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
    if [ -s "$logdir/$name.stdout" ]; then
        result="$result (start.sh printed to stdout: $(head -c 200 "$logdir/$name.stdout"))"
        rc=1
    fi
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        printf 'ok    %-18s port %-5s %s\n' "$name" "$port" "$result"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-18s port %-5s %s\n' "$name" "$port" "$result"
        echo "----- $name server log (tail) -----"
        tail -n 20 "$log"
        echo "-----"
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

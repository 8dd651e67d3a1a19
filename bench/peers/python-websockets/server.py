"""Benchmark peer: Python `websockets` broadcast server.

Shape of the websockets "Broadcasting" guide (topics/broadcast), final
recommendation: keep the open connections in a set and hand every received
message to ``websockets.broadcast()``, which writes it synchronously to every
open connection (sender included) without waiting for any of them.
A text message is re-broadcast as text, a binary one as binary.
"""

import asyncio
import os
import sys

from websockets.asyncio.server import broadcast, serve

CONNECTIONS = set()


async def handler(websocket):
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CONNECTIONS, message)
    finally:
        CONNECTIONS.remove(websocket)


async def main(port):
    async with serve(handler, "127.0.0.1", port) as server:
        print(f"python-websockets listening on 127.0.0.1:{port}", file=sys.stderr)
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8765"))
    asyncio.run(main(port))

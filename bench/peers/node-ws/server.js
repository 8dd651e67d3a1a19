'use strict';
// Benchmark peer: the "Server broadcast" example from the ws README, in the
// variant that sends every message to all open clients *including the sender*
// (so the publisher can time its own message). Text stays text and binary
// stays binary, as the README does with `{ binary: isBinary }`.

const WebSocket = require('ws');
const { WebSocketServer } = WebSocket;

const port = Number(process.argv[2] || process.env.PORT || 8080);

const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('connection', function connection(ws) {
  ws.on('error', console.error);

  ws.on('message', function message(data, isBinary) {
    wss.clients.forEach(function each(client) {
      if (client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    });
  });
});

wss.on('listening', function () {
  console.error(`node-ws listening on 127.0.0.1:${port}`);
});

'use strict';
// Benchmark peer: the server of the Socket.IO "Get started" chat tutorial.
// Every 'chat message' event is re-emitted to every connected socket,
// sender included: io.emit('chat message', msg).
// The tutorial serves index.html through express; the benchmark needs no
// page, so a bare node:http server carries the Socket.IO server instead.

const { createServer } = require('node:http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || process.env.PORT || 3000);

const server = createServer();
const io = new Server(server);

io.on('connection', (socket) => {
  socket.on('chat message', (msg) => {
    io.emit('chat message', msg);
  });
});

server.listen(port, '127.0.0.1', () => {
  console.error(`socketio listening on 127.0.0.1:${port}`);
});

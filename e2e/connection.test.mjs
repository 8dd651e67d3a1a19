// The chat page's connection (crates/server/src/web/assets/connection.js)
// in Node, over a fake WebSocket the test drives: which closes it retries,
// how long it waits (exponential backoff with full jitter), and that what
// waited for an answer fails when the socket drops. No browser or server:
// the page's module runs as it is (Node has EventTarget and CustomEvent).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffCeiling, Connection } from '../crates/server/src/web/assets/connection.js';

/** Stands in for the browser's WebSocket: the test says when it opens, greets and closes. */
class FakeSocket {
  static OPEN = 1;
  static made = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.made.push(this);
  }

  send(text) { this.sent.push(JSON.parse(text)); }

  close() { this.readyState = 3; }

  hello() {
    this.readyState = FakeSocket.OPEN;
    this.onmessage({ data: JSON.stringify({ ev: 'hello', user: 'u', conn: 1 }) });
  }

  lost(code = 1006) {
    this.readyState = 3;
    this.onclose({ code, reason: '' });
  }
}
globalThis.WebSocket = FakeSocket;

/** A started connection and the states it went through. */
function connect() {
  const connection = new Connection(() => 'ws://server/ws?name=u');
  const states = [];
  connection.addEventListener('state', (event) => states.push(event.detail));
  connection.start();
  return { connection, states, socket: () => FakeSocket.made.at(-1) };
}

describe('the chat page\'s connection', () => {
  test('the backoff ceiling doubles from 0.5 s up to 15 s', () => {
    const ceilings = [1, 2, 3, 4, 5, 6, 7, 40].map((attempt) => backoffCeiling(attempt, 500, 15_000));
    assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000]);
  });

  test('a first attempt without a hello is not retried; later drops are, and a hello starts the count again', () => {
    const first = connect();
    first.socket().lost();
    assert.equal(first.states.at(-1).state, 'failed');
    assert.equal(first.connection.timer, null, 'no retry scheduled');

    const { connection, states, socket } = connect();
    socket().hello();
    assert.equal(states.at(-1).state, 'online');
    for (const [attempt, ceiling] of [[1, 500], [2, 1000], [3, 2000]]) {
      socket().lost();
      const waiting = states.at(-1);
      assert.equal(waiting.state, 'waiting');
      assert.equal(waiting.attempt, attempt);
      assert.ok(waiting.delayMs >= 0 && waiting.delayMs <= ceiling, `${waiting.delayMs} ms within ${ceiling}`);
      connection.reconnectNow();
      assert.equal(states.at(-1).state, 'reconnecting');
    }
    socket().hello();
    socket().lost();
    assert.equal(states.at(-1).attempt, 1, 'counted again from 1 after a hello');
    connection.stop();
  });

  test('a token that expired (4005) or a kick (4010) stops the retries', () => {
    for (const [code, why] of [[4005, 'token expired'], [4010, 'kicked']]) {
      const { connection, states, socket } = connect();
      socket().hello();
      socket().lost(code);
      assert.deepEqual([states.at(-1).state, states.at(-1).why], ['stopped', why]);
      assert.equal(FakeSocket.made.at(-1), socket(), 'no new socket');
      connection.stop();
    }
  });

  test('a request waiting when the socket drops fails and is not sent again', async () => {
    const { connection, socket } = connect();
    socket().hello();
    const first = socket();
    const answer = connection.request({ op: 'send', room: 'lobby', body: { text: 'hi' } });
    assert.deepEqual(first.sent.map((command) => command.op), ['send']);
    first.lost();
    await assert.rejects(answer, /connection lost/);
    connection.reconnectNow();
    socket().hello();
    assert.deepEqual(socket().sent, [], 'the new socket was sent nothing');
    const again = connection.request({ op: 'ping' });
    socket().onmessage({ data: JSON.stringify({ re: socket().sent[0].id, ok: true }) });
    assert.deepEqual(await again, { re: socket().sent[0].id, ok: true });
    connection.stop();
  });

  test('1,000 pages of a restarted server spread their retries over the whole window', () => {
    for (const [drops, ceiling] of [[1, 500], [5, 8000]]) {
      const delays = [];
      for (let page = 0; page < 1000; page += 1) {
        const { connection, states, socket } = connect();
        socket().hello();
        for (let drop = 1; drop <= drops; drop += 1) {
          socket().lost();
          if (drop < drops) connection.reconnectNow();
        }
        delays.push(states.at(-1).delayMs);
        connection.stop();
      }
      assert.ok(delays.every((delay) => delay >= 0 && delay <= ceiling), `within 0..${ceiling} ms`);
      // Ten equal slices of the window: each should hold about 100; 50 to 150 is over five standard deviations.
      const slices = Array.from({ length: 10 }, (_, slice) => delays.filter((delay) =>
        delay >= (slice * ceiling) / 10 && (slice === 9 ? delay <= ceiling : delay < ((slice + 1) * ceiling) / 10)).length);
      assert.ok(slices.every((count) => count >= 50 && count <= 150), `attempt ${drops}: ${slices}`);
    }
  });
});

// Server-Sent Events in a browser: Chromium's own EventSource follows a room
// on a real switchboard binary with SQLite storage; the server is killed and
// restarted on the same port and data directory, and the page, reconnecting
// by itself with Last-Event-ID, receives exactly the messages published while
// it was disconnected, then the live ones.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInBrowser, e2eTest, openClient, startServer } from './harness.mjs';

const T = { timeout: 60_000 };

const e2e = (name, fn) => e2eTest(name, fn, T);

// Runs inside the page: follows `url` with EventSource and keeps everything
// it dispatches, for the test to read.
function follow(url) {
  const seen = { messages: [], named: [], opens: 0, errors: 0 };
  const source = new EventSource(url);
  source.onopen = () => { seen.opens += 1; };
  source.onerror = () => { seen.errors += 1; };
  source.onmessage = (e) => seen.messages.push({ id: e.lastEventId, data: JSON.parse(e.data) });
  for (const name of ['hello', 'joined', 'replayed', 'close']) {
    source.addEventListener(name, (e) => seen.named.push({ name, data: JSON.parse(e.data) }));
  }
  window.seen = seen;
  window.source = source;
}

/** Publishes `numbers` to `room` from a page of `server`, each acked (stored). */
async function publish(context, server, room, numbers) {
  const writer = await openClient(context, server.wsUrl('/ws?name=writer'));
  await writer.next({ ev: 'hello' });
  await writer.send({ op: 'join', room, id: 'j' });
  await writer.next({ re: 'j', ok: true });
  for (const n of numbers) {
    await writer.send({ op: 'send', room, body: { n }, id: `m${n}` });
    await writer.next({ re: `m${n}`, ok: true });
  }
  await writer.page.close();
}

describeInBrowser('Server-Sent Events in a browser', T, (newContext) => {

  e2e('EventSource resumes with Last-Event-ID across a server restart, exactly once', async () => {
    const data = mkdtempSync(join(tmpdir(), 'switchboard-e2e-data-'));
    // A short reconnection delay, so the page retries often while the server is down.
    const config = { SWITCHBOARD_SSE__RETRY: '200ms' };
    const context = await newContext();
    const servers = [];
    const start = async (options) => {
      const server = await startServer({ config, data, ...options });
      servers.push(server);
      return server;
    };
    try {
      const first = await start();
      const reader = await context.newPage();
      await reader.goto(first.httpUrl('/healthz'));
      await reader.evaluate(follow, '/api/rooms/lobby/events?name=reader');
      await reader.waitForFunction(() => window.seen.named.some((e) => e.name === 'joined'), null, { timeout: 10_000 });
      await publish(context, first, 'lobby', [1, 2]);
      await reader.waitForFunction(() => window.seen.messages.length === 2, null, { timeout: 10_000 });

      // A crash: the page's stream drops and EventSource starts retrying.
      await first.kill();
      await reader.waitForFunction(() => window.seen.errors > 0, null, { timeout: 10_000 });
      // Published while the page is disconnected, through a server on
      // another port over the same data directory; stored, then it stops.
      const meanwhile = await start();
      await publish(context, meanwhile, 'lobby', [3, 4]);
      await meanwhile.stop();
      // Back on the port the page knows.
      const second = await start({ port: first.port });
      await reader.waitForFunction(() => window.seen.named.filter((e) => e.name === 'replayed').length === 1, null,
        { timeout: 20_000 });
      await publish(context, second, 'lobby', [5]);
      await reader.waitForFunction(() => window.seen.messages.length >= 5, null, { timeout: 10_000 });

      const seen = await reader.evaluate(() => window.seen);
      assert.deepEqual(seen.messages.map((m) => m.data.body.n), [1, 2, 3, 4, 5], 'each message once, in order');
      assert.deepEqual(seen.messages.map((m) => m.data.seq), [1, 2, 3, 4, 5]);
      const epoch = seen.named.find((e) => e.name === 'joined' && e.data.epoch !== null)?.data.epoch;
      assert.ok(Number.isSafeInteger(epoch), `an epoch: ${JSON.stringify(seen.named)}`);
      assert.deepEqual(seen.messages.map((m) => m.id), [1, 2, 3, 4, 5].map((n) => `lobby:${epoch}:${n}`));
      const joined = seen.named.filter((e) => e.name === 'joined').map((e) => e.data);
      assert.equal(joined.length, 2, JSON.stringify(joined));
      assert.equal(joined[0].recovered, undefined, 'the first stream did not resume');
      // `recovered` is there only because the browser sent Last-Event-ID.
      assert.deepEqual([joined[1].recovered, joined[1].seq, joined[1].epoch], [true, 4, epoch]);
      const replayed = seen.named.find((e) => e.name === 'replayed').data;
      assert.deepEqual([replayed.count, replayed.recovered], [2, true]);
      assert.equal(seen.opens, 2, 'one reconnection');
      await reader.close();
    } finally {
      await context.close();
      for (const server of servers) await server.stop();
      rmSync(data, { recursive: true, force: true });
    }
  });
});

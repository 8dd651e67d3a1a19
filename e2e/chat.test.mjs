// Browser end-to-end tests: headless Chromium's own WebSocket against a real
// switchboard binary, so the server's framing, close codes and shutdown are
// checked the way a web client sees them. Run: npm test (see README.md).
import assert from 'node:assert/strict';
import { describeInBrowser, e2eTest, openClient, startServer } from './harness.mjs';

const MAX_MESSAGE_SIZE = 65_536; // the server's default limit
const T = { timeout: 30_000 };

const e2e = (name, fn) => e2eTest(name, fn, T);

// A timestamp from the server's clock, which is this machine's clock.
function assertRecentTs(ts) {
  assert.equal(typeof ts, 'number');
  assert.ok(Math.abs(Date.now() - ts) < 60_000, `ts ${ts} is not near now (${Date.now()})`);
}

// Every test gets its own server and its own browser context: no test sees
// another's rooms, users, inboxes or seq numbers, so they pass in any order
// and alone (node --test --test-name-pattern ...).
describeInBrowser('switchboard in a browser', T, (newContext) => {

  // A fresh server and context for one test; `done` stops both.
  const fresh = async () => {
    const server = await startServer();
    const context = await newContext();
    const done = async () => {
      await context.close();
      await server.stop();
    };
    return { server, context, done };
  };
  // Runs `fn` with a fresh server and context, and always cleans up.
  const isolated = (fn) => async () => {
    const { server, context, done } = await fresh();
    try {
      await fn({ server, ctx: context });
    } finally {
      await done();
    }
  };
  const connect = async (server, ctx, name) => {
    const client = await openClient(ctx, server.wsUrl(`/ws?name=${name}`));
    const hello = await client.next({ ev: 'hello' });
    assert.equal(hello.user, name);
    assert.ok(Number.isInteger(hello.conn), `hello.conn ${hello.conn}`);
    return client;
  };
  const join = async (client, room, id, extra = {}) => {
    await client.send({ op: 'join', room, id, ...extra });
    const reply = await client.next({ re: id });
    const { epoch, seq } = reply;
    assert.ok(epoch === null || Number.isSafeInteger(epoch), `epoch ${epoch}`);
    assert.ok(Number.isInteger(seq) && seq >= 0, `seq ${seq}`);
    assert.deepEqual(reply, { re: id, ok: true, room, epoch, seq, presence_events: true, ...('since' in extra ? { recovered: reply.recovered } : {}) });
    return reply;
  };

  e2e('room chat: join presence and a message between two pages', isolated(async ({ server, ctx }) => {
    const alice = await connect(server, ctx, 'alice');
    await join(alice, 'lobby', 1);
    const bob = await connect(server, ctx, 'bob');
    await join(bob, 'lobby', 1);
    assert.deepEqual(await alice.next({ ev: 'join', user: 'bob' }), { ev: 'join', room: 'lobby', user: 'bob' });

    const body = { text: 'hello from bob' };
    await bob.send({ op: 'send', room: 'lobby', body, id: 2 });
    const msg = await alice.next({ ev: 'msg' });
    assertRecentTs(msg.ts);
    assert.deepEqual(msg, { ev: 'msg', room: 'lobby', seq: 1, from: 'bob', ts: msg.ts, body });

    // The sender is a member too: it gets the event as well as its reply.
    const reply = await bob.next({ re: 2 });
    assertRecentTs(reply.ts);
    assert.deepEqual(reply, { re: 2, ok: true, seq: 1, ts: reply.ts });
    assert.deepEqual(await bob.next({ ev: 'msg' }), msg);
  }));

  e2e('direct messages: delivered live, and kept for an offline user until they connect', isolated(async ({ server, ctx }) => {
    const alice = await connect(server, ctx, 'alice');
    const bob = await connect(server, ctx, 'bob');

    const body = { text: 'psst, bob' };
    await alice.send({ op: 'dm', to: 'bob', body, id: 3 });
    const dm = await bob.next({ ev: 'dm' });
    assert.ok(Number.isInteger(dm.seq) && dm.seq > 0, `dm.seq ${dm.seq}`);
    assertRecentTs(dm.ts);
    assert.deepEqual(dm, { ev: 'dm', from: 'alice', to: 'bob', seq: dm.seq, ts: dm.ts, body });
    assert.equal((await alice.next({ re: 3 })).ok, true);

    const later = { text: 'read this when you are back' };
    await alice.send({ op: 'dm', to: 'dana', body: later, id: 4 });
    const stored = await alice.next({ re: 4 });
    assert.equal(stored.ok, true, JSON.stringify(stored));
    const dana = await openClient(ctx, server.wsUrl('/ws?name=dana'));
    const hello = await dana.next({ ev: 'hello' });
    assert.equal(hello.inbox.waiting, 1, JSON.stringify(hello));
    await dana.send({ op: 'inbox', since: 0, epoch: hello.inbox.epoch, id: 1 });
    assert.equal((await dana.next({ re: 1 })).recovered, true);
    const kept = await dana.next({ ev: 'dm' });
    assert.deepEqual(kept, { ev: 'dm', from: 'alice', to: 'dana', seq: stored.seq, ts: stored.ts, body: later });
    assert.deepEqual(await dana.next({ ev: 'replayed' }), { ev: 'replayed', inbox: true, count: 1, recovered: true });
  }));

  e2e('a page that reconnects with since gets exactly what it missed, then the live stream', isolated(async ({ server, ctx }) => {
    const alice = await connect(server, ctx, 'alice');
    await join(alice, 'news', 1);
    const bob = await connect(server, ctx, 'bob');
    await join(bob, 'news', 1);
    await alice.send({ op: 'send', room: 'news', body: 'one', id: 2 });
    const seen = await bob.next({ ev: 'msg' });
    await bob.page.close();

    const missed = ['two', 'three', 'four'];
    for (const [i, text] of missed.entries()) {
      await alice.send({ op: 'send', room: 'news', body: text, id: 10 + i });
      assert.equal((await alice.next({ re: 10 + i })).ok, true);
    }
    // The room's epoch, as a client would have kept it from any join reply.
    const { epoch } = await join(alice, 'news', 20);
    const back = await connect(server, ctx, 'bob');
    const rejoin = await join(back, 'news', 1, { since: seen.seq, epoch });
    assert.equal(rejoin.recovered, true, JSON.stringify(rejoin));
    for (const [i, text] of missed.entries()) {
      const msg = await back.next({ ev: 'msg' });
      assert.deepEqual([msg.seq, msg.body], [seen.seq + 1 + i, text]);
    }
    assert.deepEqual(await back.next({ ev: 'replayed' }), { ev: 'replayed', room: 'news', count: 3, recovered: true });
    await alice.send({ op: 'send', room: 'news', body: 'live', id: 30 });
    const live = await back.next({ ev: 'msg' });
    assert.deepEqual([live.seq, live.body], [seen.seq + 4, 'live']);
  }));

  e2e('bad JSON keeps the socket open; an oversized message closes it with 1009', isolated(async ({ server, ctx }) => {
    const carol = await connect(server, ctx, 'carol');

    await carol.send('this is {not json');
    const err = await carol.next({ ev: 'error' });
    assert.equal(err.code, 'bad_json');
    assert.equal(typeof err.error, 'string');
    assert.equal(await carol.readyState(), 1, 'socket should still be OPEN after bad_json');
    await carol.send({ op: 'ping', id: 9 });
    assert.deepEqual(await carol.next({ re: 9 }), { re: 9, ok: true });

    // Exactly the limit is still allowed: pad a valid command to MAX_MESSAGE_SIZE bytes (ASCII).
    await join(carol, 'big', 10);
    const frame = (pad) => JSON.stringify({ op: 'send', room: 'big', body: 'x'.repeat(pad), id: 11 });
    const atLimit = frame(MAX_MESSAGE_SIZE - frame(0).length);
    assert.equal(atLimit.length, MAX_MESSAGE_SIZE);
    await carol.send(atLimit);
    assert.equal((await carol.next({ re: 11 })).ok, true);

    // One byte over: the server closes, and the browser's close event carries 1009.
    await carol.send('x'.repeat(MAX_MESSAGE_SIZE + 1));
    const closed = await carol.closed();
    assert.equal(closed.code, 1009, `close event ${JSON.stringify(closed)}`);
  }));

  e2e('graceful shutdown: SIGTERM closes a connected page with 1001', isolated(async ({ server, ctx }) => {
    const page = await openClient(ctx, server.wsUrl('/ws?name=erin'));
    await page.next({ ev: 'hello' });
    const exit = await server.stop();
    const closed = await page.closed();
    assert.equal(closed.code, 1001, `close event ${JSON.stringify(closed)}`);
    assert.equal(exit.killed, false, `server needed SIGKILL; log:\n${server.logTail()}`);
    assert.equal(exit.code, 0, `server exit ${JSON.stringify(exit)}; log:\n${server.logTail()}`);
  }));
});

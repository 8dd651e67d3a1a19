// Origins, as a browser enforces them: Chromium sends the page's origin with
// every WebSocket upgrade and the server refuses pages of other origins
// unless auth.allowed_origins lists them. The other origin is a page served
// by a small HTTP server this test starts on another port.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before } from 'node:test';
import { describeInBrowser, e2eTest, missing, openClient, startServer } from './harness.mjs';

const T = { timeout: 30_000 };

const e2e = (name, fn) => e2eTest(name, fn, T);

/** An HTTP server on 127.0.0.1, port 0, serving an empty page: another origin. */
async function otherSite() {
  const site = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>another site</title>');
  });
  await new Promise((res) => site.listen(0, '127.0.0.1', res));
  return { url: `http://127.0.0.1:${site.address().port}/`, close: () => new Promise((res) => site.close(res)) };
}

/** The server's counter of upgrades refused for their origin. */
async function originRefusals(server) {
  const text = await (await fetch(server.httpUrl('/metrics'))).text();
  const line = text.split('\n').find((l) => l.startsWith('switchboard_connections_refused_total{reason="origin"}'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describeInBrowser('origins in a browser', T, (newContext) => {
  let site;

  before(async () => {
    if (missing) return;
    site = await otherSite();
  }, T);

  after(async () => {
    await site?.close();
  }, T);

  e2e('a page of another site cannot connect; the server\'s own page can', async () => {
    const server = await startServer();
    const context = await newContext();
    try {
      // A refused upgrade never opens: the browser reports 1006.
      await assert.rejects(
        openClient(context, server.wsUrl('/ws?name=mallory'), { from: site.url }),
        /closed before opening: \{"code":1006/,
      );
      assert.equal(await originRefusals(server), 1);
      const own = await openClient(context, server.wsUrl('/ws?name=alice'));
      assert.equal((await own.next({ ev: 'hello' })).user, 'alice');
    } finally {
      await context.close();
      await server.stop();
    }
  });

  e2e('a site listed in auth.allowed_origins can connect', async () => {
    const listed = site.url.replace(/\/$/, '');
    const server = await startServer({ config: { SWITCHBOARD_AUTH__ALLOWED_ORIGINS: `["${listed}"]` } });
    const context = await newContext();
    try {
      const page = await openClient(context, server.wsUrl('/ws?name=bob'), { from: site.url });
      assert.equal((await page.next({ ev: 'hello' })).user, 'bob');
      assert.equal(await originRefusals(server), 0);
    } finally {
      await context.close();
      await server.stop();
    }
  });
});

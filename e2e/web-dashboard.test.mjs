// The dashboard the server serves at /dashboard, in Chromium: its live
// figures move when clients connect and talk, the connection table lists
// them with their file descriptors, and when the API needs a key the page
// asks for one. Screenshot: docs/img/dashboard.png.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInBrowser, e2eTest, startServer } from './harness.mjs';
import { DASHBOARD_VIEWPORT, say, screenshot, seen, signIn, VIEWPORT, WAIT } from './pages.mjs';

const T = { timeout: 90_000 };
const e2e = (name, fn) => e2eTest(name, fn, T);

/**
 * Waits until the dashboard's figure `metric` reads `equals`, or (for
 * "1.0/s · 12 total" figures) until its total is at least `totalAtLeast`.
 */
async function figure(page, metric, { equals = null, totalAtLeast = null }) {
  await page.waitForFunction(([name, exactly, atLeast]) => {
    const text = document.querySelector(`[data-metric="${name}"]`)?.textContent ?? '';
    if (exactly !== null) return text === exactly;
    const counted = /(\d+) total$/.exec(text);
    return counted !== null && Number(counted[1]) >= atLeast;
  }, [metric, equals, totalAtLeast], { timeout: WAIT, polling: 100 }).catch(async (error) => {
    const shown = await page.locator(`[data-metric="${metric}"]`).textContent().catch(() => null);
    throw new Error(`the dashboard's ${metric} shows ${JSON.stringify(shown)}, not ${equals ?? `a total of ${totalAtLeast}`}: ${error.message}`);
  });
}

describeInBrowser('the dashboard', T, (newContext) => {

  e2e('its numbers move when clients connect and talk, and the table shows their sockets', async () => {
    const server = await startServer();
    const contexts = [];
    try {
      const context = async () => {
        contexts.push(await newContext({ viewport: VIEWPORT }));
        return contexts.at(-1);
      };
      const dashboard = await (await newContext({ viewport: DASHBOARD_VIEWPORT })).newPage();
      contexts.push(dashboard.context());
      await dashboard.goto(server.httpUrl('/dashboard'));
      await figure(dashboard, 'connections.websocket', { equals: '0' });
      await figure(dashboard, 'messages.published', { equals: '0.0/s · 0 total' });

      const alice = await signIn(await context(), server, 'alice');
      await figure(dashboard, 'connections.websocket', { equals: '1' });
      const row = dashboard.locator('#connections tbody tr', { hasText: 'alice' });
      await row.waitFor({ timeout: WAIT });
      const cells = await row.locator('td').allTextContents();
      assert.match(cells[1], /^\d+$/, `a file descriptor: ${cells}`);
      assert.deepEqual([cells[2], cells[4], cells[5]], ['websocket', 'alice', 'lobby']);

      const bob = await signIn(await context(), server, 'bob');
      await figure(dashboard, 'connections.websocket', { equals: '2' });
      for (const n of [1, 2, 3]) {
        await say(alice, `status update ${n}`);
        await seen(bob, 'room:lobby', `status update ${n}`);
      }
      await figure(dashboard, 'messages.published', { totalAtLeast: 3 });
      // Each message reached both members.
      await figure(dashboard, 'deliveries', { totalAtLeast: 6 });
      await say(bob, 'all good here');
      await dashboard.waitForFunction(() => Number(document.querySelector('#panels').dataset.samples) >= 8, null,
        { timeout: WAIT });
      await screenshot(dashboard, 'dashboard.png');

      await bob.close();
      await figure(dashboard, 'connections.websocket', { equals: '1' });
      await say(alice, 'still here');
    } finally {
      for (const context of contexts) await context.close();
      await server.stop();
    }
  });

  e2e('when the API needs a key the page asks for it and sends it', async () => {
    const key = 'dashboard-key-0123456789';
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-config-'));
    const file = join(dir, 'switchboard.toml');
    writeFileSync(file, `[[auth.api_keys]]\nname = "ops"\nkey = "${key}"\n`);
    const server = await startServer({ args: ['--config', file] });
    const context = await newContext({ viewport: VIEWPORT });
    try {
      const page = await context.newPage();
      await page.goto(server.httpUrl('/dashboard'));
      const field = page.getByLabel('API key', { exact: true });
      await field.waitFor({ timeout: WAIT });
      await field.fill('not-the-key-at-all');
      await page.getByRole('button', { name: 'Show the dashboard' }).click();
      await page.getByRole('alert').getByText('The server refused the key').waitFor({ timeout: WAIT });
      await field.fill(key);
      await page.getByRole('button', { name: 'Show the dashboard' }).click();
      await figure(page, 'connections.websocket', { equals: '0' });
      await page.locator('#status[data-state="online"]').waitFor({ timeout: WAIT });
    } finally {
      await context.close();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

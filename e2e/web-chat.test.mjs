// The chat page the server serves at /, in Chromium: two people in two
// browser contexts chat in a room and by DM, one reloads and finds the
// history, and across a server restart both pages reconnect by themselves
// and recover, from the server's storage, what was published while they
// were disconnected. Screenshot: docs/img/chat.png.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeInBrowser, e2eTest, SERVER_BIN, startServer } from './harness.mjs';
import {
  messageList, notices, online, open, publish, RECONNECT_WAIT, say, screenshot, seen, shown, signIn, texts, VIEWPORT, WAIT,
} from './pages.mjs';

const T = { timeout: 120_000 };
const e2e = (name, fn) => e2eTest(name, fn, T);

describeInBrowser('the chat page', T, (newContext) => {
  const cleanups = [];

  /** A browser context with the screenshots' viewport, closed after the test. */
  const context = async () => {
    const made = await newContext({ viewport: VIEWPORT });
    cleanups.push(() => made.close());
    return made;
  };
  /** A server, stopped after the test. */
  const server = async (options) => {
    const started = await startServer(options);
    cleanups.push(() => started.stop());
    return started;
  };
  /**
   * A second server over `data` while `first` is down, on any other port
   * (were it given the first one's, the pages would reconnect to it and get
   * live messages, which would prove nothing about recovery).
   */
  const elsewhere = async (first, options) => {
    for (;;) {
      const started = await server(options);
      if (started.port !== first.port) return started;
      await started.stop();
    }
  };
  /** A directory removed after the test. */
  const directory = (prefix) => {
    const made = mkdtempSync(join(tmpdir(), prefix));
    cleanups.push(() => rmSync(made, { recursive: true, force: true }));
    return made;
  };
  const cleanUp = async () => {
    while (cleanups.length) await cleanups.pop()();
  };
  const withCleanup = (fn) => async () => {
    try {
      await fn();
    } finally {
      await cleanUp();
    }
  };

  e2e('Alice and Bob chat in a room and by DM, and Bob finds the history after a reload', withCleanup(async () => {
    const chat = await server();
    const alice = await signIn(await context(), chat, 'alice');
    const bob = await signIn(await context(), chat, 'bob');
    // Presence: each sees the other in the member list.
    await alice.locator('#members button[data-user="bob"]').waitFor({ timeout: WAIT });
    await bob.locator('#members button[data-user="alice"]').waitFor({ timeout: WAIT });

    await say(alice, 'Hello Bob, the build is green.');
    await seen(bob, 'room:lobby', 'Hello Bob, the build is green.');
    await say(bob, 'Great, shipping it after lunch.');
    await seen(alice, 'room:lobby', 'Great, shipping it after lunch.');
    const markup = '<img src=x onerror="window.owned=1"> <b>not bold</b>';
    await say(alice, markup);
    await seen(bob, 'room:lobby', markup);
    assert.equal(await bob.evaluate(() => window.owned), undefined, 'text is never parsed as HTML');
    assert.equal(await messageList(bob, 'room:lobby').locator('b, img').count(), 0);

    // A DM: Bob picks Alice in the member list; Alice's page shows a new conversation with one unread.
    await bob.locator('#members button[data-user="alice"]').click();
    await shown(bob, 'dm:alice');
    await say(bob, 'Psst: the staging password rotated.');
    await seen(bob, 'dm:alice', 'Psst: the staging password rotated.');
    await alice.locator('button.convo[data-conversation="dm:bob"] .badge', { hasText: '1' }).waitFor({ timeout: WAIT });
    await open(alice, 'dm:bob');
    await seen(alice, 'dm:bob', 'Psst: the staging password rotated.');
    await say(alice, 'Thanks, noted.');
    await seen(bob, 'dm:alice', 'Thanks, noted.');
    assert.deepEqual(await texts(alice, 'dm:bob'), ['Psst: the staging password rotated.', 'Thanks, noted.']);
    assert.deepEqual(await texts(alice, 'room:lobby'), await texts(bob, 'room:lobby'));

    await open(alice, 'room:lobby');
    await screenshot(alice, 'chat.png');

    // Bob reloads: the tab remembers him and his rooms; the room's history and the DM he received come back.
    await bob.reload();
    await online(bob);
    await seen(bob, 'room:lobby', markup);
    assert.deepEqual(await texts(bob, 'room:lobby'),
      ['Hello Bob, the build is green.', 'Great, shipping it after lunch.', markup]);
    // The tab also remembers which conversation was open: the DM.
    await shown(bob, 'dm:alice');
    await seen(bob, 'dm:alice', 'Thanks, noted.');
    await open(bob, 'room:lobby');
    await say(bob, 'Back after a reload.');
    await seen(alice, 'room:lobby', 'Back after a reload.');
  }));

  e2e('after a server restart both pages reconnect by themselves and recover what was sent meanwhile', withCleanup(async () => {
    const data = directory('switchboard-e2e-data-');
    const first = await server({ data });
    const alice = await signIn(await context(), first, 'alice');
    const bob = await signIn(await context(), first, 'bob');
    await say(alice, 'before the restart');
    await seen(bob, 'room:lobby', 'before the restart');

    // A crash: both pages lose their sockets and start backing off.
    await first.kill();
    for (const page of [alice, bob]) {
      await page.locator('#status[data-state="waiting"]').waitFor({ timeout: WAIT });
    }
    // Published while no page has a connection, through a server on another
    // port over the same data directory: the pages can only get these from storage.
    const meanwhile = await elsewhere(first, { data });
    for (const n of [1, 2]) await publish(meanwhile, '/api/rooms/lobby/messages', { body: { text: `during the outage ${n}` }, from: 'carol' });
    await publish(meanwhile, '/api/users/bob/messages', { body: { text: 'a DM during the outage' }, from: 'carol' });
    await meanwhile.stop();
    // Back on the port the pages know; nothing is published from now on until both have recovered.
    const second = await server({ data, port: first.port });

    const expected = ['before the restart', 'during the outage 1', 'during the outage 2'];
    for (const page of [alice, bob]) {
      await online(page, RECONNECT_WAIT);
      await seen(page, 'room:lobby', 'during the outage 2');
      assert.deepEqual(await texts(page, 'room:lobby'), expected, 'each message once, in order');
      const said = await notices(page, 'room:lobby');
      assert.ok(said.includes('2 messages arrived while you were disconnected.'), JSON.stringify(said));
      assert.ok(!said.some((notice) => /could not be recovered|reset/.test(notice)), JSON.stringify(said));
    }
    await seen(bob, 'dm:carol', 'a DM during the outage');
    await say(bob, 'after the restart');
    await seen(alice, 'room:lobby', 'after the restart');
    assert.equal((await texts(alice, 'room:lobby')).length, 4);
    assert.equal(second.port, first.port);
  }));

  e2e('a page says so when the server could not recover everything it missed', withCleanup(async () => {
    // Rooms keep their newest 2 messages: of 3 published during the outage, the first is gone.
    const config = { SWITCHBOARD_STORAGE__ROOM_MAX_MESSAGES: '2' };
    const data = directory('switchboard-e2e-data-');
    const first = await server({ data, config });
    const alice = await signIn(await context(), first, 'alice');
    await say(alice, 'seen before the outage');
    await seen(alice, 'room:lobby', 'seen before the outage');
    await first.kill();
    await alice.locator('#status[data-state="waiting"]').waitFor({ timeout: WAIT });
    const meanwhile = await elsewhere(first, { data, config });
    for (const n of [1, 2, 3]) await publish(meanwhile, '/api/rooms/lobby/messages', { body: { text: `missed ${n}` }, from: 'carol' });
    await meanwhile.stop();
    await server({ data, config, port: first.port });

    await online(alice, RECONNECT_WAIT);
    await seen(alice, 'room:lobby', 'missed 3');
    assert.deepEqual(await texts(alice, 'room:lobby'), ['seen before the outage', 'missed 2', 'missed 3']);
    const said = await notices(alice, 'room:lobby');
    assert.ok(said.some((notice) => notice.startsWith('Some messages sent while you were away could not be recovered')),
      JSON.stringify(said));
  }));

  e2e('in a phone-sized window the lists are drawers and everything still works', withCleanup(async () => {
    const chat = await server();
    const phone = await newContext({ viewport: { width: 390, height: 760 }, hasTouch: true });
    cleanups.push(() => phone.close());
    const page = await signIn(phone, chat, 'dora');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `nothing wider than the window (${overflow} px more)`);
    assert.equal(await page.locator('#sidebar').isVisible(), false, 'the conversation list starts closed');
    await page.getByRole('button', { name: 'Rooms', exact: true }).click();
    await page.getByLabel('Join a room').fill('random');
    await page.getByLabel('Join a room').press('Enter');
    await shown(page, 'room:random');
    await page.locator('#sidebar').waitFor({ state: 'hidden', timeout: WAIT });
    await say(page, 'typed on a phone');
    await seen(page, 'room:random', 'typed on a phone');
    await page.getByRole('button', { name: 'Members', exact: true }).click();
    await page.locator('#members button[data-user="dora"]').waitFor({ timeout: WAIT });
    await page.keyboard.press('Escape');
    await page.locator('#members-panel').waitFor({ state: 'hidden', timeout: WAIT });
  }));

  e2e('in token mode the page asks for a token and the user is the token\'s', withCleanup(async () => {
    const secret = 'e2e-secret-0123456789abcdef0123456789';
    const env = { ...process.env, SWITCHBOARD_AUTH__JWT_HMAC_SECRET: secret };
    const minted = spawnSync(SERVER_BIN, ['token', '--user', 'dora', '--ttl', '1h'], { env, encoding: 'utf8' });
    assert.equal(minted.status, 0, minted.stderr);
    const config = directory('switchboard-e2e-config-');
    const file = join(config, 'switchboard.toml');
    writeFileSync(file, `[auth]\njwt_hmac_secret = "${secret}"\n`);
    const chat = await server({ args: ['--config', file] });
    const page = await (await context()).newPage();
    await page.goto(chat.httpUrl('/'));
    await page.getByText('This server names you from a token (token mode).').waitFor({ timeout: WAIT });
    assert.equal(await page.getByLabel('Your name').isVisible(), false);
    await page.getByLabel('Your token', { exact: true }).fill('not-a-token');
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.getByRole('alert').getByText('the token may be invalid').waitFor({ timeout: WAIT });
    await page.getByLabel('Your token', { exact: true }).fill(minted.stdout.trim());
    await page.getByRole('button', { name: 'Connect' }).click();
    await online(page);
    await page.getByText('Signed in as dora').waitFor({ timeout: WAIT });
    await say(page, 'signed by a token');
    await seen(page, 'room:lobby', 'signed by a token');
    assert.equal(await messageList(page, 'room:lobby').locator('li.msg .from').first().textContent(), 'dora');
  }));
});

// Shared plumbing for the browser tests: find the external pieces (server
// binary, system Chromium), start/stop a real server, launch the browser, and
// drive a native browser WebSocket from inside a page.
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const SERVER_BIN = resolve(here, process.env.SWITCHBOARD_BIN || '../target/release/switchboard');
// CHROMIUM_PATH exists so the skip/fail behaviour can be checked without uninstalling Chromium.
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const REQUIRE_EXTERNAL = !['', '0', 'false'].includes(process.env.SWITCHBOARD_REQUIRE_EXTERNAL ?? '');

function missingExternal() {
  const problems = [];
  for (const [what, path, hint] of [
    ['server binary', SERVER_BIN, 'cargo build --release -p switchboard, or set SWITCHBOARD_BIN'],
    ['Chromium', CHROMIUM, 'apt-get install chromium, or set CHROMIUM_PATH'],
  ]) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      problems.push(`no ${what} at ${path} (${hint})`);
    }
  }
  return problems.join('; ');
}

// Without the external pieces a developer gets visibly skipped tests; in CI
// (SWITCHBOARD_REQUIRE_EXTERNAL=1) the same absence must fail every test, so
// tests are not skipped there and `requireExternal()` at their start throws.
export const missing = missingExternal();
export const skipReason = missing && !REQUIRE_EXTERNAL ? `${missing}; set SWITCHBOARD_REQUIRE_EXTERNAL=1 to fail instead` : false;
export function requireExternal() {
  if (missing) throw new Error(`${missing} (SWITCHBOARD_REQUIRE_EXTERNAL is set, so this is a failure)`);
}

/** A browser test: skipped without the external pieces, or failing in CI (see above). */
export function e2eTest(name, fn, { timeout = 30_000 } = {}) {
  test(name, { timeout, skip: skipReason }, async () => {
    requireExternal();
    await fn();
  });
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
const LISTENING = /switchboard listening.*\baddress=([^\s]+):(\d+)/;
const live = new Set();
// A crashed or interrupted test run must not leave servers behind.
process.on('exit', () => live.forEach((child) => child.kill('SIGKILL')));

/**
 * Starts a server on a free port (or on `port`: only to restart a server on
 * the port it had); resolves once it logged its address. `data`: a data
 * directory that outlives the server (the caller removes it), for a
 * restart that keeps history; by default one inside the server's own
 * temporary directory. `args`: more arguments for `serve` (`--config FILE`).
 */
export async function startServer({ readyMs = 15_000, config = {}, port: fixedPort = 0, data, args: extra = [] } = {}) {
  // Strip SWITCHBOARD_* so a developer's shell cannot change the limits the tests assert on;
  // `config` adds the test's own (SWITCHBOARD_* names).
  const inherited = Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_'));
  const env = { ...Object.fromEntries(inherited), ...config };
  // Its own cwd: the default data dir is ./switchboard-data and must not land in the tree.
  const cwd = mkdtempSync(join(tmpdir(), 'switchboard-e2e-'));
  // Port 0 for every listener: tests run servers side by side.
  const args = ['serve', '--http', `127.0.0.1:${fixedPort}`, '--tcp', '127.0.0.1:0', '--udp', '127.0.0.1:0'];
  if (data) args.push('--data', data);
  args.push(...extra);
  const child = spawn(SERVER_BIN, args, {
    cwd,
    env: { ...env, NO_COLOR: '1', RUST_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const log = [];
  // 'close', not 'exit': by then stdout/stderr are drained, so the log is complete.
  const exited = new Promise((res) => child.once('close', (code, signal) => {
    live.delete(child);
    rmSync(cwd, { recursive: true, force: true });
    res({ code, signal });
  }));
  const logTail = () => log.slice(-20).join('\n');

  const port = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`server did not log its address within ${readyMs} ms:\n${logTail()}`)), readyMs);
    child.once('error', (err) => { clearTimeout(timer); rej(err); });
    exited.then(({ code, signal }) => { clearTimeout(timer); rej(new Error(`server exited at startup (code ${code}, signal ${signal}):\n${logTail()}`)); });
    for (const stream of [child.stdout, child.stderr]) {
      // Keep reading for the whole run: an unread pipe would fill up and block the server.
      createInterface({ input: stream }).on('line', (raw) => {
        const line = raw.replace(ANSI, '');
        log.push(line);
        const m = LISTENING.exec(line);
        if (m) { clearTimeout(timer); res(Number(m[2])); }
      });
    }
  }).catch(async (err) => { await stop(child, exited); throw err; });

  return {
    port,
    wsUrl: (path) => `ws://127.0.0.1:${port}${path}`,
    httpUrl: (path) => `http://127.0.0.1:${port}${path}`,
    logTail,
    /** SIGTERM, then SIGKILL after 5 s; resolves with how it ended. */
    stop: () => stop(child, exited),
    /** SIGKILL, as a crash; resolves once it is gone. */
    kill: async () => {
      child.kill('SIGKILL');
      return exited;
    },
  };
}

async function stop(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null) return { ...(await exited), killed: false };
  child.kill('SIGTERM');
  let timer;
  const late = new Promise((res) => { timer = setTimeout(res, 5_000, 'late'); });
  const first = await Promise.race([exited, late]);
  clearTimeout(timer);
  if (first !== 'late') return { ...first, killed: false };
  child.kill('SIGKILL');
  return { ...(await exited), killed: true };
}

/**
 * A describe() whose tests share one browser, launched before them and
 * closed after them; `body` gets `newContext(options)`, a new context (its
 * own cookies and storage) of that browser.
 */
export function describeInBrowser(name, timeouts, body) {
  describe(name, () => {
    let browser;
    before(async () => {
      if (missing) return; // the tests themselves skip or fail
      browser = await launchBrowser();
    }, timeouts);
    after(async () => {
      await browser?.close();
    }, timeouts);
    body((options) => browser.newContext(options));
  });
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// Runs inside the page (serialized by page.evaluate, so it must be self-contained).
// Every frame is queued; `next` takes the first queued frame that matches a
// pattern, so frames that arrive before the test asks for them are not lost.
function installClient() {
  const inbox = [];
  const waiters = new Set();
  let ws;
  let closeEvent = null;
  const matches = (frame, pattern) => Object.entries(pattern).every(([k, v]) => JSON.stringify(frame[k]) === JSON.stringify(v));
  const settle = () => {
    for (const w of [...waiters]) if (w.check()) waiters.delete(w);
  };
  // One waiting primitive for everything: resolve when `check` succeeds, reject on timeout.
  const waitFor = (what, ms, check) => new Promise((resolve, reject) => {
    const w = {
      check: () => {
        let out;
        try { out = check(); } catch (err) { clearTimeout(w.timer); reject(err); return true; }
        if (out === undefined) return false;
        clearTimeout(w.timer);
        resolve(out);
        return true;
      },
      timer: setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; unmatched frames: ${JSON.stringify(inbox).slice(0, 1500)}; close: ${JSON.stringify(closeEvent)}`));
      }, ms),
    };
    if (!w.check()) waiters.add(w);
  });
  window.sb = {
    open(url, ms) {
      ws = new WebSocket(url);
      ws.onopen = settle;
      ws.onmessage = (e) => {
        let frame;
        try { frame = JSON.parse(e.data); } catch { frame = { nonJson: String(e.data).slice(0, 200) }; }
        inbox.push(frame);
        settle();
      };
      ws.onclose = (e) => {
        closeEvent = { code: e.code, reason: e.reason, wasClean: e.wasClean };
        settle();
      };
      return waitFor(`open ${url}`, ms, () => {
        if (ws.readyState === WebSocket.OPEN) return true;
        if (closeEvent) throw new Error(`connection to ${url} closed before opening: ${JSON.stringify(closeEvent)}`);
      }).then(() => undefined);
    },
    send(text) { ws.send(text); },
    readyState: () => ws.readyState,
    next(pattern, ms) {
      return waitFor(JSON.stringify(pattern), ms, () => {
        const i = inbox.findIndex((f) => matches(f, pattern));
        if (i >= 0) return inbox.splice(i, 1)[0];
        if (closeEvent) throw new Error(`socket closed (${JSON.stringify(closeEvent)}) while waiting for ${JSON.stringify(pattern)}; unmatched: ${JSON.stringify(inbox).slice(0, 1500)}`);
      });
    },
    closed(ms) {
      return waitFor('the close event', ms, () => closeEvent ?? undefined);
    },
  };
}

/**
 * Opens a new page in `context` and connects its native WebSocket to `url`.
 * The page is first loaded from `from` (default: the server's own /healthz),
 * so the browser sends that page's origin with the upgrade, as a page the
 * server served would; the server checks it (auth.allowed_origins).
 */
export async function openClient(context, url, { ms = 10_000, from } = {}) {
  const page = await context.newPage();
  const own = new URL(url);
  own.protocol = own.protocol === 'wss:' ? 'https:' : 'http:';
  own.pathname = '/healthz';
  own.search = '';
  await page.goto(from ?? own.href);
  await page.evaluate(installClient);
  await page.evaluate(([u, t]) => window.sb.open(u, t), [url, ms]);
  return {
    page,
    send: (msg) => page.evaluate((t) => window.sb.send(t), typeof msg === 'string' ? msg : JSON.stringify(msg)),
    next: (pattern, t = ms) => page.evaluate(([p, t2]) => window.sb.next(p, t2), [pattern, t]),
    closed: (t = ms) => page.evaluate((t2) => window.sb.closed(t2), t),
    readyState: () => page.evaluate(() => window.sb.readyState()),
  };
}

// Driving the server's own pages (the chat at /, the dashboard at
// /dashboard) as a person would: by their labels, buttons and keyboard.
// Every wait is for something on the page, bounded by a timeout.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Any one awaited event on a page. */
export const WAIT = 20_000;
/** Reconnecting after a restart: the page backs off up to 15 s (with jitter) between attempts. */
export const RECONNECT_WAIT = 45_000;
/** The fixed viewport of the screenshots in docs/img (the dashboard's is taller: its table). */
export const VIEWPORT = { width: 1100, height: 680 };
export const DASHBOARD_VIEWPORT = { width: 1100, height: 920 };

const here = dirname(fileURLToPath(import.meta.url));
const IMAGES = resolve(here, '../docs/img');

/** Saves a screenshot of `page` as docs/img/NAME. */
export async function screenshot(page, name) {
  mkdirSync(IMAGES, { recursive: true });
  await page.screenshot({ path: resolve(IMAGES, name) });
}

/** A new page of `context` signed in to the chat of `server` as `name`, in `room`. */
export async function signIn(context, server, name, room = 'lobby') {
  const page = await context.newPage();
  await page.goto(server.httpUrl('/'));
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Room', { exact: true }).fill(room);
  await page.getByRole('button', { name: 'Connect' }).click();
  await online(page);
  await shown(page, `room:${room}`);
  return page;
}

/** Waits for the page's connection indicator to say it is connected. */
export function online(page, timeout = WAIT) {
  return page.locator('#status[data-state="online"]').waitFor({ timeout });
}

/** The message list of conversation `key` ('room:NAME' or 'dm:USER'). */
export function messageList(page, key) {
  return page.locator(`ol[data-conversation="${key}"]`);
}

/** Waits until a message with exactly `text` is in conversation `key` (shown or not). */
export function seen(page, key, text, timeout = WAIT) {
  return messageList(page, key).locator('li.msg .text').getByText(text, { exact: true })
    .waitFor({ state: 'attached', timeout });
}

/** The texts of the messages in conversation `key`, in order. */
export function texts(page, key) {
  return messageList(page, key).locator('li.msg .text').allTextContents();
}

/** The notices (lines from the page itself) in conversation `key`. */
export function notices(page, key) {
  return messageList(page, key).locator('li.notice').allTextContents();
}

/** Types `text` in the message box and presses Enter. */
export async function say(page, text) {
  const box = page.getByRole('textbox', { name: 'Message', exact: true });
  await box.fill(text);
  await box.press('Enter');
}

/**
 * Waits until conversation `key` is the one shown: the sidebar marks it
 * current (an empty list has no size to be visible by, and in a narrow
 * window the sidebar itself is a closed drawer).
 */
export function shown(page, key) {
  return page.locator(`button.convo[data-conversation="${key}"][aria-current="true"]`)
    .waitFor({ state: 'attached', timeout: WAIT });
}

/** Opens conversation `key` from the sidebar. */
export async function open(page, key) {
  await page.locator(`button.convo[data-conversation="${key}"]`).click();
  await shown(page, key);
}

/** Posts `body` to the HTTP API of `server` at `path` (the open API: loopback, no key). */
export async function publish(server, path, body) {
  const answer = await fetch(server.httpUrl(path), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (answer.status !== 201) throw new Error(`POST ${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

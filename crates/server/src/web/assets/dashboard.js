// The operator's dashboard: every second it asks /api/stats for the
// server's totals and draws the last minute of them (connections by transport,
// messages in and deliveries out per second, drops per second by reason,
// bytes waiting in outbound queues); every two seconds it asks
// /api/connections for the connection table. In token mode, or when API
// keys are configured, both need an API key: the page asks for one
// (/api/info says whether) and sends it as a Bearer token.

import { LineChart } from './charts.js';
import { $, el, formatBytes, formatDuration, serverInfo, tabStore } from './common.js';

const PERIOD_MS = 1000;
const TABLE_PERIOD_MS = 2000;
const CAPACITY = 60;
const TABLE_ROWS = 500;
const TRANSPORTS = ['websocket', 'sse', 'tcp_json', 'tcp_text', 'udp', 'echo'];

class Unauthorized extends Error {}

let apiKey = tabStore.get('apiKey');
// Each start() begins a generation of the two polling loops; a loop of an
// older one (the key was refused meanwhile) ends at its next turn.
let generation = 0;
let samples = [];

/** GET `path` as JSON with the API key; Unauthorized on a 401. */
async function getJson(path) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const answer = await fetch(path, { headers, cache: 'no-store' });
  const body = await answer.json().catch(() => ({}));
  if (answer.status === 401) throw new Unauthorized(body.error ?? 'the server wants an API key');
  if (!answer.ok) throw new Error(body.error ?? `the server answered ${answer.status}`);
  return body;
}

const charts = {};

function setupCharts() {
  const rate = (value) => (value >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2).replace(/\.?0+$/, '') || '0');
  for (const [name, format, integers] of [['connections', String, true], ['messages', rate, false],
    ['drops', rate, false], ['queues', formatBytes, true]]) {
    charts[name] = new LineChart($(`#panel-${name} svg`), { capacity: CAPACITY, format, span: '1 min', integers });
  }
}

/** The per-second rate of `pick` between each sample and the one before it. */
function rates(pick) {
  return samples.map((sample, index) => {
    const before = samples[index - 1];
    if (!sample || !before || sample.uptime_ms <= before.uptime_ms) return null;
    return Math.max(0, (pick(sample) - pick(before)) / ((sample.uptime_ms - before.uptime_ms) / 1000));
  });
}

const last = (values) => [...values].reverse().find((value) => value !== null) ?? 0;

/** A legend entry: a colour key, a name and its figure (`metric` names it for tests and tools). */
function legendEntry(colour, name, figure, metric) {
  return [el('dt', {}, el('span', { class: `key series-${colour}`, 'aria-hidden': 'true' }), name),
    el('dd', { dataset: { metric }, text: figure })];
}

function drawPanel(name, lines, summary) {
  charts[name].draw(lines.filter((line) => line.drawn !== false));
  $(`#panel-${name} .legend`).replaceChildren(...lines.flatMap((line) => legendEntry(line.colour, line.name, line.figure, line.metric)));
  $(`#chart-${name}-label`).textContent = summary;
}

function draw() {
  const latest = samples[samples.length - 1];
  if (!latest) return;
  const open = TRANSPORTS.map((transport, colour) => {
    const values = samples.map((sample) => sample?.connections[transport] ?? null);
    const now = latest.connections[transport] ?? 0;
    return { name: transport, colour, values, figure: String(now), metric: `connections.${transport}`,
      drawn: values.some((value) => value > 0) };
  });
  const total = TRANSPORTS.reduce((sum, transport) => sum + (latest.connections[transport] ?? 0), 0);
  $('[data-metric="connections.total"]').textContent = String(total);
  drawPanel('connections', open, `${total} open connections: ${open.map((line) => `${line.name} ${line.figure}`).join(', ')}`);

  const flows = [['in: room messages', 'messages_published', 'messages.published'],
    ['stored (rooms and DMs)', 'messages_stored', 'messages.stored'], ['out: deliveries', 'deliveries', 'deliveries']]
    .map(([label, field, metric], colour) => {
      const values = rates((sample) => sample[field]);
      return { name: label, colour, values, metric, figure: `${last(values).toFixed(1)}/s · ${latest[field]} total` };
    });
  drawPanel('messages', flows, flows.map((line) => `${line.name} ${line.figure}`).join(', '));

  const reasons = Object.keys(latest.dropped).filter((reason) => latest.dropped[reason] > 0);
  const dropped = Object.values(latest.dropped).reduce((sum, count) => sum + count, 0);
  $('[data-metric="dropped.total"]').textContent = String(dropped);
  const drops = reasons.map((reason, colour) => {
    const values = rates((sample) => sample.dropped[reason] ?? 0);
    return { name: reason, colour: colour % 8, values, metric: `dropped.${reason}`,
      figure: `${last(values).toFixed(1)}/s · ${latest.dropped[reason]} total` };
  });
  drawPanel('drops', drops, dropped === 0 ? 'No drops so far' : drops.map((line) => `${line.name} ${line.figure}`).join(', '));
  if (drops.length === 0) $('#panel-drops .legend').replaceChildren(el('dt', { text: 'No drops since the server started' }), el('dd'));

  const queued = { name: 'all connections', colour: 0, values: samples.map((sample) => sample?.queued_bytes ?? null),
    figure: formatBytes(latest.queued_bytes), metric: 'queued_bytes' };
  drawPanel('queues', [queued], `${queued.figure} waiting to be written`);
  $('#panels').dataset.samples = String(samples.filter(Boolean).length);
}

async function pollStats(mine) {
  if (mine !== generation) return;
  try {
    const stats = await getJson('/api/stats');
    if (mine !== generation) return;
    const previous = samples.findLast(Boolean);
    if (previous && stats.uptime_ms < previous.uptime_ms) samples.push(null); // restarted: counters began again
    samples.push(stats);
    setStatus('online', `Live · up ${formatDuration(stats.uptime_ms)}`);
  } catch (error) {
    if (error instanceof Unauthorized) return askForKey(`The server refused the key: ${error.message}`);
    samples.push(null);
    setStatus('waiting', `No answer from the server (${error.message}): trying again every second`);
  }
  samples = samples.slice(-CAPACITY);
  draw();
  setTimeout(pollStats, PERIOD_MS, mine);
}

function cell(text, numeric = false) {
  return el('td', { class: numeric ? 'num' : undefined, text });
}

async function pollTable(mine) {
  if (mine !== generation) return;
  const query = new URLSearchParams();
  for (const [field, name] of [['#filter-user', 'user'], ['#filter-room', 'room']]) {
    const value = $(field).value.trim();
    if (value) query.set(name, value);
  }
  try {
    const { connections } = await getJson(`/api/connections${query.size ? `?${query}` : ''}`);
    if (mine !== generation) return;
    $('#connections tbody').replaceChildren(...connections.slice(0, TABLE_ROWS).map((row) => el('tr', { dataset: { id: row.id } },
      cell(String(row.id), true), cell(row.fd === null ? '–' : String(row.fd), true), cell(row.transport), cell(row.peer),
      cell(row.user), cell(row.rooms.join(', ') || '–'), cell(formatBytes(row.bytes_in), true),
      cell(formatBytes(row.bytes_out), true), cell(formatBytes(row.queued_bytes), true), cell(formatDuration(row.age_ms), true))));
    const shown = Math.min(connections.length, TABLE_ROWS);
    $('#table-note').textContent = connections.length > TABLE_ROWS
      ? `The first ${shown} of ${connections.length} connections by id: filter by user or room to see others.`
      : `${connections.length} connection${connections.length === 1 ? '' : 's'}, updated every 2 s.`;
  } catch (error) {
    if (error instanceof Unauthorized) return askForKey(`The server refused the key: ${error.message}`);
    $('#table-note').textContent = `The table could not be read: ${error.message}`;
  }
  setTimeout(pollTable, TABLE_PERIOD_MS, mine);
}

function setStatus(state, text) {
  $('#status').dataset.state = state;
  $('#status-text').textContent = text;
}

function start() {
  $('#key-form').hidden = true;
  $('#panels').hidden = false;
  $('#forget-key').hidden = !apiKey;
  generation += 1;
  pollStats(generation);
  pollTable(generation);
}

function askForKey(error = '') {
  generation += 1;
  $('#panels').hidden = true;
  $('#key-form').hidden = false;
  $('#key-error').textContent = error;
  setStatus('idle', 'Waiting for an API key');
  $('#api-key').focus();
}

async function main() {
  setupCharts();
  $('#key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    apiKey = $('#api-key').value.trim();
    if (!apiKey) return;
    tabStore.set('apiKey', apiKey);
    start();
  });
  $('#forget-key').addEventListener('click', () => {
    apiKey = null;
    tabStore.remove('apiKey');
    askForKey();
  });
  $('#filter-form').addEventListener('submit', (event) => event.preventDefault());
  let info;
  try {
    info = await serverInfo();
  } catch (error) {
    setStatus('failed', `The server did not answer /api/info: ${error.message}`);
    return;
  }
  $('#server').textContent = `version ${info.version} · ${info.auth} mode`;
  if (info.api_key_required && !apiKey) askForKey();
  else start();
}

main();

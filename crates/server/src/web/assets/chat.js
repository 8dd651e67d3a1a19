// The chat page: signs in (a name in open mode, a token in token mode; the
// server says which in /api/info), joins rooms with their history, keeps the
// member list, sends and receives room messages and DMs, and after a
// reconnect recovers what it missed: each room is rejoined with `since` (the
// last seq it saw) and `epoch`, and the inbox is asked for the DMs after the
// last one. When the server answers `recovered: false` the page says so.

import { Connection } from './connection.js';
import { ChatView } from './chat-view.js';
import { $, serverInfo, tabStore } from './common.js';

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
const HISTORY_PAGE = 50;
// The server closes a connection (1009) for a message over 64 KiB: refuse well before.
const MAX_COMMAND_BYTES = 60_000;

const view = new ChatView();
let info = { auth: 'open' };
let chat = null;

/** One signed-in session: its connection, rooms, DMs and positions. */
class Chat {
  constructor(credential) {
    this.credential = credential;
    this.me = null;
    this.rooms = new Map();
    this.inbox = { epoch: null, seq: 0 };
    this.helloSeen = false;
    // The rooms this tab is in, or wants to be in: joined or not (yet), kept across reloads.
    const saved = tabStore.get('rooms');
    this.wanted = new Set(Array.isArray(saved) && saved.length > 0 ? saved : [credential.room || 'lobby']);
    this.connection = new Connection(() => this.url());
    this.connection.addEventListener('state', (event) => this.onState(event.detail));
    this.connection.addEventListener('frame', (event) => this.onFrame(event.detail));
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const query = this.credential.token !== undefined
      ? `token=${encodeURIComponent(this.credential.token)}`
      : `name=${encodeURIComponent(this.credential.name)}`;
    return `${scheme}//${location.host}/ws?${query}`;
  }

  start() {
    this.connection.start();
  }

  stop() {
    this.connection.stop();
  }

  save() {
    tabStore.set('rooms', [...this.wanted]);
  }

  onState(detail) {
    view.setStatus(detail.state, detail);
    if (detail.state === 'waiting' && tokenExpired(this.credential.token)) {
      this.connection.stop();
      signOut('Your token has expired: paste a fresh one.');
    } else if (detail.state === 'failed') {
      signOut(info.auth === 'token'
        ? 'Could not connect: the token may be invalid or expired, or the server is unreachable.'
        : 'Could not connect: the server is unreachable or refused the name.');
    } else if (detail.state === 'stopped' && detail.why === 'token expired') {
      signOut('Your token expired: paste a fresh one to continue.');
    }
  }

  onFrame(frame) {
    switch (frame.ev) {
      case 'hello': return this.onHello(frame);
      case 'msg': return this.onMessage(frame);
      case 'dm': return this.onDm(frame);
      case 'join': return this.onPresence(frame, true);
      case 'leave': return this.onPresence(frame, false);
      case 'replayed': return this.onReplayed(frame);
      case 'removed': return this.onRemoved(frame);
      case 'token_expiring': return view.showTokenRefresh(frame.seconds_left);
      case 'error': return view.showError('#send-error', `The server refused a command: ${frame.error}`);
      default: return undefined;
    }
  }

  async onHello(frame) {
    this.me = frame.user;
    view.showApp(this.me);
    const first = !this.helloSeen;
    this.helloSeen = true;
    // Rooms joined before this connection: rejoined where they were. Rooms wanted but not joined
    // yet (a reload, or a connection that dropped before their join was answered): joined afresh.
    const fresh = [...this.wanted].filter((name) => !this.rooms.has(name));
    await Promise.all([...this.rooms.values()].map((room) => this.rejoin(room)));
    for (const name of fresh) await this.join(name);
    if (first) {
      const active = tabStore.get('active');
      if (typeof active === 'string' && active.startsWith('dm:')) select(openDmConversation(active.slice(3)));
      else if (typeof active === 'string' && this.rooms.has(active.slice(5))) select(active);
      else if (this.rooms.size > 0) select(`room:${[...this.rooms.keys()][0]}`);
    }
    // The user has an inbox once anyone sent them a DM: fetch what this page has not shown.
    if (frame.inbox) await this.fetchInbox();
  }

  // ---- rooms

  /** Joins `name` afresh (no `since`) and shows its newest history; false when not joined. */
  async join(name) {
    const key = `room:${name}`;
    this.wanted.add(name);
    this.save();
    let reply;
    try {
      reply = await this.connection.request({ op: 'join', room: name });
    } catch {
      return false; // Offline: still wanted, joined at the next hello.
    }
    if (!reply.ok) {
      this.wanted.delete(name);
      this.save();
      view.showError('#send-error', `Could not join ${name}: ${reply.error}`);
      return false;
    }
    const room = { name, key, epoch: reply.epoch, seq: reply.seq, presenceEvents: reply.presence_events };
    this.rooms.set(name, room);
    view.ensure(key, 'room', name, () => select(key));
    if (reply.seq > 0) await this.history(room, reply.seq + 1);
    await this.presence(room);
    return true;
  }

  /** Rejoins after a reconnect with the room's position: the server replays what was missed. */
  async rejoin(room) {
    const command = { op: 'join', room: room.name, since: room.seq };
    if (room.epoch !== null) command.epoch = room.epoch;
    let reply;
    try {
      reply = await this.connection.request(command);
    } catch {
      return;
    }
    if (!reply.ok) {
      view.addNotice(room.key, `Could not rejoin: ${reply.error}`);
      return;
    }
    room.presenceEvents = reply.presence_events;
    if (room.epoch !== null && reply.epoch !== room.epoch) {
      view.addNotice(room.key, 'The history of this room was reset on the server: the messages below are its new history, '
        + 'and what was sent while you were away may be missing.', { divider: true });
      Object.assign(room, { epoch: reply.epoch, seq: reply.seq });
      if (reply.seq > 0) await this.history(room, reply.seq + 1);
    } else {
      room.epoch = reply.epoch;
      if (reply.recovered === false) {
        view.addNotice(room.key, 'Some messages sent while you were away could not be recovered: '
          + 'the server no longer stores them.');
      }
    }
    await this.presence(room);
  }

  async history(room, before) {
    let reply;
    try {
      reply = await this.connection.request({ op: 'history', room: room.name, before, limit: HISTORY_PAGE });
    } catch {
      return;
    }
    if (!reply.ok) {
      view.addNotice(room.key, `Could not load the history: ${reply.error}`);
      return;
    }
    for (const message of reply.messages) this.show(room, message);
    view.setMore(room.key, reply.more);
  }

  async older() {
    const active = view.active;
    const room = active?.kind === 'room' ? this.rooms.get(active.name) : null;
    const oldest = room ? view.oldestSeq(room.key) : null;
    if (oldest !== null) await this.history(room, oldest);
  }

  async presence(room) {
    let reply;
    try {
      reply = await this.connection.request({ op: 'presence', room: room.name });
    } catch {
      return;
    }
    if (!reply.ok) return;
    room.members = new Map(reply.users.map((user) => [user, reply.info?.[user]]));
    if (view.active?.key === room.key) this.showMembers(room);
  }

  showMembers(room) {
    const users = [...(room?.members ?? new Map()).entries()].map(([user, about]) => ({ user, info: about }));
    users.sort((a, b) => a.user.localeCompare(b.user));
    const note = room && !room.presenceEvents ? 'A large room: this list is as of when you joined.' : '';
    view.setMembers(users, this.me, note, (user) => openDm(user));
  }

  onPresence(frame, arrived) {
    const room = this.rooms.get(frame.room);
    if (!room?.members) return;
    if (arrived) room.members.set(frame.user, frame.info);
    else room.members.delete(frame.user);
    if (view.active?.key === room.key) this.showMembers(room);
  }

  onMessage(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    if (frame.seq !== undefined) room.seq = Math.max(room.seq, frame.seq);
    this.show(room, frame);
  }

  show(room, message) {
    view.addMessage(room.key, { seq: message.seq, from: message.from, ts: message.ts, body: message.body,
      mine: message.from === this.me, volatile: message.volatile === true });
  }

  onReplayed(frame) {
    if (frame.inbox) {
      if (frame.recovered === false) noticeEverywhere('Some direct messages could not be recovered: the server no longer stores them.');
      return;
    }
    const room = this.rooms.get(frame.room);
    if (!room) return;
    if (frame.count > 0) {
      view.addNotice(room.key, `${frame.count} message${frame.count === 1 ? '' : 's'} arrived while you were disconnected.`);
    }
    if (frame.recovered === false) view.addNotice(room.key, 'Some of the missed messages are no longer stored.');
  }

  onRemoved(frame) {
    const room = this.rooms.get(frame.room);
    if (!room) return;
    view.addNotice(room.key, `You were removed from this room: ${frame.reason}`);
    this.rooms.delete(frame.room);
    this.wanted.delete(frame.room);
    this.save();
  }

  async leave(name) {
    try {
      await this.connection.request({ op: 'leave', room: name });
    } catch {
      // Offline: forgetting the room here is enough; the next connection does not rejoin it.
    }
    this.rooms.delete(name);
    this.wanted.delete(name);
    this.save();
    view.remove(`room:${name}`);
    const next = [...this.rooms.keys()][0];
    if (next !== undefined) select(`room:${next}`);
  }

  // ---- DMs

  async fetchInbox() {
    const command = { op: 'inbox', since: this.inbox.seq };
    if (this.inbox.epoch !== null) command.epoch = this.inbox.epoch;
    let reply;
    try {
      reply = await this.connection.request(command);
    } catch {
      return;
    }
    if (!reply.ok) return;
    if (this.inbox.epoch !== null && reply.epoch !== this.inbox.epoch) this.inbox.seq = 0;
    this.inbox.epoch = reply.epoch;
  }

  onDm(frame) {
    if (frame.to === this.me) this.inbox.seq = Math.max(this.inbox.seq, frame.seq);
    const peer = frame.from === this.me ? frame.to : frame.from;
    const key = openDmConversation(peer);
    view.addMessage(key, { id: `in:${frame.seq}`, from: frame.from, ts: frame.ts, body: frame.body,
      mine: frame.from === this.me });
  }

  // ---- sending

  async send(text) {
    const active = view.active;
    if (!active) return false;
    const body = { text };
    const command = active.kind === 'room'
      ? { op: 'send', room: active.name, body }
      : { op: 'dm', to: active.name, body };
    if (new TextEncoder().encode(JSON.stringify(command)).length > MAX_COMMAND_BYTES) {
      view.showError('#send-error', 'This message is too long to send.');
      return false;
    }
    let reply;
    try {
      reply = await this.connection.request(command);
    } catch {
      view.showError('#send-error', 'The connection dropped before the server confirmed your message: '
        + 'if it was stored, it appears once the page has reconnected.');
      return false;
    }
    if (!reply.ok) {
      view.showError('#send-error', `Not sent: ${reply.error}`);
      return false;
    }
    if (active.kind === 'dm' && active.name !== this.me) {
      view.addMessage(active.key, { id: `out:${active.name}:${reply.seq}`, from: this.me, ts: reply.ts, body, mine: true });
    }
    return true;
  }

  async refreshToken(token) {
    const reply = await this.connection.request({ op: 'auth', token }).catch(() => null);
    if (!reply?.ok) {
      view.showError('#send-error', `The new token was refused${reply ? `: ${reply.error}` : ''}.`);
      return;
    }
    this.credential.token = token;
    tabStore.set('credential', this.credential);
    view.showTokenRefresh(null);
  }
}

/** Whether a JWT's `exp` (read, not verified: the server verifies) has passed. */
function tokenExpired(token) {
  if (token === undefined) return false;
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.exp === 'number' && payload.exp * 1000 < Date.now();
  } catch {
    return false;
  }
}

function noticeEverywhere(text) {
  for (const key of view.conversations.keys()) view.addNotice(key, text);
}

const DRAWERS = [
  { name: 'show-sidebar', toggle: '#toggle-sidebar', panel: '#sidebar' },
  { name: 'show-members', toggle: '#toggle-members', panel: '#members-panel' },
];

/** Opens (focus moves into it) or closes (focus back on its toggle) a drawer of the narrow layout. */
function setDrawer(name, open) {
  const drawer = DRAWERS.find((candidate) => candidate.name === name);
  const wasOpen = document.body.classList.contains(name);
  document.body.classList.toggle(name, open);
  $(drawer.toggle).setAttribute('aria-expanded', String(open));
  if (open) $(`${drawer.panel} button`)?.focus();
  else if (wasOpen && $(drawer.panel).contains(document.activeElement)) $(drawer.toggle).focus();
}

function select(key) {
  view.activate(key);
  tabStore.set('active', key);
  if (chat && key?.startsWith('room:')) chat.showMembers(chat.rooms.get(key.slice(5)));
  else if (chat) chat.showMembers(null);
  if (document.body.classList.contains('show-sidebar')) setDrawer('show-sidebar', false);
}

function openDmConversation(user) {
  const key = `dm:${user}`;
  view.ensure(key, 'dm', user, () => select(key));
  return key;
}

function openDm(user) {
  if (document.body.classList.contains('show-members')) setDrawer('show-members', false);
  select(openDmConversation(user));
  $('#text').focus();
}

function signIn(credential) {
  chat?.stop();
  tabStore.set('credential', credential);
  chat = new Chat(credential);
  chat.start();
}

function signOut(error = '') {
  chat?.stop();
  chat = null;
  for (const key of [...view.conversations.keys()]) view.remove(key);
  tabStore.remove('credential');
  tabStore.remove('rooms');
  tabStore.remove('active');
  view.setStatus('idle');
  view.showLogin(info.auth, { error });
}

function wire() {
  $('#login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const room = $('#first-room').value.trim() || 'lobby';
    if (info.auth === 'token') {
      const token = $('#token').value.trim();
      if (!token) return view.showError('#login-error', 'Paste your token.');
      if (tokenExpired(token)) return view.showError('#login-error', 'This token has expired.');
      return signIn({ token, room });
    }
    const name = $('#name').value.trim();
    if (!NAME.test(name)) return view.showError('#login-error', 'A name is 1 to 64 letters, digits, or _ . @ -');
    return signIn({ name, room });
  });
  $('#sign-out').addEventListener('click', () => signOut());
  $('#reconnect').addEventListener('click', () => chat?.connection.reconnectNow());
  $('#send-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const box = $('#text');
    const text = box.value.trim();
    if (!text || !chat) return;
    view.showError('#send-error', '');
    box.value = '';
    if (!(await chat.send(text)) && !box.value) box.value = text;
  });
  $('#text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $('#send-form').requestSubmit();
    }
  });
  $('#join-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = $('#join-room').value.trim();
    if (!name || !chat) return;
    if (chat.rooms.has(name) || await chat.join(name)) {
      $('#join-room').value = '';
      select(`room:${name}`);
    }
  });
  $('#dm-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const user = $('#dm-user').value.trim();
    if (!NAME.test(user)) return view.showError('#send-error', 'A user name is 1 to 64 letters, digits, or _ . @ -');
    $('#dm-user').value = '';
    return openDm(user);
  });
  $('#leave').addEventListener('click', () => {
    if (chat && view.active?.kind === 'room') chat.leave(view.active.name);
  });
  $('#older').addEventListener('click', () => chat?.older());
  $('#refresh-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('#fresh-token').value.trim();
    if (token && chat) chat.refreshToken(token);
  });
  // Narrow windows: the conversation list and the member list are drawers.
  for (const button of document.querySelectorAll('button[data-drawer]')) {
    button.addEventListener('click', () => setDrawer(button.dataset.drawer, !document.body.classList.contains(button.dataset.drawer)));
  }
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape') return;
    for (const drawer of DRAWERS) if (document.body.classList.contains(drawer.name)) setDrawer(drawer.name, false);
  });
  // Back from sleep or a lost network: try now rather than at the end of the backoff.
  window.addEventListener('online', () => chat?.connection.reconnectNow());
}

async function main() {
  wire();
  try {
    info = await serverInfo();
  } catch (error) {
    view.showLogin('open', { error: `The server did not say how to sign in (${error.message}).`, note: '' });
    return;
  }
  const saved = tabStore.get('credential');
  const fits = saved && (info.auth === 'token' ? typeof saved.token === 'string' : typeof saved.name === 'string');
  if (fits) signIn(saved);
  else view.showLogin(info.auth);
}

main();

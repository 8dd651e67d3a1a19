// The chat page's DOM: the status line, the conversation list, one message
// list per conversation (kept while hidden, so switching is instant and
// nothing is rendered twice), the member list and the notices. It knows
// nothing of the socket; chat.js tells it what happened. Every text goes
// in through textContent.

import { $, colourIndex, el } from './common.js';

const STATUS_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  online: 'Connected',
  reconnecting: 'Reconnecting…',
  failed: 'Could not connect',
};

/** A message body as text: `{"text": ...}` or a string as it is, anything else as JSON. */
function bodyText(body) {
  if (typeof body === 'string') return { text: body, json: false };
  if (body && typeof body === 'object' && typeof body.text === 'string') return { text: body.text, json: false };
  return { text: JSON.stringify(body), json: true };
}

export class ChatView {
  constructor() {
    this.conversations = new Map();
    this.active = null;
    this.countdown = null;
  }

  // ---- signing in

  /** Shows the sign-in form for `mode` ('open' or 'token'). */
  showLogin(mode, { error = '', note } = {}) {
    $('#app').hidden = true;
    $('#login').hidden = false;
    $('#sign-out').hidden = true;
    $('#me').textContent = '';
    $('#name-field').hidden = mode !== 'open';
    $('#token-field').hidden = mode !== 'token';
    $('#mode-note').textContent = note ?? (mode === 'token'
      ? 'This server names you from a token (token mode).'
      : 'This server trusts the name you choose (open mode).');
    $('#login-error').textContent = error;
    $(mode === 'token' ? '#token' : '#name')?.focus();
  }

  showApp(me) {
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#sign-out').hidden = false;
    $('#me').textContent = `Signed in as ${me}`;
  }

  // ---- the connection

  setStatus(state, detail = {}) {
    clearInterval(this.countdown);
    const status = $('#status');
    status.dataset.state = state;
    const show = (text) => { $('#status-text').textContent = text; };
    $('#reconnect').hidden = !(state === 'waiting' || (state === 'stopped' && detail.why === 'kicked'));
    if (state === 'waiting') {
      const tick = () => {
        const seconds = Math.max(0, Math.ceil((detail.at - Date.now()) / 1000));
        show(`Disconnected: reconnecting in ${seconds} s (attempt ${detail.attempt})`);
      };
      tick();
      this.countdown = setInterval(tick, 1000);
    } else if (state === 'stopped') {
      show(detail.why === 'kicked' ? `Disconnected by an operator${detail.reason ? `: ${detail.reason}` : ''}` : 'Signed out');
    } else {
      show(STATUS_TEXT[state] ?? state);
    }
    this.setComposer();
  }

  setComposer() {
    const online = $('#status').dataset.state === 'online';
    const usable = online && this.active !== null;
    $('#text').disabled = !usable;
    $('#send-form button').disabled = !usable;
  }

  // ---- conversations

  /** The conversation `key` ('room:NAME' or 'dm:USER'), made on first use. */
  ensure(key, kind, name, onSelect) {
    let conversation = this.conversations.get(key);
    if (conversation) return conversation;
    const list = el('ol', { class: 'messages', role: 'log', 'aria-label': `Messages in ${label(kind, name)}`,
      dataset: { conversation: key }, hidden: true });
    const badge = el('span', { class: 'badge', hidden: true });
    const button = el('button', { type: 'button', class: 'convo', dataset: { conversation: key }, onclick: onSelect },
      el('span', { class: kind === 'dm' ? `name c${colourIndex(name)}` : 'name', text: label(kind, name) }), badge);
    const item = el('li', {}, button);
    $(kind === 'room' ? '#rooms' : '#dms').append(item);
    $('#lists').append(list);
    conversation = { key, kind, name, list, item, button, badge, unread: 0, maxSeq: 0, more: false };
    this.conversations.set(key, conversation);
    return conversation;
  }

  activate(key) {
    for (const conversation of this.conversations.values()) {
      const active = conversation.key === key;
      conversation.list.hidden = !active;
      if (active) conversation.button.setAttribute('aria-current', 'true');
      else conversation.button.removeAttribute('aria-current');
    }
    const conversation = this.conversations.get(key) ?? null;
    this.active = conversation;
    $('#conversation-title').textContent = conversation ? label(conversation.kind, conversation.name) : 'No conversation';
    $('#leave').hidden = conversation?.kind !== 'room';
    $('#older').hidden = !conversation?.more;
    $('#members-panel').classList.toggle('for-dm', conversation?.kind === 'dm');
    if (conversation) this.setUnread(key, 0);
    this.setComposer();
    this.scrollToEnd(conversation);
  }

  remove(key) {
    const conversation = this.conversations.get(key);
    if (!conversation) return;
    conversation.item.remove();
    conversation.list.remove();
    this.conversations.delete(key);
    if (this.active?.key === key) this.activate(null);
  }

  setUnread(key, count) {
    const conversation = this.conversations.get(key);
    if (!conversation) return;
    conversation.unread = count;
    conversation.badge.hidden = count === 0;
    conversation.badge.textContent = String(count);
    conversation.badge.setAttribute('aria-label', `${count} unread`);
  }

  /** Whether `older` pages exist for `key` (history said `more`). */
  setMore(key, more) {
    const conversation = this.conversations.get(key);
    if (!conversation) return;
    conversation.more = more;
    if (this.active === conversation) $('#older').hidden = !more;
  }

  /** The oldest stored message shown in `key`, or null. */
  oldestSeq(key) {
    const first = this.conversations.get(key)?.list.querySelector('li[data-seq]');
    return first ? Number(first.dataset.seq) : null;
  }

  /**
   * Adds a message in `seq` order (stored messages), or at the end
   * (volatile ones, DMs); false when that `seq` is already shown.
   * `message`: { seq?, from, ts, body, mine, volatile, id? }.
   */
  addMessage(key, message) {
    const conversation = this.conversations.get(key);
    if (!conversation) return false;
    if (message.id !== undefined && conversation.list.querySelector(`li[data-id="${CSS.escape(message.id)}"]`)) return false;
    const item = messageItem(message);
    const { seq } = message;
    const atEnd = this.isScrolledToEnd(conversation);
    if (seq === undefined || seq > conversation.maxSeq) {
      conversation.list.append(item);
      if (seq !== undefined) conversation.maxSeq = seq;
    } else if (!insertBySeq(conversation.list, item, seq)) {
      return false;
    }
    if (this.active !== conversation) this.setUnread(key, conversation.unread + 1);
    else if (atEnd) this.scrollToEnd(conversation);
    return true;
  }

  /** A line from the page (not a message); `divider`: later messages are numbered anew. */
  addNotice(key, text, { divider = false } = {}) {
    const conversation = this.conversations.get(key);
    if (!conversation) return;
    const item = el('li', { class: divider ? 'notice divider' : 'notice', role: 'note', text });
    if (divider) {
      item.dataset.divider = '';
      conversation.maxSeq = 0;
    }
    conversation.list.append(item);
    this.scrollToEnd(conversation);
  }

  isScrolledToEnd(conversation) {
    const lists = $('#lists');
    return this.active !== conversation || lists.scrollHeight - lists.scrollTop - lists.clientHeight < 40;
  }

  scrollToEnd(conversation) {
    if (!conversation || this.active !== conversation) return;
    const lists = $('#lists');
    lists.scrollTop = lists.scrollHeight;
  }

  // ---- members

  /** The active room's members: [{ user, info }], `me` marked. */
  setMembers(users, me, note, onPick) {
    const list = $('#members');
    list.replaceChildren(...users.map(({ user, info }) => {
      const mine = user === me;
      const details = describeInfo(info);
      const button = el('button', { type: 'button', class: 'member', dataset: { user }, disabled: mine,
        title: mine ? undefined : `Send ${user} a direct message`, onclick: () => onPick(user) },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      el('span', { class: `name c${colourIndex(user)}`, text: user }),
      mine ? el('span', { class: 'muted', text: ' (you)' }) : null,
      details ? el('span', { class: 'muted info', text: ` ${details}` }) : null);
      return el('li', {}, button);
    }));
    $('#members-note').textContent = note;
  }

  showTokenRefresh(seconds) {
    $('#token-refresh').hidden = seconds === null;
    if (seconds !== null) $('#refresh-label').textContent = `Your token expires in ${seconds} s: paste a fresh one`;
  }

  showError(where, text) {
    $(where).textContent = text;
  }
}

function label(kind, name) {
  return kind === 'room' ? `# ${name}` : `@ ${name}`;
}

/** A token's public `info` in a few words: a string, or its `name`/`display_name`. */
function describeInfo(info) {
  if (typeof info === 'string') return info.slice(0, 60);
  if (info && typeof info === 'object') {
    const name = info.display_name ?? info.name;
    if (typeof name === 'string') return name.slice(0, 60);
  }
  return '';
}

function messageItem({ seq, from, ts, body, mine, volatile, id }) {
  const when = new Date(ts);
  const { text, json } = bodyText(body);
  const classes = ['msg', mine ? 'mine' : '', volatile ? 'volatile' : ''].filter(Boolean).join(' ');
  const dataset = { from };
  if (seq !== undefined) dataset.seq = String(seq);
  if (id !== undefined) dataset.id = id;
  return el('li', { class: classes, dataset },
    el('div', { class: 'meta' },
      el('span', { class: `from c${colourIndex(from)}`, text: from }),
      el('time', { datetime: when.toISOString(), text: when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) })),
    el(json ? 'pre' : 'p', { class: json ? 'text json' : 'text', text }));
}

/**
 * Puts a stored message before the later ones (a history page arriving
 * after live messages): walks back from the end over messages with a
 * greater seq and over notices, up to a divider (an older numbering).
 * False when that seq is already there.
 */
function insertBySeq(list, item, seq) {
  let before = null;
  for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
    if (node.dataset.divider !== undefined) break;
    if (node.dataset.seq !== undefined) {
      const other = Number(node.dataset.seq);
      if (other === seq) return false;
      if (other < seq) break;
    }
    before = node;
  }
  list.insertBefore(item, before);
  return true;
}

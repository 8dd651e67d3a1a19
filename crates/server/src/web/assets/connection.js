// One WebSocket to the server that comes back by itself.
//
// - Commands that want an answer go through request(): each gets an `id`
//   and its promise settles with the reply carrying `re` (replies can come
//   in any order). A command still waiting when the socket drops is
//   rejected: whether the server ran it is unknown, so it is never resent
//   by itself (a `send` has no idempotency key on the WebSocket).
// - Every other frame is dispatched as a `frame` event; the state as a
//   `state` event: connecting, online (after `hello`), waiting (a reconnect
//   is scheduled), reconnecting, stopped (4005 token expired, 4010 kicked,
//   or stop()), failed (the very first attempt never got a `hello`: a bad
//   token or name, or no server; the caller asks the person).
// - Reconnects back off exponentially with full jitter: attempt n waits a
//   random time between 0 and min(maxDelayMs, baseDelayMs * 2^(n-1)), so a
//   restarted server's clients spread their returns instead of arriving at
//   once. The count starts again at each `hello`.
// - A heartbeat finds a connection that died without a close (a laptop
//   waking up, a lost network): a `ping` every heartbeatMs that is not
//   answered within answerMs drops the socket and reconnects.

const TOKEN_EXPIRED = 4005;
const KICKED = 4010;

export class Connection extends EventTarget {
  /**
   * @param {() => string} urlFor the URL of each attempt (read again each
   *   time: a refreshed token is used by the next reconnect)
   */
  constructor(urlFor, { baseDelayMs = 500, maxDelayMs = 15_000, heartbeatMs = 30_000, answerMs = 10_000 } = {}) {
    super();
    Object.assign(this, { urlFor, baseDelayMs, maxDelayMs, heartbeatMs, answerMs });
    this.socket = null;
    this.state = 'idle';
    this.attempt = 0;
    this.everOnline = false;
    this.stopped = true;
    this.timer = null;
    this.heartbeat = null;
    this.nextId = 1;
    this.pending = new Map();
  }

  start() {
    this.stopped = false;
    this.open();
  }

  /** Closes for good (1000); no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.drop(1000, 'signed out');
    this.setState('stopped', { why: 'signed out' });
  }

  /** Skips the wait of a scheduled reconnect (or starts again after a stop). */
  reconnectNow() {
    if (this.state === 'waiting' || this.state === 'stopped') {
      clearTimeout(this.timer);
      this.stopped = false;
      this.open();
    }
  }

  /** Sends `command` with a fresh `id`; resolves with its reply. */
  request(command) {
    if (this.state !== 'online') return Promise.reject(new Error('not connected'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...command, id }));
    });
  }

  open() {
    this.setState(this.everOnline ? 'reconnecting' : 'connecting');
    let socket;
    try {
      socket = new WebSocket(this.urlFor());
    } catch (error) {
      this.closed({ code: 1006, reason: String(error.message || error) });
      return;
    }
    this.socket = socket;
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (socket === this.socket) this.closed({ code: event.code, reason: event.reason });
    };
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.re !== undefined) {
      const waiting = this.pending.get(frame.re);
      this.pending.delete(frame.re);
      waiting?.resolve(frame);
      return;
    }
    if (frame.ev === 'hello') {
      this.attempt = 0;
      this.everOnline = true;
      this.setState('online');
      this.beat();
    }
    this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
  }

  /** Pings now and then; an unanswered ping drops the connection. */
  beat() {
    clearTimeout(this.heartbeat);
    this.heartbeat = setTimeout(() => {
      const late = setTimeout(() => this.lost('no answer to a ping'), this.answerMs);
      this.request({ op: 'ping' }).then(() => {
        clearTimeout(late);
        this.beat();
      }, () => clearTimeout(late));
    }, this.heartbeatMs);
  }

  /** Treats the socket as gone without waiting for its close handshake. */
  lost(reason) {
    if (this.state !== 'online') return;
    this.drop(4000, reason);
    this.closed({ code: 1006, reason });
  }

  /** Detaches and closes the current socket, failing what waits on it. */
  drop(code, reason) {
    clearTimeout(this.heartbeat);
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onmessage = null;
      socket.onclose = null;
      if (socket.readyState <= WebSocket.OPEN) socket.close(code === 1000 ? 1000 : 4000, reason.slice(0, 100));
    }
    for (const waiting of this.pending.values()) waiting.reject(new Error('connection lost'));
    this.pending.clear();
  }

  closed({ code, reason }) {
    const wasOnline = this.state === 'online';
    this.drop(1000, '');
    this.dispatchEvent(new CustomEvent('closed', { detail: { code, reason, wasOnline } }));
    if (this.stopped) return;
    if (code === TOKEN_EXPIRED || code === KICKED) {
      this.stopped = true;
      this.setState('stopped', { code, reason, why: code === KICKED ? 'kicked' : 'token expired' });
    } else if (!this.everOnline) {
      this.stopped = true;
      this.setState('failed', { code, reason });
    } else {
      this.schedule(code, reason);
    }
  }

  schedule(code, reason) {
    this.attempt += 1;
    const delayMs = Math.round(Math.random() * backoffCeiling(this.attempt, this.baseDelayMs, this.maxDelayMs));
    this.setState('waiting', { code, reason, attempt: this.attempt, delayMs, at: Date.now() + delayMs });
    this.timer = setTimeout(() => this.open(), delayMs);
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, ...detail } }));
  }
}

/** The longest wait before attempt `attempt` (1, 2, ...): the jitter's range. */
export function backoffCeiling(attempt, baseDelayMs, maxDelayMs) {
  return Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt - 1, 30));
}

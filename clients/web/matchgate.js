// matchgate.js: a browser client for matchgate that gets reconnection right. An ES module with no
// dependencies and no build step: copy it next to your page and
//   import { connect } from './matchgate.js';
// It follows docs/protocol.md's reconnect routine, like the Rust crate matchgate-client:
// reconnect with exponential backoff and full jitter, `status` before anything else after every
// (re)connect, every push reported once, a clear error after the bound.

/** The subprotocol offered together with the token; the server selects it. */
export const SUBPROTOCOL = 'matchgate.v1';

/** Every push `type` this client knows; any other is reported as `{kind: 'unknown'}`. */
export const PUSH_TYPES = Object.freeze([
  'MatchmakingQueued', 'MatchmakingSearching', 'PotentialMatchCreated', 'AcceptMatch',
  'AcceptMatchCompleted', 'MatchmakingSucceeded', 'MatchmakingTimedOut', 'MatchmakingCancelled',
  'MatchmakingFailed', 'Error', 'Pong',
]);

const TERMINAL = new Set(['MatchmakingSucceeded', 'MatchmakingTimedOut', 'MatchmakingCancelled', 'MatchmakingFailed']);
/** Error codes that answer a matchmaking request with "no": nothing is coming to wait for. */
const ENDS_THE_WAIT = new Set(['InvalidRequest', 'MatchmakingRejected', 'Forbidden']);

export const DEFAULTS = Object.freeze({
  backoff: Object.freeze({ baseMs: 500, capMs: 30_000, maxAttempts: 10, stableAfterMs: 60_000 }),
  connectTimeoutMs: 10_000,
  statusTimeoutMs: 10_000,
  quietStatusAfterMs: 30_000,
  quietCheckEveryMs: 5_000,
});

/** Why a client call failed or the client stopped. `code` is for code; `message` for people. */
export class MatchgateError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'MatchgateError';
    this.code = code;
    Object.assign(this, details);
  }
}

/** The longest wait before reconnect attempt `attempt` (from 0): min(cap, base × 2^attempt). */
export function backoffCeilingMs(backoff, attempt) {
  return Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.min(attempt, 52));
}

/** Reads one text frame: a push, an unknown push, API Gateway's error frame, or malformed. */
export function classify(frame) {
  let value;
  try {
    value = JSON.parse(frame);
  } catch (e) {
    return { kind: 'malformed', frame, error: `not JSON: ${e.message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { kind: 'malformed', frame, error: 'not a JSON object' };
  }
  if (typeof value.type !== 'string') {
    if (typeof value.message === 'string') return { kind: 'gatewayError', message: value.message };
    return { kind: 'malformed', frame, error: 'no string field "type"' };
  }
  if (!PUSH_TYPES.includes(value.type)) return { kind: 'unknown', typeName: value.type, frame };
  const wrong = wrongFields(value);
  if (wrong) return { kind: 'malformed', frame, error: `a ${value.type} with unexpected fields: ${wrong}` };
  return { kind: 'push', push: value };
}

function wrongFields(p) {
  const str = (k) => typeof p[k] === 'string';
  if (p.type === 'Pong') return str('connectionId') && str('playerId') ? null : 'connectionId and playerId are required';
  if (p.type === 'Error') return str('code') && str('message') ? null : 'code and message are required';
  if (!str('ticketId')) return 'ticketId is required';
  if ('port' in p && !Number.isInteger(p.port)) return 'port is not an integer';
  return null;
}

/** The resume routine's memory: the current ticket and the keys of its handled pushes. */
class Session {
  constructor() {
    this.current = null;
    this.ended = false;
    this.handled = new Set();
  }

  liveTicket() {
    return this.ended ? null : this.current;
  }

  switchTo(ticketId) {
    if (this.current !== ticketId) {
      this.current = ticketId;
      this.ended = false;
      this.handled = new Set();
    }
  }

  /** 'deliver' | 'repeat' | 'stale' | {adopt: ticketId} */
  onPush(p) {
    if (p.type === 'Error' && p.code === 'Conflict' && p.ticketId) {
      this.switchTo(p.ticketId);
      return { adopt: p.ticketId };
    }
    if (p.type === 'Error' || p.type === 'Pong') return 'deliver';
    if (p.type === 'MatchmakingQueued') this.switchTo(p.ticketId);
    if (this.current === null) this.switchTo(p.ticketId);
    if (p.ticketId !== this.current) return 'stale';
    const key = `${p.type}|${p.matchId ?? ''}|${p.type === 'AcceptMatch' ? p.acceptedCount : ''}`;
    if (this.ended || this.handled.has(key)) return 'repeat';
    this.handled.add(key);
    if (TERMINAL.has(p.type)) this.ended = true;
    return 'deliver';
  }
}

/**
 * Connects to `url` as the player `auth` names, and resolves once the first connection is open.
 * auth: `{token}` (sent as subprotocols `matchgate.v1` + token), `{queryToken}` (`?token=`) or
 * `{playerId}` (`matchgate up --auth none` only).
 */
export async function connect(url, auth, options = {}) {
  const client = new MatchgateClient(url, auth, options);
  await client._open();
  return client;
}

export class MatchgateClient {
  constructor(url, auth, options = {}) {
    this._url = url;
    this._auth = auth ?? {};
    this._options = {
      ...DEFAULTS,
      ...options,
      backoff: { ...DEFAULTS.backoff, ...(options.backoff ?? {}) },
    };
    this._session = new Session();
    this._events = [];
    this._waiters = [];
    this._outbox = [];
    this._socket = null;
    this._pending = null; // {timer, own}
    this._lastHeardAt = 0;
    this._attempt = 0;
    this._quietTimer = null;
    this._closed = false;
    /** Why the client stopped (a MatchgateError), once it has. */
    this.stopped = null;
  }

  /** The current ticket while it is live. */
  get liveTicket() {
    return this._session.liveTicket();
  }

  matchmake(latencyInMs = {}) {
    const action = { action: 'matchmake' };
    if (Object.keys(latencyInMs).length > 0) action.latencyInMs = latencyInMs;
    this._command(action);
  }

  cancel() {
    this._command({ action: 'cancel', ticketId: this._requireTicket('cancel') });
  }

  accept(accept) {
    this._command({ action: 'accept', ticketId: this._requireTicket('accept'), accept: Boolean(accept) });
  }

  status() {
    const current = this._session.current;
    this._command(current ? { action: 'status', ticketId: current } : { action: 'status' });
  }

  ping() {
    this._command({ action: 'ping' });
  }

  /** The next event; `null` once the client has stopped (`stopped` says why). */
  nextEvent() {
    if (this._events.length > 0) return Promise.resolve(this._events.shift());
    if (this.stopped) return Promise.resolve(null);
    return new Promise((resolve) => this._waiters.push(resolve));
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      const event = await this.nextEvent();
      if (event === null) return;
      yield event;
    }
  }

  /**
   * Reads events until the current ticket ends and resolves with its terminal push: the player's
   * own MatchmakingSucceeded, or MatchmakingTimedOut, MatchmakingCancelled, MatchmakingFailed.
   */
  async waitForMatch() {
    for (;;) {
      const event = await this.nextEvent();
      if (event === null) throw this.stopped;
      if (event.kind !== 'push') continue;
      if (TERMINAL.has(event.push.type)) return event.push;
      if (event.push.type === 'Error' && ENDS_THE_WAIT.has(event.push.code)) {
        throw new MatchgateError('Server', `the server answered ${event.push.code}: ${event.push.message}`, {
          serverCode: event.push.code,
        });
      }
    }
  }

  /** Closes the connection; no reconnect follows. */
  close() {
    this._stop(new MatchgateError('Closed', 'the client is closed'));
  }

  // --- the connection -------------------------------------------------------------------------

  _socketFor() {
    const { token, queryToken, playerId } = this._auth;
    const sep = this._url.includes('?') ? '&' : '?';
    if (token) return new WebSocket(this._url, [SUBPROTOCOL, token]);
    if (queryToken) return new WebSocket(`${this._url}${sep}token=${encodeURIComponent(queryToken)}`);
    return new WebSocket(`${this._url}${sep}playerId=${encodeURIComponent(playerId ?? '')}`);
  }

  /** Opens one connection; resolves when it is open, rejects when it fails. */
  _open() {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = this._socketFor();
      } catch (e) {
        reject(new MatchgateError('InvalidUrl', `invalid WebSocket URL ${this._url}: ${e.message}`));
        return;
      }
      let opened = false;
      const timer = setTimeout(() => {
        socket.close();
        reject(new MatchgateError('Connect', `the handshake took over ${this._options.connectTimeoutMs} ms`));
      }, this._options.connectTimeoutMs);
      socket.onopen = () => {
        opened = true;
        clearTimeout(timer);
        this._serve(socket);
        resolve();
      };
      socket.onclose = (e) => {
        clearTimeout(timer);
        if (!opened) {
          // Browsers do not expose a refused handshake's HTTP status (401/403): it looks like
          // any other failure, and counts as a failed attempt.
          reject(new MatchgateError('Connect', `could not connect (close code ${e.code})`));
        } else {
          this._lost(`the connection closed (code ${e.code})`);
        }
      };
      socket.onerror = () => {};
    });
  }

  _serve(socket) {
    this._socket = socket;
    this._openedAt = Date.now();
    this._lastHeardAt = Date.now();
    socket.onmessage = (e) => this._onFrame(e.data);
    // Ask before acting: the latest ticket's state, then whatever the game asked for meanwhile.
    this._sendNow({ action: 'status' });
    this._expectStatus(true);
    clearInterval(this._quietTimer);
    this._quietTimer = setInterval(() => this._quietCheck(), this._options.quietCheckEveryMs);
  }

  _lost(reason) {
    this._socket = null;
    clearInterval(this._quietTimer);
    this._clearPending();
    if (this._closed) return;
    this._emit({ kind: 'disconnected', reason });
    if (Date.now() - this._openedAt >= this._options.backoff.stableAfterMs) this._attempt = 0;
    this._reconnect(reason);
  }

  async _reconnect(last) {
    const backoff = this._options.backoff;
    while (!this._closed) {
      if (this._attempt >= backoff.maxAttempts) {
        this._stop(new MatchgateError('GaveUp', `gave up after ${this._attempt} reconnect attempts; the last failed with: ${last}`, {
          attempts: this._attempt,
        }));
        return;
      }
      const delayMs = Math.random() * backoffCeilingMs(backoff, this._attempt);
      this._attempt += 1;
      this._emit({ kind: 'reconnecting', attempt: this._attempt, delayMs });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (this._closed) return;
      try {
        await this._open();
        this._emit({ kind: 'reconnected' });
        return;
      } catch (e) {
        last = e.message;
      }
    }
  }

  _onFrame(data) {
    if (typeof data !== 'string') {
      this._emit({ kind: 'malformed', frame: '', error: 'a binary frame' });
      return;
    }
    const event = classify(data);
    if (event.kind !== 'push') {
      this._emit(event);
      return;
    }
    this._lastHeardAt = Date.now();
    const answered = this._pending;
    this._clearPending();
    const verdict = this._session.onPush(event.push);
    if (verdict === 'deliver') {
      const noTicket = answered?.own && event.push.type === 'Error' && event.push.code === 'NotFound';
      this._emit(noTicket ? { kind: 'noTicket' } : event);
    } else if (verdict.adopt) {
      this._emit(event);
      this._sendNow({ action: 'status', ticketId: verdict.adopt });
      this._expectStatus(true);
    }
    if (answered) {
      for (const action of this._outbox.splice(0)) this._sendNow(action);
    }
  }

  _quietCheck() {
    const live = this._session.liveTicket();
    if (live && !this._pending && Date.now() - this._lastHeardAt >= this._options.quietStatusAfterMs) {
      this._sendNow({ action: 'status', ticketId: live });
      this._expectStatus(true);
    }
  }

  _expectStatus(own) {
    this._clearPending();
    const timer = setTimeout(() => {
      this._stop(new MatchgateError('StatusTimeout', `the server did not answer \`status\` within ${this._options.statusTimeoutMs} ms`));
    }, this._options.statusTimeoutMs);
    this._pending = { timer, own };
  }

  _clearPending() {
    if (this._pending) clearTimeout(this._pending.timer);
    this._pending = null;
  }

  _command(action) {
    if (this.stopped) throw this.stopped;
    if (!this._socket || this._pending?.own) {
      this._outbox.push(action);
      return;
    }
    this._sendNow(action);
    if (action.action === 'status') this._expectStatus(false);
  }

  _sendNow(action) {
    try {
      this._socket?.send(JSON.stringify(action));
    } catch {
      // The socket is closing: the action goes out after the reconnect's status.
      this._outbox.unshift(action);
    }
  }

  _requireTicket(what) {
    if (this.stopped) throw this.stopped;
    const live = this._session.liveTicket();
    if (!live) throw new MatchgateError('NoTicket', `there is no ticket to ${what}: matchmake first`);
    return live;
  }

  _emit(event) {
    const waiter = this._waiters.shift();
    if (waiter) waiter(event);
    else this._events.push(event);
  }

  _stop(error) {
    if (this.stopped) return;
    this._closed = true;
    this.stopped = error;
    clearInterval(this._quietTimer);
    this._clearPending();
    const socket = this._socket;
    this._socket = null;
    socket?.close(1000);
    for (const waiter of this._waiters.splice(0)) waiter(null);
  }
}

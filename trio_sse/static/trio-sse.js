// trio-sse browser client: the model of the Python client (trio_sse/_client.py) on EventSource.
// Dependency-free ES module: import { SSEClient } from "/static/trio-sse.js".
//
// Handlers belong to the client, not to an EventSource: each EventSource the client opens gets
// ONE listener per event type, which dispatches into the client's registry, and loses it when
// it is replaced. However many times the stream is re-established, each handler runs exactly
// once per event. EventSource reconnects by itself after a network error or an ended stream
// (with the server's retry: and Last-Event-ID); when it gives up (a non-200 answer), the client
// opens a new one after a jittered backoff, resuming with ?lastEventId=. When streaming keeps
// failing or stalls, the client polls GET .../poll?after=&wait= and tries streaming again every
// streamRetryInterval. Durations are milliseconds (the Python client takes seconds).

/** Register a handler under this type to receive every event the client listens for. */
export const ANY_EVENT = "*";

/** Connection states, as reported by {@link SSEClient#onConnectionChange}. */
export const ConnectionState = Object.freeze({
  CONNECTING: "connecting", OPEN: "open", RECONNECTING: "reconnecting",
  POLLING: "polling", CLOSED: "closed", FAILED: "failed",
});

/** Types EventSource code never sees unless it listens for them; `"*"` listens for them. */
const BUILTIN_TYPES = ["message", "reset", "gap"];

/** A failure of the stream or of a poll; `status` is the HTTP status when there was one. */
export class SSEError extends Error {
  /** @param {string} message @param {number} [status] */
  constructor(message, status) {
    super(message);
    this.name = "SSEError";
    this.status = status;
    /** Retrying cannot help: a 4xx answer other than 408 and 429. */
    this.final = status >= 400 && status < 500 && status !== 408 && status !== 429;
  }
}

/** Callbacks by key; every registration has its own idempotent unsubscribe. */
class Registry {
  /** @type {Map<string, Map<object, Function>>} */
  #callbacks = new Map();

  /** @returns {() => void} removes exactly this registration; a key left empty is removed. */
  add(key, callback, onChange = () => {}) {
    const token = {};
    if (!this.#callbacks.has(key)) this.#callbacks.set(key, new Map());
    this.#callbacks.get(key).set(token, callback);
    onChange();
    return () => {
      const callbacks = this.#callbacks.get(key);
      if (!callbacks?.delete(token)) return;
      if (callbacks.size === 0) this.#callbacks.delete(key);
      onChange();
    };
  }

  get(key) { return [...(this.#callbacks.get(key)?.values() ?? [])]; }
  keys() { return [...this.#callbacks.keys()]; }
  has(key) { return this.#callbacks.has(key); }
  get size() { let n = 0; for (const c of this.#callbacks.values()) n += c.size; return n; }
  clear() { this.#callbacks.clear(); }
}

/** Call a callback, sync or async; report what it throws and carry on. */
function call(callback, argument) {
  try {
    const result = callback(argument);
    if (typeof result?.then === "function") {
      result.then(undefined, (error) => console.error("trio-sse: handler failed", error));
    }
  } catch (error) {
    console.error("trio-sse: handler failed; the other handlers still run", error);
  }
}

/**
 * @typedef {{type: string, data: string, id: string}} SSEEvent
 *   What handlers receive, streamed or polled alike. `id` is "" for a `gap` notice.
 * @typedef {object} SSEClientOptions
 * @property {string} url The stream URL (`.../sessions/{id}/events`), absolute or relative.
 * @property {string} [lastEventId] Resume after this id on the first connect.
 * @property {boolean} [withCredentials] Send cookies cross-origin (stream and polls).
 * @property {number|null} [maxRetries=10] Consecutive failures (stream or poll) before `failed`;
 *   null retries forever.
 * @property {{initial?: number, maximum?: number, jitter?: number}} [backoff] The n-th
 *   consecutive retry waits min(initial * 2**n, maximum) ms, scaled by a random factor in
 *   [1 - jitter, 1 + jitter]. Defaults: 500, 30000, 0.2.
 * @property {boolean} [pollingFallback=true] Poll when streaming fails
 *   `streamFailuresBeforePolling` (3) times in a row, or stalls.
 * @property {number} [streamFailuresBeforePolling=3]
 * @property {number} [pollInterval=1000] Pause after a poll that returned nothing.
 * @property {number} [pollWait=20000] Long-poll wait asked of the server (sent in seconds).
 * @property {string} [pollUrl] Default: the stream URL with `/events` -> `/poll`.
 * @property {number|null} [stallTimeout=45000] With no open or event for this long, the client
 *   asks the poll endpoint whether it missed events (a buffering proxy); if so it polls.
 *   Heartbeats are comments, invisible to EventSource, so a quiet stream only costs a check.
 * @property {number} [streamRetryInterval=30000] While polling, try streaming again this often.
 * @property {string[]} [types] Extra event types for `"*"` handlers (see {@link SSEClient#on}).
 */

/** A reconnecting SSE client for one stream URL. It connects as soon as it is created. */
export class SSEClient {
  /** @type {Error|null} The last failure, for display. */ lastError = null;
  /** @type {string|null} The cursor the next (re)connect or poll resumes after. */ lastEventId;

  #state = ConnectionState.CLOSED;
  #options;
  #handlers = new Registry();
  #stateCallbacks = new Registry();
  /** @type {EventSource|null} */ #source = null;
  /** @type {Map<string, (event: MessageEvent) => void>} listeners on #source, by type */
  #listeners = new Map();
  #types = new Set(); // event types the client listens for
  #failures = 0; // consecutive failures, stream or poll
  #streamFailures = 0;
  #timers = new Set();
  #stallTimer = null;
  #probeCursor = null;
  #polling = null; // AbortController of the current polling phase
  #destroyed = false;

  /** @param {SSEClientOptions} options */
  constructor({ url, lastEventId = null, backoff = {}, ...rest }) {
    if (!url) throw new TypeError("SSEClient: url is required");
    const base = globalThis.location?.href;
    const pollUrl = new URL(rest.pollUrl ?? url, base);
    if (!rest.pollUrl) pollUrl.pathname = pollUrl.pathname.replace(/\/events\/?$/, "/poll");
    this.#options = {
      withCredentials: false, maxRetries: 10, pollingFallback: true,
      streamFailuresBeforePolling: 3, pollInterval: 1000, pollWait: 20000,
      stallTimeout: 45000, streamRetryInterval: 30000, ...rest,
      url: new URL(url, base), pollUrl, types: [...(rest.types ?? [])],
      backoff: { initial: 500, maximum: 30000, jitter: 0.2, ...backoff },
    };
    this.lastEventId = lastEventId || null;
    // Connect after the current task, so handlers registered right away see "connecting".
    queueMicrotask(() => {
      if (this.#destroyed) return;
      this.#setState(ConnectionState.CONNECTING);
      this.#openStream();
    });
  }

  // -- registration ---------------------------------------------------------------------

  /**
   * Call `handler(event)` for each event of `type`. EventSource hands a named event only to
   * listeners of that name, so `"*"` gets the events of every type the client listens for:
   * `message`, `reset`, `gap`, the `types` option, and every type with a handler of its own.
   * @param {string} type
   * @param {(event: SSEEvent) => void|Promise<void>} handler
   * @returns {() => void} unsubscribe: removes exactly this registration, harmless twice.
   */
  on(type, handler) {
    if (this.#destroyed) throw new Error("SSEClient: on() after destroy()");
    if (typeof handler !== "function") throw new TypeError("SSEClient: handler must be a function");
    return this.#handlers.add(String(type), handler, () => this.#syncListeners());
  }

  /**
   * Call `callback(state)` on every change of {@link SSEClient#state}.
   * @param {(state: string) => void} callback
   * @returns {() => void} unsubscribe
   */
  onConnectionChange(callback) {
    if (this.#destroyed) throw new Error("SSEClient: onConnectionChange() after destroy()");
    return this.#stateCallbacks.add("state", callback);
  }

  /** One of {@link ConnectionState}'s values. */
  get state() { return this.#state; }
  /** Registered handlers, all types together. */
  get handlerCount() { return this.#handlers.size; }
  /** Event types with at least one handler. */
  get eventTypes() { return this.#handlers.keys(); }
  /** Listeners the client holds on its current EventSource (one per type listened for). */
  get listenerCount() { return this.#listeners.size; }

  /** Close the stream, stop timers and polling, drop every listener, handler and callback. */
  destroy() {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#closeSource();
    this.#polling?.abort();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#setState(ConnectionState.CLOSED);
    this.#handlers.clear();
    this.#stateCallbacks.clear();
    this.#types.clear();
  }

  // -- streaming ------------------------------------------------------------------------

  #openStream() {
    this.#closeSource();
    const url = new URL(this.#options.url);
    if (this.lastEventId) url.searchParams.set("lastEventId", this.lastEventId);
    const source = new EventSource(url, { withCredentials: this.#options.withCredentials });
    this.#source = source;
    this.#syncListeners();
    this.#armStall();
    source.onopen = () => {
      this.#failures = this.#streamFailures = 0;
      this.#setState(ConnectionState.OPEN);
      this.#armStall();
    };
    source.onerror = () => {
      if (source !== this.#source) return;
      const closed = source.readyState === EventSource.CLOSED;
      const message = closed ? "stream refused or unreachable" : "stream interrupted";
      this.#streamFailed(new SSEError(message), { closed });
    };
  }

  /** Add and remove listeners on the current EventSource to match the registry. */
  #syncListeners() {
    this.#types = new Set(this.#handlers.keys().filter((type) => type !== ANY_EVENT));
    if (this.#handlers.has(ANY_EVENT)) {
      for (const type of [...BUILTIN_TYPES, ...this.#options.types]) this.#types.add(type);
    }
    for (const [type, listener] of this.#listeners) {
      if (this.#types.has(type)) continue;
      this.#source?.removeEventListener(type, listener);
      this.#listeners.delete(type);
    }
    if (!this.#source) return;
    for (const type of this.#types) {
      if (this.#listeners.has(type)) continue;
      const listener = (event) => {
        this.#armStall();
        this.#dispatch({ type, data: event.data, id: type === "gap" ? "" : event.lastEventId });
      };
      this.#source.addEventListener(type, listener);
      this.#listeners.set(type, listener);
    }
  }

  #closeSource() {
    clearTimeout(this.#stallTimer);
    if (!this.#source) return;
    for (const [type, listener] of this.#listeners) {
      this.#source.removeEventListener(type, listener);
    }
    this.#listeners.clear();
    this.#source.onopen = this.#source.onerror = null;
    this.#source.close();
    this.#source = null;
  }

  /** A stream error: EventSource retries by itself unless `closed`; fall back when it's time. */
  #streamFailed(error, { closed = true, stalled = false } = {}) {
    this.#recordFailure(error);
    this.#streamFailures += 1;
    const { pollingFallback, streamFailuresBeforePolling } = this.#options;
    if (this.#gaveUp()) return this.#fail();
    if (pollingFallback && (stalled || this.#streamFailures >= streamFailuresBeforePolling)) {
      return this.#poll();
    }
    this.#setState(ConnectionState.RECONNECTING);
    if (closed || stalled) {
      this.#closeSource();
      this.#later(this.#delay(), () => this.#openStream());
    } else {
      this.#armStall(); // EventSource retries: a stall now means stuck for stallTimeout
    }
  }

  #armStall() {
    clearTimeout(this.#stallTimer);
    const { stallTimeout } = this.#options;
    if (!stallTimeout || !this.#source) return;
    this.#stallTimer = setTimeout(() => this.#checkStall(), stallTimeout);
  }

  /** No open or event for stallTimeout: did the stream miss events the poll endpoint has? */
  async #checkStall() {
    const source = this.#source;
    if (!source) return;
    if (source.readyState !== EventSource.OPEN) {
      return this.#streamFailed(new SSEError("stream stalled while connecting"), { stalled: true });
    }
    const before = this.lastEventId;
    let answer;
    try {
      answer = await this.#fetchPoll(before ?? this.#probeCursor, 0);
    } catch {
      answer = null; // the check itself failed: the stream's own errors will tell
    }
    if (source !== this.#source || this.lastEventId !== before) return; // events came meanwhile
    if (!answer?.events.some((event) => this.#types.has(event.type))) {
      if (answer) this.#probeCursor = answer.next;
      return this.#armStall();
    }
    this.#closeSource();
    this.#receive(answer);
    this.#streamFailed(new SSEError("stream stalled: events reached the poll endpoint only"),
      { stalled: true });
  }

  // -- polling --------------------------------------------------------------------------

  /** Poll until it is time to try streaming again (or polling fails for good). */
  async #poll() {
    this.#closeSource();
    this.#streamFailures = 0;
    this.#setState(ConnectionState.POLLING);
    const { pollWait, pollInterval, streamRetryInterval } = this.#options;
    const phase = (this.#polling = new AbortController());
    const until = this.#later(streamRetryInterval, () => phase.abort());
    try {
      while (!phase.signal.aborted) {
        let got;
        try {
          const answer = await this.#fetchPoll(this.lastEventId, pollWait, phase.signal);
          got = this.#receive(answer);
          this.#failures = 0;
        } catch (error) {
          if (phase.signal.aborted) break;
          this.#recordFailure(error);
          if (error.final || this.#gaveUp()) return this.#fail();
          await this.#sleep(this.#delay(), phase.signal);
          continue;
        }
        if (!got) await this.#sleep(pollInterval, phase.signal);
      }
    } finally {
      clearTimeout(until);
      this.#timers.delete(until);
    }
    if (this.#destroyed || this.#state === ConnectionState.FAILED) return;
    this.#setState(ConnectionState.RECONNECTING);
    this.#openStream();
  }

  /** One GET on the poll endpoint; resolves to its JSON answer, rejects with an SSEError. */
  async #fetchPoll(after, waitMs, signal) {
    const url = new URL(this.#options.pollUrl);
    if (after) url.searchParams.set("after", after);
    url.searchParams.set("wait", String(waitMs / 1000));
    let response;
    try {
      response = await fetch(url, {
        signal, cache: "no-store",
        credentials: this.#options.withCredentials ? "include" : "same-origin",
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new SSEError(`poll failed: ${error.message}`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      if (signal?.aborted) throw error;
    }
    if (!response.ok) {
      const reason = body?.error ?? response.statusText;
      throw new SSEError(`${response.status}: ${reason}`, response.status);
    }
    if (!Array.isArray(body?.events)) throw new SSEError("poll answer is not the expected JSON");
    return body;
  }

  /** Dispatch a poll answer's events once each and move the cursor; returns how many. */
  #receive({ events = [], next }) {
    for (const { type, data, id } of events) {
      if (this.#types.has(type)) this.#dispatch({ type, data, id: id ?? "" });
    }
    if (next) this.lastEventId = next;
    return events.length;
  }

  // -- shared ---------------------------------------------------------------------------

  /** @param {SSEEvent} event */
  #dispatch(event) {
    if (this.#destroyed) return;
    if (event.id) this.lastEventId = event.id;
    const frozen = Object.freeze(event);
    for (const handler of [...this.#handlers.get(event.type), ...this.#handlers.get(ANY_EVENT)]) {
      call(handler, frozen);
    }
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    for (const callback of this.#stateCallbacks.get("state")) call(callback, state);
  }

  #recordFailure(error) {
    this.lastError = error;
    this.#failures += 1;
  }

  #gaveUp() {
    const { maxRetries } = this.#options;
    return maxRetries != null && this.#failures > maxRetries;
  }

  #fail() {
    this.#closeSource();
    this.#setState(ConnectionState.FAILED);
  }

  #delay() {
    const { initial, maximum, jitter } = this.#options.backoff;
    const delay = Math.min(initial * 2 ** Math.max(this.#failures - 1, 0), maximum);
    return delay * (1 + (Math.random() * 2 - 1) * jitter);
  }

  /** setTimeout that destroy() clears. */
  #later(ms, callback) {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#destroyed) callback();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  /** Wait `ms`, or less if `signal` aborts. */
  #sleep(ms, signal) {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = this.#later(ms, done);
      signal.addEventListener("abort", done);
    });
  }
}

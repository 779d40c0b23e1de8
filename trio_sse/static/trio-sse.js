// trio-sse browser client, built from js/src/client.ts by js/scripts/build.mjs: do not edit.
// Dependency-free ES module: import { SSEClient } from "/static/trio-sse.js". See docs/clients.md.

// src/client.ts
var ANY_EVENT = "*";
var ConnectionState = Object.freeze({
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  POLLING: "polling",
  CLOSED: "closed",
  FAILED: "failed"
});
var BUILTIN_TYPES = ["message", "reset", "gap"];
var SSEError = class extends Error {
  /** The HTTP status, when an answer was seen. */
  status;
  /** Retrying cannot help: a 4xx answer other than 408 and 429. */
  final;
  /** The server's `Retry-After`, in ms: the next attempt waits at least this long. */
  retryAfter;
  constructor(message, status, retryAfter = 0) {
    super(message);
    this.name = "SSEError";
    this.status = status;
    this.final = status !== void 0 && status >= 400 && status < 500 && status !== 408 && status !== 429;
    this.retryAfter = retryAfter;
  }
};
var Registry = class {
  #callbacks = /* @__PURE__ */ new Map();
  /** Returns a function that removes exactly this registration; a key left empty is removed. */
  add(key, callback, onChange = () => {
  }) {
    const token = {};
    let callbacks = this.#callbacks.get(key);
    if (!callbacks) this.#callbacks.set(key, callbacks = /* @__PURE__ */ new Map());
    callbacks.set(token, callback);
    onChange();
    return () => {
      const current = this.#callbacks.get(key);
      if (!current?.delete(token)) return;
      if (current.size === 0) this.#callbacks.delete(key);
      onChange();
    };
  }
  get(key) {
    return [...this.#callbacks.get(key)?.values() ?? []];
  }
  keys() {
    return [...this.#callbacks.keys()];
  }
  has(key) {
    return this.#callbacks.has(key);
  }
  get size() {
    let n = 0;
    for (const callbacks of this.#callbacks.values()) n += callbacks.size;
    return n;
  }
  clear() {
    this.#callbacks.clear();
  }
};
function call(callback, argument) {
  try {
    const result = callback(argument);
    if (typeof result?.then === "function") {
      result.then(
        void 0,
        (error) => console.error("trio-sse: handler failed", error)
      );
    }
  } catch (error) {
    console.error("trio-sse: handler failed; the other handlers still run", error);
  }
}
function makeEvent(type, data, id) {
  return Object.freeze({ type, data, id, json: () => JSON.parse(data) });
}
function retryAfterMs(response) {
  const seconds = Number(response.headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1e3 : 0;
}
var SSEClient = class {
  /** The last failure, for display. */
  lastError = null;
  /** The cursor the next (re)connect or poll resumes after. */
  lastEventId;
  #state = ConnectionState.CLOSED;
  #options;
  #handlers = new Registry();
  #stateCallbacks = new Registry();
  #source = null;
  /** Listeners on #source, by type. */
  #listeners = /* @__PURE__ */ new Map();
  /** Event types the client listens for. */
  #types = /* @__PURE__ */ new Set();
  /** Consecutive failures, stream or poll. */
  #failures = 0;
  #streamFailures = 0;
  #floor = 0;
  // the server's last Retry-After, ms
  #timers = /* @__PURE__ */ new Set();
  #stallTimer;
  #probeCursor = null;
  /** The AbortController of the current polling phase. */
  #polling = null;
  #destroyed = false;
  constructor({ url, lastEventId = null, backoff = {}, ...rest }) {
    if (!url) throw new TypeError("SSEClient: url is required");
    const base = globalThis.location?.href;
    const pollUrl = new URL(rest.pollUrl ?? url, base);
    if (!rest.pollUrl) pollUrl.pathname = pollUrl.pathname.replace(/\/events\/?$/, "/poll");
    this.#options = {
      withCredentials: false,
      maxRetries: 10,
      pollingFallback: true,
      streamFailuresBeforePolling: 3,
      pollInterval: 1e3,
      pollWait: 2e4,
      stallTimeout: 45e3,
      streamRetryInterval: 3e4,
      ...rest,
      token: rest.token,
      url: new URL(url, base),
      pollUrl,
      types: [...rest.types ?? []],
      backoff: { initial: 500, maximum: 3e4, jitter: 0.2, ...backoff }
    };
    this.lastEventId = lastEventId || null;
    queueMicrotask(() => {
      if (this.#destroyed) return;
      this.#setCookie();
      this.#setState(ConnectionState.CONNECTING);
      this.#openStream();
    });
  }
  // -- registration ---------------------------------------------------------------------
  /**
   * Call `handler(event)` for each event of `type`. EventSource hands a named event only to
   * listeners of that name, so `"*"` gets the events of every type the client listens for:
   * `message`, `reset`, `gap`, the `types` option, and every type with a handler of its own.
   *
   * @example client.on<{ percent: number }>("progress", (event) => bar(event.json().percent))
   * @returns unsubscribe: removes exactly this registration, harmless twice.
   */
  on(type, handler) {
    if (this.#destroyed) throw new Error("SSEClient: on() after destroy()");
    if (typeof handler !== "function") throw new TypeError("SSEClient: handler must be a function");
    return this.#handlers.add(String(type), handler, () => this.#syncListeners());
  }
  /** Call `callback(state)` on every change of {@link SSEClient.state}; returns unsubscribe. */
  onConnectionChange(callback) {
    if (this.#destroyed) throw new Error("SSEClient: onConnectionChange() after destroy()");
    return this.#stateCallbacks.add("state", callback);
  }
  /** One of {@link ConnectionState}'s values. */
  get state() {
    return this.#state;
  }
  /** Registered handlers, all types together. */
  get handlerCount() {
    return this.#handlers.size;
  }
  /** Event types with at least one handler. */
  get eventTypes() {
    return this.#handlers.keys();
  }
  /** Listeners the client holds on its current EventSource (one per type listened for). */
  get listenerCount() {
    return this.#listeners.size;
  }
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
      this.#streamFailed(new SSEError(message), closed);
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
    const source = this.#source;
    if (!source) return;
    for (const type of this.#types) {
      if (this.#listeners.has(type)) continue;
      const listener = (event) => {
        this.#armStall();
        this.#dispatch(makeEvent(type, String(event.data), type === "gap" ? "" : event.lastEventId));
      };
      source.addEventListener(type, listener);
      this.#listeners.set(type, listener);
    }
  }
  #closeSource() {
    clearTimeout(this.#stallTimer);
    const source = this.#source;
    if (!source) return;
    for (const [type, listener] of this.#listeners) source.removeEventListener(type, listener);
    this.#listeners.clear();
    source.onopen = source.onerror = null;
    source.close();
    this.#source = null;
  }
  /** A stream error: EventSource retries by itself unless `closed`; fall back when it's time. */
  #streamFailed(error, closed = true, stalled = false) {
    this.#recordFailure(error);
    this.#streamFailures += 1;
    const { pollingFallback, streamFailuresBeforePolling } = this.#options;
    if (this.#gaveUp()) return this.#fail();
    if (pollingFallback && (stalled || this.#streamFailures >= streamFailuresBeforePolling)) {
      void this.#poll();
      return;
    }
    this.#setState(ConnectionState.RECONNECTING);
    if (closed || stalled) {
      this.#closeSource();
      this.#later(this.#delay(), () => this.#openStream());
    } else {
      this.#armStall();
    }
  }
  #armStall() {
    clearTimeout(this.#stallTimer);
    const { stallTimeout } = this.#options;
    if (!stallTimeout || !this.#source) return;
    this.#stallTimer = setTimeout(() => void this.#checkStall(), stallTimeout);
  }
  /** No open or event for stallTimeout: did the stream miss events the poll endpoint has? */
  async #checkStall() {
    const source = this.#source;
    if (!source) return;
    if (source.readyState !== EventSource.OPEN) {
      return this.#streamFailed(new SSEError("stream stalled while connecting"), true, true);
    }
    const before = this.lastEventId;
    let answer;
    try {
      answer = await this.#fetchPoll(before ?? this.#probeCursor, 0);
    } catch {
      answer = null;
    }
    if (source !== this.#source || this.lastEventId !== before) return;
    if (!answer?.events.some((event) => this.#types.has(event.type))) {
      if (answer?.next) this.#probeCursor = answer.next;
      return this.#armStall();
    }
    this.#closeSource();
    this.#receive(answer);
    this.#streamFailed(new SSEError("stream stalled: events reached the poll endpoint only"), true, true);
  }
  // -- polling --------------------------------------------------------------------------
  /** Poll until it is time to try streaming again (or polling fails for good). */
  async #poll() {
    this.#closeSource();
    this.#streamFailures = 0;
    this.#setState(ConnectionState.POLLING);
    const { pollWait, pollInterval, streamRetryInterval } = this.#options;
    const phase = this.#polling = new AbortController();
    const until = this.#later(streamRetryInterval, () => phase.abort());
    try {
      while (!phase.signal.aborted) {
        let got;
        try {
          const answer = await this.#fetchPoll(this.lastEventId, pollWait, phase.signal);
          got = this.#receive(answer);
          this.#failures = 0;
          this.#floor = 0;
        } catch (error) {
          if (phase.signal.aborted) break;
          const failure = error instanceof SSEError ? error : new SSEError(String(error));
          this.#recordFailure(failure);
          if (failure.final || this.#gaveUp()) return this.#fail();
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
    const { pollUrl, withCredentials, token } = this.#options;
    const url = new URL(pollUrl);
    if (after) url.searchParams.set("after", after);
    url.searchParams.set("wait", String(waitMs / 1e3));
    let response;
    try {
      response = await fetch(url, {
        signal,
        cache: "no-store",
        credentials: withCredentials ? "include" : "same-origin",
        headers: token ? { Authorization: `Bearer ${token}` } : {}
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
      throw new SSEError(`${response.status}: ${reason}`, response.status, retryAfterMs(response));
    }
    if (!Array.isArray(body?.events)) throw new SSEError("poll answer is not the expected JSON");
    return body;
  }
  /** Dispatch a poll answer's events once each and move the cursor; returns how many. */
  #receive({ events = [], next }) {
    for (const { type, data, id } of events) {
      if (this.#types.has(type)) this.#dispatch(makeEvent(type, data, id ?? ""));
    }
    if (next) this.lastEventId = next;
    return events.length;
  }
  // -- shared ---------------------------------------------------------------------------
  #dispatch(event) {
    if (this.#destroyed) return;
    if (event.id) this.lastEventId = event.id;
    for (const handler of [...this.#handlers.get(event.type), ...this.#handlers.get(ANY_EVENT)]) {
      call(handler, event);
    }
  }
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    for (const callback of this.#stateCallbacks.get("state")) call(callback, state);
  }
  /** The token as a cookie on the session's path: EventSource cannot send a header. */
  #setCookie() {
    const { token, url } = this.#options;
    if (!token || typeof document === "undefined") return;
    if (url.hostname !== globalThis.location?.hostname) return;
    const path = url.pathname.replace(/[^/]*\/?$/, "");
    document.cookie = `trio_sse_token=${token}; path=${path}; SameSite=Strict`;
  }
  #recordFailure(error) {
    this.lastError = error;
    this.#failures += 1;
    this.#floor = error.retryAfter;
  }
  #gaveUp() {
    const { maxRetries } = this.#options;
    return maxRetries != null && this.#failures > maxRetries;
  }
  #fail() {
    this.#closeSource();
    this.#setState(ConnectionState.FAILED);
  }
  /** Jittered exponential backoff, never sooner than the server's Retry-After. */
  #delay() {
    const { initial, maximum, jitter } = this.#options.backoff;
    const delay = Math.min(initial * 2 ** Math.max(this.#failures - 1, 0), maximum);
    return Math.max(delay * (1 + (Math.random() * 2 - 1) * jitter), this.#floor);
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
};
export {
  ANY_EVENT,
  ConnectionState,
  SSEClient,
  SSEError
};

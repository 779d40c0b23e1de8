// trio-sse browser client: the model of the Python client (trio_sse/_client.py) on EventSource.
//
// Handlers belong to the client, not to an EventSource: each EventSource the client opens gets
// ONE listener per event type, which dispatches into the client's registry, and loses it when
// it is replaced. However many times the stream is re-established, each handler runs exactly
// once per event. EventSource reconnects by itself after a network error or an ended stream
// (with the server's retry: and Last-Event-ID); when it gives up (a non-200 answer), the client
// opens a new one after a jittered backoff, resuming with ?lastEventId=. When streaming keeps
// failing or stalls, the client polls GET .../poll?after=&wait= and tries streaming again every
// streamRetryInterval. Durations are milliseconds (the Python client takes seconds).
//
// This file is the one source of the client: trio_sse/static/trio-sse.js is built from it
// (js/scripts/build.mjs), and a test fails when the committed build differs.

/** Register a handler under this type to receive every event the client listens for. */
export const ANY_EVENT = "*";

/** Connection states, as reported by {@link SSEClient.onConnectionChange}. */
export const ConnectionState = Object.freeze({
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  POLLING: "polling",
  CLOSED: "closed",
  FAILED: "failed",
} as const);

/** One of the {@link ConnectionState} values. */
export type ConnectionStateName = (typeof ConnectionState)[keyof typeof ConnectionState];

/** Types EventSource code never sees unless it listens for them; `"*"` listens for them. */
const BUILTIN_TYPES = ["message", "reset", "gap"];

/** A failure of the stream or of a poll; `status` is the HTTP status when there was one. */
export class SSEError extends Error {
  /** The HTTP status, when an answer was seen. */
  readonly status: number | undefined;
  /** Retrying cannot help: a 4xx answer other than 408 and 429. */
  readonly final: boolean;
  /** The server's `Retry-After`, in ms: the next attempt waits at least this long. */
  readonly retryAfter: number;

  constructor(message: string, status?: number, retryAfter = 0) {
    super(message);
    this.name = "SSEError";
    this.status = status;
    this.final = status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
    this.retryAfter = retryAfter;
  }
}

/**
 * What handlers receive, streamed or polled alike: frozen. `data` is the wire text; `json()`
 * parses it as `T`. `id` is `""` for a `gap` notice.
 */
export interface SSEEvent<T = unknown> {
  readonly type: string;
  readonly data: string;
  readonly id: string;
  json(): T;
}

/** A handler; it may return a promise, whose rejection is reported like a throw. */
export type SSEHandler<T = unknown> = (event: SSEEvent<T>) => unknown;

/** An idempotent unsubscribe: removes exactly one registration. */
export type Unsubscribe = () => void;

export interface BackoffOptions {
  /** First retry delay, ms (500). */
  initial?: number;
  /** Longest retry delay, ms (30000). */
  maximum?: number;
  /** Random spread, a fraction (0.2): delays are scaled by [1 - jitter, 1 + jitter]. */
  jitter?: number;
}

export interface SSEClientOptions {
  /** The stream URL (`.../sessions/{id}/events`), absolute or relative to the page. */
  url: string | URL;
  /** Resume after this id on the first connect. */
  lastEventId?: string | null;
  /** Send cookies cross-origin (stream and polls). */
  withCredentials?: boolean;
  /** Consecutive failures (stream or poll) before `failed`; null retries forever. Default 10. */
  maxRetries?: number | null;
  /** The n-th consecutive retry waits min(initial * 2**n, maximum) ms, jittered. */
  backoff?: BackoffOptions;
  /** Poll when streaming fails `streamFailuresBeforePolling` times in a row, or stalls. */
  pollingFallback?: boolean;
  /** Default 3. */
  streamFailuresBeforePolling?: number;
  /** Pause after a poll that returned nothing, ms (1000). */
  pollInterval?: number;
  /** Long-poll wait asked of the server, ms (20000; sent in seconds). */
  pollWait?: number;
  /** Default: the stream URL with `/events` -> `/poll`. */
  pollUrl?: string | URL;
  /** With no open or event for this long (ms, 45000), check for a stall; null or 0: never. */
  stallTimeout?: number | null;
  /** While polling, try streaming again this often, ms (30000). */
  streamRetryInterval?: number;
  /** Extra event types for `"*"` handlers. */
  types?: string[];
  /**
   * A subscriber token: sent as `Authorization: Bearer` on polls and, since EventSource cannot
   * set headers, as the `trio_sse_token` cookie scoped to the session's path (same host only).
   */
  token?: string;
}

type Resolved = Required<Omit<SSEClientOptions, "lastEventId" | "backoff" | "url" | "pollUrl" | "token">> & {
  url: URL;
  pollUrl: URL;
  backoff: Required<BackoffOptions>;
  token: string | undefined;
};

interface PollAnswer {
  events: { type: string; data: string; id?: string }[];
  next?: string;
}

/** Callbacks by key; every registration has its own idempotent unsubscribe. */
class Registry<F> {
  #callbacks = new Map<string, Map<object, F>>();

  /** Returns a function that removes exactly this registration; a key left empty is removed. */
  add(key: string, callback: F, onChange: () => void = () => {}): Unsubscribe {
    const token = {};
    let callbacks = this.#callbacks.get(key);
    if (!callbacks) this.#callbacks.set(key, (callbacks = new Map()));
    callbacks.set(token, callback);
    onChange();
    return () => {
      const current = this.#callbacks.get(key);
      if (!current?.delete(token)) return;
      if (current.size === 0) this.#callbacks.delete(key);
      onChange();
    };
  }

  get(key: string): F[] {
    return [...(this.#callbacks.get(key)?.values() ?? [])];
  }
  keys(): string[] {
    return [...this.#callbacks.keys()];
  }
  has(key: string): boolean {
    return this.#callbacks.has(key);
  }
  get size(): number {
    let n = 0;
    for (const callbacks of this.#callbacks.values()) n += callbacks.size;
    return n;
  }
  clear(): void {
    this.#callbacks.clear();
  }
}

/** Call a callback, sync or async; report what it throws and carry on. */
function call<A>(callback: (argument: A) => unknown, argument: A): void {
  try {
    const result = callback(argument) as { then?: unknown } | undefined;
    if (typeof result?.then === "function") {
      (result as Promise<unknown>).then(undefined, (error: unknown) =>
        console.error("trio-sse: handler failed", error),
      );
    }
  } catch (error) {
    console.error("trio-sse: handler failed; the other handlers still run", error);
  }
}

function makeEvent(type: string, data: string, id: string): SSEEvent {
  return Object.freeze({ type, data, id, json: () => JSON.parse(data) as unknown });
}

/** Seconds of a `Retry-After` header, in ms (0 when absent or a date). */
function retryAfterMs(response: Response): number {
  const seconds = Number(response.headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** A reconnecting SSE client for one stream URL. It connects as soon as it is created. */
export class SSEClient {
  /** The last failure, for display. */
  lastError: Error | null = null;
  /** The cursor the next (re)connect or poll resumes after. */
  lastEventId: string | null;

  #state: ConnectionStateName = ConnectionState.CLOSED;
  #options: Resolved;
  #handlers = new Registry<SSEHandler<any>>();
  #stateCallbacks = new Registry<(state: ConnectionStateName) => unknown>();
  #source: EventSource | null = null;
  /** Listeners on #source, by type. */
  #listeners = new Map<string, (event: MessageEvent) => void>();
  /** Event types the client listens for. */
  #types = new Set<string>();
  /** Consecutive failures, stream or poll. */
  #failures = 0;
  #streamFailures = 0;
  #floor = 0; // the server's last Retry-After, ms
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #stallTimer: ReturnType<typeof setTimeout> | undefined;
  #probeCursor: string | null = null;
  /** The AbortController of the current polling phase. */
  #polling: AbortController | null = null;
  #destroyed = false;

  constructor({ url, lastEventId = null, backoff = {}, ...rest }: SSEClientOptions) {
    if (!url) throw new TypeError("SSEClient: url is required");
    const base = globalThis.location?.href;
    const pollUrl = new URL(rest.pollUrl ?? url, base);
    if (!rest.pollUrl) pollUrl.pathname = pollUrl.pathname.replace(/\/events\/?$/, "/poll");
    this.#options = {
      withCredentials: false,
      maxRetries: 10,
      pollingFallback: true,
      streamFailuresBeforePolling: 3,
      pollInterval: 1000,
      pollWait: 20000,
      stallTimeout: 45000,
      streamRetryInterval: 30000,
      ...rest,
      token: rest.token,
      url: new URL(url, base),
      pollUrl,
      types: [...(rest.types ?? [])],
      backoff: { initial: 500, maximum: 30000, jitter: 0.2, ...backoff },
    };
    this.lastEventId = lastEventId || null;
    // Connect after the current task, so handlers registered right away see "connecting",
    // and a client destroyed in the same task never opens anything.
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
  on<T = unknown>(type: string, handler: SSEHandler<T>): Unsubscribe {
    if (this.#destroyed) throw new Error("SSEClient: on() after destroy()");
    if (typeof handler !== "function") throw new TypeError("SSEClient: handler must be a function");
    return this.#handlers.add(String(type), handler, () => this.#syncListeners());
  }

  /** Call `callback(state)` on every change of {@link SSEClient.state}; returns unsubscribe. */
  onConnectionChange(callback: (state: ConnectionStateName) => unknown): Unsubscribe {
    if (this.#destroyed) throw new Error("SSEClient: onConnectionChange() after destroy()");
    return this.#stateCallbacks.add("state", callback);
  }

  /** One of {@link ConnectionState}'s values. */
  get state(): ConnectionStateName {
    return this.#state;
  }
  /** Registered handlers, all types together. */
  get handlerCount(): number {
    return this.#handlers.size;
  }
  /** Event types with at least one handler. */
  get eventTypes(): string[] {
    return this.#handlers.keys();
  }
  /** Listeners the client holds on its current EventSource (one per type listened for). */
  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Close the stream, stop timers and polling, drop every listener, handler and callback. */
  destroy(): void {
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

  #openStream(): void {
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
  #syncListeners(): void {
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
      const listener = (event: MessageEvent): void => {
        this.#armStall();
        this.#dispatch(makeEvent(type, String(event.data), type === "gap" ? "" : event.lastEventId));
      };
      source.addEventListener(type, listener);
      this.#listeners.set(type, listener);
    }
  }

  #closeSource(): void {
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
  #streamFailed(error: SSEError, closed = true, stalled = false): void {
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
      this.#armStall(); // EventSource retries: a stall now means stuck for stallTimeout
    }
  }

  #armStall(): void {
    clearTimeout(this.#stallTimer);
    const { stallTimeout } = this.#options;
    if (!stallTimeout || !this.#source) return;
    this.#stallTimer = setTimeout(() => void this.#checkStall(), stallTimeout);
  }

  /** No open or event for stallTimeout: did the stream miss events the poll endpoint has? */
  async #checkStall(): Promise<void> {
    const source = this.#source;
    if (!source) return;
    if (source.readyState !== EventSource.OPEN) {
      return this.#streamFailed(new SSEError("stream stalled while connecting"), true, true);
    }
    const before = this.lastEventId;
    let answer: PollAnswer | null;
    try {
      answer = await this.#fetchPoll(before ?? this.#probeCursor, 0);
    } catch {
      answer = null; // the check itself failed: the stream's own errors will tell
    }
    if (source !== this.#source || this.lastEventId !== before) return; // events came meanwhile
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
  async #poll(): Promise<void> {
    this.#closeSource();
    this.#streamFailures = 0;
    this.#setState(ConnectionState.POLLING);
    const { pollWait, pollInterval, streamRetryInterval } = this.#options;
    const phase = (this.#polling = new AbortController());
    const until = this.#later(streamRetryInterval, () => phase.abort());
    try {
      while (!phase.signal.aborted) {
        let got: number;
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
  async #fetchPoll(after: string | null, waitMs: number, signal?: AbortSignal): Promise<PollAnswer> {
    const { pollUrl, withCredentials, token } = this.#options;
    const url = new URL(pollUrl);
    if (after) url.searchParams.set("after", after);
    url.searchParams.set("wait", String(waitMs / 1000));
    let response: Response;
    try {
      response = await fetch(url, {
        signal,
        cache: "no-store",
        credentials: withCredentials ? "include" : "same-origin",
        headers: token ? { Authorization: `Bearer ${token}` } : {},
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new SSEError(`poll failed: ${(error as Error).message}`);
    }
    let body = null as { events?: unknown; error?: string } | null;
    try {
      body = (await response.json()) as typeof body;
    } catch (error) {
      if (signal?.aborted) throw error;
    }
    if (!response.ok) {
      const reason = body?.error ?? response.statusText;
      throw new SSEError(`${response.status}: ${reason}`, response.status, retryAfterMs(response));
    }
    if (!Array.isArray(body?.events)) throw new SSEError("poll answer is not the expected JSON");
    return body as PollAnswer;
  }

  /** Dispatch a poll answer's events once each and move the cursor; returns how many. */
  #receive({ events = [], next }: PollAnswer): number {
    for (const { type, data, id } of events) {
      if (this.#types.has(type)) this.#dispatch(makeEvent(type, data, id ?? ""));
    }
    if (next) this.lastEventId = next;
    return events.length;
  }

  // -- shared ---------------------------------------------------------------------------

  #dispatch(event: SSEEvent): void {
    if (this.#destroyed) return;
    if (event.id) this.lastEventId = event.id;
    for (const handler of [...this.#handlers.get(event.type), ...this.#handlers.get(ANY_EVENT)]) {
      call(handler, event);
    }
  }

  #setState(state: ConnectionStateName): void {
    if (state === this.#state) return;
    this.#state = state;
    for (const callback of this.#stateCallbacks.get("state")) call(callback, state);
  }

  /** The token as a cookie on the session's path: EventSource cannot send a header. */
  #setCookie(): void {
    const { token, url } = this.#options;
    if (!token || typeof document === "undefined") return;
    if (url.hostname !== globalThis.location?.hostname) return;
    const path = url.pathname.replace(/[^/]*\/?$/, "");
    document.cookie = `trio_sse_token=${token}; path=${path}; SameSite=Strict`;
  }

  #recordFailure(error: SSEError): void {
    this.lastError = error;
    this.#failures += 1;
    this.#floor = error.retryAfter;
  }

  #gaveUp(): boolean {
    const { maxRetries } = this.#options;
    return maxRetries != null && this.#failures > maxRetries;
  }

  #fail(): void {
    this.#closeSource();
    this.#setState(ConnectionState.FAILED);
  }

  /** Jittered exponential backoff, never sooner than the server's Retry-After. */
  #delay(): number {
    const { initial, maximum, jitter } = this.#options.backoff;
    const delay = Math.min(initial * 2 ** Math.max(this.#failures - 1, 0), maximum);
    return Math.max(delay * (1 + (Math.random() * 2 - 1) * jitter), this.#floor);
  }

  /** setTimeout that destroy() clears. */
  #later(ms: number, callback: () => void): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#destroyed) callback();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  /** Wait `ms`, or less if `signal` aborts. */
  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
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

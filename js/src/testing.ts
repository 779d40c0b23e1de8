// trio-sse/testing: a scripted stand-in for EventSource and the poll endpoint, for tests of code
// that uses SSEClient or the React hooks. No network: a test opens, feeds and breaks streams
// by hand, and answers polls with a function.
//
//   const sse = installMockSSE();            // replaces globalThis.EventSource and fetch
//   render(<Progress sessionId="job-42" />);
//   await act(async () => sse.latest!.open());
//   await act(async () => sse.latest!.emit("progress", { percent: 50 }, "e-1"));
//   sse.uninstall();

type Listener = (event: MessageEvent) => void;

/** A poll answer: `body` is sent as JSON with `status` (200). */
export interface PollReply {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Answers a poll; `after` is the cursor the client sent (null without one). */
export type PollHandler = (request: { url: URL; after: string | null; wait: number }) => PollReply | Promise<PollReply>;

/** An EventSource whose stream a test scripts: open(), emit(), drop(), refuse(). */
export class MockEventSource extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSED = 2;

  readonly url: string;
  readonly withCredentials: boolean;
  readyState = 0;
  onopen: ((event: Event) => unknown) | null = null;
  onerror: ((event: Event) => unknown) | null = null;
  onmessage: ((event: MessageEvent) => unknown) | null = null;
  #listeners = new Map<string, Set<Listener>>();
  #lastEventId = "";

  constructor(url: string | URL, init?: EventSourceInit, onCreate?: (source: MockEventSource) => void) {
    super();
    this.url = String(url);
    this.withCredentials = init?.withCredentials ?? false;
    onCreate?.(this);
  }

  /** The session id in the URL (`.../sessions/{id}/events`), or "". */
  get sessionId(): string {
    const match = /\/sessions\/([^/]+)\/events/.exec(new URL(this.url, "http://x").pathname);
    return match ? decodeURIComponent(match[1] ?? "") : "";
  }

  /** The `lastEventId` query the client resumed with, or null. */
  get resumedAfter(): string | null {
    return new URL(this.url, "http://x").searchParams.get("lastEventId");
  }

  /** Listeners registered now, all types together. */
  get listenerCount(): number {
    let n = 0;
    for (const listeners of this.#listeners.values()) n += listeners.size;
    return n;
  }

  override addEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void {
    if (typeof listener !== "function") throw new TypeError("MockEventSource: listener must be a function");
    let listeners = this.#listeners.get(type);
    if (!listeners) this.#listeners.set(type, (listeners = new Set()));
    listeners.add(listener as Listener);
  }

  override removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null): void {
    this.#listeners.get(type)?.delete(listener as Listener);
    if (this.#listeners.get(type)?.size === 0) this.#listeners.delete(type);
  }

  close(): void {
    this.readyState = 2;
  }

  // -- scripting ------------------------------------------------------------------------

  /** The server answered 200: the stream is open. */
  open(): void {
    this.#check();
    this.readyState = 1;
    this.onopen?.(new Event("open"));
  }

  /** An event arrives: `data` is sent as JSON unless it is a string. */
  emit(type: string, data: unknown, id?: string): void {
    this.#check();
    if (this.readyState !== 1) throw new Error("MockEventSource: emit() on a stream that is not open");
    if (id !== undefined) this.#lastEventId = id;
    const text = typeof data === "string" ? data : JSON.stringify(data);
    const event = new MessageEvent(type, { data: text, lastEventId: this.#lastEventId });
    for (const listener of [...(this.#listeners.get(type) ?? [])]) listener(event);
    if (type === "message") this.onmessage?.(event);
  }

  /** The connection broke; EventSource will retry by itself (call open() to say it did). */
  drop(): void {
    this.#check();
    this.readyState = 0;
    this.onerror?.(new Event("error"));
  }

  /** The server refused the stream (a non-200 answer): EventSource gives up. */
  refuse(): void {
    this.#check();
    this.readyState = 2;
    this.onerror?.(new Event("error"));
  }

  #check(): void {
    if (this.readyState === 2 && !this.onerror) throw new Error("MockEventSource: this stream was closed");
  }
}

/** Every EventSource the code under test created, and the poll endpoint it calls. */
export class MockSSE {
  /** Every EventSource created since install(), in order. */
  readonly sources: MockEventSource[] = [];
  /** Every poll request seen, in order. */
  readonly polls: URL[] = [];
  #pollHandler: PollHandler = ({ after }) => ({ body: { events: [], next: after } });
  #restore: (() => void) | null = null;

  /** Replace globalThis.EventSource and fetch with this mock's; returns `uninstall`. */
  install(): () => void {
    if (this.#restore) return () => this.uninstall();
    const saved = { EventSource: globalThis.EventSource, fetch: globalThis.fetch };
    const onCreate = (source: MockEventSource): void => void this.sources.push(source);
    globalThis.EventSource = class extends MockEventSource {
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init, onCreate);
      }
    } as unknown as typeof EventSource;
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => this.#fetch(input, init)) as typeof fetch;
    this.#restore = () => Object.assign(globalThis, saved);
    return () => this.uninstall();
  }

  /** Put back what install() replaced. */
  uninstall(): void {
    this.#restore?.();
    this.#restore = null;
  }

  /** Answer polls with `handler` from now on. */
  onPoll(handler: PollHandler): void {
    this.#pollHandler = handler;
  }

  /** The EventSources not closed yet. */
  get openSources(): MockEventSource[] {
    return this.sources.filter((source) => source.readyState !== 2);
  }

  /** The newest EventSource (of `sessionId`, if given). */
  latest(sessionId?: string): MockEventSource | undefined {
    const matching = this.sources.filter((source) => sessionId === undefined || source.sessionId === sessionId);
    return matching[matching.length - 1];
  }

  async #fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const url = new URL(input instanceof Request ? input.url : String(input));
    this.polls.push(url);
    const signal = init?.signal;
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    const after = url.searchParams.get("after");
    const wait = Number(url.searchParams.get("wait") ?? 0);
    const reply = await this.#pollHandler({ url, after, wait });
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    return new Response(JSON.stringify(reply.body), {
      status: reply.status ?? 200,
      headers: { "Content-Type": "application/json", ...reply.headers },
    });
  }
}

/** Create a {@link MockSSE} and install it. */
export function installMockSSE(): MockSSE {
  const mock = new MockSSE();
  mock.install();
  return mock;
}

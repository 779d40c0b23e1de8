// SSEClient against the scripted EventSource and poll endpoint of trio-sse/testing, on fake
// timers: backoff, fallback and give-up times are asserted exactly, nothing really sleeps.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SSEClient, type SSEClientOptions, type SSEEvent } from "../src/index.js";
import { installMockSSE, type MockSSE } from "../src/testing.js";

const URL_ = "http://127.0.0.1:8000/sessions/room/events";
let sse: MockSSE;

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, "random").mockReturnValue(0.5); // jitter factor exactly 1
  sse = installMockSSE();
});
afterEach(() => {
  sse.uninstall();
  vi.useRealTimers();
});

async function started(options: Partial<SSEClientOptions> = {}): Promise<SSEClient> {
  const client = new SSEClient({ url: URL_, ...options });
  await vi.advanceTimersByTimeAsync(0);
  return client;
}

function latest() {
  const source = sse.latest();
  if (!source) throw new Error("no EventSource yet");
  return source;
}

describe("reconnects", () => {
  it("call every handler exactly once per event id across twenty new EventSources", async () => {
    const client = await started({ pollingFallback: false, maxRetries: null });
    const seen: Record<string, string[]> = { first: [], second: [], any: [] };
    client.on("message", (event) => void seen.first!.push(event.id));
    client.on("message", (event) => void seen.second!.push(event.id));
    client.on("*", (event) => void seen.any!.push(event.id));
    const expected: string[] = [];
    for (let round = 0; round < 20; round++) {
      const source = latest();
      expect(source.resumedAfter).toBe(round === 0 ? null : `e-${round * 2 - 1}`);
      source.open();
      for (const n of [round * 2, round * 2 + 1]) {
        source.emit("message", { n }, `e-${n}`);
        expected.push(`e-${n}`);
      }
      source.drop(); // EventSource's own retry: same object, no new listeners
      source.open();
      source.refuse(); // gives up: the client opens a new one after its backoff
      expect(source.listenerCount).toBe(0);
      await vi.advanceTimersByTimeAsync(500);
    }
    expect(seen.first).toEqual(expected);
    expect(seen.second).toEqual(expected);
    expect(seen.any).toEqual(expected);
    expect(sse.sources).toHaveLength(21);
    expect(sse.openSources).toEqual([latest()]);
    expect(latest().listenerCount).toBe(3); // message, reset, gap: one listener each
    client.destroy();
  });

  it("wait a doubling backoff, then give up for good after maxRetries", async () => {
    const client = await started({ maxRetries: 3, pollingFallback: false });
    const states: string[] = [];
    client.onConnectionChange((state) => void states.push(state));
    for (const delay of [500, 1000, 2000]) {
      latest().refuse();
      const before = sse.sources.length;
      await vi.advanceTimersByTimeAsync(delay - 1);
      expect(sse.sources).toHaveLength(before);
      await vi.advanceTimersByTimeAsync(1);
      expect(sse.sources).toHaveLength(before + 1);
    }
    latest().refuse();
    expect(client.state).toBe("failed");
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(sse.sources).toHaveLength(4);
    expect(sse.openSources).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(states).toEqual(["reconnecting", "failed"]);
    client.destroy();
  });
});

describe("polling fallback", () => {
  it("polls with the stream's cursor, then streams again from the poll's", async () => {
    const client = await started({ streamRetryInterval: 5000, pollInterval: 1000 });
    const got: string[] = [];
    const states: string[] = [];
    client.onConnectionChange((state) => void states.push(state));
    client.on("message", (event) => void got.push(event.id));
    latest().open();
    latest().emit("message", "a", "e-1");
    sse.onPoll(({ after }) =>
      after === "e-1"
        ? { body: { events: [{ type: "message", data: "b", id: "e-2" }], next: "e-2" } }
        : { body: { events: [], next: after } },
    );
    for (const delay of [500, 1000]) {
      latest().refuse();
      await vi.advanceTimersByTimeAsync(delay);
    }
    latest().refuse(); // the third failure in a row: poll
    await vi.advanceTimersByTimeAsync(0);
    expect(client.state).toBe("polling");
    expect(got).toEqual(["e-1", "e-2"]);
    expect(sse.polls.map((url) => url.searchParams.get("after"))).toEqual(["e-1", "e-2"]);
    expect(sse.openSources).toHaveLength(0); // streaming and polling never overlap
    await vi.advanceTimersByTimeAsync(5000);
    const back = latest();
    expect(back.resumedAfter).toBe("e-2");
    back.open();
    back.emit("message", "c", "e-3");
    expect(client.state).toBe("open");
    expect(got).toEqual(["e-1", "e-2", "e-3"]);
    expect(states).toEqual(["open", "reconnecting", "polling", "reconnecting", "open"]);
    client.destroy();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("fails at once on a 401 poll, whatever maxRetries says", async () => {
    const client = await started({ streamFailuresBeforePolling: 1, maxRetries: 50 });
    sse.onPoll(() => ({ status: 401, body: { error: "a bearer token is needed to subscribe" } }));
    latest().refuse();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.state).toBe("failed");
    expect(client.lastError?.message).toBe("401: a bearer token is needed to subscribe");
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(sse.polls).toHaveLength(1);
    expect(sse.sources).toHaveLength(1);
    client.destroy();
  });

  it("retries a 429 no sooner than its Retry-After", async () => {
    const client = await started({ streamFailuresBeforePolling: 1 });
    sse.onPoll(() => ({ status: 429, body: { error: "busy" }, headers: { "Retry-After": "7" } }));
    latest().refuse();
    await vi.advanceTimersByTimeAsync(6999);
    expect(sse.polls).toHaveLength(1);
    expect(client.state).toBe("polling");
    await vi.advanceTimersByTimeAsync(1);
    expect(sse.polls).toHaveLength(2);
    client.destroy();
  });
});

describe("handlers", () => {
  it("receive reset notices, streamed and polled, with typed data", async () => {
    const client = await started({ streamFailuresBeforePolling: 1 });
    const reasons: string[] = [];
    client.on<{ reason: string }>("reset", (event) => void reasons.push(event.json().reason));
    latest().open();
    latest().emit("reset", { reason: "epoch-changed" }, "b-0");
    sse.onPoll(({ after }) => ({
      body:
        after === "b-0"
          ? { events: [{ type: "reset", data: '{"reason":"unknown-id"}', id: "c-0" }], next: "c-0" }
          : { events: [], next: after },
    }));
    latest().refuse();
    await vi.advanceTimersByTimeAsync(0);
    expect(reasons).toEqual(["epoch-changed", "unknown-id"]);
    expect(client.lastEventId).toBe("c-0");
    client.destroy();
  });

  it("that throw or reject do not stop the others", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const client = await started();
    const got: SSEEvent[] = [];
    client.on("message", () => {
      throw new Error("boom");
    });
    client.on("message", (event) => void got.push(event));
    client.on("message", () => Promise.reject(new Error("later")));
    client.on("*", (event) => void got.push(event));
    latest().open();
    latest().emit("message", "x", "e-1");
    await vi.advanceTimersByTimeAsync(0);
    expect(got.map((event) => [event.type, event.data, event.id])).toEqual([
      ["message", "x", "e-1"],
      ["message", "x", "e-1"],
    ]);
    expect(Object.isFrozen(got[0])).toBe(true);
    expect(errors).toHaveBeenCalledTimes(2);
    client.destroy();
  });

  it("are all gone after destroy(), and their unsubscribes are harmless", async () => {
    const client = await started({ streamFailuresBeforePolling: 1 });
    const off = client.on("message", () => {});
    client.onConnectionChange(() => {});
    sse.onPoll(() => new Promise(() => {})); // a long poll that never answers
    latest().refuse();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.state).toBe("polling");
    client.destroy();
    off();
    off();
    expect([client.state, client.handlerCount, client.listenerCount, client.eventTypes]).toEqual(["closed", 0, 0, []]);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => client.on("message", () => {})).toThrow("after destroy");
  });
});

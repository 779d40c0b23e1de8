// The hooks against trio-sse/testing's scripted EventSource: what they open, share, deliver and
// leave behind. Fake timers: nothing really sleeps; `settle()` runs pending microtasks (where
// connections open and unused ones close).
import { StrictMode, useState } from "react";
import { act } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ConnectionPool, SSEProvider, useSSE, useSSEEvent, type UseSSEResult } from "../src/react.js";
import { installMockSSE, type MockSSE } from "../src/testing.js";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const BASE = "http://127.0.0.1:8000";
let sse: MockSSE;
let pool: ConnectionPool;
let container: HTMLElement;
let root: Root;

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, "random").mockReturnValue(0.5);
  sse = installMockSSE();
  pool = new ConnectionPool();
  container = document.createElement("div");
  root = createRoot(container);
});
afterEach(() => {
  act(() => root.unmount());
  sse.uninstall();
  vi.useRealTimers();
});

function show(element: React.ReactNode): void {
  act(() => root.render(<SSEProvider pool={pool} baseUrl={BASE}>{element}</SSEProvider>));
}

async function settle(): Promise<void> {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(0);
  });
}

function source(sessionId = "room") {
  const found = sse.latest(sessionId);
  if (!found) throw new Error(`no EventSource for ${sessionId}`);
  return found;
}

/** Records "<label> <data> <id>" for each `tick` it handles. */
function Watcher({ sessionId = "room", label = "w", log }: { sessionId?: string; label?: string; log: string[] }) {
  const { connectionState, lastEventId } = useSSEEvent<{ n: number }>(
    "tick",
    (data, event) => void log.push(`${label} ${data.n} ${event.id}`),
    { sessionId },
  );
  return (
    <span data-label={label}>
      {connectionState} {lastEventId ?? "-"}
    </span>
  );
}

describe("connections", () => {
  it("10,000 mount/unmount cycles leave no EventSource, listener, timer or connection", async () => {
    const log: string[] = [];
    let opened = 0;
    for (let i = 0; i < 10_000; i++) {
      show(<Watcher log={log} label={`c${i}`} />);
      if (i % 4 === 0) {
        // let it connect, stream one event, then unmount; other cycles unmount in the same
        // tick, before anything opens
        await settle();
        opened += 1;
        act(() => {
          source().open();
          source().emit("tick", { n: i }, `e-${i}`);
        });
        expect(container.textContent).toBe(`open e-${i}`);
      }
      show(null);
      if (i % 4 === 0) await settle();
    }
    await settle();
    expect(log).toHaveLength(opened);
    expect(log[log.length - 1]).toBe("c9996 9996 e-9996");
    expect(sse.sources).toHaveLength(opened);
    expect(sse.openSources).toEqual([]);
    expect(sse.sources.every((made) => made.listenerCount === 0)).toBe(true);
    expect(pool.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  }, 120_000);

  it("StrictMode's double mount opens one EventSource; a remount in the same tick reuses it", async () => {
    const log: string[] = [];
    show(
      <StrictMode>
        <Watcher log={log} />
      </StrictMode>,
    );
    await settle();
    expect(sse.sources).toHaveLength(1);
    act(() => source().open());
    const first = source();
    act(() => {
      root.unmount();
      root = createRoot(container);
      root.render(
        <SSEProvider pool={pool} baseUrl={BASE}>
          <StrictMode>
            <Watcher log={log} label="again" />
          </StrictMode>
        </SSEProvider>,
      );
    });
    await settle();
    expect(sse.sources).toEqual([first]);
    expect(first.readyState).toBe(1);
    act(() => first.emit("tick", { n: 1 }, "e-1"));
    expect(log).toEqual(["again 1 e-1"]); // once: StrictMode's first mount left no handler
    expect(container.textContent).toBe("open e-1");
  });

  it("50 components share one connection; it closes when the 50th unmounts", async () => {
    const log: string[] = [];
    const many = (n: number) => Array.from({ length: n }, (_, i) => <Watcher key={i} label={`w${i}`} log={log} />);
    show(many(50));
    await settle();
    expect(sse.sources).toHaveLength(1);
    act(() => {
      source().open();
      source().emit("tick", { n: 1 }, "e-1");
    });
    expect(log).toHaveLength(50);
    expect(new Set(log).size).toBe(50);
    expect(source().listenerCount).toBe(1); // one listener for the type, not one per component

    show(many(1));
    await settle();
    expect(source().readyState).toBe(1);
    act(() => source().emit("tick", { n: 2 }, "e-2"));
    expect(log.slice(50)).toEqual(["w0 2 e-2"]);

    show(many(0));
    await settle();
    expect(source().readyState).toBe(2);
    expect(source().listenerCount).toBe(0);
    expect(pool.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("different sessions get different connections", async () => {
    const log: string[] = [];
    show(
      <>
        <Watcher sessionId="a" label="a" log={log} />
        <Watcher sessionId="b" label="b" log={log} />
      </>,
    );
    await settle();
    expect(sse.sources.map((made) => made.url)).toEqual([`${BASE}/sessions/a/events`, `${BASE}/sessions/b/events`]);
    act(() => {
      source("a").open();
      source("b").open();
      source("b").emit("tick", { n: 1 }, "b-1");
    });
    expect(log).toEqual(["b 1 b-1"]);
  });
});

describe("useSSEEvent", () => {
  it("calls the latest handler without resubscribing or reconnecting", async () => {
    const log: string[] = [];
    show(<Watcher label="old" log={log} />);
    await settle();
    act(() => source().open());
    for (const label of ["new", "newer", "newest"]) show(<Watcher label={label} log={log} />);
    await settle();
    act(() => source().emit("tick", { n: 7 }, "e-7"));
    expect(log).toEqual(["newest 7 e-7"]);
    expect(sse.sources).toHaveLength(1);
    expect(source().listenerCount).toBe(1);
  });

  it("one component's throwing handler does not stop the others", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const log: string[] = [];
    function Thrower() {
      useSSEEvent("tick", () => {
        throw new Error("boom");
      }, { sessionId: "room" });
      return null;
    }
    show(
      <>
        <Thrower />
        <Watcher log={log} />
      </>,
    );
    await settle();
    act(() => {
      source().open();
      source().emit("tick", { n: 1 }, "e-1");
    });
    expect(log).toEqual(["w 1 e-1"]);
    expect(console.error).toHaveBeenCalledTimes(1);
  });
});

describe("useSSE", () => {
  let api: UseSSEResult;
  function Probe({ enabled = true }: { enabled?: boolean }) {
    api = useSSE({ sessionId: "room", maxRetries: 1, enablePollingFallback: false, enabled });
    return <b>{`${api.connectionState} ${api.isConnected} ${api.lastEventId ?? "-"} ${api.error?.message ?? "-"}`}</b>;
  }

  it("reports state, cursor and error, fails after maxRetries, and connect() resumes", async () => {
    show(<Probe />);
    expect(container.textContent).toBe("closed false - -"); // nothing opens during render
    expect(sse.sources).toHaveLength(0);
    await settle();
    expect(container.textContent).toBe("connecting false - -");
    const seen: string[] = [];
    const stable = api.addEventListener;
    act(() => void api.addEventListener("tick", (event) => void seen.push(event.id)));
    act(() => {
      source().open();
      source().emit("tick", "x", "e-1");
    });
    expect(api.addEventListener).toBe(stable);
    expect(container.textContent).toBe("open true e-1 -");
    act(() => source().refuse());
    await act(async () => {
      await vi.advanceTimersByTimeAsync(500);
    });
    act(() => source().refuse());
    expect(container.textContent).toBe("failed false e-1 stream refused or unreachable");
    await act(async () => {
      await vi.advanceTimersByTimeAsync(3_600_000);
    });
    expect(sse.sources).toHaveLength(2);

    act(() => api.connect());
    await settle();
    expect(sse.sources).toHaveLength(3);
    expect(source().resumedAfter).toBe("e-1");
    act(() => {
      source().open();
      source().emit("tick", "y", "e-2");
    });
    expect(seen).toEqual(["e-1", "e-2"]); // the handler moved to the new client, once
    expect(container.textContent).toBe("open true e-2 -");
  });

  it("disconnect() releases the connection, connect() takes it again", async () => {
    show(<Probe enabled={false} />);
    await settle();
    expect(sse.sources).toHaveLength(0);
    act(() => api.connect());
    await settle();
    act(() => source().open());
    expect(container.textContent).toBe("open true - -");
    act(() => api.disconnect());
    await settle();
    expect(container.textContent).toBe("closed false - -");
    expect(source().readyState).toBe(2);
    expect(pool.size).toBe(0);
  });

  it("falls back to polling and back to streaming, handlers and state following", async () => {
    function Poller({ log }: { log: string[] }) {
      const { connectionState } = useSSEEvent<string>("tick", (data, event) => void log.push(`${data} ${event.id}`), {
        sessionId: "room",
        pollingInterval: 1000,
      });
      return <i>{connectionState}</i>;
    }
    const log: string[] = [];
    sse.onPoll(({ after }) => ({
      body:
        after === "e-1"
          ? { events: [{ type: "tick", data: "polled", id: "e-2" }], next: "e-2" }
          : { events: [], next: after },
    }));
    show(<Poller log={log} />);
    await settle();
    act(() => {
      source().open();
      source().emit("tick", "streamed", "e-1");
    });
    for (const delay of [500, 1000, 0]) {
      act(() => source().refuse());
      await act(async () => {
        await vi.advanceTimersByTimeAsync(delay);
      });
    }
    expect(container.textContent).toBe("polling");
    expect(log).toEqual(["streamed e-1", "polled e-2"]);
    await act(async () => {
      await vi.advanceTimersByTimeAsync(30_000); // streamRetryInterval
    });
    expect(source().resumedAfter).toBe("e-2");
    act(() => {
      source().open();
      source().emit("tick", "streamed again", "e-3");
    });
    expect(container.textContent).toBe("open");
    expect(log).toEqual(["streamed e-1", "polled e-2", "streamed again e-3"]);
  });

  it("a reset notice reaches the component's handler", async () => {
    const reasons: string[] = [];
    function Resettable() {
      useSSEEvent<{ reason: string }>("reset", (data) => void reasons.push(data.reason), { sessionId: "room" });
      return null;
    }
    show(<Resettable />);
    await settle();
    act(() => {
      source().open();
      source().emit("reset", { reason: "epoch-changed" }, "b-0");
    });
    expect(reasons).toEqual(["epoch-changed"]);
  });
});

describe("without a provider", () => {
  it("hooks share the module-wide pool", async () => {
    const log: string[] = [];
    function Plain({ label }: { label: string }) {
      const [n, setN] = useState(0);
      useSSEEvent("tick", () => {
        log.push(label);
        setN(n + 1);
      }, { baseUrl: BASE, sessionId: "plain" });
      return <>{n}</>;
    }
    act(() =>
      root.render(
        <>
          <Plain label="a" />
          <Plain label="b" />
        </>,
      ),
    );
    await settle();
    expect(sse.sources).toHaveLength(1);
    act(() => {
      source("plain").open();
      source("plain").emit("tick", "1", "e-1");
    });
    expect(log.sort()).toEqual(["a", "b"]);
    act(() => root.render(null));
    await settle();
    expect(source("plain").readyState).toBe(2);
  });
});

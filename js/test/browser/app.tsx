// The page tests/test_browser_react.py drives: the hooks against a real trio-sse server.
// Built by scripts/build-page.mjs; the query string names the server and the session:
// ?server=http://127.0.0.1:PORT&session=ID
import { StrictMode, useState } from "react";
import { flushSync } from "react-dom";
import { createRoot } from "react-dom/client";
import { useSSE, useSSEEvent } from "../../src/react.js";

const query = new URLSearchParams(location.search);
const baseUrl = query.get("server") ?? "";
const sessionId = query.get("session") ?? "browser";
const clientOptions = { backoff: { initial: 100, maximum: 1000, jitter: 0.2 }, pollWait: 1000, streamRetryInterval: 2000 };

/** Calls per "<type> <id>", across every handler of the page: none may exceed 1. */
const counts: Record<string, number> = {};

function Feed() {
  const [items, setItems] = useState<{ id: string; data: unknown }[]>([]);
  const { connectionState } = useSSEEvent<unknown>(
    "message",
    (data, event) => {
      counts[`message ${event.id}`] = (counts[`message ${event.id}`] ?? 0) + 1;
      setItems((previous) => [...previous, { id: event.id, data }]);
    },
    { baseUrl, sessionId, pollingInterval: 100, clientOptions },
  );
  useSSEEvent("reset", (_data, event) => void (counts[`reset ${event.id}`] = (counts[`reset ${event.id}`] ?? 0) + 1), {
    baseUrl,
    sessionId,
    pollingInterval: 100,
    clientOptions,
  });
  return (
    <section>
      <output id="state">{connectionState}</output>
      <ol id="feed">
        {items.map((item) => (
          <li key={item.id} data-id={item.id}>
            {JSON.stringify(item.data)}
          </li>
        ))}
      </ol>
    </section>
  );
}

/** Mounted and unmounted in a loop, on the session Feed holds open. */
function Cycler() {
  const { connectionState } = useSSE({ baseUrl, sessionId, pollingInterval: 100, clientOptions });
  useSSEEvent("cycle", () => {}, { baseUrl, sessionId, pollingInterval: 100, clientOptions });
  return <i>{connectionState}</i>;
}

const feedRoot = createRoot(document.getElementById("app")!);
const cycleRoot = createRoot(document.getElementById("cycles")!);

const harness = {
  counts,
  mount(): void {
    feedRoot.render(
      <StrictMode>
        <Feed />
      </StrictMode>,
    );
  },
  unmount(): void {
    feedRoot.render(null);
  },
  /** `n` synchronous mount/unmount cycles, yielding to the event loop every 100. */
  async cycles(n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      flushSync(() => cycleRoot.render(<Cycler />));
      flushSync(() => cycleRoot.render(null));
      if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  },
};
(window as unknown as { harness: typeof harness }).harness = harness;

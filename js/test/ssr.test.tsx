// @vitest-environment node
// Server rendering: the hooks render their initial state and touch neither EventSource nor window.
import { renderToString } from "react-dom/server";
import { afterEach, expect, it } from "vitest";
import { useSSE, useSSEEvent } from "../src/react.js";

const touched: string[] = [];
for (const name of ["EventSource", "window"]) {
  Object.defineProperty(globalThis, name, {
    configurable: true,
    get() {
      touched.push(name);
      return undefined;
    },
  });
}
afterEach(() => {
  touched.length = 0;
});

it("renders on the server without touching EventSource or window", () => {
  function Page() {
    const { connectionState, isConnected } = useSSE({ baseUrl: "http://127.0.0.1:1", sessionId: "ssr" });
    useSSEEvent("tick", () => {}, { baseUrl: "http://127.0.0.1:1", sessionId: "ssr" });
    return <p>{`${connectionState} ${isConnected}`}</p>;
  }
  expect(renderToString(<Page />)).toBe("<p>closed false</p>");
  expect(touched).toEqual([]);
});

// trio-sse/react: hooks over shared, reference-counted connections (./shared.ts).
//
// Rules the hooks keep: no EventSource (or window) is touched during render or on the server;
// connections are opened in effects and released in their cleanups; handlers belong to the
// component and are re-registered, exactly once, on whatever connection it holds.

import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  type ReactNode,
} from "react";
import {
  ConnectionState,
  type ConnectionStateName,
  type SSEClientOptions,
  type SSEEvent,
  type SSEHandler,
  type Unsubscribe,
} from "./client.js";
import { Bindings, ConnectionPool, type SharedConnection } from "./shared.js";

export { ConnectionPool } from "./shared.js";

/** What identifies a connection; components with equal options share one. */
export interface UseSSEOptions {
  /** The server's base URL ("" or omitted: the page's origin). */
  baseUrl?: string;
  /** The session to watch; no connection while it is empty. */
  sessionId?: string | null;
  /** Poll `/sessions/{id}/poll` when streaming fails or stalls (default true). */
  enablePollingFallback?: boolean;
  /** Consecutive failures before `failed` (default 10; null: forever). */
  maxRetries?: number | null;
  /** Pause between polls that returned nothing, ms (default 1000). */
  pollingInterval?: number;
  /** A subscriber token (see SSEClientOptions.token). */
  token?: string;
  /** Connect on mount (default true); otherwise call connect(). */
  enabled?: boolean;
  /** Any other SSEClient option (backoff, stallTimeout, ...); compared by value. */
  clientOptions?: Partial<Omit<SSEClientOptions, "url">>;
}

export interface UseSSEResult {
  connectionState: ConnectionStateName;
  isConnected: boolean;
  /** The connection's cursor, as of the last event this component handled or state change. */
  lastEventId: string | null;
  error: Error | null;
  /** Register a handler for this component's lifetime; stable across renders. */
  addEventListener<T = unknown>(type: string, handler: SSEHandler<T>): Unsubscribe;
  /** Connect (again, after `failed`). */
  connect(): void;
  /** Release this component's share of the connection; it closes when no one else holds it. */
  disconnect(): void;
}

type Defaults = Omit<UseSSEOptions, "sessionId" | "enabled">;

interface ContextValue {
  pool: ConnectionPool;
  defaults: Defaults;
}

const defaultContext: ContextValue = { pool: new ConnectionPool(), defaults: {} };
const SSEContext = createContext<ContextValue>(defaultContext);

/**
 * Optional: defaults (baseUrl, token, ...) for the hooks below it, and a pool of connections
 * of its own (e.g. one per test, or per request on a server). Without it, hooks share a
 * module-wide pool.
 */
export function SSEProvider({ children, pool, ...defaults }: Defaults & { children?: ReactNode; pool?: ConnectionPool }): ReactNode {
  const [own] = useState(() => pool ?? new ConnectionPool());
  const key = JSON.stringify(defaults);
  // eslint-disable-next-line react-hooks/exhaustive-deps -- the defaults, by value
  const value = useMemo(() => ({ pool: pool ?? own, defaults }), [pool, own, key]);
  return createElement(SSEContext.Provider, { value }, children);
}

interface Snapshot {
  state: ConnectionStateName;
  lastEventId: string | null;
  error: Error | null;
}

const CLOSED: Snapshot = { state: ConnectionState.CLOSED, lastEventId: null, error: null };

function snapshotOf({ client }: SharedConnection): Snapshot {
  return client ? { state: client.state, lastEventId: client.lastEventId, error: client.lastError } : CLOSED;
}

function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  return a.state === b.state && a.lastEventId === b.lastEventId && a.error === b.error;
}

/** The stream URL of a session. */
export function streamUrl(baseUrl: string, sessionId: string): string {
  return `${baseUrl.replace(/\/+$/, "")}/sessions/${encodeURIComponent(sessionId)}/events`;
}

/**
 * Watch a session: its connection state, and handlers for its events.
 *
 * @example
 * const { connectionState, addEventListener } = useSSE({ baseUrl, sessionId: "job-42" });
 * useEffect(() => addEventListener("done", () => setDone(true)), [addEventListener]);
 */
export function useSSE(options: UseSSEOptions): UseSSEResult {
  const { pool, defaults } = useContext(SSEContext);
  const merged = { ...defaults, ...options };
  const { baseUrl = "", sessionId, enablePollingFallback = true, maxRetries = 10, pollingInterval = 1000, token, clientOptions } =
    merged;
  const key = sessionId
    ? JSON.stringify([baseUrl, sessionId, enablePollingFallback, maxRetries, pollingInterval, token ?? null, clientOptions ?? null])
    : null;
  const [wanted, setWanted] = useState(options.enabled ?? true);
  const [snapshot, setSnapshot] = useState(CLOSED);
  const [bindings] = useState(() => new Bindings());
  const current = useRef<SharedConnection | null>(null);

  useEffect(() => {
    if (!wanted || !key || !sessionId) {
      setSnapshot(CLOSED);
      return;
    }
    const lease = pool.acquire(key, () => ({
      ...clientOptions,
      url: streamUrl(baseUrl, sessionId),
      pollingFallback: enablePollingFallback,
      maxRetries,
      pollInterval: pollingInterval,
      token,
    }));
    const { connection } = lease;
    const update = (): void => {
      const next = snapshotOf(connection);
      setSnapshot((previous) => (sameSnapshot(previous, next) ? previous : next));
    };
    current.current = connection;
    const unwatch = connection.watch(update);
    bindings.bind(connection);
    update();
    return () => {
      bindings.bind(null);
      unwatch();
      current.current = null;
      lease.release();
    };
    // the key stands for the options it was made of
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [pool, key, wanted, bindings]);

  const addEventListener = useCallback(
    <T,>(type: string, handler: SSEHandler<T>): Unsubscribe =>
      bindings.add(type, (event: SSEEvent<T>) => {
        const connection = current.current;
        if (connection) {
          const next = snapshotOf(connection);
          setSnapshot((previous) => (sameSnapshot(previous, next) ? previous : next));
        }
        return handler(event);
      }),
    [bindings],
  );
  const connect = useCallback((): void => {
    setWanted(true);
    const connection = current.current;
    if (connection && (connection.state === ConnectionState.FAILED || connection.state === ConnectionState.CLOSED)) {
      connection.restart();
    }
  }, []);
  const disconnect = useCallback((): void => setWanted(false), []);

  const shown = wanted && key ? snapshot : CLOSED;
  return {
    connectionState: shown.state,
    isConnected: shown.state === ConnectionState.OPEN,
    lastEventId: shown.lastEventId,
    error: shown.error,
    addEventListener,
    connect,
    disconnect,
  };
}

/** Options of {@link useSSEEvent}: a connection to open (or share), or one a `useSSE` holds. */
export type UseSSEEventOptions<T> = (UseSSEOptions | { connection: UseSSEResult }) & {
  /** Turn the wire text into `T` (default: JSON, or the text itself if it is not JSON). */
  parse?: (data: string) => T;
};

/** JSON when it parses, else the text. */
export function parseData<T>(data: string): T {
  try {
    return JSON.parse(data) as T;
  } catch {
    return data as T;
  }
}

/**
 * Call `handler(data, event)` for each event of `eventType` while the component is mounted.
 * The latest handler is called; a new handler on every render neither resubscribes nor
 * reconnects.
 *
 * @example
 * useSSEEvent<{ percent: number }>("progress", (data) => setPercent(data.percent), { sessionId });
 */
export function useSSEEvent<T = unknown>(
  eventType: string,
  handler: (data: T, event: SSEEvent<T>) => unknown,
  options: UseSSEEventOptions<T>,
): UseSSEResult {
  const given = "connection" in options ? options.connection : null;
  const own = useSSE(given ? { enabled: false } : (options as UseSSEOptions));
  const sse = given ?? own;
  const latest = useRef({ handler, parse: options.parse ?? parseData<T> });
  useEffect(() => {
    latest.current = { handler, parse: options.parse ?? parseData<T> };
  });
  const { addEventListener } = sse;
  useEffect(
    () =>
      addEventListener<T>(eventType, (event) => {
        const { handler: current, parse } = latest.current;
        return current(parse(event.data), event);
      }),
    [addEventListener, eventType],
  );
  return sse;
}

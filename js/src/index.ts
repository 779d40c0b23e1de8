// trio-sse: the typed browser client. `trio-sse/react` adds hooks, `trio-sse/testing` a mock.
export {
  ANY_EVENT,
  ConnectionState,
  SSEClient,
  SSEError,
  type BackoffOptions,
  type ConnectionStateName,
  type SSEClientOptions,
  type SSEEvent,
  type SSEHandler,
  type Unsubscribe,
} from "./client.js";

// trio-sse demo page: server stats, a subscriber (trio-sse.js's SSEClient), and a publish form.
// Plain ES modules, no dependencies. URLs are relative, so the page also works under a prefix.

import { SSEClient } from "./trio-sse.js";

const $ = (id) => document.getElementById(id);
const COOKIE = "trio_sse_token";
const MAX_LOG = 200;

// -- stats ------------------------------------------------------------------------------

async function refreshStats() {
  try {
    const response = await fetch("stats", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const s = await response.json();
    const m = s.metrics || {};
    const values = {
      totalSessions: s.totalSessions,
      totalSubscribers: s.totalSubscribers,
      activeConnections: s.activeConnections,
      heldBytes: s.heldBytes?.toLocaleString(),
      eventsPublished: m.eventsPublished ?? "n/a",
      eventsDelivered: m.eventsDelivered ?? "n/a",
      memory: `${s.memoryUsageMB.toFixed(1)} MiB (${s.memoryLevel})`,
    };
    for (const [key, value] of Object.entries(values)) {
      document.querySelector(`[data-stat="${key}"]`).textContent = value;
    }
    $("stats").dataset.level = s.memoryLevel;
    $("stats-state").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("stats-state").textContent = `unreachable (${error.message})`;
  }
}

// -- event log --------------------------------------------------------------------------

function pretty(data) {
  try {
    return JSON.stringify(JSON.parse(data), null, 1).replace(/\n\s*/g, " ");
  } catch {
    return data;
  }
}

function log(kind, type, id, text) {
  const item = document.createElement("li");
  item.className = kind;
  Object.assign(item.dataset, { type, id: id ?? "" });
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  const label = document.createElement("b");
  label.textContent = type;
  const ident = document.createElement("code");
  ident.textContent = id ? `id ${id}` : "";
  const body = document.createElement("pre");
  body.textContent = text;
  item.append(time, label, ident, body);
  const list = $("log");
  list.prepend(item);
  while (list.children.length > MAX_LOG) list.lastElementChild.remove();
}

// -- subscribing ------------------------------------------------------------------------
// An SSEClient (trio-sse.js) owns the handlers: one per event type, each registered once, so a
// reconnect never delivers an event twice. Unsubscribing calls every handler's unsubscribe,
// then destroy(). Client options can be set in the page's query string for experiments and
// tests: ?options={"stallTimeout":5000,"streamRetryInterval":2000}. Only timing and retry
// options are taken: a link must not point the page at another URL (url, pollUrl), send
// credentials elsewhere (withCredentials) or plant a token.

let client = null;
let session = null;
let unsubscribes = [];
const types = new Set(["message", "reset", "gap"]);
/** Calls per "<type handler> <event id>", for tests: no handler may see an event twice. */
const counts = new Map();
const states = [];

const QUERY_OPTIONS = new Set([
  "backoff", "maxRetries", "pollingFallback", "streamFailuresBeforePolling", "pollInterval",
  "pollWait", "stallTimeout", "streamRetryInterval",
]);

function clientOptions() {
  let given;
  try {
    given = JSON.parse(new URLSearchParams(location.search).get("options") ?? "{}");
  } catch {
    return {};
  }
  if (typeof given !== "object" || given === null || Array.isArray(given)) return {};
  const options = {};
  for (const [name, value] of Object.entries(given)) {
    if (QUERY_OPTIONS.has(name)) options[name] = value;
    else console.warn(`trio-sse demo: ignoring the option ${JSON.stringify(name)} from the URL`);
  }
  return options;
}

function handlerFor(type) {
  return (event) => {
    if (event.id) {
      const key = `${type} ${event.id}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const kind = event.type === "reset" || event.type === "gap" ? "notice" : "event";
    log(kind, event.type, event.id, pretty(event.data));
  };
}

function listenFor(type) {
  if (!type || types.has(type)) return;
  types.add(type);
  if (client) unsubscribes.push(client.on(type, handlerFor(type)));
}

function setState(text) {
  $("sub-state").textContent = text;
  $("sub-state").dataset.state = text.split(/[\s:]/)[0];
}

function streamPath(id) {
  return `sessions/${encodeURIComponent(id)}/events`;
}

function setCookie(id, token) {
  // Scoped to this session's stream and poll; SameSite=Strict so other sites cannot use it.
  const path = new URL(`sessions/${encodeURIComponent(id)}/`, location.href).pathname;
  const value = token ? `${COOKIE}=${token}` : `${COOKIE}=; max-age=0`;
  document.cookie = `${value}; path=${path}; SameSite=Strict`;
}

function onState(state) {
  states.push(state);
  const error = client?.lastError?.message;
  const detail = {
    open: `subscribed to ${session}`,
    reconnecting: `${error ?? "stream ended"}; resuming after ${client?.lastEventId ?? "-"}`,
    polling: `streaming fails (${error}): polling, and trying the stream again now and then`,
    failed: `gave up: ${error}`,
  }[state];
  setState(state === "failed" || state === "reconnecting" ? `${state}: ${error ?? ""}` : state);
  if (detail) log("state", state, "", detail);
}

function subscribe(id, token) {
  unsubscribe();
  session = id;
  setCookie(id, token);
  client = new SSEClient({ ...clientOptions(), url: streamPath(id) });
  unsubscribes = [client.onConnectionChange(onState)];
  for (const type of types) unsubscribes.push(client.on(type, handlerFor(type)));
  setState("connecting");
  $("unsubscribe").disabled = false;
}

function unsubscribe() {
  if (!client) return;
  for (const unsubscribeOne of unsubscribes) unsubscribeOne();
  unsubscribes = [];
  client.destroy();
  setCookie(session, "");
  setState("closed");
  log("state", "closed", "", `unsubscribed from ${session}`);
  $("unsubscribe").disabled = true;
  window.demo.lastClient = client;
  client = null;
}

/** For tests and the console: the client, and how often each handler saw each event. */
window.demo = {
  get client() { return client; },
  lastClient: null,
  counts,
  states,
  snapshot() {
    const current = client ?? this.lastClient;
    return {
      counts: Object.fromEntries(counts),
      states: [...states],
      state: current?.state ?? null,
      lastEventId: current?.lastEventId ?? null,
      handlerCount: current?.handlerCount ?? 0,
      listenerCount: current?.listenerCount ?? 0,
      eventTypes: current?.eventTypes ?? [],
    };
  },
};

// -- publishing -------------------------------------------------------------------------

async function publish(form) {
  const { session: id, type, data: raw, token, asText } = Object.fromEntries(new FormData(form));
  let data = raw;
  if (!asText) {
    try { data = JSON.parse(raw); } catch {}
  }
  const headers = { "Content-Type": "application/json" };
  if (token.trim()) headers.Authorization = `Bearer ${token.trim()}`;
  listenFor(type);
  const result = $("pub-result");
  try {
    const response = await fetch(streamPath(id), {
      method: "POST", headers, body: JSON.stringify({ type, data }),
    });
    const body = await response.json().catch(() => ({}));
    result.textContent = response.ok ? `${response.status}: id ${body.id}`
                                     : `${response.status}: ${body.error ?? response.statusText}`;
    result.dataset.ok = response.ok;
  } catch (error) {
    result.textContent = `failed: ${error.message}`;
    result.dataset.ok = false;
  }
}

// -- wiring -----------------------------------------------------------------------------

$("subscribe").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  for (const type of form.get("types").split(",")) listenFor(type.trim());
  subscribe(form.get("session"), form.get("token").trim());
});
$("unsubscribe").addEventListener("click", unsubscribe);
$("publish").addEventListener("submit", (event) => {
  event.preventDefault();
  publish(event.target);
});
$("clear-log").addEventListener("click", () => $("log").replaceChildren());
refreshStats();
setInterval(refreshStats, 2000);

// trio-sse demo page: server stats, an EventSource subscriber, and a publish form.
// Plain ES module, no dependencies. URLs are relative, so the page also works under a prefix.

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
// EventSource dispatches an event named "chat" only to listeners registered for "chat", so
// the page keeps a set of types and registers a listener for each (new ones as they appear).

let source = null;
let session = null;
const types = new Set(["message", "reset", "gap"]);

function onEvent(event) {
  const kind = event.type === "reset" || event.type === "gap" ? "notice" : "event";
  // a gap notice has no id: lastEventId would still be the previous event's
  log(kind, event.type, event.type === "gap" ? "" : event.lastEventId, pretty(event.data));
}

function listenFor(type) {
  if (!type || types.has(type)) return;
  types.add(type);
  source?.addEventListener(type, onEvent);
}

function setState(text) {
  $("sub-state").textContent = text;
  $("sub-state").dataset.state = text.split(/[\s:]/)[0];
}

function streamPath(id) {
  return `sessions/${encodeURIComponent(id)}/events`;
}

function setCookie(id, token) {
  // Scoped to this session's stream; SameSite=Strict so other sites cannot use it.
  const path = new URL(streamPath(id), location.href).pathname;
  const value = token ? `${COOKIE}=${token}` : `${COOKIE}=; max-age=0`;
  document.cookie = `${value}; path=${path}; SameSite=Strict`;
}

// A refused stream (401, 403, 503...) closes the EventSource without telling why: ask the
// poll endpoint, which applies the same checks, for the JSON error.
async function explainRefusal(id, token) {
  try {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(`sessions/${encodeURIComponent(id)}/poll`, { headers });
    if (!response.ok) {
      const body = await response.json();
      return `${response.status}: ${body.error}`;
    }
  } catch {}
  return "no reason given (is the server reachable?)";
}

function subscribe(id, token) {
  unsubscribe();
  session = id;
  setCookie(id, token);
  const es = (source = new EventSource(streamPath(id)));
  for (const type of types) es.addEventListener(type, onEvent);
  setState("connecting");
  es.onopen = () => {
    setState("open");
    log("state", "open", "", `subscribed to ${id}`);
  };
  es.onerror = async () => {
    if (es !== source) return;
    if (es.readyState === EventSource.CONNECTING) {
      setState("error: reconnecting");
      log("state", "reconnecting", "", "the browser retries after the server's retry: time");
    } else {
      setState("refused: closed by the browser");
      const why = await explainRefusal(id, token);
      if (es === source) log("state", "refused", "", why);
    }
  };
  $("unsubscribe").disabled = false;
}

function unsubscribe() {
  if (!source) return;
  source.close();
  source = null;
  setCookie(session, "");
  setState("closed");
  log("state", "closed", "", `unsubscribed from ${session}`);
  $("unsubscribe").disabled = true;
}

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

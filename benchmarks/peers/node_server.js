// Peer: a framework-free Node.js SSE server (the `http` module only, no npm packages).
//
// Run: `node benchmarks/peers/node_server.js PORT` (127.0.0.1; SIGTERM or SIGINT stops it).
//
// Same protocol as trio-sse (see benchmarks/README.md). A publish encodes the event once into
// a Buffer and writes it to every subscriber's response at once: Node's own socket buffer is
// the per-subscriber queue, bounded by MAX_BUFFERED bytes, beyond which the subscriber is
// dropped as a slow consumer. A subscriber is removed when its response closes. Every
// HEARTBEAT_MS each stream gets a `:` comment. One process, sessions are never removed, no
// history, no auth.
"use strict";

const http = require("node:http");

const HOST = "127.0.0.1";
const MAX_BUFFERED = 256 * 1024;
const MAX_BODY = 1024 * 1024;
const HEARTBEAT_MS = 15000;
const STREAM_PATH = /^\/sessions\/([A-Za-z0-9._~-]{1,128})\/events$/;
const STREAM_HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  "X-Accel-Buffering": "no",
};
const HEARTBEAT = Buffer.from(":\n\n");

const sessions = new Map(); // session id -> {lastId, subscribers: Set<ServerResponse>}
const counters = { eventsPublished: 0, eventsDelivered: 0, slowConsumerDisconnects: 0 };

function session(id) {
  let found = sessions.get(id);
  if (found === undefined) {
    found = { lastId: 0, subscribers: new Set() };
    sessions.set(id, found);
  }
  return found;
}

function totalSubscribers() {
  let total = 0;
  for (const s of sessions.values()) total += s.subscribers.size;
  return total;
}

function sendJson(res, status, payload) {
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}

function encode(type, id, data) {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join("");
  return Buffer.from(`event: ${type}\nid: ${id}\n${lines}\n`);
}

function publish(id, type, data) {
  const s = session(id);
  s.lastId += 1;
  const frame = encode(type, s.lastId, data);
  for (const res of s.subscribers) {
    if (res.writableLength > MAX_BUFFERED) {
      s.subscribers.delete(res);
      counters.slowConsumerDisconnects += 1;
      res.destroy();
      continue;
    }
    res.write(frame);
  }
  counters.eventsPublished += 1;
  counters.eventsDelivered += s.subscribers.size;
  return s.lastId;
}

function parseEvent(body) {
  const payload = JSON.parse(body);
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new Error("the body must be a JSON object");
  }
  const type = payload.type === undefined ? "message" : payload.type;
  if (typeof type !== "string" || type === "" || /[\r\n\0]/.test(type)) {
    throw new Error("invalid type");
  }
  const data = payload.data === undefined ? null : payload.data;
  return [type, typeof data === "string" ? data : JSON.stringify(data)];
}

function subscribe(req, res, id) {
  const s = session(id);
  res.writeHead(200, STREAM_HEADERS);
  res.write("retry: 3000\n\n");
  s.subscribers.add(res);
  res.on("close", () => s.subscribers.delete(res));
}

function receivePublish(req, res, id) {
  const parts = [];
  let size = 0;
  req.on("data", (part) => {
    size += part.length;
    if (size > MAX_BODY) req.destroy();
    else parts.push(part);
  });
  req.on("end", () => {
    let event;
    try {
      event = parseEvent(Buffer.concat(parts).toString("utf8"));
    } catch (error) {
      sendJson(res, 400, { error: String(error.message) });
      return;
    }
    sendJson(res, 202, { id: String(publish(id, event[0], event[1])) });
  });
}

function handle(req, res) {
  const path = req.url.split("?", 1)[0];
  const match = STREAM_PATH.exec(path);
  if (match && req.method === "GET") return subscribe(req, res, match[1]);
  if (match && req.method === "POST") return receivePublish(req, res, match[1]);
  if (req.method === "GET" && path === "/stats") {
    const total = totalSubscribers();
    return sendJson(res, 200, { totalSubscribers: total, activeConnections: total, metrics: counters });
  }
  if (req.method === "GET" && path === "/healthz") return sendJson(res, 200, { status: "ok" });
  return sendJson(res, 404, { error: "not found" });
}

function main() {
  const port = Number(process.argv[2]);
  const server = http.createServer({ keepAliveTimeout: 60000 }, handle);
  server.keepAliveTimeout = 60000;
  server.on("clientError", (error, socket) => socket.destroy());
  const heartbeat = setInterval(() => {
    for (const s of sessions.values()) for (const res of s.subscribers) res.write(HEARTBEAT);
  }, HEARTBEAT_MS);
  const stop = () => {
    clearInterval(heartbeat);
    server.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  server.listen(port, HOST, 1024, () => console.log(`node listening on ${HOST}:${port}`));
}

main();

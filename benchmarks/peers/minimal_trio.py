"""Reference peer: a minimal trio SSE server that writes pre-encoded frames straight to sockets.

Run: ``python benchmarks/peers/minimal_trio.py PORT`` (127.0.0.1; SIGTERM or SIGINT stops it).

It speaks trio-sse's protocol (see ``benchmarks/README.md``) with no framework: the request head
is parsed by hand, each published event is encoded once together with its HTTP chunk framing,
and appended to every subscriber's deque. One task per stream waits on its subscriber's
``trio.Event`` and writes everything queued in one ``send_all``; a second task per stream reads
the socket so a closed connection is noticed at once. A subscriber with ``MAX_QUEUE`` frames
queued is disconnected (slow consumer). Every ``HEARTBEAT`` seconds each stream gets a ``:``
comment. This is the practical limit for Python on trio, not a product: one process, sessions
are never removed, no history, no auth.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

HOST = "127.0.0.1"
MAX_QUEUE = 1000
"""Frames queued for one subscriber before it is disconnected as a slow consumer."""
MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
HEARTBEAT = 15.0
RECEIVE_SIZE = 65536
STREAM_PATH = re.compile(r"/sessions/([A-Za-z0-9._~-]{1,128})/events")
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def chunk(body: bytes) -> bytes:
    """``body`` framed as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(body), body)


RETRY_FRAME = chunk(b"retry: 3000\n\n")
HEARTBEAT_FRAME = chunk(b":\n\n")


class BadRequest(Exception):
    """The request cannot be served; the message is the answer's body."""


@dataclass(eq=False)
class Subscriber:
    frames: deque[bytes] = field(default_factory=deque)
    wake: trio.Event = field(default_factory=trio.Event)
    dead: bool = False


@dataclass
class Session:
    last_id: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)


@dataclass
class Hub:
    sessions: dict[str, Session] = field(default_factory=dict)
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("eventsPublished", "eventsDelivered", "slowConsumerDisconnects"), 0
        )
    )

    def subscribers(self) -> int:
        return sum(len(s.subscribers) for s in self.sessions.values())

    def session(self, session_id: str) -> Session:
        found = self.sessions.get(session_id)
        if found is None:
            found = self.sessions[session_id] = Session()
        return found

    def publish(self, session_id: str, event_type: str, data: str) -> int:
        """Encode the event once and queue its frame for every subscriber; its id."""
        session = self.session(session_id)
        session.last_id += 1
        lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
        frame = chunk(f"event: {event_type}\nid: {session.last_id}\n{lines}\n".encode())
        for subscriber in list(session.subscribers):
            if len(subscriber.frames) >= MAX_QUEUE:
                self.drop(session, subscriber)
                self.counters["slowConsumerDisconnects"] += 1
                continue
            subscriber.frames.append(frame)
            subscriber.wake.set()
        self.counters["eventsPublished"] += 1
        self.counters["eventsDelivered"] += len(session.subscribers)
        return session.last_id

    def drop(self, session: Session, subscriber: Subscriber) -> None:
        session.subscribers.discard(subscriber)
        subscriber.dead = True
        subscriber.wake.set()

    def heartbeat(self) -> None:
        for session in self.sessions.values():
            for subscriber in session.subscribers:
                subscriber.frames.append(HEARTBEAT_FRAME)
                subscriber.wake.set()

    def stats(self) -> dict[str, Any]:
        total = self.subscribers()
        return {"totalSubscribers": total, "activeConnections": total, "metrics": self.counters}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


class Reader:
    """Requests read one after another from one connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        self.buffer += data
        return bool(data)

    async def next(self) -> Request | None:
        """The next request, or None once the client closed the connection."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD or not await self._fill():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length > MAX_BODY:
            return None
        while len(self.buffer) < length:
            if not await self._fill():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Request(method, path.split("?", 1)[0], body)


def response(status: str, payload: Any) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def parse_event(body: bytes) -> tuple[str, str]:
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise BadRequest(f"invalid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    event_type = payload.get("type", "message")
    if not isinstance(event_type, str) or not event_type or set(event_type) & set("\r\n\0"):
        raise BadRequest("invalid type")
    data = payload.get("data")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return event_type, text


class Server:
    def __init__(self) -> None:
        self.hub = Hub()

    async def handle(self, stream: trio.SocketStream) -> None:
        """One connection: answer requests until it closes or turns into an event stream."""
        try:
            async with stream:
                reader = Reader(stream)
                while (request := await reader.next()) is not None:
                    match = STREAM_PATH.fullmatch(request.path)
                    if match and request.method == "GET":
                        await self.stream_events(stream, match.group(1))
                        return
                    await stream.send_all(self.answer(request, match))
        except (trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass

    def answer(self, request: Request, match: re.Match[str] | None) -> bytes:
        if match and request.method == "POST":
            try:
                event_type, data = parse_event(request.body)
            except BadRequest as error:
                return response("400 Bad Request", {"error": str(error)})
            event_id = self.hub.publish(match.group(1), event_type, data)
            return response("202 Accepted", {"id": str(event_id)})
        if request.method == "GET" and request.path == "/stats":
            return response("200 OK", self.hub.stats())
        if request.method == "GET" and request.path == "/healthz":
            return response("200 OK", {"status": "ok"})
        return response("404 Not Found", {"error": "not found"})

    async def stream_events(self, stream: trio.SocketStream, session_id: str) -> None:
        await stream.send_all(STREAM_HEAD + RETRY_FRAME)
        session = self.hub.session(session_id)
        subscriber = Subscriber()
        session.subscribers.add(subscriber)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_disconnect, stream, nursery.cancel_scope)
                await write_frames(stream, subscriber)
                nursery.cancel_scope.cancel()
        finally:
            session.subscribers.discard(subscriber)


async def write_frames(stream: trio.SocketStream, subscriber: Subscriber) -> None:
    """Until the subscriber is dropped: wait for frames, write all queued in one send."""
    while True:
        await subscriber.wake.wait()
        if subscriber.dead:
            return
        subscriber.wake = trio.Event()
        frames = subscriber.frames
        data = frames.popleft() if len(frames) == 1 else b"".join(frames)
        frames.clear()
        await stream.send_all(data)


async def watch_disconnect(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """Read (and ignore) whatever the client sends; end the stream when it closes."""
    try:
        while await stream.receive_some(RECEIVE_SIZE):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def heartbeats(hub: Hub) -> None:
    while True:
        await trio.sleep(HEARTBEAT)
        hub.heartbeat()


async def main(port: int) -> None:
    server = Server()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heartbeats, server.hub)
            await nursery.start(serve, server, port)
            print(f"minimal-trio listening on {HOST}:{port}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


async def serve(
    server: Server, port: int, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
) -> None:
    await trio.serve_tcp(server.handle, port, host=HOST, backlog=1024, task_status=task_status)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))

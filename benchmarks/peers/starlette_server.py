"""Peer: sse-starlette on uvicorn, written the way its documentation suggests, kept fair.

Run: ``python benchmarks/peers/starlette_server.py PORT [--batch]`` (127.0.0.1; SIGTERM stops it).

Same protocol as trio-sse (see ``benchmarks/README.md``). A publish encodes the event once (in
trio-sse's field order, ``\\n`` line ends) and puts the bytes on every subscriber's bounded
``asyncio.Queue``; a full queue drops the subscriber as a slow consumer. Each stream is an
``EventSourceResponse`` over an async generator that yields one event per iteration, as in
sse-starlette's examples (sse-starlette passes bytes through unchanged, one ASGI send each).
With ``--batch`` the generator instead takes everything already queued and yields it as one
chunk, as trio-sse and the minimal trio server write. The generator's ``finally`` removes the
subscriber when sse-starlette sees the disconnect. Pings are sse-starlette's own, every 15 s, as
a bare ``:`` comment. Uvicorn runs as installed by ``pip install uvicorn`` (asyncio loop, h11).
One process, sessions are never removed, no history, no auth.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HOST = "127.0.0.1"
MAX_QUEUE = 1000
"""Events queued for one subscriber before it is disconnected as a slow consumer."""
HEARTBEAT = 15.0
BATCH = "--batch" in sys.argv[2:]
"""Write everything queued for a subscriber in one chunk, not one chunk per event."""
SESSION_ID = "{session_id:str}"


class Heartbeat(ServerSentEvent):
    """A bare ``:`` comment, as trio-sse writes (sse-starlette's default adds a timestamp)."""

    def encode(self) -> bytes:
        return b":\n\n"


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    dead: bool = False


@dataclass
class Session:
    last_id: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)


sessions: dict[str, Session] = {}
counters = dict.fromkeys(("eventsPublished", "eventsDelivered", "slowConsumerDisconnects"), 0)


def session(session_id: str) -> Session:
    found = sessions.get(session_id)
    if found is None:
        found = sessions[session_id] = Session()
    return found


def publish(session_id: str, event_type: str, data: str) -> int:
    s = session(session_id)
    s.last_id += 1
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    frame = f"event: {event_type}\nid: {s.last_id}\n{lines}\n".encode()
    for subscriber in list(s.subscribers):
        try:
            subscriber.queue.put_nowait(frame)
        except asyncio.QueueFull:
            s.subscribers.discard(subscriber)
            subscriber.dead = True
            counters["slowConsumerDisconnects"] += 1
    counters["eventsPublished"] += 1
    counters["eventsDelivered"] += len(s.subscribers)
    return s.last_id


async def events(s: Session, subscriber: Subscriber) -> AsyncIterator[bytes]:
    queue = subscriber.queue
    try:
        yield b"retry: 3000\n\n"
        while not subscriber.dead:
            frame = await queue.get()
            if BATCH and not queue.empty():
                frames = [frame]
                while not queue.empty():
                    frames.append(queue.get_nowait())
                frame = b"".join(frames)
            yield frame
    finally:
        s.subscribers.discard(subscriber)


async def stream(request: Request) -> Response:
    s = session(request.path_params["session_id"])
    subscriber = Subscriber()
    s.subscribers.add(subscriber)
    return EventSourceResponse(
        events(s, subscriber),
        headers={"Cache-Control": "no-cache"},
        media_type="text/event-stream; charset=utf-8",
        ping=HEARTBEAT,
        ping_message_factory=Heartbeat,
        sep="\n",
    )


async def receive(request: Request) -> Response:
    try:
        payload = json.loads(await request.body())
    except ValueError as error:
        return JSONResponse({"error": f"invalid JSON: {error}"}, 400)
    if not isinstance(payload, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, 400)
    event_type = payload.get("type", "message")
    if not isinstance(event_type, str) or not event_type or set(event_type) & set("\r\n\0"):
        return JSONResponse({"error": "invalid type"}, 400)
    data = payload.get("data")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    event_id = publish(request.path_params["session_id"], event_type, text)
    return JSONResponse({"id": str(event_id)}, 202)


async def stats(request: Request) -> Response:
    total = sum(len(s.subscribers) for s in sessions.values())
    body: dict[str, Any] = {
        "totalSubscribers": total,
        "activeConnections": total,
        "metrics": counters,
    }
    return JSONResponse(body)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route(f"/sessions/{SESSION_ID}/events", stream, methods=["GET"]),
        Route(f"/sessions/{SESSION_ID}/events", receive, methods=["POST"]),
        Route("/stats", stats),
        Route("/healthz", healthz),
    ]
)


if __name__ == "__main__":
    # uvicorn re-raises SIGTERM once its graceful shutdown is done: exit 0 then, not by signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        app,
        host=HOST,
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=1024,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=5,
    )

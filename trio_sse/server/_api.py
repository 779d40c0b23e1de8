"""The endpoints of the HTTP API, transport-neutral: a :class:`Request` in, a :class:`Response` out.

:class:`HTTPAPI` is what every front door serves: the lean server (``_connection.py``) and the
ASGI adapter (``_asgi.py``, under Quart or a user's app) both match the route table and call
:meth:`HTTPAPI.respond` for whole answers, or the stream endpoint for streams. Errors are mapped
to answers in one place (``_errors.answer_for``), CORS headers are added in one place
(:meth:`HTTPAPI.respond`), and ``HEAD`` and ``OPTIONS`` are answered alike for every route.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from importlib import resources
from typing import Any

import trio

from .._auth import Action, Authorizer
from .._broadcaster import Broadcaster
from .._exceptions import BatchError
from .._memory import MemoryLevel
from .._protocol import SSEEvent
from .._protocol._event import data_text
from .._settings import ServerSettings
from ._errors import INTERNAL_ERROR, HTTPError, answer_for
from ._routes import (
    Request,
    Response,
    Route,
    bearer_token,
    check_cursor,
    check_session_id,
    cors_headers,
    json_body,
)
from ._stream import StreamEndpoint

logger = logging.getLogger("trio_sse")

PUBLISH_FIELDS = frozenset({"type", "data", "ttl"})
BATCH_FIELDS = PUBLISH_FIELDS | {"session"}
POLL_MAX_EVENTS = 1000
NDJSON = "application/x-ndjson"
_STATIC_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}
_OK = json_body({"status": "ok"})

WriteStats = Callable[[], dict[str, int]]
SocketStats = Callable[[], dict[str, int]]
SOCKET_FIELDS = (
    *("open", "waiting", "limit", "reserved"),
    *("refused", "evicted", "shed", "timedOut", "acceptErrors"),
)


class HTTPAPI:
    """The routes of ``docs/http-api.md`` over one broadcaster.

    Args:
        broadcaster: The broadcaster served; its owner keeps it open.
        settings: Limits, CORS and auth of the HTTP layer.
        authorizer: Checks tokens; by default one with the settings' keys.
        write_stats: The lean server's stream-write counters, for ``/stats`` and ``/metrics``.
        socket_stats: The lean server's accepted sockets, for ``/stats`` and ``/metrics``.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        settings: ServerSettings,
        authorizer: Authorizer | None = None,
        *,
        write_stats: WriteStats | None = None,
        socket_stats: SocketStats | None = None,
    ) -> None:
        self.broadcaster = broadcaster
        self.settings = settings
        self.authorizer = authorizer or Authorizer(settings.jwt_key, settings.jwt_public_key)
        self.streams = StreamEndpoint(broadcaster, self.settings, self.authorizer)
        self._write_stats = write_stats or _no_writes
        self._socket_stats = socket_stats or _no_sockets

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the tasks every stream shares (heartbeats) until cancelled."""
        await self.streams.run(task_status=task_status)

    async def respond(self, route: Route, request: Request) -> Response:
        """The whole answer to ``request`` on ``route`` (not a stream), CORS included.

        Never raises an error of the request: refusals and bugs alike become answers (a bug
        is logged and answered 500). Cancellation propagates.
        """
        try:
            response: Response = await getattr(self, route.endpoint)(request)
        except Exception as error:
            answer = answer_for(error)
            if answer is None:
                logger.exception("unexpected error in %s %s", request.method, route.pattern)
                answer = INTERNAL_ERROR
            response = Response.of(answer)
        response.headers += cors_headers(request.headers.get("origin"), self.settings)
        return response

    def refuse(self, request: Request, error: HTTPError) -> Response:
        """The answer for a request refused before any route was found (404, 405, 400)."""
        response = Response.of(error)
        response.headers += cors_headers(request.headers.get("origin"), self.settings)
        return response

    def options(self, request: Request, allow: str) -> Response:
        """The answer to ``OPTIONS`` on a known path: a CORS preflight."""
        headers = [("Allow", allow)]
        headers += cors_headers(request.headers.get("origin"), self.settings, preflight=True)
        return Response(204, b"", "", headers)

    # -- publishing -------------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        session = request.params["session"]
        self._authorize_publish(request, (session,))
        value = _parse_json(request.body)
        if isinstance(value, list):
            items = [
                (session, *_event_fields(item, PUBLISH_FIELDS, i)) for i, item in enumerate(value)
            ]
            return await self._publish_all(items)
        if not isinstance(value, dict):
            raise HTTPError(400, 'body must be a JSON object like {"type": ..., "data": ...}')
        type, data, ttl = _event_fields(value, PUBLISH_FIELDS)
        # The connection yields at its next read: no checkpoint of publish's own needed.
        event = await self.broadcaster.publish_now(session, type, data, ttl=ttl)
        return Response(202, b'{"id":"%s"}' % event.id.encode())  # type: ignore[union-attr]

    async def publish_batch(self, request: Request) -> Response:
        """``POST /events``: events for any sessions, as a JSON array or NDJSON."""
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == NDJSON:
            values = _parse_ndjson(request.body)
        else:
            values = _parse_json(request.body)
            if not isinstance(values, list):
                raise HTTPError(400, "body must be a JSON array of events (or NDJSON)")
        items = []
        for index, value in enumerate(values):
            type, data, ttl = _event_fields(value, BATCH_FIELDS, index)
            session = value.get("session")
            if not isinstance(session, str):
                raise HTTPError(400, "session must be a string", extra={"index": index})
            try:
                check_session_id(session)
            except HTTPError as error:
                raise HTTPError(400, error.reason, extra={"index": index}) from None
            items.append((session, type, data, ttl))
        self._authorize_publish(request, {item[0] for item in items})
        return await self._publish_all(items)

    async def _publish_all(self, items: list[tuple[str, str, Any, float | None]]) -> Response:
        if len(items) > self.settings.max_batch_events:
            limit = self.settings.max_batch_events
            raise HTTPError(413, f"a batch holds at most max_batch_events={limit} events")
        try:
            events = await self.broadcaster.publish_batch(items)
        except BatchError as error:
            answer = answer_for(error.error) or HTTPError(400, str(error.error))
            raise HTTPError(answer.status, answer.reason, extra={"index": error.index}) from None
        return Response(202, json_body({"ids": [event.id for event in events]}))

    def _authorize_publish(self, request: Request, sessions: Iterable[str]) -> None:
        if not self.settings.auth_publish:
            return
        # The header only: a cookie would let another site publish or delete through a
        # simple cross-site request that needs no CORS preflight.
        token = bearer_token(request.headers, None)
        for session in sessions:
            self.authorizer.check(token, Action.PUBLISH, session)

    # -- reading ----------------------------------------------------------------------------

    async def poll(self, request: Request) -> Response:
        session, _ = self.streams.check(request)
        after = check_cursor(request.query("after"), self.settings)
        wait = _wait_seconds(request.query("wait") or "0", self.settings.max_poll_wait)
        events: list[SSEEvent] = []
        broadcaster = self.broadcaster
        async with self.streams.connection_slot(), broadcaster.subscribe(session, after) as sub:
            # EndOfChannel: closed meanwhile (session deleted, shutdown...): answer what we have
            with trio.move_on_after(wait), suppress(trio.EndOfChannel):
                events = await sub.receive_batch(POLL_MAX_EVENTS)
            if not events:  # wait=0, or nothing came: take what is ready without waiting
                events = _ready(sub.receive_nowait)
            cursor = sub.last_event_id
        answer = {
            "events": [{"id": e.id, "type": e.type, "data": data_text(e.data)} for e in events],
            "next": cursor,
        }
        return Response(200, json_body(answer))

    async def delete(self, request: Request) -> Response:
        session = request.params["session"]
        self._authorize_publish(request, (session,))
        if not await self.broadcaster.close_session(session):
            raise HTTPError(404, f"no session {session!r}")
        return Response(200, json_body({"deleted": session}))

    # -- operations -------------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        sockets = self._socket_stats()
        stats = {
            **self.broadcaster.get_stats(),
            "activeConnections": self.streams.active.value,
            "openConnections": sockets["open"],
            "sockets": sockets,
            "streamWrites": self._write_stats(),
            "pid": os.getpid(),
        }
        return Response(200, json_body(stats))

    async def metrics(self, request: Request) -> Response:
        from .._metrics import prometheus_text  # prometheus-client is loaded when scraped

        stats = self.broadcaster.statistics()
        text = prometheus_text(
            stats, self.streams.active.value, self._write_stats(), self._socket_stats()
        )
        return Response(200, text, "text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        return Response(200, _OK)

    async def readyz(self, request: Request) -> Response:
        if self.broadcaster.closed:
            return Response(503, json_body({"status": "shutting down"}))
        if self.broadcaster.memory_level is MemoryLevel.CRITICAL:
            return Response(503, json_body({"status": "memory critical"}))
        if not self.broadcaster.backend_ready:
            return Response(503, json_body({"status": "backend unavailable"}))
        return Response(200, json_body({"status": "ready"}))

    async def index(self, request: Request) -> Response:
        return _static("index.html")

    async def static(self, request: Request) -> Response:
        return _static(request.params["file"])

    async def stream(self, request: Request) -> Response:
        raise AssertionError("streams are served by StreamEndpoint.serve")  # pragma: no cover


def _no_writes() -> dict[str, int]:
    return {"eventsHandedOver": 0, "coalescedWrites": 0, "pendingBytes": 0}


def _no_sockets() -> dict[str, int]:
    """Behind ASGI the server in front (Hypercorn...) owns the sockets: nothing counted here."""
    return dict.fromkeys(SOCKET_FIELDS, 0)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge ints, deep nesting
        raise HTTPError(400, f"body is not valid JSON: {exc}") from None


def _parse_ndjson(body: bytes) -> list[Any]:
    values = []
    for index, line in enumerate(body.split(b"\n")):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except (ValueError, RecursionError) as exc:
            raise HTTPError(400, f"line is not valid JSON: {exc}", extra={"index": index}) from None
    return values


def _event_fields(
    value: Any, allowed: frozenset[str], index: int | None = None
) -> tuple[str, Any, float | None]:
    """``(type, data, ttl)`` of one event object, checked; errors carry ``index`` if given."""
    extra = {} if index is None else {"index": index}
    if not isinstance(value, dict):
        raise HTTPError(
            400, 'an event must be a JSON object like {"type": ..., "data": ...}', extra=extra
        )
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise HTTPError(400, f"unknown field(s): {', '.join(unknown)}", extra=extra)
    type = value.get("type", "message")
    if not isinstance(type, str):
        raise HTTPError(400, "type must be a string", extra=extra)
    ttl = value.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf
    ):
        raise HTTPError(
            400, "ttl must be a positive, finite number of seconds or null", extra=extra
        )
    return type, value.get("data"), ttl


def _wait_seconds(raw: str, maximum: float) -> float:
    try:
        wait = float(raw)
    except ValueError:
        raise HTTPError(400, "wait must be a number of seconds") from None
    if not 0 <= wait <= maximum:
        raise HTTPError(400, f"wait must be between 0 and {maximum} seconds")
    return wait


def _ready(receive_nowait: Callable[[], SSEEvent]) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    while len(events) < POLL_MAX_EVENTS:
        try:
            events.append(receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return events


# The demo page and its files: scripts and styles from this origin only (no inline code), and
# network requests (fetch, EventSource) to this origin only, so a crafted link cannot point the
# page at another site; never framed (clickjacking); no Referer leaves it.
DEMO_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def _static(name: str) -> Response:
    static = resources.files("trio_sse") / "static"
    target = static / name
    if "/" in name or name.startswith(".") or not target.is_file():
        raise HTTPError(404, f"no static file {name!r}")
    content_type = _STATIC_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return Response(200, target.read_bytes(), content_type, list(DEMO_HEADERS))

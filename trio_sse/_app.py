"""The Quart-Trio application: publish, poll, delete, stats, metrics, health, demo page.

Routes only translate HTTP to calls on the broadcaster and back; the logic lives below. The
stream endpoint is served in front of Quart by :mod:`trio_sse._stream`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import suppress
from importlib import resources
from typing import Any

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent
from quart import Quart, Response, request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException

from ._auth import Action, Authorizer
from ._broadcaster import Broadcaster
from ._exceptions import TrioSSEError
from ._http import (
    HTTPError,
    bearer_token,
    check_cursor,
    check_session_id,
    cors_headers,
    translate,
)
from ._memory import MemoryLevel
from ._metrics import prometheus_text
from ._protocol import SSEEvent
from ._protocol._event import data_text
from ._settings import ServerSettings
from ._stream import StreamEndpoint

PUBLISH_FIELDS = frozenset({"type", "data", "ttl"})
POLL_MAX_EVENTS = 1000


def create_app(
    broadcaster: Broadcaster,
    settings: ServerSettings | None = None,
    *,
    authorizer: Authorizer | None = None,
) -> SSEApp:
    """A Quart-Trio app serving ``broadcaster`` over HTTP (see ``docs/http-api.md``).

    The caller owns the broadcaster (``async with open_broadcaster() as b``) and runs the app,
    e.g. with :func:`trio_sse.serve`, which adds what long streams need from the server.
    """
    settings = settings or ServerSettings()
    authorizer = authorizer or Authorizer(settings.jwt_key, settings.jwt_public_key)
    endpoint = StreamEndpoint(broadcaster, settings, authorizer)
    app = SSEApp("trio_sse", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    # Quart's default 60 s would cut a long poll; polls end by themselves within max_poll_wait.
    app.config["RESPONSE_TIMEOUT"] = settings.max_poll_wait + 30
    app.sse = endpoint
    _routes(app, endpoint)

    @app.before_serving
    async def start_stream_tasks() -> None:
        await app.nursery.start(endpoint.run)

    @app.after_serving
    async def stop_stream_tasks() -> None:
        endpoint.stop()

    return app


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's request handling, with the message that ends a response shielded.

    Works around a trap noted in ``STACK-NOTES.md`` (Quart-Trio on Hypercorn): without it,
    no connection is closed after a normal response. Hypercorn finishes the exchange inside
    the app's ``send`` of the last body message: it tells the app ``http.disconnect``, then
    either restarts the connection's keep-alive idle timer or, for ``Connection: close`` and
    HTTP/1.0, closes the socket. Quart-Trio's receive task wakes on that ``http.disconnect``
    and cancels its nursery, so the rest of that ``send`` (still running in the handler
    task) is cancelled at its next checkpoint: the idle timer is never started and the socket
    is never closed. Idle connections then stay open until the client leaves, and a shutdown
    waits the whole ``graceful_timeout`` for them. Shielding this one ``send`` lets Hypercorn
    finish (it is bounded: Hypercorn already shields its socket writes); the cancel then ends
    a handler that has nothing left to do. A client that leaves earlier still cancels the
    handler, since that disconnect comes from Hypercorn's reader task.
    """

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def send_end_shielded(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super().__call__(receive, send_end_shielded)


class SSEApp(QuartTrio):
    """A Quart-Trio app whose event streams bypass the framework (see ``_stream.py``)."""

    asgi_http_class = _HTTPConnection
    sse: StreamEndpoint

    async def asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        session_id = self.sse.route(scope)
        if session_id is None:
            await super().asgi_app(scope, receive, send)
        else:
            await self.sse(scope, receive, send, session_id)


def _routes(app: Quart, endpoint: StreamEndpoint) -> None:
    broadcaster, settings = endpoint.broadcaster, endpoint.settings

    def authorize(action: Action, session_id: str) -> None:
        authorization = request.headers.get("Authorization")
        if action is Action.PUBLISH and settings.auth_publish:
            # The header only: a cookie would let another site publish or delete through a
            # simple cross-site request that needs no CORS preflight.
            token = bearer_token(authorization, {}, settings.cookie_name)
            endpoint.authorizer.check(token, action, session_id)
        elif action is Action.SUBSCRIBE and settings.auth_subscribe:
            token = bearer_token(authorization, request.cookies, settings.cookie_name)
            endpoint.authorizer.check(token, action, session_id)

    @app.post("/sessions/<session_id>/events")
    async def publish(session_id: str) -> tuple[dict[str, Any], int]:
        check_session_id(session_id)
        authorize(Action.PUBLISH, session_id)
        body = await request.get_data(as_text=False)
        fields = _publish_fields(body.encode() if isinstance(body, str) else body)
        event = await broadcaster.publish(
            session_id, fields.get("type", "message"), fields.get("data"), ttl=fields.get("ttl")
        )
        return {"id": event.id}, 202

    @app.get("/sessions/<session_id>/poll")
    async def poll(session_id: str) -> dict[str, Any]:
        check_session_id(session_id)
        authorize(Action.SUBSCRIBE, session_id)
        after = check_cursor(request.args.get("after"), settings)
        wait = _wait_seconds(request.args.get("wait", "0"), settings.max_poll_wait)
        async with endpoint.connection_slot(), broadcaster.subscribe(session_id, after) as sub:
            events: list[SSEEvent] = []
            # EndOfChannel: closed meanwhile (session deleted, shutdown...): answer what we have
            with trio.move_on_after(wait), suppress(trio.EndOfChannel):
                events = await sub.receive_batch(POLL_MAX_EVENTS)
            if not events:  # wait=0, or nothing came: take what is ready without waiting
                events = _ready(sub.receive_nowait)
            return {
                "events": [{"id": e.id, "type": e.type, "data": data_text(e.data)} for e in events],
                "next": sub.last_event_id,
            }

    @app.delete("/sessions/<session_id>")
    async def delete(session_id: str) -> tuple[dict[str, Any], int]:
        check_session_id(session_id)
        authorize(Action.PUBLISH, session_id)
        if not await broadcaster.close_session(session_id):
            raise HTTPError(404, f"no session {session_id!r}")
        return {"deleted": session_id}, 200

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {
            **broadcaster.get_stats(),
            "activeConnections": endpoint.active.value,
            "streamWrites": endpoint.write_stats(),
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        writes = endpoint.write_stats()
        text = prometheus_text(broadcaster.statistics(), endpoint.active.value, writes)
        return Response(text, content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> tuple[dict[str, str], int]:
        if broadcaster.closed:
            return {"status": "shutting down"}, 503
        if broadcaster.memory_level is MemoryLevel.CRITICAL:
            return {"status": "memory critical"}, 503
        return {"status": "ready"}, 200

    @app.get("/")
    async def index() -> Response:
        return _static("index.html")

    @app.get("/static/<path:name>")
    async def static_file(name: str) -> Response:
        return _static(name)

    _error_handlers(app, settings)


def _error_handlers(app: Quart, settings: ServerSettings) -> None:
    @app.errorhandler(HTTPError)
    async def http_error(error: HTTPError) -> Response:
        return Response(
            error.body(), error.status, dict(error.headers), content_type="application/json"
        )

    @app.errorhandler(TrioSSEError)
    async def core_error(error: TrioSSEError) -> Response:
        return await http_error(translate(error))

    @app.errorhandler(trio.ClosedResourceError)
    async def closed(error: trio.ClosedResourceError) -> Response:
        reason = "the server is shutting down"
        return await http_error(HTTPError(503, reason, (("Retry-After", "5"),)))

    @app.errorhandler(HTTPException)
    async def werkzeug_error(error: HTTPException) -> Response:
        status = error.code or 500
        allow = tuple((k, v) for k, v in error.get_headers() if k.lower() == "allow")
        return await http_error(HTTPError(status, error.description or error.name, allow))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        app.logger.exception("unexpected error", exc_info=error)
        return await http_error(HTTPError(500, "internal error"))

    @app.after_request
    async def add_cors(response: Response) -> Response:
        preflight = request.method == "OPTIONS"
        for name, value in cors_headers(
            request.headers.get("Origin"), settings, preflight=preflight
        ):
            response.headers[name] = value
        return response


def _publish_fields(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge ints, deep nesting
        raise HTTPError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise HTTPError(400, 'body must be a JSON object like {"type": ..., "data": ...}')
    unknown = sorted(set(fields) - PUBLISH_FIELDS)
    if unknown:
        raise HTTPError(400, f"unknown field(s): {', '.join(unknown)}")
    if not isinstance(fields.get("type", "message"), str):
        raise HTTPError(400, "type must be a string")
    ttl = fields.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf
    ):
        raise HTTPError(400, "ttl must be a positive, finite number of seconds or null")
    return fields


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


def _static(name: str) -> Response:
    static = resources.files("trio_sse") / "static"
    target = static.joinpath(*[part for part in name.split("/") if part not in ("", ".", "..")])
    if not target.is_file():
        raise HTTPError(404, f"no static file {name!r}")
    content_type = {
        "html": "text/html; charset=utf-8",
        "js": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8",
    }.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return Response(target.read_bytes(), content_type=content_type)

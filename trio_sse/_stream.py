"""The SSE stream endpoint, served as a lean ASGI handler in front of the Quart app.

``GET /sessions/{id}/events`` is the one long-lived route, so it skips the framework's
per-chunk machinery: it subscribes, writes the ``retry:`` field, then loops on
``receive_batch`` so that every event already queued goes out in one send, writing a heartbeat
comment when the stream has been quiet for ``heartbeat_interval``. A second task watches the
ASGI ``receive`` channel and cancels the stream the moment the server reports a disconnect;
heartbeat writes (with ``TCP_USER_TIMEOUT`` on the socket, see ``_serve.py``) catch the peers
that vanish without a word. When the broadcaster shuts down, each stream is told to come back
after a jittered ``retry:`` and ends cleanly.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import trio
from trio_util import AsyncValue

from ._auth import Action, AuthError, Authorizer
from ._broadcaster import Broadcaster
from ._exceptions import TrioSSEError
from ._http import (
    HTTPError,
    bearer_token,
    check_cursor,
    check_session_id,
    cors_headers,
    parse_cookies,
    translate,
    unavailable,
)
from ._protocol import encode_comment, encode_retry
from ._settings import ServerSettings
from ._subscription import CloseReason, Subscription

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STREAM_PATH = re.compile(r"/sessions/([^/]+)/events")
HEARTBEAT = encode_comment()
_CLOSE_NOTES = {
    CloseReason.SLOW_CONSUMER: encode_comment("slow consumer: reconnect to resume"),
    CloseReason.STALE: encode_comment("stale subscriber: reconnect to resume"),
    CloseReason.SESSION_CLOSED: encode_comment("session closed"),
}


class StreamEndpoint:
    """Serves event streams for one broadcaster; counts them for limits and draining."""

    def __init__(
        self, broadcaster: Broadcaster, settings: ServerSettings, authorizer: Authorizer
    ) -> None:
        self.broadcaster = broadcaster
        self.settings = settings
        self.authorizer = authorizer
        self.active = AsyncValue(0)
        """Streams and long polls open now."""
        self._random = random.Random()

    def route(self, scope: Scope) -> str | None:
        """The session id if ``scope`` is a stream request, else None."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return None
        match = STREAM_PATH.fullmatch(scope["path"])
        return match.group(1) if match else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        headers = _headers(scope)
        cors = cors_headers(headers.get("origin"), self.settings)
        try:
            subscription_args = self._check(scope, headers, session_id)
        except HTTPError as error:
            await _answer(send, error, cors)
            return
        try:
            async with (
                self.connection_slot(),
                self.broadcaster.subscribe(*subscription_args) as sub,
            ):
                await send(_start(cors))
                if scope["method"] == "GET":
                    await self._serve(sub, receive, send)
        except HTTPError as error:
            await _answer(send, error, cors)
        except TrioSSEError as error:
            await _answer(send, translate(error), cors)
        except trio.ClosedResourceError:
            await _answer(send, unavailable("the server is shutting down"), cors)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _check(
        self, scope: Scope, headers: dict[str, str], session_id: str
    ) -> tuple[str, str | None]:
        check_session_id(session_id)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        cursor = headers.get("last-event-id") or query.get("lastEventId", [""])[0]
        if self.settings.auth_subscribe:
            cookies = parse_cookies(v for k, v in _header_list(scope) if k == "cookie")
            token = bearer_token(headers.get("authorization"), cookies, self.settings.cookie_name)
            try:
                self.authorizer.check(token, Action.SUBSCRIBE, session_id)
            except AuthError as error:
                raise translate(error) from None
        return session_id, check_cursor(cursor, self.settings)

    def connection_slot(self) -> _Slot:
        """Count a long-lived request; refuse it past ``max_connections``."""
        return _Slot(self.active, self.settings.max_connections)

    async def _serve(self, sub: Subscription, receive: Receive, send: Send) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope)
            await self._pump(sub, send)
            nursery.cancel_scope.cancel()

    async def _pump(self, sub: Subscription, send: Send) -> None:
        await _body(send, encode_retry(self.settings.retry_ms))
        interval = self.settings.heartbeat_interval
        while True:
            batch = None
            with trio.move_on_after(interval):
                try:
                    batch = await sub.receive_batch()
                except trio.EndOfChannel:
                    break
            await _body(send, b"".join(e.encoded for e in batch) if batch else HEARTBEAT)
        await _body(send, self._farewell(sub.close_reason))

    def _farewell(self, reason: CloseReason | None) -> bytes:
        if reason is CloseReason.SHUTDOWN:
            low = self.settings.shutdown_retry_ms
            return encode_retry(self._random.randint(low, 2 * low))
        return _CLOSE_NOTES.get(reason, b"") if reason else b""


class _Slot:
    """``async with``: holds one of ``limit`` connection slots."""

    def __init__(self, active: AsyncValue[int], limit: int) -> None:
        self._active = active
        self._limit = limit

    async def __aenter__(self) -> None:
        await trio.lowlevel.checkpoint()
        if self._active.value >= self._limit:
            raise unavailable(f"max_connections={self._limit} reached")
        self._active.value += 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._active.value -= 1


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _body(send: Send, data: bytes) -> None:
    if data:
        await send({"type": "http.response.body", "body": data, "more_body": True})


def _start(cors: list[tuple[str, str]]) -> Message:
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in cors]
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def _answer(send: Send, error: HTTPError, cors: list[tuple[str, str]]) -> None:
    body = error.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in (*error.headers, *cors)]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header_list(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def _headers(scope: Scope) -> dict[str, str]:
    return dict(_header_list(scope))


__all__ = ["StreamEndpoint"]

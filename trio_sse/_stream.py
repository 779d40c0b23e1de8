"""The SSE stream endpoint, transport-neutral: a socket on the lean path, or ASGI.

``GET /sessions/{id}/events`` is the one long-lived route, so it skips the framework's
per-chunk machinery: it subscribes, writes the ``retry:`` field, then loops on
``receive_batch`` so that every event already queued goes out in one send, writing a heartbeat
comment when the stream has been quiet for ``heartbeat_interval``. While it waits idle, a
socket transport takes events from the publisher directly, for the server's write coalescer
(``_coalesce.py``). The stream ends the moment its client leaves: the server's hang-up watcher
(``_hangup.py``) says so for sockets; over ASGI a second task waits for ``http.disconnect``.
Heartbeat writes (with ``TCP_USER_TIMEOUT`` on the socket, see ``_serve.py``) catch the peers
that vanish without a word. When the broadcaster shuts down, each stream is told to come back
after a jittered ``retry:`` and ends cleanly. The tasks all streams share (heartbeats,
coalescing, hang-ups) run in :meth:`StreamEndpoint.run`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import trio
from trio_util import AsyncValue

from ._auth import Action, AuthError, Authorizer
from ._broadcaster import Broadcaster
from ._coalesce import WriteCoalescer
from ._exceptions import TrioSSEError
from ._hangup import HangupWatcher
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
from ._protocol import SSEEvent, encode_comment, encode_retry
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
        self.coalescer = WriteCoalescer()
        """Flushes what publishers hand to socket transports (see ``_coalesce.py``)."""
        self.hangups = HangupWatcher()
        """Notices socket transports' clients leaving (see ``_hangup.py``)."""
        self._random = random.Random()
        self._beats: set[_Beat] = set()
        self._tasks = trio.CancelScope()

    def route(self, scope: Scope) -> str | None:
        """The session id if ``scope`` is a stream request, else None."""
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return None
        match = STREAM_PATH.fullmatch(scope["path"])
        return match.group(1) if match else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, session_id: str) -> None:
        """Serve a stream request that came through the ASGI server."""
        request = StreamRequest(
            scope["method"], session_id, scope.get("query_string", b""), _header_list(scope)
        )
        await self.serve(request, ASGITransport(receive, send))

    async def serve(self, request: StreamRequest, transport: Transport) -> None:
        """Check, subscribe, then stream until the client leaves or the subscription ends."""
        headers = dict(request.headers)
        cors = cors_headers(headers.get("origin"), self.settings)
        try:
            subscription_args = self._check(request, headers)
        except HTTPError as error:
            await _answer(transport, error, cors)
            return
        try:
            async with (
                self.connection_slot(),
                self.broadcaster.subscribe(*subscription_args) as sub,
            ):
                await transport.start(200, _stream_headers(cors))
                if request.method == "GET":
                    await self._serve(sub, transport)
        except HTTPError as error:
            await _answer(transport, error, cors)
        except TrioSSEError as error:
            await _answer(transport, translate(error), cors)
        except trio.ClosedResourceError:
            await _answer(transport, unavailable("the server is shutting down"), cors)
        else:
            await transport.finish()

    def _check(self, request: StreamRequest, headers: dict[str, str]) -> tuple[str, str | None]:
        session_id = check_session_id(request.session_id)
        query = parse_qs(request.query_string.decode("latin-1"))
        cursor = headers.get("last-event-id") or query.get("lastEventId", [""])[0]
        if self.settings.auth_subscribe:
            cookies = parse_cookies(v for k, v in request.headers if k == "cookie")
            token = bearer_token(headers.get("authorization"), cookies, self.settings.cookie_name)
            try:
                self.authorizer.check(token, Action.SUBSCRIBE, session_id)
            except AuthError as error:
                raise translate(error) from None
        return session_id, check_cursor(cursor, self.settings)

    def connection_slot(self) -> _Slot:
        """Count a long-lived request; refuse it past ``max_connections``."""
        return _Slot(self.active, self.settings.max_connections)

    async def _serve(self, sub: Subscription, transport: Transport) -> None:
        """Pump events until the subscription ends or the client leaves."""
        leaving = trio.CancelScope()
        if transport.watch_disconnect(leaving.cancel):  # one task watches every socket
            with leaving:
                await self._pump(sub, transport)
            return
        async with trio.open_nursery() as nursery:  # this transport needs a task to watch it
            nursery.start_soon(_cancel_on_disconnect, transport, nursery.cancel_scope)
            await self._pump(sub, transport)
            nursery.cancel_scope.cancel()

    async def _pump(self, sub: Subscription, transport: Transport) -> None:
        beat = _Beat(sub, trio.current_time())
        self._beats.add(beat)
        if transport.can_write_nowait:

            def direct(event: SSEEvent, now: float) -> bool:
                taken = transport.write_nowait(event.encoded, sub.wake)
                if taken:
                    beat.last_write = now
                return taken

            sub.direct = direct
        try:
            await transport.write(encode_retry(self.settings.retry_ms))
            while True:
                try:
                    batch = await sub.receive_batch()  # [] when the heartbeat task wakes it
                except trio.EndOfChannel:
                    break
                if batch:
                    await transport.write(b"".join(e.encoded for e in batch))
                else:  # woken: flush what a direct write left over, else a heartbeat
                    await transport.write(b"" if transport.flushing else HEARTBEAT)
                beat.last_write = trio.current_time()
            await transport.write(self._farewell(sub.close_reason))
        finally:
            sub.direct = None
            self._beats.discard(beat)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the tasks all streams share (heartbeats, write coalescing, hang-ups) until
        :meth:`stop`."""
        with trio.CancelScope() as self._tasks:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.coalescer.run)
                await nursery.start(self.hangups.run)
                await nursery.start(self._run_heartbeats)
                task_status.started()

    def stop(self) -> None:
        """End :meth:`run`."""
        self._tasks.cancel()

    async def _run_heartbeats(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Wake every stream quiet for ``heartbeat_interval``; look every tenth of it.

        One task for all streams instead of a timer per stream and per write (a cancel scope
        with a deadline costs more than the write it guards). A quiet stream gets a heartbeat
        comment between 1 and 1.1 ``heartbeat_interval`` after its last write.
        """
        interval = self.settings.heartbeat_interval
        task_status.started()
        while True:
            await trio.sleep(interval / 10)
            quiet_since = trio.current_time() - interval
            for beat in list(self._beats):
                if beat.last_write <= quiet_since:
                    beat.subscription.wake()

    def write_stats(self) -> dict[str, int]:
        """Events publishers handed straight to sockets, the writes that carried them, and the
        bytes waiting for the next write."""
        coalescer = self.coalescer
        return {
            "eventsHandedOver": coalescer.events,
            "coalescedWrites": coalescer.flushes,
            "pendingBytes": coalescer.pending_bytes,
        }

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


@dataclass(eq=False)
class _Beat:
    """A stream being written, and when it last was."""

    subscription: Subscription
    last_write: float


@dataclass(frozen=True)
class StreamRequest:
    """What the stream endpoint needs of a request, whichever server parsed it."""

    method: str
    session_id: str
    query_string: bytes
    headers: list[tuple[str, str]]
    """Lower-case names, latin-1 text."""


class Transport(Protocol):
    """How a stream's response reaches the client."""

    can_write_nowait: bool
    """Whether :meth:`write_nowait` can ever take an event (a socket can; ASGI cannot)."""

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> None: ...
    async def wait_disconnect(self) -> None: ...
    def watch_disconnect(self, on_disconnect: Callable[[], None]) -> bool:
        """Have ``on_disconnect`` called when the client leaves, without a task; False if
        :meth:`wait_disconnect` must be waited on instead."""
        ...

    def write_nowait(self, data: bytes, flush_later: Callable[[], None]) -> bool: ...

    @property
    def flushing(self) -> bool:
        """Bytes of a direct write wait to be sent by the next :meth:`write`."""
        ...


class ASGITransport:
    """A response through ASGI ``send``; disconnects from ASGI ``receive``."""

    can_write_nowait = False
    flushing = False

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await self._send({"type": "http.response.start", "status": status, "headers": encoded})

    async def write(self, data: bytes) -> None:
        if data:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def wait_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    def write_nowait(self, data: bytes, flush_later: Callable[[], None]) -> bool:
        return False

    def watch_disconnect(self, on_disconnect: Callable[[], None]) -> bool:
        return False


async def _cancel_on_disconnect(transport: Transport, scope: trio.CancelScope) -> None:
    await transport.wait_disconnect()
    scope.cancel()


def _stream_headers(cors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("X-Accel-Buffering", "no"),
        *cors,
    ]


async def _answer(transport: Transport, error: HTTPError, cors: list[tuple[str, str]]) -> None:
    body = error.body()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    await transport.start(error.status, [*headers, *error.headers, *cors])
    await transport.write(body)
    await transport.finish()


def _header_list(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


__all__ = ["ASGITransport", "StreamEndpoint", "StreamRequest", "Transport"]

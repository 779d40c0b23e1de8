"""The SSE stream endpoint, transport-neutral: a socket on the lean path, ASGI, or a Quart body.

``GET /sessions/{id}/events`` is the one long-lived route. It checks the request, takes a
connection slot, subscribes, and only then answers 200, so every refusal is a JSON 4xx or a 503
with ``Retry-After``. Then it writes the ``retry:`` field and loops on ``receive_batch`` so that
everything already queued goes out in one write, with a heartbeat comment when the stream has
been quiet for ``heartbeat_interval``. One task (:meth:`StreamEndpoint.run`) wakes the quiet
streams: no timer per stream or per write. A stream ends the moment its client leaves (the lean
server's hang-up watcher, or a task waiting for ASGI's ``http.disconnect``); heartbeat writes,
with ``TCP_USER_TIMEOUT`` on the socket, catch the peers that vanish without a word. When the
broadcaster shuts down, each stream is told to come back after a jittered ``retry:``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import trio
from trio_util import AsyncValue

from .._auth import Action, Authorizer
from .._broadcaster import Broadcaster
from .._protocol import encode_comment, encode_retry
from .._settings import ServerSettings
from .._subscription import CloseReason, SubscriberOutput, Subscription
from ._errors import HTTPError, answer_for, unavailable
from ._routes import Request, bearer_token, check_cursor, cors_headers
from ._transport import Transport

HEARTBEAT = encode_comment()
_CLOSE_NOTES = {
    CloseReason.SLOW_CONSUMER: encode_comment("slow consumer: reconnect to resume"),
    CloseReason.STALE: encode_comment("stale subscriber: reconnect to resume"),
    CloseReason.SESSION_CLOSED: encode_comment("session closed"),
}
STREAM_HEADERS = [
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
]


class StreamEndpoint:
    """Serves event streams for one broadcaster; counts streams and polls for limits and drain."""

    def __init__(
        self, broadcaster: Broadcaster, settings: ServerSettings, authorizer: Authorizer
    ) -> None:
        self.broadcaster = broadcaster
        self.settings = settings
        self.authorizer = authorizer
        self.active = AsyncValue(0)
        """Streams and long polls open now."""
        self._random = random.Random()
        self._writers: dict[Subscription, _Clock | Transport] = {}

    async def serve(
        self,
        request: Request | list[Request],
        transport: Transport,
        output: SubscriberOutput | None = None,
    ) -> None:
        """Check, subscribe, then stream until the client leaves or the subscription ends.

        ``output`` (the socket transport, on the lean path) takes events from publishers while
        the stream waits idle. ``request`` may come in a one-item list that this method empties:
        then nothing keeps the request (its headers) alive while the stream lasts.
        """
        if isinstance(request, list):
            request = request.pop()
        cors = cors_headers(request.headers.get("origin"), self.settings)
        started = False
        try:
            session_id, cursor = self.check(request)
            method = request.method
            del request  # an idle stream keeps none of its request
            async with (
                self.connection_slot(),
                self.broadcaster.subscribe(session_id, cursor, output=output) as sub,
            ):
                await transport.start(200, [*STREAM_HEADERS, *cors])
                started = True
                if method == "GET":
                    await self._stream(sub, transport)
        except Exception as error:
            answer = None if started else answer_for(error)
            if answer is None:
                raise
            await _answer(transport, answer, cors)
        else:
            await transport.finish()

    def check(self, request: Request) -> tuple[str, str | None]:
        """The session and cursor of a stream or poll request, after its authorisation.

        Raises:
            HTTPError: a cursor too long.
            AuthError: ``auth_subscribe`` is on and the token does not allow it.
        """
        session_id = request.params["session"]
        headers = request.headers
        cursor = headers.get("last-event-id") or request.query("lastEventId")
        if self.settings.auth_subscribe:
            token = bearer_token(headers, self.settings.cookie_name)
            self.authorizer.check(token, Action.SUBSCRIBE, session_id)
        return session_id, check_cursor(cursor, self.settings)

    def connection_slot(self) -> _Slot:
        """Count a long-lived request; refuse it past ``max_connections``."""
        return _Slot(self.active, self.settings.max_connections)

    async def _stream(self, sub: Subscription, transport: Transport) -> None:
        """Write events until the subscription ends or the client leaves."""
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
        chunks = self.chunks(sub, transport)
        try:
            async for chunk in chunks:
                # Woken with bytes a flush left over: send those instead of a heartbeat.
                await transport.write(b"" if chunk is HEARTBEAT and transport.flushing else chunk)
        finally:
            await chunks.aclose()  # as aclosing() would, without holding one per idle stream

    async def chunks(
        self, sub: Subscription, writer: _Clock | Transport | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The bytes of a stream (``retry:``, events, heartbeats, a farewell) as they are due.

        Yields :data:`HEARTBEAT` (that very object) when the stream has been quiet for
        ``heartbeat_interval``. ``writer.last_write`` is set after each chunk is taken.
        """
        writer = writer or _Clock(trio.current_time())
        self._writers[sub] = writer
        try:
            yield encode_retry(self.settings.retry_ms)
            writer.last_write = trio.current_time()
            while True:
                try:
                    batch = await sub.receive_batch()  # [] when the heartbeat task wakes it
                except trio.EndOfChannel:
                    break
                yield b"".join([e.encoded for e in batch]) if batch else HEARTBEAT
                writer.last_write = trio.current_time()
            yield self._farewell(sub.close_reason)
        finally:
            del self._writers[sub]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
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
            for sub, writer in list(self._writers.items()):
                if writer.last_write <= quiet_since:
                    sub.wake()

    def _farewell(self, reason: CloseReason | None) -> bytes:
        if reason is CloseReason.SHUTDOWN:
            low = self.settings.shutdown_retry_ms
            return encode_retry(self._random.randint(low, 2 * low))
        return _CLOSE_NOTES.get(reason, b"") if reason else b""


@dataclass(eq=False, slots=True)
class _Clock:
    """When a stream that has no transport of ours (a Quart response body) last wrote."""

    last_write: float


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


async def _cancel_on_disconnect(transport: Transport, scope: trio.CancelScope) -> None:
    await transport.wait_disconnect()
    scope.cancel()


async def _answer(transport: Transport, error: HTTPError, cors: list[tuple[str, str]]) -> None:
    body = error.body()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    await transport.start(error.status, [*headers, *error.headers, *cors])
    await transport.write(body)
    await transport.finish()

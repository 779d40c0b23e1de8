"""The Python client: one connection loop per client, handlers that belong to the client.

Handlers are registered on the client, not on a connection, so reconnecting never registers
anything twice: each handler runs exactly once per event, however many times the stream was
re-established. Each registration returns its own ``unsubscribe``; an event type whose last
handler leaves is removed from the registry, so nothing accumulates.

The connection loop streams with ``Last-Event-ID`` continuity, parsing with the project's
sans-IO parser. It reconnects with jittered exponential backoff (never sooner than the server's
``retry:``), gives up after ``max_retries`` consecutive failures, and, when streaming keeps
failing or goes silent for longer than ``stall_timeout`` (a buffering proxy), falls back to the
server's polling endpoint with the same cursor, trying the stream again every
``stream_retry_interval``.
"""

from __future__ import annotations

import enum
import inspect
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any, cast

import httpx
import trio

from ._exceptions import ProtocolError
from ._exceptions import StreamStalled as StreamStalled  # defined with the error tree
from ._protocol import EventStreamParser, MessageEvent

logger = logging.getLogger("trio_sse.client")

Handler = Callable[[MessageEvent], Awaitable[None] | None]
StateCallback = Callable[["ConnectionState"], Awaitable[None] | None]
ANY_EVENT = "*"
"""Register a handler under this type to receive every event."""


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    POLLING = "polling"
    CLOSED = "closed"
    FAILED = "failed"


class _Registry:
    """Callbacks by key; every registration has its own idempotent unsubscribe."""

    def __init__(self) -> None:
        self._callbacks: dict[str, dict[object, Callable[..., Any]]] = {}

    def add(self, key: str, callback: Callable[..., Any]) -> Callable[[], None]:
        token = object()
        self._callbacks.setdefault(key, {})[token] = callback

        def unsubscribe() -> None:
            callbacks = self._callbacks.get(key)
            if callbacks is not None and callbacks.pop(token, None) is not None and not callbacks:
                del self._callbacks[key]

        return unsubscribe

    def get(self, key: str) -> list[Callable[..., Any]]:
        return list(self._callbacks.get(key, {}).values())

    def keys(self) -> list[str]:
        return list(self._callbacks)

    def __len__(self) -> int:
        return sum(len(callbacks) for callbacks in self._callbacks.values())


class SSEClient:
    """A reconnecting SSE client for one stream URL (``.../sessions/{id}/events``).

    ``async with SSEClient(url) as client:`` runs the connection in the client's own nursery;
    leaving the block closes everything.

    Args:
        url: The stream URL.
        last_event_id: Resume after this id on the first connect.
        headers: Extra request headers.
        token: Bearer token for servers that authorise subscribers.
        max_retries: Consecutive failed attempts (streaming or polling) before the state
            becomes ``failed`` and the loop stops; None retries forever.
        backoff: ``(initial, maximum, jitter)``: the n-th consecutive retry waits
            ``min(initial * 2**n, maximum)`` seconds, scaled by a random factor in
            ``[1 - jitter, 1 + jitter]``, and never less than the server's ``retry:``.
        polling_fallback: Poll when streaming fails ``stream_failures_before_polling`` times
            in a row or stalls.
        poll_interval: Pause between two polls that returned nothing, in seconds.
        poll_wait: Long-poll wait asked of the server, in seconds.
        poll_url: The polling URL; by default the stream URL with ``/events`` -> ``/poll``.
        stall_timeout: Seconds without a byte (heartbeats included) after which an open
            stream counts as stalled, e.g. behind a buffering proxy.
        stream_retry_interval: While polling, try streaming again this often, in seconds.
        transport: An httpx transport (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str,
        *,
        last_event_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        max_retries: int | None = 10,
        backoff: tuple[float, float, float] = (0.5, 30.0, 0.2),
        polling_fallback: bool = True,
        poll_interval: float = 1.0,
        poll_wait: float = 20.0,
        poll_url: str | None = None,
        stall_timeout: float = 45.0,
        stream_retry_interval: float = 30.0,
        stream_failures_before_polling: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.poll_url = poll_url or url.removesuffix("/events") + "/poll"
        self.last_event_id = last_event_id
        self.state = ConnectionState.CLOSED
        self.last_error: BaseException | None = None
        self.retry_ms: int | None = None
        self._headers = dict(headers or {})
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._max_retries = max_retries
        self._backoff = backoff
        self._polling_fallback = polling_fallback
        self._poll_interval = poll_interval
        self._poll_wait = poll_wait
        self._stall_timeout = stall_timeout
        self._stream_retry_interval = stream_retry_interval
        self._failures_before_polling = stream_failures_before_polling
        self._transport = transport
        self._handlers = _Registry()
        self._state_callbacks = _Registry()
        self._random = random.Random()
        self._nursery: trio.Nursery | None = None
        self._failures = 0

    # -- registration ---------------------------------------------------------------

    def on(self, event_type: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(event)`` for each event of ``event_type`` (``"*"``: every event).

        Returns:
            ``unsubscribe()``: removes exactly this registration; calling it twice is harmless.
        """
        return self._handlers.add(event_type, handler)

    def on_connection_change(self, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(state)`` on every change of :attr:`state`; returns its unsubscribe."""
        return self._state_callbacks.add("state", callback)

    @property
    def handler_count(self) -> int:
        """Registered handlers, all event types together."""
        return len(self._handlers)

    @property
    def event_types(self) -> list[str]:
        """Event types with at least one handler."""
        return self._handlers.keys()

    async def events(self, max_buffer: int = 1000) -> AsyncGenerator[MessageEvent, None]:
        """Iterate over every event from now on (a handler under the hood).

        If the consumer falls ``max_buffer`` events behind, the oldest are dropped and logged.
        """
        send, receive = trio.open_memory_channel[MessageEvent](max_buffer)

        def forward(event: MessageEvent) -> None:
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                logger.warning("events() consumer too slow: dropped event %s", event.id)

        unsubscribe = self.on(ANY_EVENT, forward)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            unsubscribe()
            send.close()

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> SSEClient:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._nursery.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        try:
            return await self._nursery_manager.__aexit__(exc_type, exc, traceback)
        finally:
            self._nursery = None
            await self._set_state(ConnectionState.CLOSED)

    async def _run(self) -> None:
        client = httpx.AsyncClient(
            transport=self._transport, timeout=httpx.Timeout(10.0, read=None)
        )
        async with client:
            await self._loop(client)

    async def _loop(self, client: httpx.AsyncClient) -> None:
        await self._set_state(ConnectionState.CONNECTING)
        stream_failures = 0
        while True:
            try:
                await self._stream(client)
                stream_failures = 0
            except (httpx.HTTPError, StreamStalled, ProtocolError, _ServerError) as exc:
                self._record_failure(exc)
                stream_failures += 1
                if isinstance(exc, _ServerError) and exc.final:
                    return await self._set_state(ConnectionState.FAILED)
                if self._polling_fallback and (
                    isinstance(exc, StreamStalled)
                    or stream_failures >= self._failures_before_polling
                ):
                    if not await self._poll(client):
                        return await self._set_state(ConnectionState.FAILED)
                    stream_failures = 0
            if self._gave_up():
                return await self._set_state(ConnectionState.FAILED)
            await self._set_state(ConnectionState.RECONNECTING)
            await trio.sleep(self._delay())

    def _record_failure(self, exc: BaseException) -> None:
        self.last_error = exc
        self._failures += 1
        logger.info("stream failed (%s): %s", type(exc).__name__, exc)

    def _gave_up(self) -> bool:
        return self._max_retries is not None and self._failures > self._max_retries

    def _delay(self) -> float:
        initial, maximum, jitter = self._backoff
        exponent = max(self._failures - 1, 0)
        delay = min(initial * 2.0**exponent, maximum)
        delay *= 1 + self._random.uniform(-jitter, jitter)
        floor = (self.retry_ms or 0) / 1000
        return max(delay, floor)

    # -- streaming --------------------------------------------------------------------

    async def _stream(self, client: httpx.AsyncClient) -> None:
        """One streaming connection, until the server ends it (normal) or it fails (raises)."""
        headers = {**self._headers, "Accept": "text/event-stream"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        parser = EventStreamParser()
        async with client.stream("GET", self.url, headers=headers) as response:
            _check_status(response)
            await self._set_state(ConnectionState.OPEN)
            chunks = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
            async with aclosing(chunks):
                while True:
                    with trio.move_on_after(self._stall_timeout) as waited:
                        chunk = await anext(chunks, None)
                    if waited.cancelled_caught:
                        raise StreamStalled(f"no data for {self._stall_timeout} s")
                    if chunk is None:
                        return  # the server ended the stream
                    self._failures = 0
                    try:
                        await self._feed(parser, chunk)
                    except BaseException:
                        await _finish(response, chunks)
                        raise

    async def _feed(self, parser: EventStreamParser, chunk: bytes) -> None:
        for event in parser.feed(chunk):
            await self._dispatch(event)
        if parser.retry is not None:
            self.retry_ms = parser.retry

    async def _dispatch(self, event: MessageEvent) -> None:
        if event.id:
            self.last_event_id = event.id
        for handler in self._handlers.get(event.type) + self._handlers.get(ANY_EVENT):
            await _call(handler, event)

    # -- polling ----------------------------------------------------------------------

    async def _poll(self, client: httpx.AsyncClient) -> bool:
        """Poll until it is time to try streaming again; False if polling failed for good.

        The deadline bounds requests and pauses only, never a dispatch: a handler is not cut
        off halfway through the events of a poll.
        """
        await self._set_state(ConnectionState.POLLING)
        deadline = trio.current_time() + self._stream_retry_interval
        while not self._gave_up() and trio.current_time() < deadline:
            try:
                with trio.move_on_at(deadline):
                    answer = await self._poll_request(client)
            except (httpx.HTTPError, _ServerError, ValueError) as exc:
                self._record_failure(exc)
                if isinstance(exc, _ServerError) and exc.final:
                    return False
                with trio.move_on_at(deadline):
                    await trio.sleep(self._delay())
                continue
            if answer is None:
                return True  # the deadline came during the request
            self._failures = 0
            if not await self._dispatch_polled(answer):
                with trio.move_on_at(deadline):
                    await trio.sleep(self._poll_interval)
        return not self._gave_up()

    async def _poll_request(self, client: httpx.AsyncClient) -> dict[str, Any]:
        params = {"wait": str(self._poll_wait)}
        if self.last_event_id:
            params["after"] = self.last_event_id
        response = await client.get(self.poll_url, params=params, headers=self._headers)
        _check_status(response)
        answer = response.json()
        if not isinstance(answer, dict) or not isinstance(answer.get("events", []), list):
            raise ProtocolError(f"unexpected poll answer: {str(answer)[:100]}")
        return answer

    async def _dispatch_polled(self, answer: dict[str, Any]) -> int:
        events = answer.get("events", [])
        for item in events:
            await self._dispatch(MessageEvent(item["type"], item["data"], item.get("id") or ""))
        if answer.get("next"):
            self.last_event_id = answer["next"]
        return len(events)

    # -- state ------------------------------------------------------------------------

    async def _set_state(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        self.state = state
        for callback in self._state_callbacks.get("state"):
            await _call(callback, state)


class _ServerError(Exception):
    """An HTTP error answer; ``final`` when retrying cannot help (4xx other than 408/429)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:200]}")
        self.status = status
        self.final = 400 <= status < 500 and status not in (408, 429)


def _check_status(response: httpx.Response) -> None:
    if response.status_code != 200:
        body = response.text if response.is_stream_consumed else ""
        raise _ServerError(response.status_code, body)


async def _finish(response: httpx.Response, chunks: AsyncGenerator[bytes, None]) -> None:
    """Close a response left mid-body so that none of httpx's nested generators is left
    unfinished (closing the outermost one alone leaves the inner ones to the GC)."""
    with trio.CancelScope(shield=True):
        await response.aclose()
        try:
            async for _ in chunks:
                pass
        except Exception:
            pass


async def _call(callback: Callable[[Any], Any], argument: Any) -> None:
    """Run a sync or async callback; log what it raises and carry on."""
    try:
        result = callback(argument)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("handler %r raised; the other handlers still run", callback)


__all__ = ["ANY_EVENT", "ConnectionState", "SSEClient", "StreamStalled"]

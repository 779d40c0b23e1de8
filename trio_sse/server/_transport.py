"""How a stream's response reaches its client: straight to the socket, or through ASGI.

:class:`SocketTransport` is the lean path. It writes chunk-framed bytes to the socket itself,
and it is the subscription's :class:`~trio_sse._subscription.SubscriberOutput`: while the
stream's writer waits idle, a publisher hands it each event's bytes (no task switch per
delivery) and the server's write coalescer (``_coalesce.py``) writes what every transport was
handed in one non-blocking write each. Bytes reach the socket three ways, always in order: what
a flush left unsent, then what was handed over since, then what the writer writes itself.

:class:`ASGITransport` serves the same stream through an ASGI server (Quart, a user's app).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import trio

from .._protocol import SSEEvent
from ._coalesce import WriteCoalescer
from ._hangup import HangupWatcher
from ._http import response_head

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PENDING_LIMIT = 64 * 1024
"""Bytes handed over by publishers that a stream holds until a flush; beyond, events queue."""


class Transport(Protocol):
    """How a stream's response reaches the client."""

    last_write: float
    """``trio.current_time()`` of the last bytes written or handed over (for heartbeats)."""

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> None: ...
    async def wait_disconnect(self) -> None: ...
    def watch_disconnect(self, on_disconnect: Callable[[], None]) -> bool:
        """Have ``on_disconnect`` called when the client leaves, without a task; False if
        :meth:`wait_disconnect` must be waited on instead."""
        ...

    @property
    def flushing(self) -> bool:
        """Bytes handed over wait to be sent by the next :meth:`write`."""
        ...


class SocketTransport:
    """A stream response written straight to the socket (chunked); the connection closes after.

    Also the subscription's output (``attach``/``offer``) on the lean path.
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        coalescer: WriteCoalescer,
        hangups: HangupWatcher,
        *,
        head_only: bool,
    ) -> None:
        self._stream = stream
        self._coalescer = coalescer
        self._hangups = hangups
        self._head_only = head_only
        self._chunked = False
        self._pending: list[bytes] = []  # events handed over, for the coalescer's next pass
        self._pending_bytes = 0
        self._unsent = b""  # the tail of a flush the kernel did not take
        self._wake: Callable[[], None] = _nothing
        self._fd = stream.socket.fileno()
        self.last_write = trio.current_time()

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._chunked = status == 200 and not self._head_only
        length = None if status == 200 else _length(headers)  # HEAD: the headers GET gets
        head = response_head(status, _without_length(headers), keep_alive=False, length=length)
        await self._stream.send_all(head)

    async def write(self, data: bytes) -> None:
        if self._head_only:
            return
        data = self._unsent + self._take_pending() + self._frame(data)
        self._unsent = b""
        if data:
            await self._stream.send_all(data)

    # -- the subscription's output -------------------------------------------------------

    def attach(self, wake: Callable[[], None]) -> None:
        """Keep the subscription's ``wake``: it sends what a flush left unsent."""
        self._wake = wake

    def offer(self, event: SSEEvent, now: float) -> bool:
        """Take one event for the socket, from the publisher's task, without blocking.

        Only called while the stream's writer waits idle (nothing queued, nothing being
        written). The coalescer writes it together with whatever else was handed over before
        its next flush. Returns False (the event is then queued as usual) while an earlier
        flush is not fully sent, or past ``PENDING_LIMIT`` bytes.
        """
        data = event.encoded
        size, pending = len(data), self._pending
        if self._unsent or not self._chunked or self._pending_bytes + size > PENDING_LIMIT:
            return False
        self._coalescer.hand_over(self, size, not pending)
        pending.append(data)
        self._pending_bytes += size
        self.last_write = now
        return True

    def flush(self) -> None:
        """Write what was handed over, in one non-blocking write (the coalescer calls it).

        If the kernel takes only part of it, the rest is kept and the writer is woken to send
        it first.
        """
        if not self._pending:
            return  # the writer took it, or the stream ended
        data = self._take_pending()
        try:
            sent = os.write(self._fd, data)
        except OSError:  # EAGAIN, or the peer is gone: the writer will find out
            sent = 0
        if sent < len(data):
            self._unsent = data[sent:]
            self._wake()

    def _take_pending(self) -> bytes:
        if not self._pending:
            return b""
        data = self._coalescer.shared(self._pending, self._frame_parts)
        self._drop_pending()
        return data

    def _drop_pending(self) -> None:
        self._coalescer.pending_bytes -= self._pending_bytes
        self._pending.clear()
        self._pending_bytes = 0

    def _frame(self, data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data) if data and self._chunked else data

    def _frame_parts(self, parts: list[bytes]) -> bytes:
        return self._frame(b"".join(parts))

    @property
    def flushing(self) -> bool:
        return bool(self._unsent or self._pending)

    def close(self) -> None:
        """Forget what was not written and stop watching for a hangup: the socket is about to
        close, and its fd may be reused by the next connection."""
        self._drop_pending()
        self._chunked = False
        self._hangups.unwatch(self._fd)

    async def finish(self) -> None:
        if self._chunked:
            await self._stream.send_all(b"0\r\n\r\n")

    def watch_disconnect(self, on_disconnect: Callable[[], None]) -> bool:
        return self._hangups.watch(self._fd, on_disconnect)

    async def wait_disconnect(self) -> None:
        try:
            while await self._stream.receive_some(4096):
                pass  # a client sends nothing more after its GET; ignore what it does send
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class ASGITransport:
    """A response through ASGI ``send``; disconnects from ASGI ``receive``."""

    flushing = False

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.last_write = trio.current_time()

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

    def watch_disconnect(self, on_disconnect: Callable[[], None]) -> bool:
        return False


def _nothing() -> None:
    pass


def _length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return None


def _without_length(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() != "content-length"]

"""Connections as they are accepted: event streams on a lean path, the rest to Hypercorn.

Per-write cost is what limits SSE fan-out (``docs/performance.md``): through ASGI each write
crosses Hypercorn's send path, h11's chunk framing and a per-connection lock. Here the listener
hands every new connection to :func:`handle_connection`, which reads the request head itself.
A ``GET /sessions/{id}/events`` over HTTP/1.1 is served by the stream endpoint writing
chunk-framed bytes straight to the socket, one ``send_all`` for everything queued, and the
connection closes when the stream ends. Any other request (and anything unusual: HTTP/1.0,
a malformed head, a slow head) goes to Hypercorn's own connection handler, with the bytes
already read replayed in front of the socket, so Quart serves it exactly as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import h11
import trio

from ._coalesce import WriteCoalescer
from ._hangup import HangupWatcher
from ._stream import StreamEndpoint, StreamRequest

logger = logging.getLogger("trio_sse")

MAX_HEAD_BYTES = 16 * 1024
PENDING_LIMIT = 64 * 1024
"""Bytes handed over by publishers that a stream holds until a flush; beyond, events queue."""
HEAD_TIMEOUT = 10.0
STREAM_TARGET = re.compile(rb"/sessions/([^/?#]+)/events(?:\?([^#]*))?")
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden"}


class ReplayStream(trio.abc.HalfCloseableStream):
    """A socket stream that first returns ``prefix``: the bytes read before handing it on."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self.socket = stream.socket  # Hypercorn reads addresses from it
        self._stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class SocketTransport:
    """A stream response written straight to the socket (chunked), closed at the end.

    Bytes reach the socket three ways, always in order: what a direct write left unsent, then
    what publishers handed over since the last flush (``_pending``), then what the writer task
    writes itself.
    """

    can_write_nowait = True

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
        self._flush_later: Callable[[], None] = _nothing
        self._fd = stream.socket.fileno()

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self._chunked = status == 200 and not self._head_only
        lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b""))]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in headers]
        if self._chunked:
            lines.append(b"Transfer-Encoding: chunked")
        lines.append(b"Connection: close")
        await self._stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n")

    async def write(self, data: bytes) -> None:
        if self._head_only:
            return
        data = self._unsent + self._take_pending() + self._frame(data)
        self._unsent = b""
        if data:
            await self._stream.send_all(data)

    def write_nowait(self, data: bytes, flush_later: Callable[[], None]) -> bool:
        """Take one event for the socket, from the publisher's task, without blocking.

        Only called while the stream's writer waits idle (nothing queued, nothing being
        written). The coalescer writes it together with whatever else was handed over before
        its next flush. Returns False (the event is then queued as usual) while an earlier
        flush is not fully sent, or past ``PENDING_LIMIT`` bytes. If the kernel takes only part
        of a flush, the rest is kept and ``flush_later`` wakes the writer to send it first.
        """
        size, pending = len(data), self._pending
        if self._unsent or not self._chunked or self._pending_bytes + size > PENDING_LIMIT:
            return False
        self._coalescer.hand_over(self, size, not pending)
        pending.append(data)
        self._pending_bytes += size
        self._flush_later = flush_later
        return True

    def flush(self) -> None:
        """Write what was handed over, in one non-blocking write (the coalescer calls it)."""
        if not self._pending:
            return  # the writer took it, or the stream ended
        data = self._take_pending()
        try:
            sent = os.write(self._fd, data)
        except OSError:  # EAGAIN, or the peer is gone: the writer will find out
            sent = 0
        if sent < len(data):
            self._unsent = data[sent:]
            self._flush_later()

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
        """Bytes handed over or left unsent wait for the next :meth:`write`."""
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


def _nothing() -> None:
    pass


def stream_request(head: bytes) -> StreamRequest | None:
    """The stream request in ``head`` if it is one this path serves, else None."""
    line = head.split(b"\r\n", 1)[0]
    if not line.startswith((b"GET /sessions/", b"HEAD /sessions/")):
        return None
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    try:
        connection.receive_data(head)
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request) or event.http_version != b"1.1":
        return None
    match = STREAM_TARGET.fullmatch(event.target)
    if match is None:
        return None
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
    session_id = unquote(match.group(1).decode("latin-1"))
    return StreamRequest(event.method.decode(), session_id, match.group(2) or b"", headers)


async def read_head(stream: trio.SocketStream) -> bytes:
    """Bytes up to the end of the request head (or what came before EOF, the size limit or
    ``HEAD_TIMEOUT``)."""
    data = b""
    with trio.move_on_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD_BYTES:
            chunk = await stream.receive_some(MAX_HEAD_BYTES)
            if not chunk:
                break
            data += chunk
    return data


async def handle_connection(
    endpoint: StreamEndpoint,
    hypercorn_handler: Callable[[trio.abc.HalfCloseableStream], Awaitable[object]],
    stream: trio.SocketStream,
) -> None:
    """Serve one accepted connection: a stream here, anything else through Hypercorn."""
    head = b""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        head = await read_head(stream)
    if not head:
        await stream.aclose()
        return
    request = stream_request(head)
    if request is None:
        await hypercorn_handler(ReplayStream(stream, head))
        return
    transport = SocketTransport(
        stream, endpoint.coalescer, endpoint.hangups, head_only=request.method == "HEAD"
    )
    async with stream:
        try:
            await endpoint.serve(request, transport)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left (or its socket timed out); the subscription is closed
        except* Exception as group:  # a bug in one stream must not stop the server
            logger.error("stream %s failed; connection closed", request.session_id, exc_info=group)
        finally:
            transport.close()

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
import os
import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import h11
import trio

from ._stream import StreamEndpoint, StreamRequest

MAX_HEAD_BYTES = 16 * 1024
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
    """A stream response written straight to the socket (chunked), closed at the end."""

    can_write_nowait = True

    def __init__(self, stream: trio.SocketStream, *, head_only: bool) -> None:
        self._stream = stream
        self._head_only = head_only
        self._chunked = False
        self._unsent = b""  # the tail of a direct write the kernel did not take
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
        if data and self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        data, self._unsent = self._unsent + data, b""
        if data:
            await self._stream.send_all(data)

    def write_nowait(self, data: bytes, flush_later: Callable[[], None]) -> bool:
        """Write one event now, from the publisher's task, without blocking or switching.

        Only called while the stream's writer waits idle (nothing queued, nothing being
        written). Returns False if the socket takes nothing now (the event is then queued as
        usual). If the kernel takes part of it, the rest is kept and ``flush_later`` wakes the
        writer to send it before anything else.
        """
        if self._unsent or not self._chunked:
            return False
        framed = b"%x\r\n%b\r\n" % (len(data), data)
        try:
            sent = os.write(self._fd, framed)
        except OSError:  # EAGAIN, or the peer is gone: the writer will find out
            return False
        if sent < len(framed):
            self._unsent = framed[sent:]
            flush_later()
        return True

    @property
    def flushing(self) -> bool:
        """A direct write left bytes that the next :meth:`write` sends first."""
        return bool(self._unsent)

    async def finish(self) -> None:
        if self._chunked:
            await self._stream.send_all(b"0\r\n\r\n")

    async def wait_disconnect(self) -> None:
        try:
            while await self._stream.receive_some(4096):
                pass  # a client sends nothing more after its GET; ignore what it does send
        except (trio.BrokenResourceError, trio.ClosedResourceError):
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
    transport = SocketTransport(stream, head_only=request.method == "HEAD")
    async with stream:
        try:
            await endpoint.serve(request, transport)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left (or its socket timed out); the subscription is closed

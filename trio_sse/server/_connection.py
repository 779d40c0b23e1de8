"""One accepted connection on the lean path: requests, one after another, until it closes.

Each request head is read against a deadline (``head_timeout``; an idle kept-alive connection
waits ``keep_alive_timeout`` for the next one), parsed (``_http.py``), matched against the route
table (``_routes.py``), and its body read against ``body_timeout`` within ``max_body_bytes``.
A whole answer is written with its length and the connection stays open for the next request;
an event stream is written straight to the socket by the stream endpoint, chunk-framed, and the
connection closes when it ends, whichever request it followed. A long poll is cancelled if its
client leaves (the hang-up watcher, without reading pipelined bytes).

A body must also keep arriving at ``min_body_rate`` once ``body_rate_grace`` has passed. Until
its request is complete (head and body), a connection stays in the server's ``waiting`` list,
from which the server closes the oldest when sockets run short (:meth:`Connection.evict`); past
the general share of sockets only :data:`RESERVED_ENDPOINTS` are served, others get 503.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

import trio

from ._errors import HTTPError, unavailable
from ._http import ChunkedReader, RequestHead, bad_request, head_end, parse_head, response_head
from ._routes import Request, Response, Route, allowed_methods, match
from ._transport import SocketTransport

if TYPE_CHECKING:
    from ._serve import LeanServer

logger = logging.getLogger("trio_sse")

READ_SIZE = 65536
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
RESERVED_ENDPOINTS = frozenset(
    {"publish", "publish_batch", "delete", "healthz", "readyz", "stats", "metrics"}
)
"""The endpoints still served when only the reserved share of sockets is left."""


class Connection:
    """Serves the requests of one socket (see the module docstring)."""

    __slots__ = (
        "_answered",
        "_api",
        "_buffer",
        "_fd",
        "_idle",
        "_open",
        "_server",
        "_settings",
        "_stream",
        "_timer",
        "_waiting",
        "_yielded",
    )

    def __init__(self, server: LeanServer, stream: trio.SocketStream) -> None:
        self._server = server
        self._api = server.api
        self._settings = server.settings
        self._stream = stream
        self._open = server.connections
        self._waiting = server.waiting
        self._fd = stream.socket.fileno()
        self._buffer = bytearray()
        self._timer = trio.CancelScope()  # a deadline only while idle between requests
        self._idle = False
        self._yielded = False
        self._answered = False  # an answer just went out: the next read would find nothing

    def shutdown(self) -> None:
        """Close at once if waiting for a request; else after the one being served."""
        if self._idle:
            self._timer.cancel()

    def evict(self) -> None:
        """Close now: the server needs the socket (package-internal, ``_serve.py``).

        Only for a connection in the server's ``waiting`` list: no request of it is being
        served, so it ends without an answer, as at its idle deadline.
        """
        self._timer.cancel()

    async def run(self) -> None:
        """Serve requests until the client leaves, an answer closes the connection, the
        connection stays idle past ``keep_alive_timeout``, or the server shuts down."""
        stream = None  # stays None when the idle deadline or a shutdown ends the loop
        with self._timer:
            stream = await self._requests()
        if stream is None:
            return
        # Served out here, with nothing of the request loop left on the stack, and the request
        # handed over rather than kept in this frame: an idle stream holds only what it needs
        # (docs/performance.md, memory per idle connection).
        server = self._server
        transport = SocketTransport(
            self._stream, server.coalescer, server.hangups, head_only=stream.method == "HEAD"
        )
        requests = [stream]
        del stream
        try:
            await self._api.streams.serve(requests, transport, transport)
        finally:
            transport.close()

    async def _requests(self) -> Request | None:
        """Serve requests; the request of an event stream if one comes (it ends the loop)."""
        deadline: float | None = trio.current_time() + self._settings.head_timeout
        keep_alive: bool | Request = True
        while keep_alive is True and not self._server.closing:
            if self not in self._open:  # evicted (before it could start, or while answering)
                return None
            self._waiting[self] = None  # until the request is complete (kept in place if there)
            try:
                head = await self._read_head(deadline)
                if head is None:
                    return None
                keep_alive = await self._serve(parse_head(head))
            except HTTPError as error:  # a request we could not read: answer, then close
                self._count(error)
                await self._send(Response.of(error))
                await self._linger()
                return None
            if not self._yielded:  # pipelined requests, all in hand: let other tasks run
                await trio.lowlevel.checkpoint()
            self._yielded = False
            deadline = None
        return keep_alive if isinstance(keep_alive, Request) else None

    async def _read_head(self, deadline: float | None) -> bytes | None:
        """The next request head, or None: the client left, stayed idle, or we shut down.

        ``deadline`` is when a first request's head must be complete; on a kept-alive
        connection the client has ``keep_alive_timeout`` to start the next request, and
        ``head_timeout`` from its first byte to finish its head.

        Raises:
            HTTPError: a head over its deadline (408), too large (431) or with bare LFs (400).
        """
        settings = self._settings
        while (end := head_end(self._buffer, settings.max_head_bytes)) < 0:
            if not self._buffer:  # idle: nothing of a request yet
                data = await self._read_idle(
                    deadline or trio.current_time() + settings.keep_alive_timeout
                )
                deadline = deadline or trio.current_time() + settings.head_timeout
            else:
                if deadline is None:  # a head begun behind the previous request (pipelined)
                    deadline = trio.current_time() + settings.head_timeout
                late = await self._read_by(deadline)
                if late is None:
                    raise bad_request("the request head did not arrive in time", 408)
                data = late
            if not data:  # EOF
                return None
            self._buffer += data
        head = bytes(self._buffer[:end])
        del self._buffer[:end]
        return head

    # -- socket I/O, straight on the file descriptor -----------------------------------------
    # A kept-alive client sends its next request only after our answer, so most reads find
    # bytes at once and most writes go out whole: those cost one system call and no task
    # switch. Only when the socket would block do we wait (and yield) in trio's I/O manager.

    def _try_read(self) -> bytes | None:
        """What the socket holds (``b""`` at EOF, reset or error), or None if nothing yet."""
        try:
            return os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    async def _read_idle(self, deadline: float) -> bytes:
        """Bytes of the next request, or ``b""`` at EOF. Waiting past ``deadline``, or a
        shutdown while waiting, ends the connection (the cancel scope around :meth:`run`).

        Right after an answer the next request is rarely there yet (clients wait for the
        answer), so the first read is tried only after waiting; pipelined bytes already in the
        buffer are served without it.
        """
        while (data := self._try_read() if not self._answered else None) is None:
            self._answered = False
            self._timer.deadline = deadline
            self._idle = True
            if self._server.closing:
                self._timer.cancel()
            await trio.lowlevel.wait_readable(self._fd)
            self._idle = False
            self._timer.deadline = math.inf
            self._yielded = True
        return data

    async def _read_by(self, deadline: float) -> bytes | None:
        """Bytes (``b""`` at EOF), or None if none came by ``deadline``."""
        while (data := self._try_read()) is None:
            with trio.move_on_at(deadline):
                await trio.lowlevel.wait_readable(self._fd)
                self._yielded = True
                continue
            return None
        return data

    async def _write(self, data: bytes) -> None:
        """Write all of ``data``, waiting while the socket is full.

        Raises:
            trio.BrokenResourceError: the client is gone.
        """
        view = memoryview(data)
        while True:
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                raise trio.BrokenResourceError(str(error)) from error
            if sent == len(view):
                return
            view = view[sent:]
            await trio.lowlevel.wait_writable(self._fd)
            self._yielded = True

    async def _serve(self, head: RequestHead) -> bool | Request:
        """Serve one request; whether the connection may carry another, or the request of an
        event stream, to be served once the request loop is left."""
        request = Request(head.method, head.path, head.query, head.headers)
        if head.method == "OPTIONS" and (allow := allowed_methods(head.path)) is not None:
            await self._discard_body(head)
            self._waiting.pop(self, None)
            return await self._send(self._api.options(request, allow), head)
        try:
            route, request.params = match(head.method, head.path)
        except HTTPError as error:
            if head.chunked or head.content_length:
                error.close = True  # not worth reading a body we refuse
            keep_alive = await self._send(self._api.refuse(request, error), head, close=error.close)
            if error.close:
                await self._linger()
            return keep_alive
        if (
            len(self._open) > self._server.general_limit
            and route.endpoint not in RESERVED_ENDPOINTS
        ):
            return await self._shed(request, head)
        if route.stream:
            self._waiting.pop(self, None)
            return request
        try:
            request.body = await self._read_body(head)
        except HTTPError as error:  # the rest of the body cannot be trusted: answer, then close
            self._count(error)
            await self._send(self._api.refuse(request, error), head, close=True)
            await self._linger()
            return False
        self._waiting.pop(self, None)  # a complete request: no longer the first to close
        if route.long:
            response = await self._respond_unless_gone(route, request)
            if response is None:
                return False
        else:
            response = await self._api.respond(route, request)
        return await self._send(response, head)

    async def _shed(self, request: Request, head: RequestHead) -> bool:
        """Refuse a request that may not use the reserved share of sockets: 503, close."""
        self._server.shed += 1
        limit = self._server.max_sockets
        error = unavailable(f"max_sockets={limit} nearly reached: publishes and health checks only")
        await self._send(self._api.refuse(request, error), head, close=True)
        if head.chunked or head.content_length:
            await self._linger()
        return False

    def _count(self, error: HTTPError) -> None:
        if error.status == 408:
            self._server.timed_out += 1

    async def _respond_unless_gone(self, route: Route, request: Request) -> Response | None:
        hangups = self._server.hangups
        with trio.CancelScope() as scope:
            watched = hangups.watch(self._fd, scope.cancel, drain=False)
            try:
                return await self._api.respond(route, request)
            finally:
                if watched:
                    hangups.unwatch(self._fd)
        return None  # the client left: nobody to answer

    async def _read_body(self, head: RequestHead) -> bytes:
        """The whole body, within ``max_body_bytes``, ``body_timeout`` and ``min_body_rate``.

        Raises:
            HTTPError: 413 (too large), 408 (too slow), 400 (malformed chunks or EOF).
        """
        limit = self._settings.max_body_bytes
        length = head.content_length
        if length == 0:
            return b""
        if length is not None and length > limit:
            raise HTTPError(413, f"the body is over max_body_bytes={limit}", close=True)
        if head.headers.get("expect", "").lower() == "100-continue" and not self._buffer:
            await self._write(CONTINUE)
        settings = self._settings
        now = trio.current_time()
        deadline = now + settings.body_timeout
        rate = settings.min_body_rate
        grace_end = now + settings.body_rate_grace
        received = len(self._buffer)
        chunks = ChunkedReader(limit) if length is None else None
        while True:
            if chunks is not None:
                del self._buffer[: chunks.feed(self._buffer)]
                if chunks.done:
                    return bytes(chunks.body)
            elif length is not None and len(self._buffer) >= length:
                body = bytes(self._buffer[:length])
                del self._buffer[:length]
                return body
            # Waited for only when the body is not all in hand: by `received` bytes, a body
            # keeping to min_body_rate may take until grace_end + received / rate.
            due = deadline if rate is None else min(deadline, grace_end + received / rate)
            data = await self._read_by(due)
            if data is None:
                if due < deadline:
                    raise bad_request(f"the body arrived slower than min_body_rate={rate}", 408)
                raise bad_request("the body did not arrive in time", 408)
            if not data:
                raise bad_request("the connection ended inside the body")
            received += len(data)
            self._buffer += data

    async def _linger(self) -> None:
        """Half-close, then read and drop what the client still sends, for a moment.

        Closing a socket with unread input resets it, and the reset can destroy the answer
        before the client reads it (a client still sending a refused body). Bounded in time
        and bytes (RFC 9112 9.6, nginx's "lingering close").
        """
        with trio.move_on_after(LINGER_SECONDS):
            await self._stream.send_eof()
            received = 0
            while received < LINGER_BYTES and (data := await self._stream.receive_some(READ_SIZE)):
                received += len(data)

    async def _discard_body(self, head: RequestHead) -> None:
        if head.chunked or head.content_length:
            await self._read_body(head)

    async def _send(
        self, response: Response, head: RequestHead | None = None, *, close: bool = False
    ) -> bool:
        """Write a whole answer; whether the connection stays open."""
        keep_alive = head is not None and head.keep_alive and not close
        keep_alive = keep_alive and not self._server.closing
        headers = response.headers
        if response.content_type:
            headers = [("Content-Type", response.content_type), *headers]
        if keep_alive and head is not None and head.version == "1.0":
            headers.append(("Connection", "keep-alive"))
        body = b"" if head is not None and head.method == "HEAD" else response.body
        data = response_head(
            response.status, headers, keep_alive=keep_alive, length=len(response.body)
        )
        await self._write(data + body)
        self._answered = True
        return keep_alive

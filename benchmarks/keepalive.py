"""A minimal HTTP/1.1 keep-alive client for measuring what a server spends per request.

Used by ``requests.py``. Plain blocking sockets, no framework: a request is bytes built once by
the caller, sent with one ``sendall``, and its response is read in full (head, then a
``Content-Length`` or chunked body) before the next request goes out on that connection; no
pipelining. httpx costs about 200 CPU-us per request on this machine, more than some servers
spend answering; this client costs a few microseconds, so the figures are the server's.

- :class:`Connection`: one socket, one request at a time (:meth:`Connection.request`).
- :func:`run_sequential`: many requests, one after another, on one connection.
- :func:`run_parallel`: many requests over several connections at once, each connection
  sequential, multiplexed with ``select.epoll`` in the calling thread.

Both run until their requests are used up or a deadline passes, whichever comes first, and
return a :class:`Sent` tally (statuses, the first unexpected answer, elapsed time, this
thread's CPU). They block: call them from ``trio.to_thread.run_sync``. A response with
``Connection: close`` (Hypercorn sends it on the 1,000th request of a connection,
``keep_alive_max_requests``) makes them open a new connection, counted in ``reconnects``.
"""

from __future__ import annotations

import select
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from audience import HOST

TIMEOUT = 10.0
"""Seconds a connection waits for any one read or write before it raises."""
RECEIVE_SIZE = 65536
MAX_HEAD = 16 * 1024


class ResponseError(Exception):
    """A response that cannot be read as HTTP/1.1, or a connection that closed mid-way."""


def request_bytes(
    method: str, path: str, body: bytes = b"", content_type: str = "application/json"
) -> bytes:
    """One HTTP/1.1 request with ``Host``, and ``Content-Type``/``Content-Length`` if a body."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


class ResponseReader:
    """Incremental reader of responses on one connection: feed bytes, get whole responses."""

    __slots__ = ("_buffer", "closing")

    def __init__(self) -> None:
        self._buffer = b""
        self.closing = False
        """The last response said ``Connection: close``."""

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        """Add ``data``; the (status, body) of the response it completes, or None."""
        buffer = self._buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise ResponseError(f"no response head in {buffer[:200]!r}")
            return None
        head = buffer[:end].decode("latin-1").lower()
        status = int(head[9:12])
        body = _body(head, buffer, end + 4)
        if body is None:
            return None
        body, used = body
        self.closing = "\r\nconnection: close" in head
        self._buffer = buffer[used:]
        if self._buffer:
            raise ResponseError(f"bytes after a response: {self._buffer[:100]!r}")
        return status, body


def _body(head: str, buffer: bytes, start: int) -> tuple[bytes, int] | None:
    """The body starting at ``start`` and where it ends, or None if it is not all there."""
    at = head.find("\r\ncontent-length:")
    if at >= 0:
        line_end = head.find("\r\n", at + 2)
        end = start + int(head[at + 17 : line_end if line_end >= 0 else None])
        return (buffer[start:end], end) if len(buffer) >= end else None
    if "\r\ntransfer-encoding: chunked" not in head:
        return b"", start  # no body (a 204, 304 or HEAD answer on these servers)
    parts, pos = [], start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buffer[pos:line_end].split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:  # no trailers on these servers: the last chunk ends with one CRLF
            return (b"".join(parts), pos + 2) if len(buffer) >= pos + 2 else None
        if len(buffer) < pos + size + 2:
            return None
        parts.append(buffer[pos : pos + size])
        pos += size + 2


class Connection:
    """One keep-alive connection to ``HOST``:``port``, one request at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = ResponseReader()

    def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send ``raw``, read its whole response: (status, body)."""
        self.sock.sendall(raw)
        return self.receive()

    def receive(self) -> tuple[int, bytes]:
        while True:
            data = self.sock.recv(RECEIVE_SIZE)
            if not data:
                raise ResponseError("the server closed the connection")
            response = self.reader.feed(data)
            if response is not None:
                return response

    def close(self) -> None:
        self.sock.close()


@dataclass
class Sent:
    """What a run of requests got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: str = ""
    """The first answer whose status was not the one expected (status and body), if any."""
    seconds: float = 0.0
    """From the first request sent to the last response read."""
    cpu: float = 0.0
    """CPU seconds of the thread that sent them (the client's cost)."""
    error: str = ""
    """Why the run stopped early (a connection error), if it did."""
    reconnects: int = 0
    """New connections opened because the server answered ``Connection: close``."""

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def note(self, status: int, body: bytes, expected: int) -> None:
        self.statuses[status] += 1
        if status != expected and not self.unexpected:
            self.unexpected = f"HTTP {status} {body[:160].decode(errors='replace')}"


def run_sequential(port: int, requests: Iterable[bytes], expected: int, deadline: float) -> Sent:
    """Send ``requests`` one after another on one connection until ``deadline`` (perf_counter)."""
    sent = Sent()
    connection = Connection(port)
    cpu, started = time.thread_time(), time.perf_counter()
    try:
        for raw in requests:
            status, body = connection.request(raw)
            sent.note(status, body, expected)
            if time.perf_counter() >= deadline:
                break
            if connection.reader.closing:
                connection.close()
                connection = Connection(port)
                sent.reconnects += 1
    except (OSError, ResponseError) as error:
        sent.error = f"{type(error).__name__}: {error}"
    finally:
        sent.seconds = time.perf_counter() - started
        sent.cpu = time.thread_time() - cpu
        connection.close()
    return sent


def run_parallel(
    port: int, connections: int, requests: Iterable[bytes], expected: int, deadline: float
) -> Sent:
    """Send ``requests`` over ``connections`` connections at once, each one sequential."""
    sent = Sent()
    remaining: Iterator[bytes] = iter(requests)
    open_ = [Connection(port) for _ in range(connections)]
    by_fd = {c.sock.fileno(): c for c in open_}
    poll = select.epoll()
    cpu, started = time.thread_time(), time.perf_counter()
    try:
        busy = 0
        for connection in open_:
            busy += _send_next(connection, remaining)
            poll.register(connection.sock.fileno(), select.EPOLLIN)
        while busy:
            ready = poll.poll(TIMEOUT)
            if not ready:
                raise ResponseError(f"no answer in {TIMEOUT:g} s")
            for fd, _ in ready:
                connection = by_fd[fd]
                data = connection.sock.recv(RECEIVE_SIZE)
                if not data:
                    raise ResponseError("the server closed a connection")
                response = connection.reader.feed(data)
                if response is None:
                    continue
                sent.note(*response, expected)
                busy -= 1
                if time.perf_counter() >= deadline:
                    continue
                if connection.reader.closing:
                    poll.unregister(fd)
                    connection.close()
                    connection = Connection(port)
                    open_.append(connection)
                    by_fd[connection.sock.fileno()] = connection
                    poll.register(connection.sock.fileno(), select.EPOLLIN)
                    sent.reconnects += 1
                busy += _send_next(connection, remaining)
    except (OSError, ResponseError) as error:
        sent.error = f"{type(error).__name__}: {error}"
    finally:
        sent.seconds = time.perf_counter() - started
        sent.cpu = time.thread_time() - cpu
        poll.close()
        for connection in open_:
            connection.close()
    return sent


def _send_next(connection: Connection, remaining: Iterator[bytes]) -> int:
    """Send the next request on ``connection``: 1, or 0 if there is none left."""
    raw = next(remaining, None)
    if raw is None:
        return 0
    connection.sock.sendall(raw)
    return 1

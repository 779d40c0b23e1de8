"""``serve()``: the lean HTTP server, its shared tasks, and a graceful drain.

We create the listening socket ourselves to set ``TCP_USER_TIMEOUT`` on it (accepted sockets
inherit it): a write to a peer that stopped reading or vanished then fails after
``send_timeout`` instead of waiting for as long as the kernel keeps retrying. Every accepted
connection is served by ``_connection.py``; the tasks all connections share (write coalescing,
hang-ups, heartbeats) run in a nursery :func:`serve` owns, started before the first accept and
cancelled after the last connection. Shutdown (SIGINT, SIGTERM, or the ``stop`` event) stops
accepting, closes idle connections, closes every subscription (each stream says goodbye with a
jittered ``retry:`` and ends), then gives the requests still running ``graceful_timeout``.

Every accepted socket is counted from accept to close (issue 10, docs/architecture.md section
9, "Sockets"): at most ``max_sockets``, of which ``reserved_sockets`` only publishes and health
checks may use. A socket that has not yet sent a complete request is the cheapest thing an
attacker can hold, so it is the first to go: a new socket over the general share closes the
oldest of them. The accept loop is our own rather than ``trio.serve_listeners``: at the
descriptor limit (EMFILE) it closes such a socket, waits for a descriptor to be freed, and logs
once, not a traceback per attempt. :func:`serve` raises the soft ``RLIMIT_NOFILE`` to the hard
limit and derives ``max_sockets`` from it when the setting is not given.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import trio

from .._auth import Authorizer
from .._broadcaster import Broadcaster, open_broadcaster
from .._config import BroadcasterConfig
from .._settings import ServerSettings
from ..backends import Backend, RedisBackend
from ._api import HTTPAPI
from ._coalesce import WriteCoalescer
from ._connection import Connection
from ._hangup import HangupWatcher
from ._stream import StreamEndpoint

logger = logging.getLogger("trio_sse")

ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""Accept failures that mean "no descriptor or buffer for now", not a broken listener."""
ACCEPT_BACKOFF = (0.01, 1.0)
"""First and longest wait (seconds) before retrying an accept that failed for lack of
descriptors; a connection closing ends the wait early."""
LOG_INTERVAL = 60.0
"""Seconds between two warnings about the descriptor limit (the rest are counted)."""
UNLIMITED_FILES = 1 << 20
"""The open-file figure used where the limit is infinite."""
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: 39\r\n\r\n"
    b'{"error":"too many connections, retry"}'
)


@dataclass(frozen=True)
class RunningServer:
    """What :func:`serve` reports once it accepts connections."""

    host: str
    port: int
    broadcaster: Broadcaster
    endpoint: StreamEndpoint
    write_stats: Callable[[], dict[str, int]]
    """The counters of stream writes (``streamWrites`` in ``/stats``)."""
    max_sockets: int = 0
    """Accepted sockets allowed open at once (``max_sockets``, or derived from the limit)."""
    reserved_sockets: int = 0
    """The share of them kept for publishes and health checks."""
    open_file_limit: int | None = None
    """The soft ``RLIMIT_NOFILE`` once raised (None where the platform has none)."""
    socket_stats: Callable[[], dict[str, int]] | None = None
    """The counters of accepted sockets (``sockets`` in ``/stats``)."""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class LeanServer:
    """The API served straight from sockets, and what its connections share.

    Args:
        broadcaster: The broadcaster served.
        settings: The server's settings.
        max_sockets: Accepted sockets allowed open at once (see :func:`socket_limits`).
        reserved_sockets: The share of ``max_sockets`` kept for publishes and health checks.
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        settings: ServerSettings,
        max_sockets: int,
        reserved_sockets: int,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.settings = settings
        self.coalescer = WriteCoalescer()
        """Flushes what publishers hand to socket transports (see ``_coalesce.py``)."""
        self.hangups = HangupWatcher()
        """Notices clients leaving streams and long polls (see ``_hangup.py``)."""
        self.api = HTTPAPI(
            broadcaster,
            settings,
            authorizer,
            write_stats=self.write_stats,
            socket_stats=self.socket_stats,
        )
        self.connections: set[Connection] = set()
        """Every accepted socket not yet closed (or evicted), whatever it carries."""
        self.waiting: OrderedDict[Connection, None] = OrderedDict()
        """Connections that have not yet sent a complete request (head and body), oldest
        first: the ones :meth:`evict_oldest` closes. Package-internal: ``_connection.py``
        adds a connection when it starts waiting for a request and removes it once the
        request is complete."""
        self.max_sockets = max_sockets
        self.general_limit = max_sockets - reserved_sockets
        """Past this many open sockets only :data:`~._connection.RESERVED_ENDPOINTS` are served."""
        self.closing = False
        self.refused = 0
        self.evicted = 0
        self.shed = 0
        """Requests answered 503 because only the reserved share was left (package-internal)."""
        self.timed_out = 0
        """Requests answered 408 (head or body too slow; package-internal)."""
        self.accept_errors = 0
        self._freed: trio.Event | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the shared tasks (coalescer, hang-up watcher, heartbeats) until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.coalescer.run)
            await nursery.start(self.hangups.run)
            await nursery.start(self.api.run)
            task_status.started()

    def admit(self, stream: trio.SocketStream) -> Connection | None:
        """Count a socket just accepted, or None if it must be refused.

        Over the general share, the oldest socket that has not sent a complete request is
        closed first; at ``max_sockets`` with none to close, the new socket is refused.
        """
        if len(self.connections) >= self.general_limit:
            self.evict_oldest()
        if len(self.connections) >= self.max_sockets:
            self.refused += 1
            return None
        connection = Connection(self, stream)
        self.connections.add(connection)
        self.waiting[connection] = None
        return connection

    def evict_oldest(self) -> bool:
        """Close the connection that has waited longest for a complete request, if any.

        It stops counting at once; its task closes the socket at its next checkpoint.
        """
        if not self.waiting:
            return False
        connection, _ = self.waiting.popitem(last=False)
        self.connections.discard(connection)
        connection.evict()
        self.evicted += 1
        return True

    async def handle(self, connection: Connection, stream: trio.SocketStream) -> None:
        """Serve one admitted connection until it closes; a bug closes only it."""
        try:
            await connection.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left (or its socket timed out)
        except Exception:
            logger.exception("connection failed; closed")
        finally:
            self.connections.discard(connection)
            self.waiting.pop(connection, None)
            await trio.aclose_forcefully(stream)
            if self._freed is not None:
                self._freed.set()
                self._freed = None

    async def wait_for_a_descriptor(self, wait: float) -> None:
        """After an accept failed for lack of descriptors: close the oldest socket that has
        not sent a complete request, then wait until a connection closes (at most ``wait``)."""
        self.evict_oldest()
        freed = self._freed = self._freed or trio.Event()
        with trio.move_on_after(wait):
            await freed.wait()

    def shutdown(self) -> None:
        """Close idle connections now and every other one after its current request."""
        self.closing = True
        for connection in list(self.connections):
            connection.shutdown()

    def write_stats(self) -> dict[str, int]:
        """Events publishers handed straight to sockets, the writes that carried them, and the
        bytes waiting for the next write."""
        coalescer = self.coalescer
        return {
            "eventsHandedOver": coalescer.events,
            "coalescedWrites": coalescer.flushes,
            "pendingBytes": coalescer.pending_bytes,
        }

    def socket_stats(self) -> dict[str, int]:
        """The accepted sockets (``sockets`` in ``/stats``; docs/http-api.md)."""
        return {
            "open": len(self.connections),
            "waiting": len(self.waiting),
            "limit": self.max_sockets,
            "reserved": self.max_sockets - self.general_limit,
            "refused": self.refused,
            "evicted": self.evicted,
            "shed": self.shed,
            "timedOut": self.timed_out,
            "acceptErrors": self.accept_errors,
        }


async def serve(
    config: BroadcasterConfig | None = None,
    settings: ServerSettings | None = None,
    *,
    backend: Backend | None = None,
    sock: socket.socket | None = None,
    stop: trio.Event | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a broadcaster over HTTP until ``stop`` is set (or SIGINT/SIGTERM arrives).

    Start it with ``await nursery.start(serve, ...)`` to get the :class:`RunningServer`
    (with the real port when ``settings.port`` is 0). Without ``backend``, ``settings.backend``
    chooses one (``memory``, or a Redis URL for a :class:`~trio_sse.backends.RedisBackend`).
    ``sock``: an already bound, listening socket to accept on (a worker of ``--workers N``
    inherits its parent's); :func:`serve` closes it when it returns. Without it, one is made
    from ``settings.host`` and ``settings.port`` (see :func:`listening_socket`).
    """
    settings = settings or ServerSettings()
    authorizer = Authorizer(settings.jwt_key, settings.jwt_public_key)  # ConfigError: bad keys
    if backend is None and settings.backend != "memory":
        backend = RedisBackend(settings.backend, config, timeout=settings.backend_timeout)
    stop = trio.Event() if stop is None else stop
    files = raise_open_file_limit()
    max_sockets, reserved = socket_limits(settings, files)
    logger.info(
        "open-file limit %s; at most %d sockets, %d of them reserved for publishes and "
        "health checks",
        files if files is not None else "unknown",
        max_sockets,
        reserved,
    )
    listener = listening_socket(settings) if sock is None else sock
    listener.setblocking(False)
    with listener:
        async with (
            open_broadcaster(config, backend=backend) as broadcaster,
            trio.open_nursery() as shared,
        ):
            if handle_signals:
                shared.start_soon(_stop_on_signals, stop)
            server = LeanServer(broadcaster, settings, max_sockets, reserved, authorizer)
            await shared.start(server.run)
            host, port = listener.getsockname()[:2]
            running = RunningServer(
                host,
                port,
                broadcaster,
                server.api.streams,
                server.write_stats,
                max_sockets=max_sockets,
                reserved_sockets=reserved,
                open_file_limit=files,
                socket_stats=server.socket_stats,
            )
            await _accept_until_stopped(server, listener, stop, running, task_status)
            shared.cancel_scope.cancel()
    logger.info("trio-sse stopped")


async def _accept_until_stopped(
    server: LeanServer,
    listener: socket.socket,
    stop: trio.Event,
    running: RunningServer,
    task_status: trio.TaskStatus[RunningServer],
) -> None:
    grace = server.settings.graceful_timeout
    async with trio.open_nursery() as connections:
        accepts = trio.SocketListener(trio.socket.from_stdlib_socket(listener))
        try:
            async with trio.open_nursery() as accepting:
                await accepting.start(_accept, server, accepts, connections)
                task_status.started(running)
                await stop.wait()
                accepting.cancel_scope.cancel()  # stop accepting
        finally:
            streams = running.endpoint.active
            logger.info("shutting down: closing %d streams", streams.value)
            server.shutdown()
            running.broadcaster.close()
            connections.cancel_scope.deadline = trio.current_time() + grace


async def _accept(
    server: LeanServer,
    listener: trio.SocketListener,
    connections: trio.Nursery,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept sockets until cancelled; each admitted one is served in ``connections``.

    Errors trio's listener does not already retry propagate, except a lack of descriptors or
    buffers (EMFILE, ENFILE, ENOBUFS, ENOMEM): then the loop makes room, backs off and says
    so once (see :class:`_Pressure`).
    """
    pressure = _Pressure(server)
    task_status.started()
    while True:
        try:
            stream = await listener.accept()
        except OSError as error:
            if error.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            await server.wait_for_a_descriptor(pressure.failed(error))
            continue
        pressure.recovered()
        connection = server.admit(stream)
        if connection is None:
            _refuse(stream)
        else:
            connections.start_soon(server.handle, connection, stream)


class _Pressure:
    """The accept loop at the descriptor limit: a warning per episode, at most one a minute."""

    def __init__(self, server: LeanServer) -> None:
        self._server = server
        self._wait = 0.0
        self._since: float | None = None
        self._warned = -LOG_INTERVAL
        self._unreported = 0

    def failed(self, error: OSError) -> float:
        """Count a failed accept; the seconds to wait before the next one."""
        server = self._server
        server.accept_errors += 1
        now = trio.current_time()
        if self._since is None:
            self._since = now
            if now - self._warned >= LOG_INTERVAL:
                self._warn(error, now)
            else:
                self._unreported += 1
        first, longest = ACCEPT_BACKOFF
        self._wait = min(longest, self._wait * 2) if self._wait else first
        return self._wait

    def recovered(self) -> None:
        if self._since is not None:
            seconds = trio.current_time() - self._since
            logger.info("accepting again after %.2f s without descriptors", seconds)
            self._since = None
            self._wait = 0.0

    def _warn(self, error: OSError, now: float) -> None:
        name = errno.errorcode.get(error.errno or 0, str(error.errno))
        more = (
            f" ({self._unreported} more times since the last warning)" if self._unreported else ""
        )
        logger.warning(
            "accept failed with %s (%s) at %d open sockets: closing the oldest socket that "
            "has not sent a request and retrying when a descriptor is free%s; see "
            "acceptErrors in /stats",
            name,
            os.strerror(error.errno or 0),
            len(self._server.connections),
            more,
        )
        self._warned = now
        self._unreported = 0


def _refuse(stream: trio.SocketStream) -> None:
    """Answer 503 to a socket over ``max_sockets`` without waiting, and close it.

    What the client already sent is read first (without waiting), so that closing does not
    reset the connection before the answer is read.
    """
    sock = stream.socket
    fd = sock.fileno()
    with suppress(OSError):  # BlockingIOError: nothing sent yet
        os.read(fd, 65536)
    with suppress(OSError):  # the client is gone
        os.write(fd, REFUSAL)
    sock.close()


def raise_open_file_limit() -> int | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; the soft limit then in force.

    Every socket costs a descriptor, and distributions often start processes with a soft
    limit of 1024 under a hard one of 500,000 or more. None where there is no such limit.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            logger.warning(
                "could not raise the open-file limit from %d to %d: %s", soft, target, error
            )
    return UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft


def socket_limits(settings: ServerSettings, open_files: int | None) -> tuple[int, int]:
    """``(max_sockets, reserved_sockets)`` in force.

    ``max_sockets`` as set, or the open-file limit minus a tenth of it (at least 32 and at
    most 1024 descriptors kept for the process's own files, but never more than half);
    ``reserved_sockets`` as set, at most half of a derived ``max_sockets``.
    """
    if settings.max_sockets is not None:
        return settings.max_sockets, settings.reserved_sockets
    files = open_files or UNLIMITED_FILES
    kept = min(files // 2, 1024, max(32, files // 10))
    total = max(2, files - kept)
    return total, min(settings.reserved_sockets, total // 2)


def listening_socket(settings: ServerSettings) -> socket.socket:
    """A bound, listening TCP socket whose accepted sockets time out stuck writes."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            milliseconds = int(settings.send_timeout * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        sock.bind((settings.host, settings.port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _stop_on_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s", signal.Signals(signum).name)
            stop.set()
            return

"""``serve()``: the lean HTTP server, its shared tasks, and a graceful drain.

We create the listening socket ourselves to set ``TCP_USER_TIMEOUT`` on it (accepted sockets
inherit it): a write to a peer that stopped reading or vanished then fails after
``send_timeout`` instead of waiting for as long as the kernel keeps retrying. Every accepted
connection is served by ``_connection.py``; the tasks all connections share (write coalescing,
hang-ups, heartbeats) run in a nursery :func:`serve` owns, started before the first accept and
cancelled after the last connection. Shutdown (SIGINT, SIGTERM, or the ``stop`` event) stops
accepting, closes idle connections, closes every subscription (each stream says goodbye with a
jittered ``retry:`` and ends), then gives the requests still running ``graceful_timeout``.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import trio

from .._broadcaster import Broadcaster, open_broadcaster
from .._config import BroadcasterConfig
from .._settings import ServerSettings
from ..backends import Backend
from ._api import HTTPAPI
from ._coalesce import WriteCoalescer
from ._connection import Connection
from ._hangup import HangupWatcher
from ._stream import StreamEndpoint

logger = logging.getLogger("trio_sse")


@dataclass(frozen=True)
class RunningServer:
    """What :func:`serve` reports once it accepts connections."""

    host: str
    port: int
    broadcaster: Broadcaster
    endpoint: StreamEndpoint
    write_stats: Callable[[], dict[str, int]]
    """The counters of stream writes (``streamWrites`` in ``/stats``)."""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class LeanServer:
    """The API served straight from sockets, and what its connections share."""

    def __init__(self, broadcaster: Broadcaster, settings: ServerSettings) -> None:
        self.settings = settings
        self.coalescer = WriteCoalescer()
        """Flushes what publishers hand to socket transports (see ``_coalesce.py``)."""
        self.hangups = HangupWatcher()
        """Notices clients leaving streams and long polls (see ``_hangup.py``)."""
        self.api = HTTPAPI(broadcaster, settings, write_stats=self.write_stats)
        self.connections: set[Connection] = set()
        self.closing = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the shared tasks (coalescer, hang-up watcher, heartbeats) until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.coalescer.run)
            await nursery.start(self.hangups.run)
            await nursery.start(self.api.run)
            task_status.started()

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection until it closes; a bug closes only it."""
        connection = Connection(self, stream)
        self.connections.add(connection)
        try:
            await connection.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client left (or its socket timed out)
        except Exception:
            logger.exception("connection failed; closed")
        finally:
            self.connections.discard(connection)
            await trio.aclose_forcefully(stream)

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


async def serve(
    config: BroadcasterConfig | None = None,
    settings: ServerSettings | None = None,
    *,
    backend: Backend | None = None,
    stop: trio.Event | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a broadcaster over HTTP until ``stop`` is set (or SIGINT/SIGTERM arrives).

    Start it with ``await nursery.start(serve, ...)`` to get the :class:`RunningServer`
    (with the real port when ``settings.port`` is 0).
    """
    settings = settings or ServerSettings()
    stop = trio.Event() if stop is None else stop
    listener = listening_socket(settings)
    with listener:
        async with (
            open_broadcaster(config, backend=backend) as broadcaster,
            trio.open_nursery() as shared,
        ):
            if handle_signals:
                shared.start_soon(_stop_on_signals, stop)
            server = LeanServer(broadcaster, settings)
            await shared.start(server.run)
            host, port = listener.getsockname()[:2]
            running = RunningServer(host, port, broadcaster, server.api.streams, server.write_stats)
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
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
        try:
            async with trio.open_nursery() as accepting:
                serve_listeners = partial(
                    trio.serve_listeners, server.handle, listeners, handler_nursery=connections
                )
                accepting.start_soon(serve_listeners)
                task_status.started(running)
                await stop.wait()
                accepting.cancel_scope.cancel()  # stop accepting
        finally:
            streams = running.endpoint.active
            logger.info("shutting down: closing %d streams", streams.value)
            server.shutdown()
            running.broadcaster.close()
            connections.cancel_scope.deadline = trio.current_time() + grace


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

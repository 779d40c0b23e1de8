"""Running the app on Hypercorn's trio worker, with what long-lived streams need.

We create the listening socket ourselves to set ``TCP_USER_TIMEOUT`` on it (accepted sockets
inherit it): a write to a peer that stopped reading or vanished then fails after
``send_timeout`` instead of blocking Hypercorn's shielded ``send_all`` for as long as the kernel
keeps retrying. Hypercorn's ``read_timeout`` stays unset, since an SSE client sends nothing after
its request. Shutdown (SIGINT, SIGTERM, or the ``stop`` event) first closes every subscription,
so each stream says goodbye with a jittered ``retry:`` and ends; then Hypercorn stops accepting
and gives what is left ``graceful_timeout`` to finish.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import wrap_app

from ._app import SSEApp, create_app
from ._broadcaster import Broadcaster, open_broadcaster
from ._config import BroadcasterConfig
from ._fastpath import handle_connection
from ._settings import ServerSettings
from ._stream import StreamEndpoint

logger = logging.getLogger("trio_sse")


@dataclass(frozen=True)
class RunningServer:
    """What :func:`serve` reports once it accepts connections."""

    host: str
    port: int
    broadcaster: Broadcaster
    endpoint: StreamEndpoint

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


async def serve(
    config: BroadcasterConfig | None = None,
    settings: ServerSettings | None = None,
    *,
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
        async with open_broadcaster(config) as broadcaster, trio.open_nursery() as signals:
            if handle_signals:
                signals.start_soon(_stop_on_signals, stop)
            app = create_app(broadcaster, settings)
            endpoint = app.sse
            drain = partial(_drain, stop, broadcaster, endpoint, settings.graceful_timeout)
            host, port = listener.getsockname()[:2]
            async with trio.open_nursery() as server:
                await server.start(_serve_connections, app, settings, listener, drain)
                task_status.started(RunningServer(host, port, broadcaster, endpoint))
            signals.cancel_scope.cancel()
    logger.info("trio-sse stopped")


async def _serve_connections(
    app: SSEApp,
    settings: ServerSettings,
    listener: socket.socket,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's trio worker loop, with our own connection handler in front of its own.

    As ``hypercorn.trio.run.worker_serve`` does: run the ASGI lifespan, accept until the
    shutdown trigger returns, then give open connections ``graceful_timeout`` to finish. Each
    accepted connection goes to :func:`~trio_sse._fastpath.handle_connection`, which serves
    event streams itself (their publishers' writes coalesced by one task, ``_coalesce.py``)
    and hands everything else to Hypercorn's ``TCPServer``.
    """
    config = _hypercorn_config(settings)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    context = WorkerContext(None)

    async def hypercorn_handler(stream: trio.abc.HalfCloseableStream) -> None:
        state = ConnectionState(lifespan_state.copy())
        await TCPServer(wrapped, config, context, state, stream)  # type: ignore[arg-type]

    handler = partial(handle_connection, app.sse, hypercorn_handler)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners, handler, listeners, handler_nursery=connections
                        )
                    )
                    task_status.started()
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()  # stop accepting
            finally:
                await context.terminated.set()  # Hypercorn's idle connections close now
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


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


def _hypercorn_config(settings: ServerSettings) -> HypercornConfig:
    config = HypercornConfig()
    config.graceful_timeout = settings.graceful_timeout
    config.read_timeout = None  # any value would cut streams: clients send nothing after GET
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    return config


async def _drain(
    stop: trio.Event, broadcaster: Broadcaster, endpoint: StreamEndpoint, grace: float
) -> None:
    """Hypercorn's shutdown trigger: end every stream cleanly, then let Hypercorn stop."""
    await stop.wait()
    logger.info("shutting down: closing %d streams", endpoint.active.value)
    broadcaster.close()
    with trio.move_on_after(grace):
        await endpoint.active.wait_value(0)


async def _stop_on_signals(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s", signal.Signals(signum).name)
            stop.set()
            return

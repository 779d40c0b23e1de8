"""Connections end after normal responses: keep-alive timeout, ``Connection: close``, shutdown.

Guards the Quart-Trio/Hypercorn trap of ``STACK-NOTES.md`` worked around by
``trio_sse._app._HTTPConnection``: without it the server closes no connection after a normal
response, and every shutdown waits ``graceful_timeout`` for idle keep-alive connections.
Real sockets and the real clock, against the real server on port 0.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from trio_sse import RunningServer, ServerSettings, serve

from .server_helpers import exchange_on

pytestmark = pytest.mark.real_time

BODY = b'{"type":"t","data":1}'
GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
POST_EVENT = (
    b"POST /sessions/s/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)
NO_EOF = math.inf


@asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[tuple[RunningServer, trio.Event]]:
    """The server on 127.0.0.1, any free port; stopped on exit."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(serve, None, ServerSettings(port=0, auth_publish=False, **settings), stop=stop)
        )
        try:
            yield server, stop
        finally:
            stop.set()


async def exchange(stream: trio.SocketStream, request: bytes) -> tuple[int, dict[str, str]]:
    """Send one request, read its whole response; the status and headers."""
    status, headers, _ = await exchange_on(stream, request)
    return status, headers


async def seconds_until_eof(stream: trio.SocketStream, limit: float) -> float:
    """How long until the server closes the connection (``NO_EOF`` if not within ``limit``)."""
    start = trio.current_time()
    with trio.move_on_after(limit):
        data = await stream.receive_some()
        assert data == b"", f"unexpected bytes after the response: {data!r}"
        return trio.current_time() - start
    return NO_EOF


@pytest.mark.parametrize(
    ("request_bytes", "status"), [(GET_HEALTHZ, 200), (POST_EVENT, 202)], ids=["get", "post"]
)
async def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(
    request_bytes: bytes, status: int
) -> None:
    keep_alive = 0.5
    with trio.fail_after(10):
        async with running(keep_alive_timeout=keep_alive) as (server, _):
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                assert (await exchange(stream, request_bytes))[0] == status
                # still a keep-alive connection: a second request is served on it
                assert (await exchange(stream, request_bytes))[0] == status
                waited = await seconds_until_eof(stream, limit=3)
    assert keep_alive - 0.1 <= waited < keep_alive + 1.0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n",
        POST_EVENT.replace(b"Host: test\r\n", b"Host: test\r\nConnection: close\r\n"),
    ],
    ids=["connection-close", "http-1.0", "post-connection-close"],
)
async def test_connection_is_closed_right_after_the_response_when_asked(
    request_bytes: bytes,
) -> None:
    with trio.fail_after(10):
        async with running(keep_alive_timeout=30) as (server, _):
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                status, headers = await exchange(stream, request_bytes)
                assert status in (200, 202)
                assert headers.get("connection") == "close"
                waited = await seconds_until_eof(stream, limit=2)
    assert waited < 0.5


async def test_shutdown_with_an_idle_keep_alive_connection_returns_promptly() -> None:
    with trio.fail_after(15):
        async with AsyncExitStack() as client:  # the client stays until the server has stopped
            async with running(graceful_timeout=5, keep_alive_timeout=30) as (server, stop):
                stream = await trio.open_tcp_stream(server.host, server.port)
                await client.enter_async_context(stream)
                assert (await exchange(stream, GET_HEALTHZ))[0] == 200
                start = trio.current_time()
                stop.set()
            elapsed = trio.current_time() - start  # `running` exits once serve() has returned
            assert await seconds_until_eof(stream, limit=1) < 1  # and the server closed it
    assert elapsed < 2


async def test_a_client_leaving_a_long_poll_still_cancels_the_handler() -> None:
    """Not a reproduction of the trap: shielding the last send must not hide disconnects."""
    with trio.fail_after(10):
        async with running(keep_alive_timeout=30) as (server, _):
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(b"GET /sessions/s/poll?wait=20 HTTP/1.1\r\nHost: t\r\n\r\n")
                await server.endpoint.active.wait_value(1)
            start = trio.current_time()
            await server.endpoint.active.wait_value(0)
            assert trio.current_time() - start < 1

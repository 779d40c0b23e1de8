"""The lean path: streams written straight to sockets, on fresh and kept-alive connections.

Network tests start the real server on 127.0.0.1, port 0, each under ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio

from trio_sse import BroadcasterConfig, RunningServer, ServerSettings, serve
from trio_sse.protocol import EventStreamParser
from trio_sse.server._stream import StreamEndpoint

from .server_helpers import exchange_on


@asynccontextmanager
async def running(
    config: BroadcasterConfig | None = None, **overrides: object
) -> AsyncIterator[RunningServer]:
    settings = ServerSettings(port=0, auth_publish=False, heartbeat_interval=0.3, **overrides)  # type: ignore[arg-type]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server: RunningServer = await nursery.start(partial(serve, config, settings, stop=stop))
        yield server
        stop.set()


async def read_until(stream: trio.SocketStream, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data and len(data) < limit:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


def dechunk(body: bytes) -> bytes:
    """Decode complete HTTP/1.1 chunks; stop at the first incomplete one."""
    out = b""
    while b"\r\n" in body:
        size_line, rest = body.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0 or len(rest) < size + 2:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


@pytest.mark.real_time
async def test_a_stream_on_a_fresh_connection_is_written_straight_to_the_socket() -> None:
    with trio.fail_after(10):
        async with running() as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(b"GET /sessions/s/events HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await read_until(stream, b"\r\n\r\n")
                await server.endpoint.active.wait_value(1)
                sent = [await server.broadcaster.publish("s", "t", f"line {n}") for n in range(3)]
                data = head + await read_until(stream, b"line 2")
        status, _, rest = data.partition(b"\r\n")
        headers, _, body = rest.partition(b"\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK"
        names = {line.split(b":")[0].lower() for line in headers.split(b"\r\n")}
        assert {b"transfer-encoding", b"connection", b"content-type"} <= names
        assert b"date" not in names  # Hypercorn would add one: this answer did not go through it
        events = EventStreamParser().feed(dechunk(body))
        assert [(e.id, e.data) for e in events] == [(e.id, e.data) for e in sent]


@pytest.mark.real_time
async def test_a_stream_after_other_requests_on_a_kept_alive_connection_is_lean_too() -> None:
    with trio.fail_after(10):
        async with running() as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                for _ in range(3):
                    status, _, _ = await exchange_on(
                        stream, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                    )
                    assert status == 200
                await stream.send_all(b"GET /sessions/s/events HTTP/1.1\r\nHost: x\r\n\r\n")
                await read_until(stream, b"retry: 3000\n\n\r\n")
                await trio.testing.wait_all_tasks_blocked()  # the stream's writer waits idle
                await server.broadcaster.publish("s", "t", "x")
                await read_until(stream, b"data: x")
            assert server.write_stats()["eventsHandedOver"] == 1  # the publisher wrote it


@pytest.mark.real_time
async def test_a_refused_stream_on_the_fast_path_is_a_json_error() -> None:
    with trio.fail_after(10):
        async with running(auth_subscribe=True, jwt_key="k" * 32) as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(b"GET /sessions/s/events HTTP/1.1\r\nHost: x\r\n\r\n")
                data = await read_until(stream, b"}")
        assert data.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
        assert b"WWW-Authenticate: Bearer" in data
        assert data.endswith(b'{"error":"a bearer token is needed to subscribe"}')


@pytest.mark.real_time
async def test_a_request_body_read_with_the_head_is_replayed_to_hypercorn() -> None:
    with trio.fail_after(10):
        async with running() as server:
            body = b'{"type":"t","data":"in the same packet"}'
            request = (
                b"POST /sessions/s/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(body), body)
            )
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(request)
                data = await read_until(stream, b"}")
        assert data.startswith(b"HTTP/1.1 202")
        assert server.broadcaster.get_stats()["metrics"]["eventsPublished"] == 1


@pytest.mark.real_time
async def test_the_lean_path_writes_at_once_and_batches_what_the_socket_cannot_take() -> None:
    """While the socket takes data, each event is written by the publisher at once (no wake-up
    of the stream's task); once the client's buffers are full, events queue and go out
    together. Either way: every event once, in order."""
    count, size = 200, 20_000
    config = BroadcasterConfig(max_queue_bytes=8 << 20)  # room for all of them in the queue
    with trio.fail_after(15):
        async with running(config) as server:
            sock = trio.socket.socket()
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
            await sock.connect((server.host, server.port))
            stream = trio.SocketStream(sock)
            async with stream:
                await stream.send_all(b"GET /sessions/s/events HTTP/1.1\r\nHost: x\r\n\r\n")
                data = await read_until(stream, b"retry: 3000\n\n\r\n")
                for n in range(count):  # nobody reads: the socket fills up, then events queue
                    await server.broadcaster.publish("s", "t", f"{n:05d}" + "x" * size)
                queued = server.broadcaster.get_stats()["queuedEvents"]
                data += await read_until(stream, b"%05d" % (count - 1), limit=1 << 26)
                data += await read_until(stream, b"\n\n", limit=1 << 26)
    body = data.partition(b"\r\n\r\n")[2]
    chunk_count = body.count(b"\r\n") // 2
    events = EventStreamParser().feed(dechunk(body))
    assert [e.data[:5] for e in events] == [f"{n:05d}" for n in range(count)]
    assert 0 < queued < count  # some were written at once, some had to wait
    assert chunk_count < count + 1  # the queued ones went out together


@pytest.mark.real_time
async def test_a_stream_that_fails_is_logged_and_closed_and_the_server_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(
        self: StreamEndpoint, request: object, transport: object, output: object = None
    ) -> None:
        raise RuntimeError("a bug in one stream")

    with trio.fail_after(10):
        async with running() as server:
            monkeypatch.setattr(StreamEndpoint, "serve", broken)
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(b"GET /sessions/s/events HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await read_until(stream, b"never") == b""  # closed without an answer
            monkeypatch.undo()
            async with httpx.AsyncClient(base_url=server.url) as client:
                assert (await client.get("/healthz")).status_code == 200
    assert "connection failed; closed" in caplog.text
    assert "a bug in one stream" in caplog.text

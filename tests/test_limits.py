"""Every socket counted and timed (issue 10): ``max_sockets`` and its reserved share, the
minimum body rate, idle deadlines, the accept loop at the descriptor limit, ``RLIMIT_NOFILE``.

Each test runs a real server on 127.0.0.1, port 0: in this process (started with
``nursery.start``), or, where the open-file limit must be lowered, ``trio-sse serve`` in a
subprocess whose limit a small wrapper lowers before it starts (never this process's). Raw
sockets play the clients. Every test is ``real_time`` and runs under ``trio.fail_after``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from trio_sse import RunningServer, ServerSettings, serve
from trio_sse.backends import InMemoryBackend
from trio_sse.protocol import SSEEvent

from .server_helpers import ServeProcess, serve_subprocess, wait_until

pytestmark = pytest.mark.real_time

PROMPT = 0.1
"""Seconds within which a publish or a health check must be answered under a flood."""


@dataclass
class Server:
    running: RunningServer

    @property
    def port(self) -> int:
        return self.running.port

    def sockets(self) -> dict[str, int]:
        stats = self.running.socket_stats
        assert stats is not None
        return stats()


@asynccontextmanager
async def serving(
    *, backend: InMemoryBackend | None = None, **settings: Any
) -> AsyncIterator[Server]:
    values: dict[str, Any] = {"port": 0, "auth_publish": False, "graceful_timeout": 1.0}
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(
            lambda task_status: serve(
                None,
                ServerSettings(**{**values, **settings}),
                backend=backend,
                stop=stop,
                task_status=task_status,
            )
        )
        try:
            yield Server(running)
        finally:
            stop.set()


async def connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def read_head(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and the bytes read past the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        assert chunk, f"closed before a response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, rest


async def closed_by_server(stream: trio.SocketStream) -> bool:
    """Whether the server closed ``stream`` (EOF or reset), reading what it still sends."""
    try:
        while await stream.receive_some():
            pass
    except trio.BrokenResourceError:
        pass
    return True


async def timed(port: int, request: bytes) -> tuple[int, float]:
    """Send ``request`` on a new connection; its status and the seconds from connect to head."""
    start = trio.current_time()
    async with await connect(port) as stream:
        await stream.send_all(request)
        status, _, _ = await read_head(stream)
    return status, trio.current_time() - start


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def publish_request(session: str, body: bytes | None = None, length: int | None = None) -> bytes:
    body = b'{"type":"t","data":"x"}' if body is None else body
    size = len(body) if length is None else length
    return (
        f"POST /sessions/{session}/events HTTP/1.1\r\nHost: t\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode() + body


def stream_request(session: str) -> bytes:
    return f"GET /sessions/{session}/events HTTP/1.1\r\nHost: t\r\n\r\n".encode()


async def wait_for(predicate: Callable[[], bool], within: float, what: str) -> None:
    await wait_until(predicate, within, what=what)


# -- one limit over every socket, a share reserved -------------------------------------------


async def test_idle_sockets_past_the_general_share_close_the_oldest_and_never_delay_a_publish() -> (
    None
):
    with trio.fail_after(10):
        async with serving(max_sockets=40, reserved_sockets=8) as server, AsyncExitStack() as idle:
            sockets = [
                await idle.enter_async_context(await connect(server.port)) for _ in range(40)
            ]
            await wait_for(lambda: server.sockets()["evicted"] == 8, 2, "8 evictions")
            for oldest in sockets[:8]:  # closed by the server, oldest first, without an answer
                with trio.fail_after(1):
                    assert await closed_by_server(oldest)
            assert server.sockets()["open"] == 32
            for request, expected in ((publish_request("s"), 202), (HEALTHZ, 200)):
                status, seconds = await timed(server.port, request)
                assert (status, seconds < PROMPT) == (expected, True), seconds
            stats = server.sockets()
            assert stats["open"] <= 32
            assert stats["limit"] == 40 and stats["reserved"] == 8
            assert stats["refused"] == 0 and stats["evicted"] >= 9


async def test_past_the_general_share_streams_get_503_but_publishes_and_health_are_served() -> None:
    with trio.fail_after(10):
        async with serving(max_sockets=12, reserved_sockets=4) as server, AsyncExitStack() as held:
            for n in range(8):  # the general share, filled with streams
                stream = await held.enter_async_context(await connect(server.port))
                await stream.send_all(stream_request(f"s{n}"))
                assert (await read_head(stream))[0] == 200
            async with await connect(server.port) as late:
                await late.send_all(stream_request("late"))
                status, headers, _ = await read_head(late)
                assert status == 503 and "retry-after" in headers
                assert headers["connection"] == "close"
                assert await closed_by_server(late)
            for request, expected in ((publish_request("s0"), 202), (HEALTHZ, 200)):
                status, seconds = await timed(server.port, request)
                assert (status, seconds < PROMPT) == (expected, True), seconds
            assert server.sockets()["shed"] == 1


class GatedBackend(InMemoryBackend):
    """Holds publishes to the session ``slow`` until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.waiting = 0

    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> None:
        if session_id == "slow":
            self.waiting += 1
            await self.gate.wait()
        await super().publish(session_id, event, ttl)


async def test_a_socket_past_max_sockets_with_every_socket_busy_gets_503_and_is_counted() -> None:
    backend = GatedBackend()
    with trio.fail_after(10):
        async with (
            serving(max_sockets=6, reserved_sockets=2, backend=backend) as server,
            AsyncExitStack() as held,
        ):
            for n in range(4):  # the general share: streams
                stream = await held.enter_async_context(await connect(server.port))
                await stream.send_all(stream_request(f"s{n}"))
                assert (await read_head(stream))[0] == 200
            publishers = []
            for _ in range(2):  # the reserved share: publishes held by the backend
                publisher = await held.enter_async_context(await connect(server.port))
                await publisher.send_all(publish_request("slow"))
                publishers.append(publisher)
            await wait_for(lambda: backend.waiting == 2, 2, "two publishes held")
            async with await connect(server.port) as refused:
                status, headers, _ = await read_head(refused)
                assert (status, headers["connection"]) == (503, "close")
                assert await closed_by_server(refused)
            assert server.sockets()["refused"] == 1
            assert server.sockets()["open"] == 6
            backend.gate.set()
            for publisher in publishers:
                assert (await read_head(publisher))[0] == 202


# -- deadlines -------------------------------------------------------------------------------


async def test_a_body_trickled_below_min_body_rate_gets_408_within_its_deadline() -> None:
    with trio.fail_after(10):
        async with serving(min_body_rate=1000, body_rate_grace=0.3, body_timeout=30) as server:
            async with await connect(server.port) as stream:
                start = trio.current_time()
                await stream.send_all(publish_request("s", b"", length=100_000))
                status = None
                with trio.move_on_after(5):
                    async with trio.open_nursery() as nursery:

                        async def trickle() -> None:
                            with suppress(trio.BrokenResourceError):  # closed after 408
                                while True:  # 200 bytes/s
                                    await stream.send_all(b"x" * 10)
                                    await trio.sleep(0.05)

                        nursery.start_soon(trickle)
                        status, _, body = await read_head(stream)
                        nursery.cancel_scope.cancel()
                elapsed = trio.current_time() - start
            assert status == 408 and b"min_body_rate" in body
            # due at grace + bytes received / rate: about 0.3 + 0.07 / 1 s
            assert 0.3 <= elapsed < 1.0, elapsed
            assert server.sockets()["timedOut"] == 1


async def test_a_body_above_min_body_rate_is_read_whole_after_the_grace() -> None:
    data = "x" * 2990
    body = json.dumps({"type": "t", "data": data}, separators=(",", ":")).encode()
    with trio.fail_after(10):
        async with serving(min_body_rate=1000, body_rate_grace=0.2) as server:
            async with await connect(server.port) as stream:
                await stream.send_all(publish_request("s", b"", length=len(body)))
                for start in range(0, len(body), 300):  # 3,000 bytes/s for a second
                    await stream.send_all(body[start : start + 300])
                    await trio.sleep(0.1)
                assert (await read_head(stream))[0] == 202


async def test_an_idle_kept_alive_connection_closes_at_keep_alive_timeout() -> None:
    with trio.fail_after(10):
        async with serving(keep_alive_timeout=0.3, head_timeout=5) as server:
            async with await connect(server.port) as stream:
                await stream.send_all(HEALTHZ)
                status, headers, _ = await read_head(stream)
                start = trio.current_time()
                assert status == 200 and headers.get("connection") != "close"
                assert await closed_by_server(stream)
                assert 0.25 <= trio.current_time() - start < 0.8


async def test_a_socket_that_never_sends_closes_at_head_timeout() -> None:
    with trio.fail_after(10):
        async with serving(head_timeout=0.4) as server:
            async with await connect(server.port) as stream:
                start = trio.current_time()
                assert await closed_by_server(stream)
                assert 0.35 <= trio.current_time() - start < 0.9
            await wait_for(lambda: server.sockets()["open"] == 0, 1, "the socket uncounted")


def test_settings_refuse_a_reserve_as_large_as_the_total() -> None:
    from trio_sse import ConfigError

    with pytest.raises(ConfigError, match="reserved_sockets"):
        ServerSettings(max_sockets=10, reserved_sockets=10)
    assert ServerSettings().min_body_rate == 500
    assert ServerSettings(min_body_rate=None).min_body_rate is None


# -- the process: open-file limit, accept loop at EMFILE -------------------------------------


def serve_process(soft: int, hard: int, *flags: str) -> AbstractAsyncContextManager[ServeProcess]:
    """``trio-sse serve --verbose`` in its own process with ``RLIMIT_NOFILE`` (soft, hard)."""
    return serve_subprocess("--verbose", *flags, nofile=(soft, hard))


async def test_serve_raises_its_open_file_limit_to_the_hard_limit_and_reports_it() -> None:
    with trio.fail_after(20):
        async with serve_process(64, 300) as served:
            # banner, INFO log, and the limit derived from it: 300 - 32 kept for the process
            assert "open-file limit 300; at most 268 sockets, 64 of them reserved" in served.output
            assert re.search(r"INFO:trio_sse:open-file limit 300; at most 268", served.output)
            async with await connect(served.port) as stream:
                await stream.send_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
                _, headers, body = await read_head(stream)
                while len(body) < int(headers["content-length"]):
                    body += await stream.receive_some()
            stats = json.loads(body)
            assert stats["sockets"]["limit"] == 268
            assert stats["openConnections"] == 1


async def test_at_the_descriptor_limit_accepts_back_off_log_once_and_recover() -> None:
    flags = ("--max-sockets", "1000", "--reserved-sockets", "10", "--head-timeout", "60")
    with trio.fail_after(30):
        async with serve_process(64, 64, *flags) as served, AsyncExitStack() as idle:
            for _ in range(100):  # more than the server has descriptors
                await idle.enter_async_context(await connect(served.port))
            await wait_for(lambda: "EMFILE" in served.output, 5, "the EMFILE warning")
            status, seconds = await timed(served.port, HEALTHZ)  # room made by an eviction
            assert (status, seconds < 1.0) == (200, True), seconds
            await idle.aclose()  # every idle socket closes: descriptors free up
            for _ in range(20):
                status, seconds = await timed(served.port, HEALTHZ)
                assert (status, seconds < PROMPT) == (200, True), seconds
            warnings = [line for line in served.output.splitlines() if "EMFILE" in line]
            assert len(warnings) == 1, served.output
            assert "Traceback" not in served.output
            assert "accept failed with EMFILE (Too many open files)" in warnings[0]

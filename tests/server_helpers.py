"""Helpers for the end-to-end tests of the HTTP server (``tests/test_server.py``).

A real Hypercorn server on 127.0.0.1, port 0, driven by httpx: the Quart test client hangs on
endless streams (see ``/work/shared/STACK-NOTES.md``). Every :func:`running_server` block runs
under ``trio.fail_after``, so a test that hangs fails instead.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from trio_sse import (
    Broadcaster,
    BroadcasterConfig,
    EventStreamParser,
    MessageEvent,
    RunningServer,
    ServerSettings,
    make_token,
    serve,
)

KEY = "test-hs256-key-not-a-secret-0123456789"
PUBLISH_ANY = make_token(KEY, publish=["*"])
DEADLINE = 10.0
"""Seconds a whole test (server start, body, shutdown) may take."""
CLIENT_TIMEOUT = httpx.Timeout(10.0)

Headers = Mapping[str, str]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def wait_until(
    predicate: Callable[[], bool], within: float = 1.0, *, what: str = "condition"
) -> float:
    """Poll ``predicate`` every 20 ms; return the seconds it took to hold, or fail."""
    start = trio.current_time()
    while not predicate():
        if trio.current_time() - start > within:
            raise AssertionError(f"{what} not reached within {within} s")
        await trio.sleep(0.02)
    return trio.current_time() - start


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is on a new connection; read one response with a known length."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        return await exchange_on(stream, request)


async def exchange_on(
    stream: trio.SocketStream, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` on ``stream``; read one response with a known length (status, headers
    with lower-case names, body). The connection stays usable for the next request."""
    await stream.send_all(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    length = 0 if status == 204 else int(headers["content-length"])  # 204: no body, no length
    while len(body) < length:
        chunk = await stream.receive_some()
        assert chunk, "the connection closed in the middle of the body"
        body += chunk
    return status, headers, body


class EventStream:
    """An open ``GET /sessions/{id}/events`` response, read chunk by chunk and parsed."""

    def __init__(self, response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
        self.response = response
        self.parser = EventStreamParser()
        self.raw = bytearray()
        self.chunk_count = 0
        self.ended = False
        self._chunks = chunks
        self._events: deque[MessageEvent] = deque()

    @property
    def status(self) -> int:
        return self.response.status_code

    async def read_chunk(self) -> bytes | None:
        """The next chunk as received (parsed on the way), or None at the end of the body."""
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self.ended = True
            return None
        self.raw += chunk
        self.chunk_count += 1
        self._events.extend(self.parser.feed(chunk))
        return chunk

    async def next_event(self) -> MessageEvent:
        while not self._events:
            if await self.read_chunk() is None:
                raise AssertionError(f"the stream ended; it sent {bytes(self.raw)!r}")
        return self._events.popleft()

    async def events(self, count: int) -> list[MessageEvent]:
        return [await self.next_event() for _ in range(count)]

    async def read_to_end(self) -> list[MessageEvent]:
        """Every event until the server ends the stream."""
        while await self.read_chunk() is not None:
            pass
        events = list(self._events)
        self._events.clear()
        return events

    async def stop_reading(self) -> None:
        """Abandon the body by cancelling a read.

        httpx's ``aiter_bytes`` is a stack of nested async generators: closing the outer one
        (``aclosing``) leaves the inner ones unfinished, and trio warns when they are collected.
        A cancelled read raises at the bottom of the stack and finishes every one of them.
        """
        while not self.ended:
            with trio.CancelScope() as scope:
                scope.cancel()
                await self.read_chunk()
            if scope.cancelled_caught:
                return

    async def error(self) -> Any:
        """The JSON body of a refused stream."""
        assert self.status != 200, "the stream was accepted"
        await self.read_to_end()
        return json.loads(self.raw)


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    session: str,
    *,
    headers: Headers | None = None,
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[EventStream]:
    url = f"/sessions/{session}/events"
    async with client.stream("GET", url, headers=headers, params=params) as response:
        stream = EventStream(response, response.aiter_bytes())
        try:
            yield stream
        finally:
            await stream.stop_reading()


@dataclass
class Harness:
    """A running server, an httpx client for it, and the events that stop it."""

    running: RunningServer
    settings: ServerSettings
    client: httpx.AsyncClient
    stop: trio.Event
    stopped: trio.Event
    """Set when ``serve`` has returned."""

    @property
    def broadcaster(self) -> Broadcaster:
        return self.running.broadcaster

    def stats(self) -> dict[str, Any]:
        return self.broadcaster.get_stats()

    def subscribers(self) -> int:
        return int(self.stats()["totalSubscribers"])

    def stream(
        self,
        session: str,
        *,
        headers: Headers | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[EventStream]:
        return open_stream(self.client, session, headers=headers, params=params)

    async def post_event(
        self,
        session: str,
        body: bytes | dict[str, Any],
        *,
        token: str | None = PUBLISH_ANY,
        headers: Headers | None = None,
    ) -> httpx.Response:
        """``POST /sessions/{session}/events`` with ``body`` (JSON-encoded if a dict)."""
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers.update(bearer(token))
        return await self.client.post(
            f"/sessions/{session}/events", content=content, headers=all_headers
        )

    async def publish(self, session: str, data: Any = "x", *, type: str = "message") -> str:
        """Publish over HTTP; return the new event's id."""
        response = await self.post_event(session, {"type": type, "data": data})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    async def poll(self, session: str, **params: str) -> dict[str, Any]:
        response = await self.client.get(f"/sessions/{session}/poll", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())


async def _serve_until_stopped(
    config: BroadcasterConfig | None,
    settings: ServerSettings,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[RunningServer],
) -> None:
    try:
        await serve(config, settings, stop=stop, task_status=task_status)
    finally:
        stopped.set()


@asynccontextmanager
async def running_server(
    config: BroadcasterConfig | None = None,
    *,
    deadline: float = DEADLINE,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """Serve on 127.0.0.1:0 for the block, all of it under ``trio.fail_after(deadline)``.

    ``settings`` override test defaults (a known HS256 key, short heartbeat and grace). On exit
    the client is closed, then ``stop`` is set and the block waits for ``serve`` to return. An
    error in the block propagates as itself, not wrapped in an exception group.
    """
    values: dict[str, Any] = {
        "port": 0,
        "jwt_key": KEY,
        "heartbeat_interval": 0.5,
        "graceful_timeout": 2.0,
        **settings,
    }
    server_settings = ServerSettings(**values)
    stop, stopped = trio.Event(), trio.Event()
    body_error: BaseException | None = None
    with trio.fail_after(deadline):
        async with trio.open_nursery() as nursery:
            running = await nursery.start(
                _serve_until_stopped, config, server_settings, stop, stopped
            )
            try:
                async with httpx.AsyncClient(
                    base_url=running.url, timeout=CLIENT_TIMEOUT
                ) as client:
                    yield Harness(running, server_settings, client, stop, stopped)
            except trio.Cancelled:
                raise
            except BaseException as exc:  # re-raised below, outside the nursery, unwrapped
                body_error = exc
            finally:
                stop.set()
    if body_error is not None:
        raise body_error


@asynccontextmanager
async def serve_subprocess(
    *flags: str,
    nofile: tuple[int, int] | None = None,
    prelude: str = "",
) -> AsyncIterator[ServeProcess]:
    """``trio-sse serve --no-auth --port 0 FLAGS`` in a process of its own, output collected.

    ``nofile`` sets its ``RLIMIT_NOFILE`` (soft, hard) before it starts; ``prelude`` is Python
    run in it first (it may set ``TRIO_SSE_*`` variables). Stopped with SIGTERM on exit (SIGKILL
    after 5 s).
    """
    wrapper = (
        f"import os, sys, runpy\n{prelude}\n"
        "sys.argv = ['trio-sse', *sys.argv[1:]]\n"
        "runpy.run_module('trio_sse', run_name='__main__')\n"
    )

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    command = [sys.executable, "-c", wrapper, "serve", "--no-auth", "--port", "0", *flags]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=limit
    )
    served = ServeProcess(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(served.collect)
            await wait_until(lambda: "serving on" in served.output, 10, what="the server starting")
            try:
                yield served
            finally:
                process.terminate()
                with trio.move_on_after(5):
                    await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        process.kill()
        await process.wait()
        assert process.stdout is not None
        await process.stdout.aclose()


class ServeProcess:
    """A ``trio-sse serve`` process and everything it printed so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = ""

    async def collect(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.receive_some():
            self.output += chunk.decode(errors="replace")

    @property
    def port(self) -> int:
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", self.output)
        assert match, self.output
        return int(match.group(1))

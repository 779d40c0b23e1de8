"""Hostile clients against a real hub (issue 10): nothing a client does takes the hub down or
destroys data.

Each test plays one attack with raw sockets against a real server on 127.0.0.1, port 0: in this
process (``serve`` started with ``nursery.start``), or ``trio-sse serve`` in a subprocess where the
server needs its own open-file limit (lowered with ``preexec_fn``) or its own memory (thresholds
set from its own RSS at start). Each asserts what the attacker sees and that the hub keeps
serving everyone else. Every test is ``real_time``, runs under ``trio.fail_after``, and is
bounded in sockets and requests; the module takes about 25 s.

What the unit tests already cover is not repeated here: the head parser's refusals and the
fuzzing (``test_http.py``), one socket of each kind past a limit (``test_limits.py``), the
session table's rules on a virtual clock (``test_sessions.py``).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from trio_sse import BroadcasterConfig, RunningServer, ServerSettings, serve

from .server_helpers import ServeProcess, serve_subprocess, wait_until

pytestmark = pytest.mark.real_time

PROMPT = 0.25
"""Seconds within which a publish, a health check or a stream's first bytes must come while an
attack runs (the benchmark holds the figure of 100 ms; here the test client shares the process)."""
SLACK = 0.5
"""Seconds past a deadline within which the socket must be answered and closed."""


# -- a server in this process, raw sockets -----------------------------------------------------


@asynccontextmanager
async def hub(config: BroadcasterConfig | None = None, **settings: Any) -> AsyncIterator[Hub]:
    values: dict[str, Any] = {
        "port": 0,
        "auth_publish": False,
        "heartbeat_interval": 0.5,
        "graceful_timeout": 0.5,
        **settings,
    }
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(
            lambda task_status: serve(
                config, ServerSettings(**values), stop=stop, task_status=task_status
            )
        )
        try:
            yield Hub(running.port, running)
        finally:
            stop.set()


@dataclass
class Hub:
    port: int
    running: RunningServer | None = None

    def stats(self) -> dict[str, Any]:
        assert self.running is not None
        return self.running.broadcaster.get_stats()

    def published(self) -> int:
        return int(self.stats()["metrics"]["eventsPublished"])

    def sessions(self) -> int:
        return int(self.stats()["totalSessions"])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """A raw client socket that reads responses one after another (pipelining-safe)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> bool:
        """Send ``data``; False if the server has closed (it answered before reading it all)."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _fill(self) -> bool:
        try:
            chunk = await self.stream.receive_some()
        except trio.BrokenResourceError:  # reset: the server closed with our bytes unread
            chunk = b""
        self.buffer += chunk
        return bool(chunk)

    async def head(self) -> Answer:
        """The next response head (the body, if any, is left in the buffer)."""
        while b"\r\n\r\n" not in self.buffer:
            assert await self._fill(), f"closed before a response: {self.buffer!r}"
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        return Answer(int(status_line.split()[1]), headers, b"")

    async def answer(self) -> Answer:
        """The next response with its ``Content-Length`` body."""
        answer = await self.head()
        length = int(answer.headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert await self._fill(), "closed in the middle of a body"
        answer.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return answer

    async def until(self, marker: bytes) -> None:
        while marker not in self.buffer:
            assert await self._fill(), f"closed before {marker!r}: {self.buffer!r}"

    async def closed(self) -> bool:
        """Whether the server closes the connection, reading (and keeping) what it sends."""
        while await self._fill():
            pass
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


async def exchange(
    port: int, request: bytes, *, head_only: bool = False, count: int | None = None
) -> tuple[list[Answer], bool]:
    """Send ``request`` on a new connection; every answer (with its body unless ``head_only``:
    a HEAD request) until the server closes, says nothing for 0.3 s or has given ``count``
    answers, and whether it closed."""
    connection = await Connection.open(port)
    async with connection.stream:
        await connection.send(request)
        answers = []
        while True:
            with trio.move_on_after(0.3):
                while b"\r\n\r\n" not in connection.buffer:
                    if not await connection._fill():
                        return answers, True
            if b"\r\n\r\n" not in connection.buffer:
                return answers, False
            answers.append(await (connection.head() if head_only else connection.answer()))
            if len(answers) == count:
                return answers, False


def request(method: str, target: str, body: bytes = b"", *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: t", *extra]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def publish_request(session: str, data: Any = "x") -> bytes:
    body = json.dumps({"type": "t", "data": data}).encode()
    return request("POST", f"/sessions/{session}/events", body, "Content-Type: application/json")


async def timed_answer(port: int, raw: bytes) -> tuple[Answer, float]:
    start = trio.current_time()
    connection = await Connection.open(port)
    async with connection.stream:
        await connection.send(raw)
        answer = await connection.answer()
    return answer, trio.current_time() - start


async def first_stream_bytes(port: int, session: str) -> float:
    """Seconds from connect to the ``retry:`` field of a new stream."""
    start = trio.current_time()
    connection = await Connection.open(port)
    async with connection.stream:
        await connection.send(request("GET", f"/sessions/{session}/events"))
        answer = await connection.head()
        assert answer.status == 200, answer
        await connection.until(b"retry:")
    return trio.current_time() - start


async def served_promptly(port: int, session: str = "bystander") -> None:
    """A publish, a health check and a new stream, each answered within ``PROMPT``."""
    answer, seconds = await timed_answer(port, publish_request(session))
    assert (answer.status, seconds < PROMPT) == (202, True), (answer, seconds)
    answer, seconds = await timed_answer(port, request("GET", "/healthz"))
    assert (answer.status, seconds < PROMPT) == (200, True), (answer, seconds)
    seconds = await first_stream_bytes(port, session)
    assert seconds < PROMPT, seconds


# -- slow heads, slow bodies: closed on time, others served meanwhile -------------------------


@dataclass
class Closed:
    status: int | None = None
    after: float | None = None


async def trickle(port: int, prefix: bytes, pad: bytes, gap: float, result: Closed) -> None:
    """Send ``prefix``, then ``pad`` one byte every ``gap`` seconds until the server answers;
    record the status and the seconds from connect to the close."""
    start = trio.current_time()
    connection = await Connection.open(port)
    async with connection.stream, trio.open_nursery() as nursery:

        async def send() -> None:
            if await connection.send(prefix):
                for byte in pad:
                    await trio.sleep(gap)
                    if not await connection.send(bytes([byte])):
                        return

        nursery.start_soon(send)
        await connection.closed()
        result.after = trio.current_time() - start
        nursery.cancel_scope.cancel()
    if connection.buffer:
        result.status = int(connection.buffer.split()[1])
        assert b"Connection: close" in connection.buffer, connection.buffer


async def test_heads_trickled_byte_by_byte_get_408_at_head_timeout_while_others_are_served() -> (
    None
):
    timeout = 0.8
    results = [Closed() for _ in range(30)]
    prefix = b"GET /sessions/s/events HTTP/1.1\r\nHost: t\r\n"
    pad = b"X-Pad: " + b"a" * 200
    with trio.fail_after(10):
        async with hub(head_timeout=timeout) as server, trio.open_nursery() as nursery:
            for result in results:
                nursery.start_soon(trickle, server.port, prefix, pad, 0.05, result)
            await trio.sleep(0.2)
            await served_promptly(server.port)
            await trio.sleep(timeout + SLACK)
            await served_promptly(server.port)
            assert server.sessions() == 1  # the bystander's: no trickled head reached a route
    for result in results:
        assert result.status == 408, result
        assert result.after is not None and timeout - 0.05 < result.after < timeout + SLACK, result


async def test_bodies_trickled_below_min_body_rate_get_408_and_publish_nothing() -> None:
    grace = 0.5
    results = [Closed() for _ in range(30)]
    prefix = (
        b"POST /sessions/slow/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    body = b'{"type": "t", "data": "' + b"a" * 1000
    with trio.fail_after(10):
        async with (
            hub(body_rate_grace=grace, min_body_rate=500, body_timeout=5.0) as server,
            trio.open_nursery() as nursery,
        ):
            for result in results:
                nursery.start_soon(trickle, server.port, prefix, body, 0.05, result)
            await trio.sleep(0.2)
            await served_promptly(server.port)
            await trio.sleep(grace + SLACK)
            await served_promptly(server.port)
            assert server.published() == 2  # the bystander's two publishes only
    for result in results:
        assert result.status == 408, result
        # the rate is judged once the grace is over: by the next byte, 50 ms later at most
        assert result.after is not None and grace - 0.05 < result.after < grace + SLACK, result


# -- an idle flood at a low descriptor limit (a server process of its own) --------------------


def hub_process(
    *flags: str, nofile: int | None = None, prelude: str = ""
) -> AbstractAsyncContextManager[ServeProcess]:
    """``trio-sse serve`` in its own process (``nofile``: its soft and hard RLIMIT_NOFILE)."""
    limits = None if nofile is None else (nofile, nofile)
    return serve_subprocess(*flags, nofile=limits, prelude=prelude)


async def get_json(served: ServeProcess, target: str) -> tuple[int, Any]:
    answer, _ = await timed_answer(served.port, request("GET", target))
    return answer.status, answer.json()


async def test_an_idle_flood_past_the_descriptor_limit_never_stops_a_publish_or_a_stream() -> None:
    # 128 descriptors: at most 96 sockets, 48 of them reserved; 300 idle sockets are more than
    # the process can hold, so new sockets must take the place of the oldest idle ones
    with trio.fail_after(25):
        async with (
            hub_process("--head-timeout", "20", nofile=128) as served,
            AsyncExitStack() as flood,
        ):
            assert "open-file limit 128; at most 96 sockets, 48 of them reserved" in served.output
            stream = await Connection.open(served.port)
            flood.push_async_callback(stream.aclose)
            await stream.send(request("GET", "/sessions/kept/events"))
            assert (await stream.head()).status == 200
            for _ in range(300):
                flood.push_async_callback((await Connection.open(served.port)).aclose)
            for n in range(5):
                # the stream sent a complete request: it is never evicted for an idle socket
                answer, seconds = await timed_answer(served.port, publish_request("kept", n))
                assert (answer.status, seconds < 1.0) == (202, True), (answer, seconds)
                await stream.until(f"data: {n}\n".encode())
                assert await first_stream_bytes(served.port, f"new{n}") < 1.0
            status, stats = await get_json(served, "/stats")
            assert status == 200 and stats["sockets"]["limit"] == 96, stats
            assert served.process.returncode is None
        assert "Traceback" not in served.output


# -- smuggling shapes: nothing behind a refused head is ever served or published ---------------

SMUGGLED = publish_request("victim", "smuggled")
_CL_TE = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
_TE_CL = b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
SMUGGLING = {
    "CL+TE": _CL_TE + b"\r\n0\r\n\r\n",
    "TE+CL": _TE_CL + b"\r\n0\r\n\r\n",
    "two Content-Lengths": b"Content-Length: 0\r\nContent-Length: 5\r\n\r\nxxxxx",
    "Content-Length list": b"Content-Length: 0, 5\r\n\r\nxxxxx",
    "chunked, identity": b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "identity, chunked twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "obs-fold TE": b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "space before colon": b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "TE xchunked": b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "TE with a tab": b"Transfer-Encoding:\tchunked\x0b\r\n\r\n0\r\n\r\n",
    "chunk size in hex with 0x": b"Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n",
    "chunk size overflow": b"Transfer-Encoding: chunked\r\n\r\n"
    b"10000000000000000000000000001\r\nx\r\n0\r\n\r\n",
    "bare LF in a chunk line": b"Transfer-Encoding: chunked\r\n\r\n0\n\n",
    "negative Content-Length": b"Content-Length: -5\r\n\r\n",
    "signed Content-Length": b"Content-Length: +5\r\n\r\nxxxxx",
    "huge Content-Length": b"Content-Length: 99999999999999999999999999\r\n\r\n",
}


@pytest.mark.parametrize("headers", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_a_smuggling_shape_is_refused_closed_and_what_rode_behind_it_never_served(
    headers: bytes,
) -> None:
    attack = b"POST /sessions/front/events HTTP/1.1\r\nHost: t\r\n" + headers + SMUGGLED
    with trio.fail_after(5):
        async with hub(head_timeout=1.0, body_timeout=1.0) as server:
            answers, closed = await exchange(server.port, attack)
            assert [a.status for a in answers] in ([400], [413], [501]), answers
            assert closed and answers[0].headers["connection"] == "close"
            assert server.published() == 0 and server.sessions() == 0
            await served_promptly(server.port)


async def test_a_request_hidden_in_a_chunk_is_body_not_a_request() -> None:
    hidden = SMUGGLED
    body = f"{len(hidden):x}\r\n".encode() + hidden + b"\r\n0\r\n\r\n"
    attack = (
        b"POST /sessions/front/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body + request("GET", "/healthz")
    )
    with trio.fail_after(5):
        async with hub() as server:
            answers, _ = await exchange(server.port, attack)
            # the chunk is the publish's body (not JSON: 400); the pipelined /healthz is a
            # request of its own, answered only if the connection stayed in step
            assert answers[0].status == 400, answers
            assert all(a.status in (200, 400) for a in answers[1:]), answers
            assert server.published() == 0 and server.sessions() == 0


# -- header garbage ---------------------------------------------------------------------------

GARBAGE = {
    "NUL in a value": (b"X-A: a\x00b\r\n", 400),
    "bare CR in a value": (b"X-A: a\rb\r\n", 400),
    "DEL in a value": (b"X-A: a\x7fb\r\n", 400),
    "escape in a value": (b"X-A: \x1b[2J\r\n", 400),
    "space in a name": (b"X A: b\r\n", 400),
    "non-token name": (b"X(A): b\r\n", 400),
    "empty name": (b": b\r\n", 400),
    "no colon": (b"X-A b\r\n", 400),
    "100 KB header": (b"X-A: " + b"a" * 100_000 + b"\r\n", 431),
    "10,000 small headers": (b"".join(b"X-%d: a\r\n" % n for n in range(10_000)), 431),
    "Host twice": (b"Host: u\r\n", 400),
}


@pytest.mark.parametrize(("header", "status"), GARBAGE.values(), ids=GARBAGE.keys())
async def test_header_garbage_is_refused_and_closed_and_the_hub_serves_on(
    header: bytes, status: int
) -> None:
    attack = b"GET /sessions/g/events HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n"
    with trio.fail_after(5):
        async with hub() as server:
            answers, closed = await exchange(server.port, attack)
            assert [a.status for a in answers] == [status], answers
            assert closed and answers[0].json()["error"]
            assert server.sessions() == 0
            await served_promptly(server.port)


# -- session-id garbage -----------------------------------------------------------------------

BAD_SESSION_IDS = {
    "dot": "/sessions/./events",
    "dot dot": "/sessions/../events",
    "encoded dot": "/sessions/%2E/events",
    "encoded dot dot": "/sessions/%2e%2E/events",
    "encoded slash": "/sessions/a%2Fb/events",
    "encoded backslash": "/sessions/a%5Cb/events",
    "encoded unicode": "/sessions/caf%C3%A9/events",
    "raw unicode": "/sessions/caf\u00e9/events",
    "129 characters": "/sessions/" + "a" * 129 + "/events",
    "encoded NUL": "/sessions/a%00/events",
    "encoded space": "/sessions/a%20b/events",
    "encoded percent": "/sessions/a%25/events",
    "bad escape": "/sessions/a%zz/events",
}


@pytest.mark.parametrize("target", BAD_SESSION_IDS.values(), ids=BAD_SESSION_IDS.keys())
async def test_a_session_id_a_proxy_could_rewrite_is_400_on_every_route_and_creates_nothing(
    target: str,
) -> None:
    poll = target.removesuffix("/events") + "/poll"
    bare = target.removesuffix("/events")
    raws = [
        request("GET", target),
        request("HEAD", target),
        request("GET", poll),
        publish_request("x").replace(b"/sessions/x/events", target.encode()),
        request("DELETE", bare),
    ]
    with trio.fail_after(5):
        async with hub() as server:
            for raw in raws:
                head_only = raw.startswith(b"HEAD")
                answers, _ = await exchange(server.port, raw, head_only=head_only, count=1)
                assert [a.status for a in answers] == [400], (raw, answers)
            assert server.sessions() == 0 and server.published() == 0


# -- Last-Event-ID with control characters -----------------------------------------------------

CURSORS = {
    "SOH": b"Last-Event-ID: 1\x01",
    "escape": b"Last-Event-ID: \x1b[31m1",
    "DEL": b"Last-Event-ID: 1\x7f",
    "NUL": b"Last-Event-ID: 1\x00",
    "bare CR": b"Last-Event-ID: 1\rid: 9",
}
QUERY_CURSORS = {
    "lastEventId with LF": "/sessions/c/events?lastEventId=1%0Aevent:%20x",
    "lastEventId with CR": "/sessions/c/events?lastEventId=1%0Did:9",
    "after with NUL": "/sessions/c/poll?after=1%00",
    "after with escape": "/sessions/c/poll?after=%1B%5B2J",
}


@pytest.mark.parametrize("header", CURSORS.values(), ids=CURSORS.keys())
@pytest.mark.parametrize("route", ["events", "poll"])
async def test_a_last_event_id_header_with_control_characters_is_400_and_creates_no_session(
    header: bytes, route: str
) -> None:
    raw = f"GET /sessions/c/{route} HTTP/1.1\r\nHost: t\r\n".encode() + header + b"\r\n\r\n"
    with trio.fail_after(5):
        async with hub() as server:
            answers, _ = await exchange(server.port, raw)
            assert [a.status for a in answers] == [400], answers
            assert server.sessions() == 0


@pytest.mark.parametrize("target", QUERY_CURSORS.values(), ids=QUERY_CURSORS.keys())
async def test_a_cursor_in_the_query_with_control_characters_is_400_and_creates_no_session(
    target: str,
) -> None:
    with trio.fail_after(5):
        async with hub() as server:
            answers, _ = await exchange(server.port, request("GET", target))
            assert [a.status for a in answers] == [400], answers
            assert server.sessions() == 0


# -- anonymous session floods -----------------------------------------------------------------


async def pipelined(connection: Connection, raws: list[bytes]) -> list[Answer]:
    """Send ``raws`` pipelined on ``connection`` and read every answer."""
    answers: list[Answer] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.send, b"".join(raws))
        answers.extend([await connection.answer() for _ in raws])
    return answers


async def test_thousands_of_anonymous_reads_never_evict_a_session_with_history() -> None:
    config = BroadcasterConfig(max_sessions=8, event_ttl=None)
    with trio.fail_after(20):
        async with hub(config) as server:
            connection = await Connection.open(server.port)
            async with connection.stream:
                ids = [
                    (await connection_answer(connection, publish_request("kept", n)))
                    for n in range(3)
                ]
                # reader-only sessions take each other's place; the written one stays
                polls = [request("GET", f"/sessions/u{n}/poll") for n in range(3000)]
                answers = await pipelined(connection, polls)
                assert {a.status for a in answers} == {200}
                assert server.stats()["metrics"]["sessionsEvicted"] >= 3000 - 8
                # a table full of written sessions: reads of unknown sessions are refused
                for n in range(7):
                    await connection_answer(connection, publish_request(f"w{n}", n))
                refused = await pipelined(connection, polls[:500])
                assert {a.status for a in refused} == {503}
                assert all(int(a.headers["retry-after"]) > 0 for a in refused)
                # a refused stream is answered and its connection closed
                answers, closed = await exchange(server.port, request("GET", "/sessions/u/events"))
                assert ([a.status for a in answers], closed) == ([503], True)
                assert int(answers[0].headers["retry-after"]) > 0
                answer = await connection_answer(
                    connection, request("GET", f"/sessions/kept/poll?after={ids[0]}")
                )
            events = answer.json()["events"]
            assert [(e["id"], e["type"], e["data"]) for e in events] == [
                (ids[1], "t", "1"),
                (ids[2], "t", "2"),
            ]
            async with hub_stream(server.port, "kept", ids[0]) as stream:
                await stream.until(f"id: {ids[2]}\n".encode())
                assert b"reset" not in stream.buffer, stream.buffer
            assert server.stats()["totalEvents"] == 10


async def connection_answer(connection: Connection, raw: bytes, status: int = 0) -> Any:
    """Send ``raw`` on ``connection``; a publish's id, else the answer (of ``status`` if given)."""
    await connection.send(raw)
    answer = await connection.answer()
    if raw.startswith(b"POST"):
        assert answer.status == 202, answer
        return answer.json()["id"]
    assert answer.status == (status or 200), answer
    return answer


@asynccontextmanager
async def hub_stream(
    port: int, session: str, last_event_id: str | None = None
) -> AsyncIterator[Connection]:
    extra = () if last_event_id is None else (f"Last-Event-ID: {last_event_id}",)
    connection = await Connection.open(port)
    async with connection.stream:
        await connection.send(request("GET", f"/sessions/{session}/events", b"", *extra))
        assert (await connection.head()).status == 200
        yield connection


# -- a stream that is never read --------------------------------------------------------------


async def test_a_stream_that_is_never_read_is_dropped_without_holding_back_anyone() -> None:
    config = BroadcasterConfig(max_queue_size=64, max_queue_bytes=2 << 20)
    data = "x" * 30_000
    with trio.fail_after(15):
        async with hub(config, send_timeout=1.0) as server:
            stuck = trio.socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await stuck.connect(("127.0.0.1", server.port))
            sleeper = Connection(trio.SocketStream(stuck))
            async with sleeper.stream, hub_stream(server.port, "room") as reader:
                await sleeper.send(request("GET", "/sessions/room/events"))
                await wait_until(
                    lambda: server.stats()["totalSubscribers"] == 2, 2, what="two readers"
                )
                worst = 0.0
                async with trio.open_nursery() as nursery:

                    async def read_all() -> None:
                        await reader.until(b"data: last\n")

                    nursery.start_soon(read_all)
                    for _ in range(200):
                        answer, seconds = await timed_answer(
                            server.port, publish_request("room", data)
                        )
                        assert answer.status == 202
                        worst = max(worst, seconds)
                    await timed_answer(server.port, publish_request("room", "last"))
                assert worst < PROMPT, worst
                await wait_until(
                    lambda: server.stats()["totalSubscribers"] == 1, 3, what="the drop"
                )
                assert server.stats()["metrics"]["slowConsumerDisconnects"] == 1
                with trio.fail_after(2):  # and the server closed its socket
                    assert await sleeper.closed()
                assert sleeper.buffer.count(b"\nid: ") < 200


# -- memory bursts of every data shape, over HTTP (a server process of its own) ---------------

SHAPES: dict[str, Any] = {
    "string": "x" * 60_000,
    "floats": [n * 1.000001 for n in range(3_500)],
    "lists": [[] for _ in range(20_000)],
    "objects": [{} for _ in range(20_000)],
}
CHECK = 0.3
"""The memory check interval of the burst's server."""
_MEMORY_PRELUDE = (
    "rss = int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') >> 20\n"
    "os.environ['TRIO_SSE_MEMORY_WARNING_THRESHOLD_MB'] = str(rss + 25)\n"
    "os.environ['TRIO_SSE_MEMORY_CRITICAL_THRESHOLD_MB'] = str(rss + 40)\n"
    "os.environ['TRIO_SSE_MEMORY_HELD_THRESHOLD_MB'] = '10000'\n"
)
_MEMORY_FLAGS = (
    "--memory-check-interval", str(CHECK),
    "--max-event-bytes", str(96 * 1024),
    "--max-queue-bytes", str(256 << 20),
    "--max-history-bytes-per-session", str(256 << 20),
    "--max-history-per-session", "1000",
    "--event-ttl", "3600",
)  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_memory_burst_of_each_data_shape_ends_critical_within_one_check_of_the_shed(
    shape: str,
) -> None:
    body = json.dumps({"type": "t", "data": SHAPES[shape]}).encode()
    with trio.fail_after(30):
        async with hub_process(*_MEMORY_FLAGS, prelude=_MEMORY_PRELUDE) as served:
            port = served.port
            connection = await Connection.open(port)
            async with connection.stream:
                for n in range(2000):
                    raw = request("POST", f"/sessions/m{n % 20}/events", body)
                    await connection_answer(connection, raw)
                    if n % 10 == 9 and (await get_json(served, "/readyz"))[0] == 503:
                        break
                else:
                    raise AssertionError("the burst never made the level critical")
            assert (await get_json(served, "/readyz")) == (503, {"status": "memory critical"})
            sheds, shed_at = -1, trio.current_time()
            while True:
                _, stats = await get_json(served, "/stats")
                if stats["metrics"]["memorySheds"] != sheds:
                    sheds, shed_at = stats["metrics"]["memorySheds"], trio.current_time()
                if stats["memoryLevel"] == "normal":
                    break
                await trio.sleep(0.02)
            assert trio.current_time() - shed_at <= CHECK + 0.2
            assert (await get_json(served, "/readyz"))[0] == 200
            async with hub_stream(port, "after") as stream:
                await stream.until(b"retry:")
    assert "Traceback" not in served.output, served.output

"""The Python client, ``SSEClient``: handlers, backoff, resumption, polling fallback, states.

Unit tests run on trio's virtual clock (``autojump_clock``) against :class:`FakeServer`, a
scripted server plugged in as an ``httpx.MockTransport``: no sockets, and every reconnect happens
at an exact virtual time. The end-to-end tests (marked ``real_time``) run the real server with
``serve`` on 127.0.0.1 (port 0, or a freed port for the restart), each within
``trio.fail_after``, and check that every handler sees every event exactly once while the
connection is broken on purpose.
"""

from __future__ import annotations

import gc
import itertools
import random
import socket
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import httpx
import pytest
import trio
from trio_util import AsyncValue

from trio_sse import (
    ANY_EVENT,
    CloseReason,
    ConnectionState,
    MessageEvent,
    RunningServer,
    ServerSettings,
    SSEClient,
    SSEEvent,
    StreamStalled,
    serve,
)

T = TypeVar("T")

STREAM_URL = "http://sse.test/sessions/s/events"
RETRY_1000 = b"retry: 1000\n\n"
CONNECTING, OPEN, RECONNECTING, POLLING, CLOSED, FAILED = (
    ConnectionState.CONNECTING,
    ConnectionState.OPEN,
    ConnectionState.RECONNECTING,
    ConnectionState.POLLING,
    ConnectionState.CLOSED,
    ConnectionState.FAILED,
)


def frame(event_id: str, data: str | None = None, event_type: str = "message") -> bytes:
    """The wire form of one event, as the server encodes it."""
    return SSEEvent(event_type, event_id if data is None else data, id=event_id).encoded


WAIT_LIMIT = 600.0
"""Seconds a test waits for anything: virtual time in the unit tests, so a client that never
gets there fails the test at once instead of hanging it; the real-time tests' own
``fail_after`` is shorter."""


async def wait_value(
    value: AsyncValue[int], predicate: Callable[[int], bool], what: Callable[[], str]
) -> None:
    with trio.move_on_after(WAIT_LIMIT) as waited:
        await value.wait_value(predicate)
    if waited.cancelled_caught:
        raise AssertionError(f"still waiting after {WAIT_LIMIT} s for {what()}")


class Recorder(Generic[T]):
    """A handler (or state callback) that records what it is given and can be waited on."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._count = AsyncValue(0)

    def __call__(self, item: T) -> None:
        self.items.append(item)
        self._count.value += 1

    async def wait_count(self, count: int) -> None:
        await wait_value(self._count, lambda n: n >= count, lambda: f"{count} calls: {self.items}")

    async def wait_for(self, item: T) -> None:
        await wait_value(self._count, lambda _: item in self.items, lambda: f"{item}: {self.items}")

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.items if isinstance(event, MessageEvent)]


def in_async_handler(recorder: Recorder[T]) -> Callable[[T], Awaitable[None]]:
    """An async handler that yields to the scheduler, then records."""

    async def handler(item: T) -> None:
        await trio.lowlevel.checkpoint()
        recorder(item)

    return handler


# -- the scripted fake server ----------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A 200 event stream: bytes to send and seconds to wait, in order; then the stream ends,
    or stays open (``hang``) until the client leaves."""

    parts: tuple[bytes | float, ...] = ()
    hang: bool = False

    async def respond(self, request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, headers=headers, stream=_ScriptedBody(self.parts, self.hang))


def stream(*parts: bytes | float, hang: bool = False) -> Stream:
    return Stream(parts, hang)


@dataclass(frozen=True)
class Status:
    """An error answer with this status code."""

    code: int

    async def respond(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(self.code, json={"error": f"scripted {self.code}"})


@dataclass(frozen=True)
class Poll:
    """A poll answer: ``(id, type, data)`` events and the next cursor."""

    events: tuple[tuple[str, str, str], ...]
    next: str | None

    async def respond(self, request: httpx.Request) -> httpx.Response:
        events = [{"id": i, "type": t, "data": d} for i, t, d in self.events]
        return httpx.Response(200, json={"events": events, "next": self.next})


@dataclass(frozen=True)
class Page:
    """A 200 answer that is an HTML page, as a captive portal or a confused proxy sends."""

    text: str = "<html><body>Please log in</body></html>"

    async def respond(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=self.text, headers={"content-type": "text/html"})


class Refuse:
    """No server listening: the connection is refused."""

    async def respond(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


REFUSE = Refuse()
Answer = Stream | Status | Poll | Page | Refuse | Callable[[httpx.Request], "Answer"]


def nothing_new(request: httpx.Request) -> Poll:
    """An empty poll answer that keeps the client's cursor."""
    return Poll((), request.url.params.get("after"))


def replaying(log: list[str]) -> Callable[[httpx.Request], Stream]:
    """Streams that replay ``log`` after the request's Last-Event-ID, then stay open."""

    def answer(request: httpx.Request) -> Stream:
        cursor = request.headers.get("last-event-id")
        start = log.index(cursor) + 1 if cursor in log else 0
        return stream(*(frame(event_id) for event_id in log[start:]), hang=True)

    return answer


class _ScriptedBody(httpx.AsyncByteStream):
    def __init__(self, parts: Iterable[bytes | float], hang: bool) -> None:
        self._parts = deque(parts)
        self._hang = hang

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while self._parts:
            part = self._parts.popleft()
            if isinstance(part, bytes):
                await trio.lowlevel.checkpoint()
                return part
            await trio.sleep(part)
        if self._hang:
            await trio.sleep_forever()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._parts.clear()
        self._hang = False  # a closed body ends


@dataclass(frozen=True)
class Seen:
    """One request the fake server received."""

    time: float
    kind: str  # "stream" or "poll"
    last_event_id: str | None
    after: str | None
    wait: str | None


class FakeServer:
    """A stream URL and a poll URL answered from scripts, through ``httpx.MockTransport``.

    Each request takes the next answer of its kind's script, or the default once the script
    is used up. Every request is recorded with its virtual time and cursor.
    """

    def __init__(
        self,
        streams: Iterable[Answer] = (),
        polls: Iterable[Answer] = (),
        *,
        stream_default: Answer = REFUSE,
        poll_default: Answer = nothing_new,
    ) -> None:
        self._scripts = {"stream": deque(streams), "poll": deque(polls)}
        self._defaults = {"stream": stream_default, "poll": poll_default}
        self.requests: list[Seen] = []
        self._count = AsyncValue(0)
        self.transport = httpx.MockTransport(self._handle)

    def client(self, **options: Any) -> SSEClient:
        """A client of this server; backoff 1, 2, 4, 8 s without jitter unless overridden."""
        options = {"backoff": (1, 8, 0), **options}
        return SSEClient(STREAM_URL, transport=self.transport, **options)

    def seen(self, kind: str) -> list[Seen]:
        return [request for request in self.requests if request.kind == kind]

    def times(self, kind: str = "stream") -> list[float]:
        """Request times relative to the first request of any kind."""
        start = self.requests[0].time
        return [request.time - start for request in self.seen(kind)]

    async def wait_requests(self, count: int) -> None:
        await wait_value(self._count, lambda n: n >= count, lambda: f"{count} requests: {self}")

    def __repr__(self) -> str:
        return f"<FakeServer requests={self.requests}>"

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        kind = "stream" if request.url.path.endswith("/events") else "poll"
        headers, params = request.headers, request.url.params
        seen = Seen(
            trio.current_time(),
            kind,
            headers.get("last-event-id"),
            params.get("after"),
            params.get("wait"),
        )
        self.requests.append(seen)
        self._count.value += 1
        script = self._scripts[kind]
        answer = script.popleft() if script else self._defaults[kind]
        while callable(answer):
            answer = answer(request)
        return await answer.respond(request)


# -- registration ------------------------------------------------------------------------------


def test_ten_thousand_subscribe_unsubscribe_cycles_leave_no_handler_behind() -> None:
    client = SSEClient(STREAM_URL)
    rng = random.Random(20240607)
    shared = Recorder[MessageEvent]()  # registered many times: each registration stands alone
    live: list[tuple[str, Callable[[], None]]] = []
    for cycle in range(10_000):
        if live and rng.random() < 0.5:
            _, unsubscribe = live.pop(rng.randrange(len(live)))
            unsubscribe()
            unsubscribe()  # twice is harmless, and removes nothing else
        else:
            event_type = rng.choice(["a", "b", "c", ANY_EVENT])
            handler = shared if cycle % 2 else Recorder[MessageEvent]()
            live.append((event_type, client.on(event_type, handler)))
        assert client.handler_count == len(live)
        assert sorted(client.event_types) == sorted({event_type for event_type, _ in live})
    for _, unsubscribe in live:
        unsubscribe()
    assert client.handler_count == 0
    assert client.event_types == []


def test_the_same_handler_registered_twice_has_two_independent_unsubscribes() -> None:
    client = SSEClient(STREAM_URL)
    handler = Recorder[MessageEvent]()
    first, second = client.on("a", handler), client.on("a", handler)
    assert client.handler_count == 2
    first()
    first()
    assert client.handler_count == 1
    assert client.event_types == ["a"]
    second()
    assert (client.handler_count, client.event_types) == (0, [])


async def test_a_handler_registered_twice_runs_twice_per_event_until_one_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer([stream(frame("e-1"), 1.0, frame("e-2"), hang=True)])
    client = server.client()
    handler, witness = Recorder[MessageEvent](), Recorder[MessageEvent]()
    first = client.on("message", handler)
    client.on("message", handler)
    client.on("message", witness)
    async with client:
        await witness.wait_count(1)
        first()
        await witness.wait_count(2)
    assert handler.ids == ["e-1", "e-1", "e-2"]


# -- dispatch ----------------------------------------------------------------------------------


async def test_sync_and_async_handlers_run_and_a_raising_handler_does_not_stop_the_others(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer(
        [stream(frame("1", event_type="a"), frame("2", event_type="b"), frame("3", event_type="a"))]
    )
    sync_a, async_a, every = Recorder[MessageEvent](), Recorder[MessageEvent](), Recorder[Any]()

    def broken(event: MessageEvent) -> None:
        raise RuntimeError(f"sync handler broke on {event.id}")

    async def broken_async(event: MessageEvent) -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError(f"async handler broke on {event.id}")

    client = server.client()
    client.on("a", broken)  # registered first: the others must still run after it
    client.on("b", broken_async)
    client.on("a", sync_a)
    client.on("a", in_async_handler(async_a))
    client.on(ANY_EVENT, every)
    async with client:
        await every.wait_count(3)
    assert sync_a.ids == async_a.ids == ["1", "3"]
    assert every.ids == ["1", "2", "3"]
    assert [event.type for event in every.items] == ["a", "b", "a"]
    errors = [r for r in caplog.records if r.name == "trio_sse.client" and r.levelno >= 40]
    assert [str(record.exc_info[1]) for record in errors if record.exc_info] == [
        "sync handler broke on 1",
        "async handler broke on 2",
        "sync handler broke on 3",
    ]


async def test_a_reset_event_reaches_the_reset_handlers_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reset = frame("x-0", '{"reason":"epoch-changed","lastEventId":"old-9"}', "reset")
    server = FakeServer([stream(reset, frame("x-1"), hang=True)])
    resets, messages = Recorder[MessageEvent](), Recorder[MessageEvent]()
    client = server.client(last_event_id="old-9")
    client.on("reset", resets)
    client.on("message", messages)
    async with client:
        await messages.wait_count(1)
        await trio.sleep(10)
    assert [event.json()["reason"] for event in resets.items] == ["epoch-changed"]
    assert messages.ids == ["x-1"]
    assert client.last_event_id == "x-1"


async def test_events_iterator_yields_in_order_and_unsubscribes_when_left_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer([stream(0.1, b"".join(frame(f"e-{n}") for n in range(1, 6)), hang=True)])
    client = server.client()
    client.on("message", Recorder[MessageEvent]())
    received: list[str] = []
    async with client:
        # events() is annotated AsyncIterator, although it is an async generator
        async with aclosing(client.events()) as events:  # type: ignore[type-var]
            async for event in events:
                received.append(event.id)
                assert client.handler_count == 2
                if len(received) == 3:
                    break
        assert client.handler_count == 1
        assert client.event_types == ["message"]
    assert received == ["e-1", "e-2", "e-3"]


async def test_leaving_the_client_while_an_async_handler_runs_leaves_no_generator_unfinished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``aclosing`` on the body iterator closes only httpx's outermost generator: the nested
    ones must not be left to the garbage collector, which trio reports as ResourceWarnings."""
    server = FakeServer([stream(frame("e-1"), hang=True)])
    busy = Recorder[MessageEvent]()

    async def slow(event: MessageEvent) -> None:
        busy(event)
        await trio.sleep_forever()

    client = server.client()
    client.on("message", slow)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with client:
            await busy.wait_count(1)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- reconnecting ------------------------------------------------------------------------------


async def test_reconnect_attempts_follow_the_exponential_backoff_at_exact_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(stream_default=REFUSE)
    async with server.client(max_retries=None, polling_fallback=False):
        await server.wait_requests(8)
    assert server.times() == [0, 1, 3, 7, 15, 23, 31, 39]


async def test_a_stream_that_delivered_data_resets_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(
        [REFUSE, REFUSE, REFUSE, stream(frame("e-1")), REFUSE], stream_default=stream(hang=True)
    )
    async with server.client(max_retries=3, polling_fallback=False):
        await server.wait_requests(6)
    assert server.times() == [0, 1, 3, 7, 8, 9]


async def test_jitter_keeps_every_reconnect_delay_within_its_bounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(stream_default=REFUSE)
    async with server.client(backoff=(1, 8, 0.5), max_retries=None, polling_fallback=False):
        await server.wait_requests(12)
    times = server.times()
    ratios = [
        (later - earlier) / min(2**n, 8)
        for n, (earlier, later) in enumerate(itertools.pairwise(times))
    ]
    assert all(0.5 <= ratio <= 1.5 for ratio in ratios), ratios
    assert len(set(ratios)) > 1, "jitter made no difference"


@pytest.mark.parametrize("polling_fallback", [False, True])
async def test_max_retries_consecutive_failures_make_the_client_fail(
    autojump_clock: trio.testing.MockClock, polling_fallback: bool
) -> None:
    server = FakeServer(stream_default=REFUSE, poll_default=REFUSE)
    states = Recorder[ConnectionState]()
    client = server.client(max_retries=3, polling_fallback=polling_fallback)
    client.on_connection_change(states)
    async with client:
        await states.wait_for(FAILED)
        await trio.sleep(600)
        assert len(server.requests) == 4
        assert client.state is FAILED
    assert isinstance(client.last_error, httpx.ConnectError)


async def test_the_servers_retry_field_is_a_floor_for_the_reconnect_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer([stream(b"retry: 5000\n\n")], stream_default=stream(hang=True))
    client = server.client()
    async with client:
        await server.wait_requests(2)
    assert client.retry_ms == 5000
    assert server.times() == [0, 5]


async def test_a_reconnect_resumes_after_the_last_event_id_received(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = stream(frame("a-1"), frame("a-2"), b": comment\n\n", frame("a-3"))
    server = FakeServer([first], stream_default=stream(hang=True))
    async with server.client():
        await server.wait_requests(2)
    assert [seen.last_event_id for seen in server.requests] == [None, "a-3"]


async def test_the_last_event_id_argument_is_sent_on_the_first_connect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(stream_default=stream(hang=True))
    async with server.client(last_event_id="b-41"):
        await server.wait_requests(1)
    assert server.requests[0].last_event_id == "b-41"


async def test_connection_changes_are_reported_in_order_until_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer([stream(frame("e-1"), 1.0), REFUSE], stream_default=stream(hang=True))
    states, early = Recorder[ConnectionState](), Recorder[ConnectionState]()
    client = server.client()
    client.on_connection_change(states)
    unsubscribe_early = client.on_connection_change(in_async_handler(early))
    async with client:
        await early.wait_for(OPEN)
        unsubscribe_early()
        unsubscribe_early()
        await server.wait_requests(3)
        await trio.sleep(1)
        assert client.state is OPEN
    assert states.items == [CONNECTING, OPEN, RECONNECTING, OPEN, CLOSED]
    assert early.items == [CONNECTING, OPEN]
    assert client.state is CLOSED


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_a_client_error_on_the_stream_fails_at_once_without_retrying(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    server = FakeServer(stream_default=Status(status))
    states = Recorder[ConnectionState]()
    client = server.client()
    client.on_connection_change(states)
    async with client:
        await states.wait_for(FAILED)
        await trio.sleep(600)
    assert len(server.requests) == 1
    assert states.items == [CONNECTING, FAILED, CLOSED]


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_a_transient_error_status_on_the_stream_is_retried(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    server = FakeServer([Status(status)], stream_default=stream(hang=True))
    states = Recorder[ConnectionState]()
    client = server.client()
    client.on_connection_change(states)
    async with client:
        await states.wait_for(OPEN)
    assert server.times() == [0, 1]
    assert states.items == [CONNECTING, RECONNECTING, OPEN, CLOSED]


# -- polling fallback --------------------------------------------------------------------------


async def test_failing_streams_fall_back_to_polling_then_resume_streaming_from_the_cursor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(
        streams=[Status(503), Status(503), stream(frame("p-4"), frame("p-5"), hang=True)],
        polls=[
            Poll((("p-1", "message", "one"), ("p-2", "message", "two")), next="c-2"),
            Poll((), next="c-2"),
            Poll((("p-3", "message", "three"),), next="c-3"),
        ],
    )
    states, handler = Recorder[ConnectionState](), Recorder[MessageEvent]()
    client = server.client(
        stream_failures_before_polling=2,
        stream_retry_interval=10,
        poll_interval=1,
        poll_wait=5,
    )
    client.on_connection_change(states)
    client.on("message", handler)
    async with client:
        await handler.wait_count(5)
        await trio.sleep(20)
    assert handler.ids == ["p-1", "p-2", "p-3", "p-4", "p-5"]
    assert [event.data for event in handler.items[:3]] == ["one", "two", "three"]
    assert states.items == [CONNECTING, RECONNECTING, POLLING, RECONNECTING, OPEN, CLOSED]
    # Polling starts after the second failure and lasts stream_retry_interval; then one backoff.
    assert server.times("stream") == [0, 1, 12]
    assert server.times("poll")[0] == 1
    afters = [seen.after for seen in server.seen("poll")]
    assert afters[:4] == [None, "c-2", "c-2", "c-3"]
    assert set(afters[4:]) == {"c-3"}
    assert server.seen("stream")[2].last_event_id == "c-3"
    assert {seen.wait for seen in server.seen("poll")} == {"5"}


async def test_a_stalled_stream_is_recorded_and_falls_back_to_polling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer([stream(RETRY_1000, frame("s-1"), hang=True)])
    states, handler = Recorder[ConnectionState](), Recorder[MessageEvent]()
    client = server.client(stall_timeout=5, stream_retry_interval=100)
    client.on_connection_change(states)
    client.on("message", handler)
    async with client:
        await states.wait_for(POLLING)
        assert isinstance(client.last_error, StreamStalled)
        await server.wait_requests(3)
    assert states.items == [CONNECTING, OPEN, POLLING, CLOSED]
    assert server.times("poll")[:2] == [5, 6]  # stalled after 5 s; then every poll_interval
    assert [seen.after for seen in server.seen("poll")] == ["s-1", "s-1"]
    assert handler.ids == ["s-1"]


async def test_a_poll_refused_with_a_client_error_makes_the_client_fail_instead_of_crashing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(stream_default=Status(503), poll_default=Status(404))
    states = Recorder[ConnectionState]()
    client = server.client(stream_failures_before_polling=1)
    client.on_connection_change(states)
    async with client:
        await states.wait_for(FAILED)
    assert [seen.kind for seen in server.requests] == ["stream", "poll"]
    assert states.items == [CONNECTING, POLLING, FAILED, CLOSED]


async def test_a_slow_async_handler_is_not_cut_off_when_polling_hands_back_to_streaming(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Polling ends after ``stream_retry_interval`` by a timer; the timer must not cancel a
    handler in the middle of an event (the cursor has already moved past it)."""
    log = ["p-1", "p-2"]
    server = FakeServer(
        [Status(503)],
        polls=[Poll(tuple((i, "message", i) for i in log), next="p-2")],
        stream_default=replaying(log),
    )
    slow, fast = Recorder[MessageEvent](), Recorder[MessageEvent]()

    async def slow_handler(event: MessageEvent) -> None:
        await trio.sleep(3)  # e.g. a database write
        slow(event)

    client = server.client(stream_failures_before_polling=1, stream_retry_interval=5)
    client.on("message", slow_handler)
    client.on("message", fast)
    async with client:
        await trio.sleep(30)
    assert fast.ids == ["p-1", "p-2"]
    assert slow.ids == ["p-1", "p-2"]


@pytest.mark.parametrize(
    ("streams", "polls"),
    [
        pytest.param([Status(503)], [Page()], id="poll-answer-not-json"),
        pytest.param(
            [stream(b"data: " + b"x" * (1 << 20) + b"\n\n")], [], id="block-over-parser-limit"
        ),
    ],
)
async def test_a_garbled_answer_counts_as_a_failure_and_the_client_carries_on(
    autojump_clock: trio.testing.MockClock, streams: list[Answer], polls: list[Answer]
) -> None:
    server = FakeServer(streams, polls, stream_default=stream(hang=True))
    states = Recorder[ConnectionState]()
    client = server.client(stream_failures_before_polling=1)
    client.on_connection_change(states)
    async with client:
        await server.wait_requests(3)
        assert client.last_error is not None
    assert FAILED not in states.items


# -- against the real server -------------------------------------------------------------------

FAST_BACKOFF = (0.05, 0.5, 0.2)


def settings(port: int = 0) -> ServerSettings:
    return ServerSettings(
        port=port,
        auth_publish=False,
        heartbeat_interval=0.3,
        shutdown_retry_ms=50,
        retry_ms=100,
    )


@asynccontextmanager
async def serving(port: int = 0) -> AsyncIterator[RunningServer]:
    """The real server on 127.0.0.1; stopped (and waited for) on exit."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve, None, settings(port), stop=stop))
        try:
            yield server
        finally:
            stop.set()


def real_client(url: str, **options: Any) -> SSEClient:
    return SSEClient(url, backoff=FAST_BACKOFF, max_retries=None, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def subscribers(server: RunningServer, session_id: str = "s") -> list[Any]:
    session = server.broadcaster._sessions.get(session_id)
    return list(session.subscribers) if session is not None else []


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll a condition that has no event to wait on (the server's subscriber set)."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.01)


@pytest.mark.real_time
async def test_a_reconnect_storm_delivers_every_event_exactly_once_to_every_handler() -> None:
    with trio.fail_after(20):
        async with serving() as server:
            # A cursor from the start: a first connect without one replays nothing.
            start = await server.broadcaster.publish("s", "message", "start")
            client = real_client(f"{server.url}/sessions/s/events", last_event_id=start.id)
            messages, every = Recorder[MessageEvent](), Recorder[MessageEvent]()
            states = Recorder[ConnectionState]()
            client.on("message", messages)
            client.on(ANY_EVENT, every)
            client.on_connection_change(states)
            published: list[tuple[str | None, str]] = []

            async def publish() -> None:
                for n in range(300):
                    event = await server.broadcaster.publish("s", "message", f"m{n}")
                    published.append((event.id, f"m{n}"))
                    await trio.sleep(0.003)

            async def chaos() -> None:
                for _ in range(20):
                    await trio.sleep(0.05)
                    for subscription in subscribers(server):
                        subscription.end(CloseReason.STALE)

            async with client:
                await states.wait_for(OPEN)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish)
                    nursery.start_soon(chaos)
                await messages.wait_count(300)
                await trio.sleep(0.3)  # room for a late duplicate
                assert client.handler_count == 2
            assert [(e.id, e.data) for e in messages.items] == published
            assert [(e.id, e.data) for e in every.items] == published
            assert states.items.count(OPEN) >= 5, "the chaos task broke too few streams"


@pytest.mark.real_time
async def test_a_server_restart_brings_one_reset_then_only_the_new_events() -> None:
    with trio.fail_after(20):
        port = free_port()
        client = real_client(f"http://127.0.0.1:{port}/sessions/s/events")
        messages, resets, every = (Recorder[MessageEvent]() for _ in range(3))
        states = Recorder[ConnectionState]()
        client.on("message", messages)
        client.on("reset", resets)
        client.on(ANY_EVENT, every)
        client.on_connection_change(states)
        published: list[str] = []
        async with client:
            async with serving(port) as first:
                await states.wait_for(OPEN)  # subscribed: nothing published from now is missed
                for n in range(5):
                    published.append(str((await first.broadcaster.publish("s", "message", n)).id))
                await messages.wait_count(5)
            async with serving(port) as second:
                for n in range(5, 10):
                    published.append(str((await second.broadcaster.publish("s", "message", n)).id))
                await messages.wait_count(10)
                await trio.sleep(0.3)  # room for a late duplicate
        assert messages.ids == published
        assert [event.data for event in messages.items] == [str(n) for n in range(10)]
        assert [event.json()["reason"] for event in resets.items] == ["epoch-changed"]
        types = [event.type for event in every.items]
        assert types == ["message"] * 5 + ["reset"] + ["message"] * 5
        epochs = [event_id.rpartition("-")[0] for event_id in published]
        assert len(set(epochs[:5])) == len(set(epochs[5:])) == 1
        assert epochs[0] != epochs[5]


class StreamBlockingTransport(httpx.AsyncBaseTransport):
    """Forwards to the network, but answers 503 to every stream request, like a proxy that
    cannot stream."""

    def __init__(self) -> None:
        self._network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(503, json={"error": "no streaming through this proxy"})
        return await self._network.handle_async_request(request)

    async def aclose(self) -> None:
        await self._network.aclose()


@pytest.mark.real_time
async def test_events_arrive_exactly_once_through_polling_when_streaming_is_blocked() -> None:
    with trio.fail_after(20):
        async with serving() as server:
            client = real_client(
                f"{server.url}/sessions/s/events",
                transport=StreamBlockingTransport(),
                stream_failures_before_polling=2,
                stream_retry_interval=60,
                poll_interval=0.05,
                poll_wait=1,
            )
            messages, states = Recorder[MessageEvent](), Recorder[ConnectionState]()
            client.on("message", messages)
            client.on_connection_change(states)
            published: list[str | None] = []
            async with client:
                await states.wait_for(POLLING)
                await wait_until(lambda: bool(subscribers(server)))  # the first long poll
                for n in range(20):
                    published.append((await server.broadcaster.publish("s", "message", n)).id)
                    await trio.sleep(0.02 if n % 5 else 0.2)
                await messages.wait_count(20)
                await trio.sleep(0.3)  # room for a late duplicate
            assert messages.ids == published
            assert [event.data for event in messages.items] == [str(n) for n in range(20)]
            assert OPEN not in states.items

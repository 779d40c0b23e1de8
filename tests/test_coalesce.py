"""Coalesced writes: publishers hand events to socket transports, one task writes them together.

The coalescer tests run on trio's virtual clock, except the one that keeps the server busy
(virtual time cannot pass while tasks are always runnable), which is bounded to 0.2 s of real
time. The transport tests use a local socket pair; the end-to-end tests start the real server on
127.0.0.1, port 0, each under ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from trio_sse import BroadcasterConfig
from trio_sse.protocol import EventStreamParser
from trio_sse.server._coalesce import WriteCoalescer
from trio_sse.server._hangup import HangupWatcher
from trio_sse.server._transport import PENDING_LIMIT, SocketTransport

from .test_fastpath import dechunk, read_until, running

STREAM_REQUEST = b"GET /sessions/s/events HTTP/1.1\r\nHost: x\r\n\r\n"
RETRY_CHUNK = b"retry: 3000\n\n\r\n"


class Target:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def flush(self) -> None:
        self.log.append(self.name)


async def settled() -> None:
    """Return once nothing else can run and the coalescer has had its turn."""
    await trio.testing.wait_all_tasks_blocked()  # the coalescer is woken in the same pass...
    await trio.lowlevel.checkpoint()  # ... and has flushed by the next


async def test_scheduled_targets_are_flushed_once_when_nothing_else_can_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    coalescer = WriteCoalescer()
    log: list[str] = []
    a, b = Target(log, "a"), Target(log, "b")
    async with trio.open_nursery() as nursery:
        await nursery.start(coalescer.run)
        coalescer.hand_over(a, 10, True)
        for _ in range(50):  # still busy: nothing is written yet
            await trio.lowlevel.checkpoint()
            coalescer.hand_over(a, 10, False)
            assert log == []
        coalescer.hand_over(b, 5, True)
        await settled()
        assert log == ["a", "b"]
        assert trio.current_time() == 0  # no timer was needed
        coalescer.hand_over(b, 5, True)
        await settled()
        assert log == ["a", "b", "b"]
        nursery.cancel_scope.cancel()
    assert (coalescer.events, coalescer.flushes) == (53, 3)


def test_streams_flushing_the_same_events_share_one_framing() -> None:
    coalescer = WriteCoalescer()
    calls: list[list[bytes]] = []

    def encode(parts: list[bytes]) -> bytes:
        calls.append(list(parts))
        return b"|".join(parts)

    a, b = b"event a", b"event b"
    assert coalescer.shared([a, b], encode) == b"event a|event b"
    assert coalescer.shared([a, b], encode) == b"event a|event b"  # another stream, same events
    assert coalescer.shared([b], encode) == b"event b"
    assert calls == [[a, b], [b]]


@pytest.mark.real_time
async def test_a_server_that_stays_busy_still_flushes_after_max_delay() -> None:
    coalescer = WriteCoalescer(max_delay=0.01)
    log: list[str] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(coalescer.run)
            coalescer.hand_over(Target(log, "a"), 1, True)
            start = trio.current_time()
            flushed_at = None
            while trio.current_time() - start < 0.2:  # never idle: always runnable
                await trio.lowlevel.checkpoint()
                if log and flushed_at is None:
                    flushed_at = trio.current_time() - start
            nursery.cancel_scope.cancel()
    assert flushed_at is not None
    assert 0.01 <= flushed_at < 0.2


@dataclass
class Pair:
    """A socket transport, its coalescer, and the client end of its socket."""

    coalescer: WriteCoalescer
    transport: SocketTransport
    client: trio.SocketStream


@asynccontextmanager
async def transport_pair() -> AsyncIterator[Pair]:
    """A socket transport that has sent its 200 head (already read by the client end)."""
    left, right = trio.socket.socketpair()
    coalescer = WriteCoalescer()
    server, client = trio.SocketStream(left), trio.SocketStream(right)
    async with server, client:
        transport = SocketTransport(server, coalescer, HangupWatcher(), head_only=False)
        await transport.start(200, [])
        await read_until(client, b"\r\n\r\n")
        yield Pair(coalescer, transport, client)


def raw(data: bytes) -> Any:
    """Something offered to a transport: only its wire bytes are read."""
    return SimpleNamespace(encoded=data)


async def test_handed_over_events_go_out_in_one_chunk_when_flushed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with transport_pair() as pair:
        coalescer, transport, client = pair.coalescer, pair.transport, pair.client
        for n in range(3):
            assert transport.offer(raw(b"data: %d\n\n" % n), 0.0)
        assert coalescer.pending_bytes == 27
        coalescer.flush_all()
        assert coalescer.pending_bytes == 0
        assert await client.receive_some() == b"1b\r\ndata: 0\n\ndata: 1\n\ndata: 2\n\n\r\n"


async def test_the_writer_sends_what_was_handed_over_before_its_own_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with transport_pair() as pair:
        coalescer, transport, client = pair.coalescer, pair.transport, pair.client
        assert transport.offer(raw(b"data: 1\n\n"), 0.0)
        assert transport.flushing
        await transport.write(b"data: 2\n\n")
        coalescer.flush_all()  # nothing left for it to write
        await transport.finish()
        received = await read_until(client, b"0\r\n\r\n")
    assert received == b"9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"


async def test_a_closed_transport_writes_nothing_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with transport_pair() as pair:
        coalescer, transport, client = pair.coalescer, pair.transport, pair.client
        assert transport.offer(raw(b"data: 1\n\n"), 0.0)
        transport.close()  # the stream ended before the flush; its fd may be reused
        assert coalescer.pending_bytes == 0
        coalescer.flush_all()
        with trio.move_on_after(1) as nothing_came:
            await client.receive_some()
        assert nothing_came.cancelled_caught


async def test_past_the_pending_limit_events_are_refused_to_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with transport_pair() as pair:
        coalescer, transport = pair.coalescer, pair.transport
        big = b"x" * (PENDING_LIMIT // 2)
        assert transport.offer(raw(big), 0.0)
        assert transport.offer(raw(big), 0.0)
        assert not transport.offer(raw(b"y"), 0.0)
        assert coalescer.pending_bytes == PENDING_LIMIT
        transport.close()


@pytest.mark.real_time
async def test_events_published_in_one_burst_reach_a_stream_in_one_write() -> None:
    with trio.fail_after(10):
        async with running() as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(STREAM_REQUEST)
                await read_until(stream, RETRY_CHUNK)
                await trio.testing.wait_all_tasks_blocked()  # the stream's writer waits idle
                sent = [await server.broadcaster.publish("s", "t", f"n{n}") for n in range(10)]
                data = await read_until(stream, b"n9\n\n\r\n")
                stats = server.write_stats()
    assert data.count(b"\r\n") == 2  # one chunk: its size line and its end
    events = EventStreamParser().feed(dechunk(data))
    assert [e.id for e in events] == [e.id for e in sent]
    assert stats == {"eventsHandedOver": 10, "coalescedWrites": 1, "pendingBytes": 0}


@pytest.mark.real_time
async def test_a_burst_larger_than_the_pending_limit_arrives_whole_and_in_order() -> None:
    count, size = 100, 2000  # three times PENDING_LIMIT: most of it waits in the queue
    config = BroadcasterConfig(max_queue_bytes=1 << 20)
    with trio.fail_after(10):
        async with running(config) as server:
            stream = await trio.open_tcp_stream(server.host, server.port)
            async with stream:
                await stream.send_all(STREAM_REQUEST)
                await read_until(stream, RETRY_CHUNK)
                for n in range(count):
                    await server.broadcaster.publish("s", "t", f"{n:03d}" + "x" * size)
                data = await read_until(stream, b"%03d" % (count - 1), limit=1 << 24)
                data += await read_until(stream, b"\n\n\r\n", limit=1 << 24)
                handed_over = server.write_stats()["eventsHandedOver"]
    events = EventStreamParser().feed(dechunk(data))
    assert [e.data[:3] for e in events] == [f"{n:03d}" for n in range(count)]
    assert 0 < handed_over < count


@pytest.mark.real_time
async def test_a_client_that_stops_reading_is_dropped_while_another_gets_every_event() -> None:
    """The slow-consumer policy holds on the lean path: a stalled socket fills, its events
    queue, and past the queue's bound it is disconnected; the publisher never waits for it, and
    a reading stream gets every event once, in order."""
    count, size = 2000, 2000  # 4 MB: more than a stalled socket and its queue can hold
    config = BroadcasterConfig(max_queue_size=50, max_queue_bytes=128 << 10)
    with trio.fail_after(20):
        async with running(config) as server:
            stalled = trio.socket.socket()
            stalled.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
            await stalled.connect((server.host, server.port))
            await stalled.send(STREAM_REQUEST)
            reader = await trio.open_tcp_stream(server.host, server.port)
            async with reader, trio.open_nursery() as nursery:
                await reader.send_all(STREAM_REQUEST)
                await read_until(reader, RETRY_CHUNK)
                await server.endpoint.active.wait_value(2)
                received: list[bytes] = []
                nursery.start_soon(read_all, reader, received, b"data: n%04d" % (count - 1))
                for n in range(count):
                    await server.broadcaster.publish("s", "t", f"n{n:04d}" + "x" * size)
            stalled.close()
            metrics = server.broadcaster.get_stats()["metrics"]
    events = EventStreamParser().feed(dechunk(b"".join(received)))
    assert [e.data[:5] for e in events] == [f"n{n:04d}" for n in range(count)]
    assert metrics["slowConsumerDisconnects"] == 1


async def read_all(stream: trio.SocketStream, into: list[bytes], last: bytes) -> None:
    """Read until ``last`` and the end of its event have arrived."""
    tail = b""
    while True:
        data = await stream.receive_some()
        into.append(data)
        tail = (tail + data)[-(len(last) + 4096) :]
        if last in tail and tail.endswith(b"\n\n\r\n"):
            return

"""Fan-out benchmark: trio-sse against bare trio and the naive asyncio fan-out it replaces.

Run from the project root::

    .venv/bin/python benchmarks/fanout.py          # full run, median of 3
    .venv/bin/python benchmarks/fanout.py --quick  # smoke check: smaller N, 1 repetition

The naive design is one unbounded ``asyncio.Queue`` per subscriber: the publisher encodes each
event to bytes once and calls ``put_nowait`` on every queue; each subscriber is a task looping on
``await queue.get()``. "Bare trio" is the same design on trio, with no broadcaster logic: one
``trio.open_memory_channel(max_buffer)`` per subscriber, ``send_nowait`` on every channel and one
``trio.lowlevel.checkpoint()`` per publish, a task per subscriber looping on ``await receive()``.
All three serve one session and are measured in this process, repetition by repetition, in turn.
Figures (see ``benchmarks/README.md``):

1. ``deliveries/s``: N events published in batches of ``BATCH``; after each batch the publisher
   waits until every subscriber task has received it. Timed from the first publish until every
   subscriber holds all N; deliveries = N * subscribers. Readers either await each event, or
   await one and then take everything already queued without waiting ("drain when woken").
2. ``publish ns/subscriber``: the publish calls alone, nobody reading, queues large enough never
   to fill; divided by publishes * subscribers.
3. ``idle bytes/subscriber``: memory traced by ``tracemalloc`` while K subscribers sit idle, with
   and without a task waiting on each.
4. ``deliveries/s (handed to idle writers)``: the HTTP server's path. Each trio-sse subscriber's
   task waits in ``receive_batch()`` with a subscriber output (``subscribe(output=...)``) that
   takes the event's bytes (as a socket transport does before its write), so no task wakes per
   delivery; N events are published back to back. The other two columns are the floor of that
   loop: the publisher appends the encoded bytes to a list per subscriber, with one checkpoint
   (``asyncio.sleep(0)``) per publish. deliveries = N * subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Collection, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import trio
import trio.testing

import trio_sse

SESSION = "bench"
EVENT_TYPE = "tick"
DATA = "x" * 64
BATCH = 100  # events per batch; well under QUEUE_SIZE, so no queue ever fills
QUEUE_SIZE = 1000  # trio-sse's max_queue_size and bare trio's max_buffer
SUBSCRIBER_COUNTS = (1, 100, 10_000)
MiB = 1024 * 1024
RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = {"trio_sse": "trio-sse", "bare_trio": "bare trio", "naive_asyncio": "naive asyncio"}
"""JSON key and table heading of each implementation, in the order they run and are shown."""

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How much work each figure does, by subscriber count."""

    repetitions: int
    events: dict[int, int]
    """Figure 1: N, events published (sized so trio-sse takes about 0.5-2 s)."""
    publishes: dict[int, int]
    """Figure 2: publishes timed (every queue holds them all)."""
    idle_subscribers: int
    """Figure 3: K."""
    handed_over: dict[int, int]
    """Figure 4: N, events published to subscribers whose writers wait idle."""


FULL = Plan(
    repetitions=3,
    events={1: 40_000, 100: 2_500, 10_000: 20},
    publishes={1: 20_000, 100: 10_000, 10_000: 100},
    idle_subscribers=10_000,
    handed_over={1: 40_000, 100: 5_000, 10_000: 100},
)
QUICK = Plan(
    repetitions=1,
    events={1: 4_000, 100: 250, 10_000: 3},
    publishes={1: 2_000, 100: 1_000, 10_000: 10},
    idle_subscribers=10_000,
    handed_over={1: 4_000, 100: 500, 10_000: 10},
)


# -- shared pieces --------------------------------------------------------------------------


class _Event(Protocol):
    def set(self) -> None: ...
    def wait(self) -> Awaitable[object]: ...


class Pacer:
    """A reusable countdown: the publisher waits until ``count`` readers have arrived."""

    def __init__(self, new_event: Callable[[], _Event]) -> None:
        self._new_event = new_event
        self._event = new_event()
        self._pending = 0

    def arm(self, count: int) -> None:
        self._pending = count
        self._event = self._new_event()

    def arrive(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


Publish = Callable[[], Awaitable[object]]
"""Publishes one event (trio-sse and bare trio)."""


def sse_bytes(seq: int, type: str, data: str) -> bytes:
    """One event as the naive designs encode it, once per publish."""
    return f"event: {type}\nid: {seq}\ndata: {data}\n\n".encode()


def batches(events: int, batch: int) -> list[int]:
    """Sizes of the batches ``events`` is published in."""
    full, rest = divmod(events, batch)
    return [batch] * full + ([rest] if rest else [])


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(f"benchmark check failed: {message}")


async def read_each(
    receive: Callable[[], Awaitable[object]], events: int, batch: int, pacer: Pacer
) -> None:
    """Await ``events`` events one by one, arriving at ``pacer`` after each batch."""
    for received in range(1, events + 1):
        await receive()
        if received % batch == 0 or received == events:
            pacer.arrive()


async def read_draining(
    receive_ready: Callable[[], Awaitable[Collection[object]]],
    events: int,
    batch: int,
    pacer: Pacer,
) -> None:
    """Like :func:`read_each`, but each wake-up takes everything already queued."""
    received = 0
    while received < events:
        for _ in await receive_ready():
            received += 1
            if received % batch == 0 or received == events:
                pacer.arrive()


async def take_ready(
    receive: Callable[[], Awaitable[T]], receive_nowait: Callable[[], T], empty: type[Exception]
) -> list[T]:
    """Await one item, then take every item already queued without waiting."""
    ready = [await receive()]
    with suppress(empty):
        while True:
            ready.append(receive_nowait())
    return ready


async def append_to_sinks(
    subscribers: int, events: int, checkpoint: Callable[[], Awaitable[object]]
) -> float:
    """The floor of handing events to idle writers: deliveries/s of appending each event's bytes
    to a list per subscriber, with one ``checkpoint`` per publish (bare trio and naive)."""
    sinks: list[list[bytes]] = [[] for _ in range(subscribers)]
    gc.collect()
    start = time.perf_counter()
    for seq in range(events):
        event_bytes = sse_bytes(seq, EVENT_TYPE, DATA)
        for sink in sinks:
            sink.append(event_bytes)
        await checkpoint()
    elapsed = time.perf_counter() - start
    expect(all(len(sink) == events for sink in sinks), "every event appended")
    return events * subscribers / elapsed


def start_tracing() -> int:
    gc.collect()
    tracemalloc.start()
    return tracemalloc.get_traced_memory()[0]


def stop_tracing(baseline: int) -> int:
    """Bytes traced now beyond ``baseline``; stops tracing."""
    gc.collect()
    current = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return current - baseline


# -- trio-sse -------------------------------------------------------------------------------


def trio_config(
    subscribers: int, *, queue_size: int = QUEUE_SIZE, queue_bytes: int = 4 * MiB
) -> trio_sse.BroadcasterConfig:
    return trio_sse.BroadcasterConfig(
        max_subscribers_per_session=max(1000, 2 * subscribers),
        max_subscribers=max(1000, 2 * subscribers),
        max_queue_size=queue_size,
        max_queue_bytes=queue_bytes,
    )


async def trio_reader(
    broadcaster: trio_sse.Broadcaster, events: int, batch: int, pacer: Pacer
) -> None:
    async with broadcaster.subscribe(SESSION) as subscription:
        pacer.arrive()
        # receive() raises EndOfChannel if we were disconnected
        await read_each(subscription.receive, events, batch, pacer)


async def trio_draining_reader(
    broadcaster: trio_sse.Broadcaster, events: int, batch: int, pacer: Pacer
) -> None:
    """Like :func:`trio_reader`, but takes everything already queued each time it wakes."""
    async with broadcaster.subscribe(SESSION) as subscription:
        pacer.arrive()
        await read_draining(subscription.receive_batch, events, batch, pacer)


TrioReader = Callable[[trio_sse.Broadcaster, int, int, Pacer], Awaitable[None]]
PacedReader = Callable[[int, int, Pacer], Awaitable[None]]
"""A trio reader bound to its implementation: events, batch, pacer."""


async def trio_publisher(
    publish: Publish, events: int, batch: int, pacer: Pacer, readers: int
) -> float:
    start = time.perf_counter()
    for size in batches(events, batch):
        pacer.arm(readers)
        for _ in range(size):
            await publish()
        await pacer.wait()
    return time.perf_counter() - start


async def trio_paced_run(
    subscribers: int, events: int, reader: PacedReader, publish: Publish
) -> float:
    """Start one ``reader`` task per subscriber, then publish paced; seconds taken."""
    pacer = Pacer(trio.Event)
    async with trio.open_nursery() as nursery:
        pacer.arm(subscribers)
        for _ in range(subscribers):
            nursery.start_soon(reader, events, BATCH, pacer)
        await pacer.wait()
        gc.collect()
        return await trio_publisher(publish, events, BATCH, pacer, subscribers)


async def trio_throughput(subscribers: int, events: int, reader: TrioReader) -> float:
    async with trio_sse.open_broadcaster(trio_config(subscribers)) as broadcaster:
        publish = partial(broadcaster.publish, SESSION, EVENT_TYPE, DATA)
        elapsed = await trio_paced_run(subscribers, events, partial(reader, broadcaster), publish)
        metrics = broadcaster.statistics().metrics
        expect(metrics is not None and metrics.events_delivered == events * subscribers, "count")
    return events * subscribers / elapsed


async def trio_publish_cost(subscribers: int, publishes: int) -> float:
    config = trio_config(
        subscribers, queue_size=publishes, queue_bytes=max(4 * MiB, publishes * 1024)
    )
    async with trio_sse.open_broadcaster(config) as broadcaster, AsyncExitStack() as stack:
        for _ in range(subscribers):
            await stack.enter_async_context(broadcaster.subscribe(SESSION))
        gc.collect()
        start = time.perf_counter()
        for _ in range(publishes):
            await broadcaster.publish(SESSION, EVENT_TYPE, DATA)
        elapsed = time.perf_counter() - start
        queued = broadcaster.statistics().queued_events
        expect(queued == publishes * subscribers, f"{queued} queued")
    return elapsed * 1e9 / (publishes * subscribers)


async def trio_idle_subscriptions(broadcaster: trio_sse.Broadcaster, count: int) -> int:
    managers: list[AbstractAsyncContextManager[trio_sse.Subscription]] = []
    baseline = start_tracing()
    for _ in range(count):
        managers.append(broadcaster.subscribe(SESSION))
        await managers[-1].__aenter__()
    held = stop_tracing(baseline)
    for manager in reversed(managers):
        await manager.__aexit__(None, None, None)
    return held


async def trio_idle_reader(broadcaster: trio_sse.Broadcaster, pacer: Pacer) -> None:
    async with broadcaster.subscribe(SESSION) as subscription:
        pacer.arrive()
        await subscription.receive()


async def trio_idle_tasks(reader: Callable[[Pacer], Awaitable[None]], count: int) -> int:
    """Bytes held by ``count`` tasks blocked in ``reader`` (trio-sse and bare trio)."""
    pacer = Pacer(trio.Event)
    async with trio.open_nursery() as nursery:
        baseline = start_tracing()
        pacer.arm(count)
        for _ in range(count):
            nursery.start_soon(reader, pacer)
        await pacer.wait()
        await trio.testing.wait_all_tasks_blocked()
        held = stop_tracing(baseline)
        nursery.cancel_scope.cancel()
    return held


async def trio_idle_bytes(count: int, with_tasks: bool) -> float:
    async with (
        trio_sse.open_broadcaster(trio_config(count)) as broadcaster,
        broadcaster.subscribe(SESSION),  # warm-up: the session exists before the baseline
    ):
        if with_tasks:
            return await trio_idle_tasks(partial(trio_idle_reader, broadcaster), count) / count
        return await trio_idle_subscriptions(broadcaster, count) / count


class Sink:
    """A subscriber output that takes every event's bytes, as the socket transport does."""

    def __init__(self, into: list[bytes]) -> None:
        self._into = into

    def attach(self, wake: Callable[[], None]) -> None:
        pass

    def offer(self, event: trio_sse.SSEEvent, now: float) -> bool:
        self._into.append(event.encoded)
        return True


async def trio_parked_reader(
    broadcaster: trio_sse.Broadcaster,
    sink: list[bytes],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Wait idle in ``receive_batch()``; the publisher hands each event to ``sink`` meanwhile."""

    async with broadcaster.subscribe(SESSION, output=Sink(sink)) as subscription:
        task_status.started()
        expect(await subscription.receive_batch() == [], "nothing queued")


async def trio_handover(subscribers: int, events: int) -> float:
    sinks: list[list[bytes]] = [[] for _ in range(subscribers)]
    async with (
        trio_sse.open_broadcaster(trio_config(subscribers)) as broadcaster,
        trio.open_nursery() as nursery,
    ):
        for sink in sinks:
            await nursery.start(trio_parked_reader, broadcaster, sink)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        start = time.perf_counter()
        for _ in range(events):
            await broadcaster.publish(SESSION, EVENT_TYPE, DATA)
        elapsed = time.perf_counter() - start
        expect(all(len(sink) == events for sink in sinks), "every event handed over")
        nursery.cancel_scope.cancel()
    return events * subscribers / elapsed


# -- bare trio ------------------------------------------------------------------------------


class BareFanout:
    """Trio's floor: one memory channel per subscriber, no broadcaster logic."""

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.senders: list[trio.MemorySendChannel[bytes]] = []
        self.receivers: list[trio.MemoryReceiveChannel[bytes]] = []
        self._seq = 0

    def subscribe(self) -> trio.MemoryReceiveChannel[bytes]:
        sender, receiver = trio.open_memory_channel[bytes](self.max_buffer)
        self.senders.append(sender)
        self.receivers.append(receiver)
        return receiver

    async def publish(self, type: str, data: str) -> None:
        self._seq += 1
        event_bytes = sse_bytes(self._seq, type, data)
        for sender in self.senders:
            sender.send_nowait(event_bytes)
        # trio-sse's publish is a full checkpoint (it may switch tasks, and it raises if
        # cancelled); one per publish here keeps the comparison fair.
        await trio.lowlevel.checkpoint()

    def queued(self) -> int:
        return sum(sender.statistics().current_buffer_used for sender in self.senders)


async def bare_reader(fanout: BareFanout, events: int, batch: int, pacer: Pacer) -> None:
    receiver = fanout.subscribe()
    pacer.arrive()
    await read_each(receiver.receive, events, batch, pacer)


async def bare_draining_reader(fanout: BareFanout, events: int, batch: int, pacer: Pacer) -> None:
    """Like :func:`bare_reader`, but takes everything already queued each time it wakes."""
    receiver = fanout.subscribe()
    pacer.arrive()
    ready = partial(take_ready, receiver.receive, receiver.receive_nowait, trio.WouldBlock)
    await read_draining(ready, events, batch, pacer)


BareReader = Callable[[BareFanout, int, int, Pacer], Awaitable[None]]


async def bare_throughput(subscribers: int, events: int, reader: BareReader) -> float:
    fanout = BareFanout(QUEUE_SIZE)
    publish = partial(fanout.publish, EVENT_TYPE, DATA)
    elapsed = await trio_paced_run(subscribers, events, partial(reader, fanout), publish)
    expect(fanout.queued() == 0, "channels drained")
    return events * subscribers / elapsed


async def bare_publish_cost(subscribers: int, publishes: int) -> float:
    fanout = BareFanout(publishes)
    for _ in range(subscribers):
        fanout.subscribe()
    gc.collect()
    start = time.perf_counter()
    for _ in range(publishes):
        await fanout.publish(EVENT_TYPE, DATA)
    elapsed = time.perf_counter() - start
    expect(fanout.queued() == publishes * subscribers, "queued")
    return elapsed * 1e9 / (publishes * subscribers)


async def bare_handover(subscribers: int, events: int) -> float:
    return await append_to_sinks(subscribers, events, trio.lowlevel.checkpoint)


async def bare_idle_reader(fanout: BareFanout, pacer: Pacer) -> None:
    receiver = fanout.subscribe()
    pacer.arrive()
    await receiver.receive()


def bare_idle_channels(fanout: BareFanout, count: int) -> int:
    baseline = start_tracing()
    for _ in range(count):
        fanout.subscribe()
    return stop_tracing(baseline)


async def bare_idle_bytes(count: int, with_tasks: bool) -> float:
    fanout = BareFanout(QUEUE_SIZE)
    fanout.subscribe()  # warm-up, as for trio-sse
    if with_tasks:
        return await trio_idle_tasks(partial(bare_idle_reader, fanout), count) / count
    return bare_idle_channels(fanout, count) / count


# -- naive asyncio --------------------------------------------------------------------------


class NaiveFanout:
    """The original design: one unbounded ``asyncio.Queue`` per subscriber."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[bytes]] = []
        self._seq = 0

    def subscribe(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.append(queue)
        return queue

    def publish(self, type: str, data: str) -> None:
        self._seq += 1
        event_bytes = sse_bytes(self._seq, type, data)
        for queue in self.queues:
            queue.put_nowait(event_bytes)


async def naive_reader(queue: asyncio.Queue[bytes], events: int, batch: int, pacer: Pacer) -> None:
    pacer.arrive()
    await read_each(queue.get, events, batch, pacer)


async def naive_draining_reader(
    queue: asyncio.Queue[bytes], events: int, batch: int, pacer: Pacer
) -> None:
    """Like :func:`naive_reader`, but takes everything already queued each time it wakes."""
    pacer.arrive()
    ready = partial(take_ready, queue.get, queue.get_nowait, asyncio.QueueEmpty)
    await read_draining(ready, events, batch, pacer)


NaiveReader = Callable[[asyncio.Queue[bytes], int, int, Pacer], Coroutine[object, None, None]]


async def naive_publisher(
    fanout: NaiveFanout, events: int, batch: int, pacer: Pacer, readers: int
) -> float:
    start = time.perf_counter()
    for size in batches(events, batch):
        pacer.arm(readers)
        for _ in range(size):
            fanout.publish(EVENT_TYPE, DATA)
        await pacer.wait()
    return time.perf_counter() - start


async def naive_throughput(subscribers: int, events: int, reader: NaiveReader) -> float:
    fanout = NaiveFanout()
    pacer = Pacer(asyncio.Event)
    pacer.arm(subscribers)
    readers = [
        asyncio.create_task(reader(fanout.subscribe(), events, BATCH, pacer))
        for _ in range(subscribers)
    ]
    await pacer.wait()
    gc.collect()
    elapsed = await naive_publisher(fanout, events, BATCH, pacer, subscribers)
    await asyncio.gather(*readers)
    expect(all(queue.empty() for queue in fanout.queues), "queues drained")
    return events * subscribers / elapsed


async def naive_publish_cost(subscribers: int, publishes: int) -> float:
    fanout = NaiveFanout()
    for _ in range(subscribers):
        fanout.subscribe()
    gc.collect()
    start = time.perf_counter()
    for _ in range(publishes):
        fanout.publish(EVENT_TYPE, DATA)
    elapsed = time.perf_counter() - start
    expect(all(queue.qsize() == publishes for queue in fanout.queues), "queued")
    return elapsed * 1e9 / (publishes * subscribers)


async def naive_handover(subscribers: int, events: int) -> float:
    return await append_to_sinks(subscribers, events, partial(asyncio.sleep, 0))


async def naive_idle_reader(queue: asyncio.Queue[bytes], pacer: Pacer) -> None:
    pacer.arrive()
    await queue.get()


async def naive_idle_bytes(count: int, with_tasks: bool) -> float:
    fanout = NaiveFanout()
    fanout.subscribe()  # warm-up, as for trio-sse
    pacer = Pacer(asyncio.Event)
    baseline = start_tracing()
    for _ in range(count):
        fanout.subscribe()
    tasks: list[asyncio.Task[None]] = []
    if with_tasks:
        pacer.arm(count)
        for queue in fanout.queues[1:]:
            tasks.append(asyncio.create_task(naive_idle_reader(queue, pacer)))
        await pacer.wait()
    held = stop_tracing(baseline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return held / count


# -- running and reporting ------------------------------------------------------------------


@dataclass
class Row:
    """One figure for one subscriber count: every repetition of every implementation."""

    figure: str
    unit: str
    subscribers: int
    params: dict[str, int]
    runs: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in COLUMNS})

    def median(self, key: str) -> float:
        return statistics.median(self.runs[key])


Measure = Callable[[], float]


def measure(row: Row, runs: dict[str, Measure], repetitions: int) -> Row:
    """Run the implementations (keyed as in ``COLUMNS``) in turn, ``repetitions`` times each."""
    for _ in range(repetitions):
        for key in COLUMNS:
            row.runs[key].append(runs[key]())
    print(f"  {row.figure:<38} {row.subscribers:>6} subscribers done", file=sys.stderr)
    return row


def throughput_row(plan: Plan, subscribers: int, drain: bool) -> Row:
    n = plan.events[subscribers]
    figure = "deliveries/s (drain when woken)" if drain else "deliveries/s (await each event)"
    row = Row(figure, "deliveries/s", subscribers, {"events": n, "batch": BATCH})
    trio_reader_fn = trio_draining_reader if drain else trio_reader
    bare_reader_fn = bare_draining_reader if drain else bare_reader
    naive_reader_fn = naive_draining_reader if drain else naive_reader
    runs: dict[str, Measure] = {
        "trio_sse": lambda: trio.run(trio_throughput, subscribers, n, trio_reader_fn),
        "bare_trio": lambda: trio.run(bare_throughput, subscribers, n, bare_reader_fn),
        "naive_asyncio": lambda: asyncio.run(naive_throughput(subscribers, n, naive_reader_fn)),
    }
    return measure(row, runs, plan.repetitions)


def publish_cost_row(plan: Plan, subscribers: int) -> Row:
    n = plan.publishes[subscribers]
    row = Row("publish ns/subscriber", "ns", subscribers, {"publishes": n})
    runs: dict[str, Measure] = {
        "trio_sse": lambda: trio.run(trio_publish_cost, subscribers, n),
        "bare_trio": lambda: trio.run(bare_publish_cost, subscribers, n),
        "naive_asyncio": lambda: asyncio.run(naive_publish_cost(subscribers, n)),
    }
    return measure(row, runs, plan.repetitions)


def handover_row(plan: Plan, subscribers: int) -> Row:
    n = plan.handed_over[subscribers]
    row = Row("deliveries/s (handed to idle writers)", "deliveries/s", subscribers, {"events": n})
    runs: dict[str, Measure] = {
        "trio_sse": lambda: trio.run(trio_handover, subscribers, n),
        "bare_trio": lambda: trio.run(bare_handover, subscribers, n),
        "naive_asyncio": lambda: asyncio.run(naive_handover(subscribers, n)),
    }
    return measure(row, runs, plan.repetitions)


def idle_bytes_row(plan: Plan, with_tasks: bool) -> Row:
    k = plan.idle_subscribers
    figure = "idle bytes/sub: + waiting task" if with_tasks else "idle bytes/sub: subscription only"
    row = Row(figure, "bytes", k, {})
    runs: dict[str, Measure] = {
        "trio_sse": lambda: trio.run(trio_idle_bytes, k, with_tasks),
        "bare_trio": lambda: trio.run(bare_idle_bytes, k, with_tasks),
        "naive_asyncio": lambda: asyncio.run(naive_idle_bytes(k, with_tasks)),
    }
    return measure(row, runs, plan.repetitions)


async def trio_stats_cost(sessions: int, calls: int = 2000) -> float:
    """Microseconds per ``get_stats()`` call with ``sessions`` sessions of one event each."""
    config = trio_sse.BroadcasterConfig(max_sessions=max(sessions, 1))
    async with trio_sse.open_broadcaster(config) as broadcaster:
        for n in range(sessions):
            await broadcaster.publish(f"s{n}", EVENT_TYPE, DATA)
        start = time.perf_counter()
        for _ in range(calls):
            broadcaster.get_stats()
        elapsed = time.perf_counter() - start
        expect(broadcaster.get_stats()["totalSessions"] == sessions, "sessions")
    return elapsed * 1e6 / calls


def stats_cost_lines() -> list[str]:
    """``get_stats()`` cost with few and with 100,000 sessions (trio-sse only)."""
    return [
        f"get_stats() with {sessions:>7,} sessions: {trio.run(trio_stats_cost, sessions):6.1f} us"
        for sessions in (1, 100_000)
    ]


def run_all(plan: Plan) -> list[Row]:
    rows = [throughput_row(plan, n, drain) for drain in (False, True) for n in SUBSCRIBER_COUNTS]
    rows += [publish_cost_row(plan, n) for n in SUBSCRIBER_COUNTS]
    rows += [idle_bytes_row(plan, with_tasks) for with_tasks in (False, True)]
    rows += [handover_row(plan, n) for n in SUBSCRIBER_COUNTS]
    return rows


def fmt(value: float, unit: str) -> str:
    return f"{value:,.1f}" if unit == "ns" else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    headings = "".join(f" {heading:>14}" for heading in COLUMNS.values())
    width = max(len(row.figure) for row in rows)
    lines = [f"{'figure':<{width}} {'subscribers':>11}{headings}"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        values = "".join(f" {fmt(row.median(key), row.unit):>14}" for key in COLUMNS)
        lines.append(f"{row.figure:<{width}} {row.subscribers:>11,}{values}")
    return "\n".join(lines)


def report(
    rows: list[Row], plan: Plan, quick: bool, wall_seconds: float, stats_lines: list[str]
) -> dict[str, object]:
    return {
        "stats_cost": stats_lines,
        "benchmark": "fanout",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "trio": trio.__version__,
        "trio_sse": trio_sse.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "quick": quick,
        "plan": asdict(plan),
        "batch": BATCH,
        "wall_seconds": round(wall_seconds, 1),
        "figures": [
            {
                "figure": row.figure,
                "unit": row.unit,
                "subscribers": row.subscribers,
                "params": row.params,
                **{key: {"median": row.median(key), "runs": row.runs[key]} for key in COLUMNS},
            }
            for row in rows
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller N, 1 repetition")
    parser.add_argument("--output", type=Path, help="JSON file (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("fanout-quick.json" if args.quick else "fanout.json")
    started = time.perf_counter()
    rows = run_all(plan)
    stats_lines = stats_cost_lines()
    wall = time.perf_counter() - started
    print(table(rows))
    print("\n".join(["", *stats_lines]))
    print(f"\nmedian of {plan.repetitions}; wall time {wall:.1f} s; written to {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    document = report(rows, plan, args.quick, wall, stats_lines)
    output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()

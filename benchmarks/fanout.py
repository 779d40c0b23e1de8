"""Fan-out benchmark: trio-sse against the naive asyncio fan-out it replaces.

Run from the project root::

    .venv/bin/python benchmarks/fanout.py          # full run, median of 3
    .venv/bin/python benchmarks/fanout.py --quick  # smoke check: smaller N, 1 repetition

The naive design is one unbounded ``asyncio.Queue`` per subscriber: the publisher encodes each
event to bytes once and calls ``put_nowait`` on every queue; each subscriber is a task looping on
``await queue.get()``. Both implementations serve one session and are measured in this process,
repetition by repetition, alternately. Figures (see ``benchmarks/README.md``):

1. ``deliveries/s``: N events published in batches of ``BATCH``; after each batch the publisher
   waits until every subscriber task has received it. Timed from the first publish until every
   subscriber holds all N; deliveries = N * subscribers. Readers either await each event, or
   await one and then take everything already queued without waiting ("drain when woken").
2. ``publish ns/subscriber``: the publish calls alone, nobody reading, queues large enough never
   to fill; divided by publishes * subscribers.
3. ``idle bytes/subscriber``: memory traced by ``tracemalloc`` while K subscribers sit idle, with
   and without a task waiting on each.
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
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import trio
import trio.testing

import trio_sse

SESSION = "bench"
EVENT_TYPE = "tick"
DATA = "x" * 64
BATCH = 100  # events per batch; well under max_queue_size, so no queue ever fills
SUBSCRIBER_COUNTS = (1, 100, 10_000)
MiB = 1024 * 1024
RESULTS_DIR = Path(__file__).resolve().parent / "results"


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


FULL = Plan(
    repetitions=3,
    events={1: 40_000, 100: 2_500, 10_000: 20},
    publishes={1: 20_000, 100: 10_000, 10_000: 100},
    idle_subscribers=10_000,
)
QUICK = Plan(
    repetitions=1,
    events={1: 4_000, 100: 250, 10_000: 3},
    publishes={1: 2_000, 100: 1_000, 10_000: 10},
    idle_subscribers=10_000,
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


def batches(events: int, batch: int) -> list[int]:
    """Sizes of the batches ``events`` is published in."""
    full, rest = divmod(events, batch)
    return [batch] * full + ([rest] if rest else [])


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(f"benchmark check failed: {message}")


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
    subscribers: int, *, queue_size: int = 1000, queue_bytes: int = 4 * MiB
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
        for received in range(1, events + 1):
            await subscription.receive()  # raises EndOfChannel if we were disconnected
            if received % batch == 0 or received == events:
                pacer.arrive()


async def trio_draining_reader(
    broadcaster: trio_sse.Broadcaster, events: int, batch: int, pacer: Pacer
) -> None:
    """Like :func:`trio_reader`, but takes everything already queued each time it wakes."""
    async with broadcaster.subscribe(SESSION) as subscription:
        pacer.arrive()
        received = 0
        while received < events:
            for _ in await subscription.receive_batch():
                received += 1
                if received % batch == 0 or received == events:
                    pacer.arrive()


TrioReader = Callable[[trio_sse.Broadcaster, int, int, Pacer], Awaitable[None]]


async def trio_publisher(
    broadcaster: trio_sse.Broadcaster, events: int, batch: int, pacer: Pacer, readers: int
) -> float:
    start = time.perf_counter()
    for size in batches(events, batch):
        pacer.arm(readers)
        for _ in range(size):
            await broadcaster.publish(SESSION, EVENT_TYPE, DATA)
        await pacer.wait()
    return time.perf_counter() - start


async def trio_throughput(subscribers: int, events: int, reader: TrioReader) -> float:
    pacer = Pacer(trio.Event)
    async with trio_sse.open_broadcaster(trio_config(subscribers)) as broadcaster:
        async with trio.open_nursery() as nursery:
            pacer.arm(subscribers)
            for _ in range(subscribers):
                nursery.start_soon(reader, broadcaster, events, BATCH, pacer)
            await pacer.wait()
            gc.collect()
            elapsed = await trio_publisher(broadcaster, events, BATCH, pacer, subscribers)
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


async def trio_idle_tasks(broadcaster: trio_sse.Broadcaster, count: int) -> int:
    pacer = Pacer(trio.Event)
    async with trio.open_nursery() as nursery:
        baseline = start_tracing()
        pacer.arm(count)
        for _ in range(count):
            nursery.start_soon(trio_idle_reader, broadcaster, pacer)
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
        measure = trio_idle_tasks if with_tasks else trio_idle_subscriptions
        return await measure(broadcaster, count) / count


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
        event_bytes = f"event: {type}\nid: {self._seq}\ndata: {data}\n\n".encode()
        for queue in self.queues:
            queue.put_nowait(event_bytes)


async def naive_reader(queue: asyncio.Queue[bytes], events: int, batch: int, pacer: Pacer) -> None:
    pacer.arrive()
    for received in range(1, events + 1):
        await queue.get()
        if received % batch == 0 or received == events:
            pacer.arrive()


async def naive_draining_reader(
    queue: asyncio.Queue[bytes], events: int, batch: int, pacer: Pacer
) -> None:
    """Like :func:`naive_reader`, but takes everything already queued each time it wakes."""
    pacer.arrive()
    received = 0
    while received < events:
        ready = [await queue.get()]
        with suppress(asyncio.QueueEmpty):
            while True:
                ready.append(queue.get_nowait())
        for _ in ready:
            received += 1
            if received % batch == 0 or received == events:
                pacer.arrive()


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
    """One figure for one subscriber count: every repetition of both implementations."""

    figure: str
    unit: str
    subscribers: int
    params: dict[str, int]
    trio_sse: list[float] = field(default_factory=list)
    naive_asyncio: list[float] = field(default_factory=list)


Measure = Callable[[], float]


def measure(row: Row, trio_run: Measure, naive_run: Measure, repetitions: int) -> Row:
    """Run both implementations alternately, ``repetitions`` times each."""
    for _ in range(repetitions):
        row.trio_sse.append(trio_run())
        row.naive_asyncio.append(naive_run())
    print(f"  {row.figure:<34} {row.subscribers:>6} subscribers done", file=sys.stderr)
    return row


def throughput_row(plan: Plan, subscribers: int, drain: bool) -> Row:
    n = plan.events[subscribers]
    figure = "deliveries/s (drain when woken)" if drain else "deliveries/s (await each event)"
    row = Row(figure, "deliveries/s", subscribers, {"events": n, "batch": BATCH})
    trio_reader_fn = trio_draining_reader if drain else trio_reader
    naive_reader_fn = naive_draining_reader if drain else naive_reader
    return measure(
        row,
        lambda: trio.run(trio_throughput, subscribers, n, trio_reader_fn),
        lambda: asyncio.run(naive_throughput(subscribers, n, naive_reader_fn)),
        plan.repetitions,
    )


def publish_cost_row(plan: Plan, subscribers: int) -> Row:
    n = plan.publishes[subscribers]
    row = Row("publish ns/subscriber", "ns", subscribers, {"publishes": n})
    return measure(
        row,
        lambda: trio.run(trio_publish_cost, subscribers, n),
        lambda: asyncio.run(naive_publish_cost(subscribers, n)),
        plan.repetitions,
    )


def idle_bytes_row(plan: Plan, with_tasks: bool) -> Row:
    k = plan.idle_subscribers
    figure = "idle bytes/sub: + waiting task" if with_tasks else "idle bytes/sub: subscription only"
    row = Row(figure, "bytes", k, {})
    return measure(
        row,
        lambda: trio.run(trio_idle_bytes, k, with_tasks),
        lambda: asyncio.run(naive_idle_bytes(k, with_tasks)),
        plan.repetitions,
    )


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
    return rows


def fmt(value: float, unit: str) -> str:
    return f"{value:,.1f}" if unit == "ns" else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    lines = [f"{'figure':<34} {'subscribers':>11} {'trio-sse':>14} {'naive asyncio':>14}"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        trio_value = fmt(statistics.median(row.trio_sse), row.unit)
        naive_value = fmt(statistics.median(row.naive_asyncio), row.unit)
        lines.append(f"{row.figure:<34} {row.subscribers:>11,} {trio_value:>14} {naive_value:>14}")
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
                "trio_sse": {"median": statistics.median(row.trio_sse), "runs": row.trio_sse},
                "naive_asyncio": {
                    "median": statistics.median(row.naive_asyncio),
                    "runs": row.naive_asyncio,
                },
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

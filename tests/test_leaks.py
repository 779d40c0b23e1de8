"""Nothing leaks: thousands of subscriptions cancelled at random points leave nothing behind,
and under sustained load the held bytes never pass the bound the configuration implies."""

from __future__ import annotations

import gc
import random
import tracemalloc
import weakref
from collections.abc import Callable

import pytest
import trio
from trio.testing import MockClock

from trio_sse import Broadcaster, BroadcasterConfig, Subscription, open_broadcaster
from trio_sse._config import EVENT_OVERHEAD_BYTES

MakeConfig = Callable[..., BroadcasterConfig]

SESSIONS = [f"s{n}" for n in range(8)]


def assert_no_subscriber_left(b: Broadcaster) -> None:
    stats = b.get_stats()
    assert stats["totalSubscribers"] == 0
    assert (stats["queuedBytes"], stats["queuedEvents"]) == (0, 0)
    overhead = EVENT_OVERHEAD_BYTES * stats["totalEvents"]
    assert stats["heldBytes"] == stats["historyBytes"] + overhead
    assert all(not session.subscribers for session in b._sessions)
    assert b._counters.history_bytes == sum(s.history.bytes for s in b._sessions)


async def subscriber(
    b: Broadcaster,
    rng: random.Random,
    refs: list[weakref.ref[object]],
    ids: list[str],
) -> None:
    """Subscribe with a random cursor and get cancelled at a random point of the lifecycle."""
    session = rng.choice(SESSIONS)
    cursor = rng.choice([None, "bogus", *ids[-50:]]) if ids else None
    with trio.move_on_after(rng.uniform(0, 3)):
        async with b.subscribe(session, last_event_id=cursor) as sub:
            refs += [weakref.ref(sub), weakref.ref(sub._send), weakref.ref(sub._receive)]
            mode = rng.choice(["replay", "live", "full", "slow"])
            if mode == "full":
                await trio.sleep_forever()  # never reads: its queue fills while it is cancelled
            async for _ in sub:
                if mode == "replay" and rng.random() < 0.3:
                    return  # leaves mid-replay or mid-live, by exiting the block
                if mode == "slow":
                    await trio.sleep(rng.uniform(0, 0.5))


async def publisher(b: Broadcaster, rng: random.Random, ids: list[str]) -> None:
    while True:
        event = await b.publish(rng.choice(SESSIONS), "tick", "x" * rng.randrange(200))
        assert event.id is not None
        ids.append(event.id)
        del ids[:-200]
        await trio.sleep(rng.uniform(0, 0.01))


@pytest.mark.parametrize("policy", ["disconnect", "drop"])
async def test_ten_thousand_subscriptions_cancelled_at_random_points_leave_nothing(
    autojump_clock: MockClock, make_config: MakeConfig, policy: str
) -> None:
    rng = random.Random(2026)
    refs: list[weakref.ref[object]] = []
    ids: list[str] = []
    config = make_config(max_queue_size=8, max_history_per_session=100, slow_consumer_policy=policy)
    async with open_broadcaster(config) as b:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher, b, rng, ids)
            for _ in range(50):
                async with trio.open_nursery() as wave:
                    for _ in range(200):
                        wave.start_soon(subscriber, b, rng, refs, ids)
                        await trio.sleep(rng.uniform(0, 0.005))
                assert_no_subscriber_left(b)
            nursery.cancel_scope.cancel()
        assert len(refs) == 3 * 10_000
        assert_no_subscriber_left(b)
        metrics = b.get_stats()["metrics"]
        assert metrics["subscribersRemoved"] == 10_000
        assert metrics["eventsDelivered"] > 0
        if policy == "disconnect":
            assert metrics["slowConsumerDisconnects"] > 0
        else:
            assert metrics["eventsDropped"] > 0
        await trio.sleep(config.session_ttl + config.cleanup_interval)
        stats = b.get_stats()
        assert (stats["totalSessions"], stats["heldBytes"], stats["totalEvents"]) == (0, 0, 0)
    gc.collect()
    alive = [ref() for ref in refs if ref() is not None]
    assert alive == []


async def test_held_bytes_stay_under_the_configured_bound_under_sustained_load(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(
        max_sessions=25,
        max_queue_size=50,
        max_queue_bytes=8 * 1024,
        max_history_per_session=100,
        max_history_bytes_per_session=16 * 1024,
        max_event_bytes=1024,
        slow_consumer_policy="drop",
        event_ttl=30.0,
        cleanup_interval=5.0,
    )
    rng = random.Random(7)
    samples: list[int] = []
    subscriptions: list[Subscription] = []

    async def reader(session: str, pause: float) -> None:
        async with b.subscribe(session) as sub:
            subscriptions.append(sub)
            async for _ in sub:
                await trio.sleep(pause)  # 0 for fast readers; slow ones fall behind

    async with open_broadcaster(config) as b, trio.open_nursery() as nursery:
        for n in range(100):
            nursery.start_soon(reader, f"s{n % 20}", 0.0 if n % 2 else 5.0)
        await trio.sleep(0.1)
        bound = config.held_bytes_bound(subscribers=100)
        for n in range(60_000):  # 3,000 events a session: 30x the history bound
            await b.publish(f"s{rng.randrange(25)}", "t", "y" * rng.randrange(900))
            if n % 100 == 0:
                await trio.sleep(0.01)
                samples.append(b.get_stats()["heldBytes"])
        nursery.cancel_scope.cancel()
    assert len(samples) == 600
    assert max(samples) <= bound
    assert max(samples) > config.max_history_bytes_per_session  # the load was real
    assert any(sub.statistics().dropped for sub in subscriptions)


SHAPES: dict[str, Callable[[int], object]] = {
    "string": lambda n: "x" * n,
    "floats": lambda n: [n / 7 + i for i in range(n // 20)],
    "empty lists": lambda n: [[] for _ in range(n // 3)],
    "empty objects": lambda n: [{} for _ in range(n // 3)],
    "tiny": lambda n: n,
}


@pytest.mark.parametrize("shape", SHAPES)
async def test_held_bytes_are_at_least_the_memory_histories_really_take(
    autojump_clock: MockClock, make_config: MakeConfig, shape: str
) -> None:
    # Issue 10: an event held its decoded value beside its bytes, 2x to 26x heldBytes.
    config = make_config(
        max_history_per_session=2000, max_history_bytes_per_session=8 * 1024 * 1024
    )
    make = SHAPES[shape]
    async with open_broadcaster(config) as b:
        await b.publish("warm-up", "t", make(2000))
        gc.collect()
        held_before = b.get_stats()["heldBytes"]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(2000):
                await b.publish(f"s{n % 4}", "t", make(2000 + n % 7))
            gc.collect()
            taken = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        held = b.get_stats()["heldBytes"] - held_before
        assert taken <= held, (shape, taken, held)

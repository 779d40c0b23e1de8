"""Cleanup, TTLs, idle sessions, stale subscribers and memory levels, at exact virtual times."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
import trio
from trio.testing import MockClock

from trio_sse import (
    Broadcaster,
    BroadcasterConfig,
    CloseReason,
    InvalidEventError,
    MemoryLevel,
    MemoryPressureError,
    SSEEvent,
    open_broadcaster,
)
from trio_sse._history import History, expiry
from trio_sse._memory import MiB
from trio_sse._stats import Counters

from .conftest import FakeRSS

MakeConfig = Callable[..., BroadcasterConfig]


def record_passes(b: Broadcaster) -> list[float]:
    """Patch ``b.cleanup`` to note the virtual time of every pass the loop runs."""
    times: list[float] = []
    real = b.cleanup

    def cleanup() -> object:
        times.append(trio.current_time())
        return real()

    b.cleanup = cleanup  # type: ignore[method-assign]
    return times


async def test_cleanup_runs_every_interval_from_the_start(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(cleanup_interval=60.0)) as b:
        start = trio.current_time()
        times = record_passes(b)
        await trio.sleep(200)
        assert [t - start for t in times] == [60.0, 120.0, 180.0]
        assert b.get_stats()["metrics"]["cleanupCount"] == 3


async def test_an_event_leaves_history_at_the_first_pass_after_its_ttl(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(event_ttl=100.0, cleanup_interval=10.0)) as b:
        start = trio.current_time()
        await trio.sleep(5)
        await b.publish("s", "t", "short")  # created at 5: expired from 105, removed at 110
        await trio.sleep_until(start + 109.5)
        assert b.get_stats()["totalEvents"] == 1
        await trio.sleep_until(start + 110.5)
        stats = b.get_stats()
        assert (stats["totalEvents"], stats["historyBytes"]) == (0, 0)
        assert stats["metrics"]["eventsExpired"] == 1


async def test_a_cursor_behind_expired_events_gets_a_reset_even_before_cleanup_runs(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(event_ttl=100.0, cleanup_interval=1000.0)) as b:
        first = await b.publish("s", "t", "a", ttl=10)
        await b.publish("s", "t", "b", ttl=10)
        kept = await b.publish("s", "t", "c", ttl=50)
        await trio.sleep(10)  # the first two expired exactly now; no pass has run
        async with b.subscribe("s", last_event_id=first.id) as sub:
            reset = await sub.receive()
            assert (reset.type, reset.json()["reason"]) == ("reset", "history-expired")
            assert await sub.receive() == kept
        assert b.get_stats()["metrics"]["eventsExpired"] == 2


async def test_an_expired_event_behind_a_longer_lived_one_is_skipped_at_replay(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(event_ttl=100.0, cleanup_interval=1000.0)) as b:
        first = await b.publish("s", "t", "long", ttl=50)
        await b.publish("s", "t", "short", ttl=10)
        last = await b.publish("s", "t", "long too", ttl=50)
        await trio.sleep(10)
        async with b.subscribe("s", last_event_id=first.id) as sub:
            assert await sub.receive() == last


@pytest.mark.parametrize(
    ("ttl", "now", "retained"),
    [
        (None, 1e300, True),
        (2.5, 10.0, True),
        (2.5, math.nextafter(12.5, 0.0), True),
        (2.5, 12.5, False),
        (2.5, 1e300, False),
    ],
    ids=["no-ttl-never", "at-delivery", "just-before", "exactly-at-ttl", "long-after"],
)
def test_a_history_entry_expires_exactly_ttl_seconds_after_delivery(
    ttl: float | None, now: float, retained: bool
) -> None:
    history = History(max_count=10, max_bytes=10_000, counters=Counters())
    seq = history.reserve()
    history.append(SSEEvent("e", "d", id=history.id_for(seq)), seq, expiry(10.0, ttl))
    assert history.expire(now) == (0 if retained else 1)
    assert len(history) == (1 if retained else 0)


@pytest.mark.parametrize("ttl", [0, -1.0, math.nan, True, "10"])
async def test_a_ttl_that_is_not_positive_seconds_is_refused_before_anything_is_created(
    autojump_clock: MockClock, make_config: MakeConfig, ttl: object
) -> None:
    async with open_broadcaster(make_config()) as b:
        with pytest.raises(InvalidEventError, match="ttl must be positive seconds or None"):
            await b.publish("s", "t", "x", ttl=ttl)  # type: ignore[arg-type]
        stats = b.get_stats()
        assert (stats["totalSessions"], stats["totalEvents"]) == (0, 0)


async def test_a_session_without_subscribers_expires_after_session_ttl(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(session_ttl=300.0, cleanup_interval=10.0)
    async with open_broadcaster(config) as b:
        start = trio.current_time()
        old = await b.publish("s", "t", 1)
        await trio.sleep_until(start + 299.5)
        assert b.get_stats()["totalSessions"] == 1
        await trio.sleep_until(start + 300.5)
        stats = b.get_stats()
        assert (stats["totalSessions"], stats["totalEvents"]) == (0, 0)
        assert stats["metrics"]["sessionsExpired"] == 1
        async with b.subscribe("s", last_event_id=old.id) as sub:  # a new epoch
            assert (await sub.receive()).json()["reason"] == "epoch-changed"


async def test_a_session_with_subscribers_never_expires_and_its_clock_restarts_when_they_leave(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(session_ttl=300.0, cleanup_interval=10.0, max_subscriber_idle_time=1e9)
    async with open_broadcaster(config) as b:
        start = trio.current_time()
        async with b.subscribe("s"):
            await trio.sleep(1000)
            assert b.get_stats()["totalSessions"] == 1
        await trio.sleep_until(start + 1000 + 299.5)
        assert b.get_stats()["totalSessions"] == 1
        await trio.sleep_until(start + 1000 + 300.5)
        assert b.get_stats()["totalSessions"] == 0


async def test_publishing_keeps_a_session_alive(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(session_ttl=300.0, cleanup_interval=10.0)) as b:
        for _ in range(10):
            await b.publish("s", "t", 1)
            await trio.sleep(200)
        assert b.get_stats()["totalSessions"] == 1


async def test_a_subscriber_with_unread_events_is_closed_as_stale_on_time(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(max_subscriber_idle_time=600.0, cleanup_interval=60.0)
    async with open_broadcaster(config) as b:
        start = trio.current_time()
        async with b.subscribe("s") as sub:
            await trio.sleep(10)
            await b.publish("s", "t", 1)  # waiting since 10: stale from 610, closed at 660
            await trio.sleep_until(start + 659.5)
            assert sub.close_reason is None
            await trio.sleep_until(start + 660.5)
            assert sub.close_reason is CloseReason.STALE
            assert [e async for e in sub] == []
        stats = b.get_stats()
        assert (stats["totalSubscribers"], stats["queuedBytes"]) == (0, 0)
        assert stats["metrics"]["staleSubscribersRemoved"] == 1


async def test_reading_restarts_the_stale_clock_and_an_idle_empty_queue_never_goes_stale(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(max_subscriber_idle_time=600.0, cleanup_interval=60.0)
    async with open_broadcaster(config) as b:
        start = trio.current_time()
        async with b.subscribe("s") as sub, b.subscribe("s") as quiet:
            await b.publish("s", "t", 1)
            await b.publish("s", "t", 2)
            await trio.sleep_until(start + 300)
            await sub.receive()  # one still waits: stale from 900, closed at the 900 pass
            assert quiet.receive_nowait().json() == 1
            assert quiet.receive_nowait().json() == 2
            await trio.sleep_until(start + 899.5)
            assert sub.close_reason is None
            await trio.sleep_until(start + 900.5)
            assert sub.close_reason is CloseReason.STALE
            await trio.sleep(5000)
            assert quiet.close_reason is None


async def test_a_failing_cleanup_pass_is_logged_and_counted_and_the_next_one_runs(
    autojump_clock: MockClock, make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_broadcaster(make_config(cleanup_interval=10.0)) as b:
        real = b._sessions.expired
        calls = 0

        def flaky(now: float) -> list[object]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return real(now)  # type: ignore[return-value]

        b._sessions.expired = flaky  # type: ignore[method-assign,assignment]
        await trio.sleep(25)
        metrics = b.get_stats()["metrics"]
        assert (metrics["cleanupErrors"], metrics["cleanupCount"]) == (1, 1)
        assert "cleanup pass failed" in caplog.text


async def test_a_cleanup_pass_over_one_second_logs_a_warning_with_what_it_cleaned(
    autojump_clock: MockClock, make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = iter(range(0, 1000, 2))  # every reading 2 s after the previous one
    config = make_config(cleanup_interval=10.0, event_ttl=5.0)
    async with open_broadcaster(config, perf_counter=lambda: float(next(ticks))) as b:
        await b.publish("s", "t", 1)
        with caplog.at_level(logging.WARNING, logger="trio_sse"):
            await trio.sleep(10.5)
        assert "slow cleanup pass" in caplog.text
        assert "events_expired=1" in caplog.text
        assert b.get_stats()["metrics"]["lastCleanupSeconds"] == 2.0


async def test_memory_levels_follow_rss_with_hysteresis_and_critical_sheds(
    autojump_clock: MockClock, make_config: MakeConfig, rss: FakeRSS
) -> None:
    config = make_config(
        memory_warning_threshold_mb=500.0,
        memory_critical_threshold_mb=1000.0,
        memory_check_interval=5.0,
    )
    async with open_broadcaster(config, rss_probe=rss) as b:
        for n in range(16):
            await b.publish("s", "t", n)
        rss.mb = 600
        await trio.sleep(5.5)
        assert b.memory_level is MemoryLevel.WARNING
        assert b.get_stats()["memoryLevel"] == "warning"
        rss.mb = 1200
        await trio.sleep(5)
        assert b.memory_level is MemoryLevel.CRITICAL
        assert b.get_stats()["totalEvents"] == 8  # halved
        with pytest.raises(MemoryPressureError):
            async with b.subscribe("s"):
                pass
        rss.mb = 700  # under critical but over warning: still shedding
        await trio.sleep(5)
        assert b.memory_level is MemoryLevel.CRITICAL
        assert b.get_stats()["totalEvents"] == 4
        rss.mb = 400
        await trio.sleep(5)
        assert b.memory_level is MemoryLevel.NORMAL
        async with b.subscribe("s"):
            pass
        assert b.get_stats()["metrics"]["memorySheds"] == 2


async def test_memory_usage_is_reported_from_the_probe(
    autojump_clock: MockClock, rss: FakeRSS
) -> None:
    rss.mb = 123.5
    async with open_broadcaster(rss_probe=rss) as b:
        assert b.get_stats()["memoryUsageMB"] == 123.5


async def test_the_default_probe_reads_this_process_rss(autojump_clock: MockClock) -> None:
    async with open_broadcaster() as b:
        assert 1 < b.get_stats()["memoryUsageMB"] < 24 * 1024


async def test_critical_ends_within_one_check_once_the_histories_are_shed_though_rss_stays_high(
    autojump_clock: MockClock, make_config: MakeConfig, rss: FakeRSS
) -> None:
    # Issue 10: CPython keeps freed memory, so RSS may never come back by itself.
    config = make_config(
        memory_warning_threshold_mb=500.0,
        memory_critical_threshold_mb=1000.0,
        memory_check_interval=5.0,
    )
    async with open_broadcaster(config, rss_probe=rss) as b:
        for n in range(4):
            await b.publish("s", "t", n)
        rss.mb = 1200  # and it stays there
        await trio.sleep(5.5)
        assert (b.memory_level, b.get_stats()["totalEvents"]) == (MemoryLevel.CRITICAL, 2)
        await trio.sleep(5)
        assert (b.memory_level, b.get_stats()["totalEvents"]) == (MemoryLevel.CRITICAL, 1)
        await trio.sleep(5)  # t = 15.5: the check at 15 emptied the histories
        assert (b.memory_level, b.get_stats()["totalEvents"]) == (MemoryLevel.NORMAL, 0)
        async with b.subscribe("s"):
            pass
        for n in range(4):
            await b.publish("s", "t", n)
        await trio.sleep(20)
        assert b.memory_level is MemoryLevel.NORMAL  # the kept 700 MiB no longer count
        rss.mb = 1200 + 600  # real growth beyond what was kept: RSS counts again
        await trio.sleep(5)
        assert (b.memory_level, b.get_stats()["totalEvents"]) == (MemoryLevel.CRITICAL, 2)
        rss.mb = 400  # back under the warning threshold: nothing is set aside any more
        await trio.sleep(5)
        assert b.memory_level is MemoryLevel.NORMAL
        assert b.get_stats()["metrics"]["memorySheds"] == 4


async def test_held_bytes_above_their_threshold_make_the_level_critical_whatever_rss_says(
    autojump_clock: MockClock, make_config: MakeConfig, rss: FakeRSS
) -> None:
    config = make_config(
        memory_held_threshold_mb=10_000 / MiB, memory_check_interval=5.0, max_event_bytes=2048
    )
    async with open_broadcaster(config, rss_probe=rss) as b:
        for _ in range(20):
            await b.publish("s", "t", "x" * 1000)
        assert b.get_stats()["heldBytes"] > 20 * 1000
        await trio.sleep(5.5)
        assert (b.memory_level, b.get_stats()["totalEvents"]) == (MemoryLevel.CRITICAL, 10)
        with pytest.raises(MemoryPressureError):
            b.check_subscribe("s")
        await trio.sleep(5)
        assert (b.memory_level, b.get_stats()["totalEvents"]) == (MemoryLevel.CRITICAL, 5)
        await trio.sleep(5)
        assert b.get_stats()["heldBytes"] <= 10_000
        assert b.memory_level is MemoryLevel.NORMAL

"""Publish, subscribe, resume, slow consumers, limits and shutdown (virtual clock only)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from trio_sse import (
    BatchError,
    BroadcasterConfig,
    CloseReason,
    EventTooLargeError,
    InvalidEventError,
    SessionLimitError,
    SSEEvent,
    SubscriberLimitError,
    Subscription,
    open_broadcaster,
)
from trio_sse._config import EVENT_OVERHEAD_BYTES
from trio_sse._sessions import SessionRegistry

MakeConfig = Callable[..., BroadcasterConfig]


async def test_subscribers_receive_each_published_event_once_in_order(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        async with b.subscribe("s") as first, b.subscribe("s") as second:
            sent = [await b.publish("s", "t", n) for n in range(5)]
            for sub in (first, second):
                got = [await sub.receive() for _ in sent]
                assert got == sent
                with pytest.raises(trio.WouldBlock):
                    sub.receive_nowait()


async def test_event_ids_increase_within_an_epoch_and_the_epoch_changes_per_broadcaster(
    autojump_clock: MockClock,
) -> None:
    async with open_broadcaster() as b:
        ids = [(await b.publish("s", "t", "x")).id for _ in range(3)]
    async with open_broadcaster() as b2:
        other = (await b2.publish("s", "t", "x")).id
    epochs = {i.rsplit("-", 1)[0] for i in ids if i}
    assert len(epochs) == 1
    assert [i.rsplit("-", 1)[1] for i in ids if i] == ["1", "2", "3"]
    assert other is not None and other.rsplit("-", 1)[0] not in epochs


async def test_published_event_keeps_its_own_or_the_default_ttl_and_shares_one_encoding(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(event_ttl=30.0, cleanup_interval=1000.0)) as b:
        await trio.sleep(7)
        start = trio.current_time()
        cursor = await b.publish("s", "t", "cursor", ttl=1e9)
        async with b.subscribe("s") as sub:
            event = await b.publish("s", "t", {"k": 1})
            own = await b.publish("s", "t", "x", ttl=5)
            assert (await sub.receive()).encoded is event.encoded

        async def retained() -> list[SSEEvent]:
            async with b.subscribe("s", last_event_id=cursor.id) as late:
                return drain(late)

        await trio.sleep_until(start + 4.5)
        assert await retained() == [event, own]
        await trio.sleep_until(start + 5)
        assert await retained() == [event]
        await trio.sleep_until(start + 30)
        assert await retained() == []


def drain(subscription: Subscription) -> list[SSEEvent]:
    """Every event ``subscription`` holds right now."""
    events = []
    while True:
        try:
            events.append(subscription.receive_nowait())
        except trio.WouldBlock:
            return events


async def test_events_of_one_session_never_reach_another(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b, b.subscribe("a") as a:
        await b.publish("b", "t", "for b")
        await b.publish("a", "t", "for a")
        assert (await a.receive()).data == "for a"
        with pytest.raises(trio.WouldBlock):
            a.receive_nowait()


async def test_resume_after_a_known_id_replays_exactly_what_followed(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        sent = [await b.publish("s", "t", n) for n in range(6)]
        async with b.subscribe("s", last_event_id=sent[2].id) as sub:
            live = await b.publish("s", "t", "live")
            got = [await sub.receive() for _ in range(4)]
        assert got == [*sent[3:], live]


async def test_resume_after_the_newest_id_replays_nothing(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        last = [await b.publish("s", "t", n) for n in range(3)][-1]
        async with b.subscribe("s", last_event_id=last.id) as sub:
            with pytest.raises(trio.WouldBlock):
                sub.receive_nowait()


@pytest.mark.parametrize(
    ("last_id", "reason"),
    [
        ("garbage", "unknown-id"),
        ("deadbeef-1", "epoch-changed"),
        ("{epoch}-999", "unknown-id"),
        ("{epoch}-1", "history-expired"),
    ],
)
async def test_a_cursor_that_cannot_resume_exactly_gets_a_reset_then_all_retained_history(
    autojump_clock: MockClock, make_config: MakeConfig, last_id: str, reason: str
) -> None:
    async with open_broadcaster(make_config(max_history_per_session=3)) as b:
        sent = [await b.publish("s", "t", n) for n in range(5)]
        epoch = (sent[0].id or "").rsplit("-", 1)[0]
        async with b.subscribe("s", last_event_id=last_id.format(epoch=epoch)) as sub:
            reset = await sub.receive()
            replay = [await sub.receive() for _ in range(3)]
    assert reset.type == "reset"
    assert reset.json() == {
        "reason": reason,
        "lastEventId": last_id.format(epoch=epoch),
        "oldestId": sent[2].id,
    }
    assert reset.id == f"{epoch}-2"  # the cursor just before the replayed events
    assert replay == sent[2:]


async def test_resume_just_before_the_oldest_retained_event_needs_no_reset(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_history_per_session=3)) as b:
        sent = [await b.publish("s", "t", n) for n in range(5)]
        async with b.subscribe("s", last_event_id=sent[1].id) as sub:
            assert [await sub.receive() for _ in range(3)] == sent[2:]


async def test_reset_on_an_empty_history_points_at_the_current_head(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b, b.subscribe("s", last_event_id="x-1") as sub:
        reset = await sub.receive()
        assert reset.type == "reset"
        assert reset.json()["oldestId"] is None
        assert reset.id is not None and reset.id.endswith("-0")
        event = await b.publish("s", "t", "next")
        assert await sub.receive() == event


async def test_slow_consumer_is_disconnected_and_others_and_the_publisher_are_not(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_queue_size=3)) as b:
        async with b.subscribe("s") as slow, b.subscribe("s") as fast:
            for n in range(10):
                await b.publish("s", "t", n)  # never blocks
                assert (await fast.receive()).json() == n
            assert slow.close_reason is CloseReason.SLOW_CONSUMER
            assert [event async for event in slow] == []  # ended, queue freed
            assert fast.close_reason is None
            stats = b.get_stats()
            assert stats["totalSubscribers"] == 1
            assert stats["queuedBytes"] == 0
            assert stats["metrics"]["slowConsumerDisconnects"] == 1


async def test_a_disconnected_slow_consumer_resumes_from_history_without_loss(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_queue_size=2)) as b:
        sent = []
        async with b.subscribe("s") as sub:
            sent.append(await b.publish("s", "t", 0))
            assert (await sub.receive()).json() == 0
            sent += [await b.publish("s", "t", n) for n in range(1, 6)]
            assert sub.close_reason is CloseReason.SLOW_CONSUMER
            last = sub.last_event_id
        async with b.subscribe("s", last_event_id=last) as again:
            assert [await again.receive() for _ in range(5)] == sent[1:]


async def test_a_slow_consumer_is_also_bounded_by_queued_bytes(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(max_queue_size=1000, max_queue_bytes=300, max_event_bytes=200)
    async with open_broadcaster(config) as b, b.subscribe("s") as sub:
        for _ in range(4):
            await b.publish("s", "t", "x" * 100)
        assert sub.close_reason is CloseReason.SLOW_CONSUMER


async def test_drop_policy_skips_events_for_the_slow_consumer_and_reports_the_gap(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(max_queue_size=2, slow_consumer_policy="drop")
    async with open_broadcaster(config) as b, b.subscribe("s") as slow, b.subscribe("s") as fast:
        sent = []
        for n in range(5):
            sent.append(await b.publish("s", "t", n))
            assert await fast.receive() == sent[-1]
        assert slow.close_reason is None
        assert [await slow.receive() for _ in range(2)] == sent[:2]
        after = await b.publish("s", "t", "after")
        gap = await slow.receive()
        assert (gap.type, gap.json(), gap.id) == ("gap", {"dropped": 3}, None)
        assert await slow.receive() == after
        assert slow.statistics().dropped == 3
        assert b.get_stats()["metrics"]["eventsDropped"] == 3


async def test_leaving_the_block_removes_the_subscriber_and_closes_its_channel(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        async with b.subscribe("s") as sub:
            await b.publish("s", "t", "unread")
            assert b.get_stats()["queuedBytes"] > 0
        assert sub.close_reason is CloseReason.CLOSED
        assert sub._send._closed and sub._receive._closed
        stats = b.get_stats()
        assert (stats["totalSubscribers"], stats["queuedBytes"]) == (0, 0)


async def test_cancelling_a_blocked_reader_removes_its_subscriber(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        with trio.move_on_after(5):
            async with b.subscribe("s") as sub:
                await sub.receive()
        assert sub.close_reason is CloseReason.CLOSED
        assert b.get_stats()["totalSubscribers"] == 0


async def test_close_session_ends_its_subscribers_and_forgets_its_history(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        old = await b.publish("s", "t", 1)
        async with b.subscribe("s") as sub:
            assert await b.close_session("s")
            assert [e async for e in sub] == []
            assert sub.close_reason is CloseReason.SESSION_CLOSED
        assert not await b.close_session("s")
        assert b.get_stats()["totalSessions"] == 0
        async with b.subscribe("s", last_event_id=old.id) as again:
            assert (await again.receive()).json()["reason"] == "epoch-changed"


async def test_leaving_open_broadcaster_ends_every_subscription_and_task(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    done: list[CloseReason | None] = []

    async def reader(task_status: trio.TaskStatus[None]) -> None:
        async with b.subscribe("s") as sub:
            task_status.started()
            async for _ in sub:
                pass
            done.append(sub.close_reason)

    async with trio.open_nursery() as nursery:
        async with open_broadcaster(make_config()) as b:
            for _ in range(3):
                await nursery.start(reader)
    assert done == [CloseReason.SHUTDOWN] * 3
    assert b.closed
    with pytest.raises(trio.ClosedResourceError):
        await b.publish("s", "t", 1)


async def test_an_error_in_the_block_propagates_unwrapped(autojump_clock: MockClock) -> None:
    with pytest.raises(KeyError):
        async with open_broadcaster():
            raise KeyError("mine")


async def test_bad_events_are_refused_and_create_no_session(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_event_bytes=100)) as b:
        with pytest.raises(EventTooLargeError):
            await b.publish("s", "t", "x" * 200)
        with pytest.raises(InvalidEventError):
            await b.publish("s", "bad\ntype", "x")
        with pytest.raises(InvalidEventError):
            await b.publish("s", "reset", "x")
        with pytest.raises(InvalidEventError):
            await b.publish("s", "t", object())
        with pytest.raises(InvalidEventError):
            await b.publish("", "t", "x")
        assert b.get_stats()["totalSessions"] == 0
        assert (await b.publish("s", "t", "ok")).id is not None


async def test_subscribers_per_session_are_capped(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_subscribers_per_session=2)) as b:
        async with b.subscribe("s"), b.subscribe("s"):
            with pytest.raises(SubscriberLimitError):
                async with b.subscribe("s"):
                    pass
            async with b.subscribe("other"):
                pass
        async with b.subscribe("s"):
            pass


async def test_at_max_sessions_the_oldest_idle_session_is_evicted(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_sessions=3)) as b:
        for name in "abc":
            await b.publish(name, "t", name)
            await trio.sleep(1)
        await b.publish("a", "t", "a again")  # "a" is now the most recent
        await b.publish("d", "t", "d")
        assert b._sessions.get("b") is None
        assert {s.id for s in b._sessions} == {"a", "c", "d"}
        assert b.get_stats()["metrics"]["sessionsEvicted"] == 1


async def test_a_new_session_is_refused_when_every_session_has_subscribers(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_sessions=2)) as b:
        async with b.subscribe("a"), b.subscribe("b"):
            with pytest.raises(SessionLimitError):
                await b.publish("c", "t", 1)
            with pytest.raises(SessionLimitError):
                async with b.subscribe("c"):
                    pass
            assert b.get_stats()["totalSessions"] == 2
        await b.publish("c", "t", 1)


async def test_history_is_bounded_by_count_and_by_bytes(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(
        max_history_per_session=5, max_history_bytes_per_session=400, max_event_bytes=200
    )
    async with open_broadcaster(config) as b:
        for n in range(10):
            await b.publish("count", "t", n)
        for _ in range(10):
            await b.publish("bytes", "t", "y" * 100)
        count = b._sessions.get("count")
        big = b._sessions.get("bytes")
        assert count is not None and big is not None
        assert len(count.history) == 5
        assert big.history.bytes <= 400 and len(big.history) == 3
        stats = b.get_stats()
        assert stats["historyBytes"] == count.history.bytes + big.history.bytes
        assert stats["totalEvents"] == 8


async def test_stats_have_the_documented_shape_and_are_json(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b, b.subscribe("s"):
        await b.publish("s", "t", 1)
        stats = json.loads(json.dumps(b.get_stats()))
    for key in ("memoryUsageMB", "totalSessions", "totalEvents", "totalSubscribers", "heldBytes"):
        assert key in stats
    for key in (
        "cleanupCount",
        "eventsPublished",
        "eventsDelivered",
        "eventsDropped",
        "eventsExpired",
        "sessionsExpired",
        "subscribersRemoved",
        "slowConsumerDisconnects",
        "lastCleanupSeconds",
    ):
        assert key in stats["metrics"]
    held_events = stats["totalEvents"] + stats["queuedEvents"]
    assert stats["heldBytes"] == (
        stats["historyBytes"] + stats["queuedBytes"] + EVENT_OVERHEAD_BYTES * held_events
    )


async def test_metrics_can_be_turned_off(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(enable_metrics=False)) as b:
        assert b.get_stats()["metrics"] is None
        assert b.statistics().metrics is None


async def test_statistics_snapshot_is_frozen(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        snapshot = b.statistics()
        with pytest.raises(AttributeError):
            snapshot.total_sessions = 3  # type: ignore[misc]


async def test_subscribers_of_all_sessions_are_capped(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_subscribers=2)) as b:
        async with b.subscribe("a"), b.subscribe("b"):
            with pytest.raises(SubscriberLimitError):
                async with b.subscribe("c"):
                    pass
            assert b.get_stats()["totalSubscribers"] == 2


async def test_a_burst_of_publishes_lets_a_keeping_up_reader_run(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    received = 0
    async with open_broadcaster(make_config(max_queue_size=4)) as b:
        async with trio.open_nursery() as nursery, b.subscribe("s") as sub:

            async def read() -> None:
                nonlocal received
                async for _ in sub:
                    received += 1

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(5000):
                await b.publish("s", "t", n)  # no sleep between publishes
            await trio.testing.wait_all_tasks_blocked()
            assert sub.close_reason is None
            assert received == 5000
            nursery.cancel_scope.cancel()


async def test_a_cancelled_publish_publishes_nothing(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        with trio.CancelScope() as scope:
            scope.cancel()
            await b.publish("s", "t", 1)
        assert scope.cancelled_caught
        assert b.get_stats()["metrics"]["eventsPublished"] == 0
        assert b.get_stats()["totalSessions"] == 0


async def test_receive_batch_takes_everything_waiting_in_one_call(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_history_per_session=100)) as b:
        first = await b.publish("s", "t", 0)
        for n in range(1, 4):
            await b.publish("s", "t", n)
        async with b.subscribe("s", last_event_id=first.id) as sub:
            await b.publish("s", "t", 4)
            await b.publish("s", "t", 5)
            assert [e.json() for e in await sub.receive_batch()] == [1, 2, 3, 4, 5]
            await b.publish("s", "t", 6)
            await b.publish("s", "t", 7)
            assert [e.json() for e in await sub.receive_batch(max_events=1)] == [6]
            assert sub.statistics().queued_events == 1


async def test_collecting_stats_never_walks_sessions_or_subscribers(
    autojump_clock: MockClock, make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_broadcaster(make_config(max_sessions=100_000)) as b:
        for n in range(1000):
            await b.publish(f"s{n}", "t", n)
        async with b.subscribe("s1"):

            def no_walk(self: object) -> object:
                raise AssertionError("stats must come from running counters")

            with monkeypatch.context() as patch:
                patch.setattr(SessionRegistry, "__iter__", no_walk)
                stats = b.get_stats()
        assert (stats["totalSessions"], stats["totalEvents"]) == (1000, 1000)


async def test_a_reader_in_replay_sees_the_end_when_closed_meanwhile(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    ended = 0
    async with open_broadcaster(make_config()) as b:
        for _ in range(50):  # trio runs the two tasks in random order: both orders happen
            first = await b.publish("s", "t", 0)
            await b.publish("s", "t", 1)
            async with b.subscribe("s", last_event_id=first.id) as sub:

                async def close(sub: Subscription = sub) -> None:
                    sub.end(CloseReason.SESSION_CLOSED)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(close)
                    try:
                        await sub.receive()  # yields with an event ready; maybe closed meanwhile
                    except trio.EndOfChannel:
                        ended += 1
    assert ended > 0


async def test_a_cursor_that_is_not_valid_unicode_gets_a_reset(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        async with b.subscribe("s", last_event_id="\udc80-1") as sub:
            reset = await sub.receive()
        assert reset.json()["lastEventId"] == "\\udc80-1"


async def test_a_subscription_cursor_resumes_without_loss_before_and_after_reads(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config()) as b:
        await b.publish("s", "t", 0)
        async with b.subscribe("s") as live:
            start = live.last_event_id
        after_start = await b.publish("s", "t", 1)
        async with b.subscribe("s", last_event_id=start) as resumed:
            assert await resumed.receive() == after_start
            assert resumed.last_event_id == after_start.id
        async with b.subscribe("s", last_event_id=after_start.id) as exact:
            assert exact.last_event_id == after_start.id


async def test_wake_returns_an_empty_batch_once_and_never_takes_an_event_slot(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_queue_size=2)) as b, b.subscribe("s") as sub:
        for _ in range(5):
            sub.wake()  # at most one marker is queued
        assert await sub.receive_batch() == []
        sub.wake()
        first = await b.publish("s", "t", 1)
        second = await b.publish("s", "t", 2)  # the queue holds 2 events beside the marker
        assert sub.close_reason is None
        assert await sub.receive_batch() == []
        assert await sub.receive_batch() == [first, second]
        sub.wake()  # receive() skips the marker and returns the next event
        third = await b.publish("s", "t", 3)
        assert await sub.receive() == third


# -- batch publish --------------------------------------------------------------------------


async def test_a_batch_gets_consecutive_ids_per_session_and_arrives_in_order(
    autojump_clock: MockClock,
) -> None:
    async with open_broadcaster() as b, b.subscribe("a") as sub_a, b.subscribe("b") as sub_b:
        first = await b.publish("a", "t", 0)
        items = [("a", "t", 1, None), ("b", "t", 2, None), ("a", "u", {"n": 3}, 5.0)]
        events = await b.publish_batch(items)
        epoch = first.id.split("-")[0]  # type: ignore[union-attr]
        assert [e.id for e in events][::2] == [f"{epoch}-2", f"{epoch}-3"]
        assert [(e.type, e.json()) for e in events] == [("t", 1), ("t", 2), ("u", {"n": 3})]
        assert [await sub_a.receive() for _ in range(3)] == [first, events[0], events[2]]
        assert await sub_b.receive() == events[1]
        assert b.get_stats()["metrics"]["eventsPublished"] == 4


async def test_new_sessions_of_a_batch_are_created_once_with_one_epoch(
    autojump_clock: MockClock,
) -> None:
    async with open_broadcaster() as b:
        events = await b.publish_batch([("new", "t", n, None) for n in range(3)])
        epochs = {e.id.rsplit("-", 1)[0] for e in events}  # type: ignore[union-attr]
        assert len(epochs) == 1
        assert [e.id.rsplit("-", 1)[1] for e in events] == ["1", "2", "3"]  # type: ignore[union-attr]
        async with b.subscribe("new", last_event_id=events[0].id) as sub:
            assert [await sub.receive() for _ in range(2)] == events[1:]
        assert b.get_stats()["totalSessions"] == 1


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (("s", "reset", 1, None), InvalidEventError),
        (("s", "t", object(), None), InvalidEventError),
        (("s", "a\nb", 1, None), InvalidEventError),
        (("s", "t", 1, -1.0), InvalidEventError),
        (("", "t", 1, None), InvalidEventError),
        (("s", "t", "x" * 70_000, None), EventTooLargeError),
    ],
)
async def test_one_bad_event_refuses_the_whole_batch_naming_its_index(
    autojump_clock: MockClock, bad: tuple[str, str, object, float | None], error: type[Exception]
) -> None:
    async with open_broadcaster() as b, b.subscribe("s") as sub:
        items = [("s", "t", 1, None), ("other", "t", 2, None), bad, ("s", "t", 3, None)]
        with pytest.raises(BatchError) as raised:
            await b.publish_batch(items)  # type: ignore[arg-type]
        assert raised.value.index == 2
        assert isinstance(raised.value.error, error)
        stats = b.get_stats()
        assert (stats["totalEvents"], stats["totalSessions"]) == (0, 1)  # "s" has a subscriber
        with pytest.raises(trio.WouldBlock):
            sub.receive_nowait()


async def test_a_batch_through_a_deferred_backend_interleaved_with_publishes_keeps_ids_distinct(
    autojump_clock: MockClock,
) -> None:
    from .test_backends import DeferredBackend

    async with open_broadcaster(backend=DeferredBackend()) as b, b.subscribe("s") as sub:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.publish_batch, [("s", "t", n, None) for n in range(10)])
            for n in range(10, 15):
                nursery.start_soon(b.publish, "s", "t", n)
        received = [await sub.receive() for _ in range(15)]
        ids = [event.id for event in received]
        assert len(set(ids)) == 15
        assert sorted(event.json() for event in received) == list(range(15))

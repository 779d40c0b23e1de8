"""Property: whatever the interleaving of publishes, subscribes (with or without a cursor) and
cancellations, each subscriber receives exactly the events after its cursor, in order, with no
gap and no duplicate across the replay-to-live handoff.

The same property is checked on the Redis backend (replay from Redis, then the read loop), with
two broadcasters sharing one Redis: real time, the Redis on 127.0.0.1:6379."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import coredis
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sse import Broadcaster, BroadcasterConfig, SSEEvent, open_broadcaster
from trio_sse.backends import Backend, InMemoryBackend, RedisBackend

SESSIONS = ("a", "b")

operation = st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(SESSIONS)),
    st.tuples(
        st.just("subscribe"),
        st.sampled_from(SESSIONS),
        st.sampled_from(["live", "bogus", "id"]),
        st.integers(0, 100),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 100)),
    st.tuples(st.just("yield"), st.integers(1, 4)),
)


@dataclass
class Reader:
    session: str
    cursor: str | None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    published_before: int = -1
    published_after: int = -1  # a shared backend's live start lies between before and after
    got: list[SSEEvent] = field(default_factory=list)


def check(reader: Reader, published: list[SSEEvent], *, complete: bool) -> None:
    """``reader`` got a gap-free, duplicate-free run of ``published`` from where its cursor
    says; all of the rest of it too if it was never cancelled."""
    got = reader.got
    if reader.cursor is None and reader.published_after > reader.published_before:
        ids = [event.id for event in published]
        start = ids.index(got[0].id) if got else reader.published_after
        assert reader.published_before <= start <= reader.published_after
    elif reader.cursor is None:
        start = reader.published_before
    elif reader.cursor == "bogus":
        if got or complete:
            assert got[0].type == "reset"
        got, start = got[1:], 0
    else:
        start = [event.id for event in published].index(reader.cursor) + 1
    expected = published[start:]
    assert got == (expected if complete else expected[: len(got)])


CONFIG = BroadcasterConfig(max_queue_size=1000, max_history_per_session=1000, event_ttl=None)


async def scenario(
    operations: list[tuple[object, ...]],
    make_backend: Callable[[], Backend] = InMemoryBackend,
    settle: float = 1,
) -> None:
    published: dict[str, list[SSEEvent]] = {session: [] for session in SESSIONS}
    started = dict.fromkeys(SESSIONS, 0)  # publishes begun: a shared backend may apply one
    # before its caller resumes, so a live subscriber may start after any of them
    readers: list[Reader] = []
    broadcasters: list[Broadcaster] = []

    async def read(reader: Reader, b: Broadcaster) -> None:
        with reader.scope:
            reader.published_before = len(published[reader.session])
            async with b.subscribe(reader.session, last_event_id=reader.cursor) as sub:
                if b._shared is not None:
                    reader.published_after = started[reader.session]
                async for event in sub:
                    reader.got.append(event)

    async with (
        open_broadcaster(CONFIG, backend=make_backend()) as b,
        open_broadcaster(CONFIG, backend=make_backend()) as other,
        trio.open_nursery() as nursery,
    ):
        broadcasters += [b, other] if b._shared is not None else [b]
        for n, op in enumerate(operations):
            if op[0] == "publish":
                session = str(op[1])
                publisher = broadcasters[n % len(broadcasters)]
                started[session] += 1
                published[session].append(
                    await publisher.publish(session, "t", len(published[session]))
                )
            elif op[0] == "subscribe":
                _, session, kind, pick = op
                events = published[str(session)]
                cursor = {"live": None, "bogus": "bogus"}.get(str(kind))
                if kind == "id":
                    cursor = events[int(str(pick)) % len(events)].id if events else None
                reader = Reader(str(session), cursor)
                readers.append(reader)
                nursery.start_soon(read, reader, broadcasters[-1 - n % len(broadcasters)])
            elif op[0] == "cancel" and readers:
                readers[int(str(op[1])) % len(readers)].scope.cancel()
            elif op[0] == "yield":
                for _ in range(int(str(op[1]))):
                    await trio.lowlevel.checkpoint()
        await trio.sleep(settle)  # every reader still running catches up
        for reader in readers:
            check(reader, published[reader.session], complete=not reader.scope.cancel_called)
        nursery.cancel_scope.cancel()
    for broadcaster in broadcasters:
        assert broadcaster.get_stats()["totalSubscribers"] == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=60))
def test_no_event_is_lost_or_repeated_across_the_replay_to_live_handoff(
    operations: list[tuple[object, ...]],
) -> None:
    trio.run(scenario, operations, clock=trio.testing.MockClock(autojump_threshold=0))


async def redis_scenario(operations: list[tuple[object, ...]]) -> None:
    prefix = f"handoff-{secrets.token_hex(4)}"
    try:
        with trio.fail_after(20):
            backend = lambda: RedisBackend("redis://127.0.0.1:6379/0", CONFIG, prefix=prefix)  # noqa: E731
            await scenario(operations, backend, settle=0.3)
    finally:
        client = coredis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(keys)


@pytest.mark.real_time
@settings(max_examples=40, deadline=None)
@given(st.lists(operation, max_size=40))
def test_no_event_is_lost_or_repeated_across_the_handoff_on_the_redis_backend(
    operations: list[tuple[object, ...]],
) -> None:
    trio.run(redis_scenario, operations)

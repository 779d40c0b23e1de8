"""Property: whatever the interleaving of publishes, subscribes (with or without a cursor) and
cancellations, each subscriber receives exactly the events after its cursor, in order, with no
gap and no duplicate across the replay-to-live handoff."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sse import BroadcasterConfig, SSEEvent, open_broadcaster

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
    got: list[SSEEvent] = field(default_factory=list)


def check(reader: Reader, published: list[SSEEvent], *, complete: bool) -> None:
    """``reader`` got a gap-free, duplicate-free run of ``published`` from where its cursor
    says; all of the rest of it too if it was never cancelled."""
    got = reader.got
    if reader.cursor is None:
        start = reader.published_before
    elif reader.cursor == "bogus":
        if got or complete:
            assert got[0].type == "reset"
        got, start = got[1:], 0
    else:
        start = [event.id for event in published].index(reader.cursor) + 1
    expected = published[start:]
    assert got == (expected if complete else expected[: len(got)])


async def scenario(operations: list[tuple[object, ...]]) -> None:
    config = BroadcasterConfig(max_queue_size=1000, max_history_per_session=1000, event_ttl=None)
    published: dict[str, list[SSEEvent]] = {session: [] for session in SESSIONS}
    readers: list[Reader] = []

    async def read(reader: Reader) -> None:
        with reader.scope:
            reader.published_before = len(published[reader.session])
            async with b.subscribe(reader.session, last_event_id=reader.cursor) as sub:
                async for event in sub:
                    reader.got.append(event)

    async with open_broadcaster(config) as b, trio.open_nursery() as nursery:
        for op in operations:
            if op[0] == "publish":
                session = str(op[1])
                published[session].append(await b.publish(session, "t", len(published[session])))
            elif op[0] == "subscribe":
                _, session, kind, pick = op
                events = published[str(session)]
                cursor = {"live": None, "bogus": "bogus"}.get(str(kind))
                if kind == "id":
                    cursor = events[int(str(pick)) % len(events)].id if events else None
                reader = Reader(str(session), cursor)
                readers.append(reader)
                nursery.start_soon(read, reader)
            elif op[0] == "cancel" and readers:
                readers[int(str(op[1])) % len(readers)].scope.cancel()
            elif op[0] == "yield":
                for _ in range(int(str(op[1]))):
                    await trio.lowlevel.checkpoint()
        await trio.sleep(1)  # every reader still running catches up
        for reader in readers:
            check(reader, published[reader.session], complete=not reader.scope.cancel_called)
        nursery.cancel_scope.cancel()
    assert b.get_stats()["totalSubscribers"] == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=60))
def test_no_event_is_lost_or_repeated_across_the_replay_to_live_handoff(
    operations: list[tuple[object, ...]],
) -> None:
    trio.run(scenario, operations, clock=trio.testing.MockClock(autojump_threshold=0))

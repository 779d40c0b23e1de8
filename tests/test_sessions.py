"""Reads never evict data (issue 10): the session table at ``max_sessions``.

A session only readers have touched may give way to any new session; a session that was
published to gives way only to a publish, oldest first. Virtual time (``autojump_clock``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from trio.testing import MockClock

from trio_sse import BroadcasterConfig, SessionLimitError, open_broadcaster

MakeConfig = Callable[..., BroadcasterConfig]


async def test_anonymous_reads_at_a_full_table_never_evict_a_session_with_history(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_sessions=2)) as b:
        first = await b.publish("kept", "t", "data")
        await b.publish("also-kept", "t", "data")
        for n in range(10_001):
            with pytest.raises(SessionLimitError):
                async with b.subscribe(f"reader-{n}"):
                    pass
        async with b.subscribe("kept", first.id) as sub:
            with pytest.raises(trio.WouldBlock):  # resumed exactly: no reset, nothing missed
                sub.receive_nowait()
        assert b.get_stats()["metrics"]["sessionsEvicted"] == 0
        with pytest.raises(SessionLimitError):
            b.check_subscribe("one-more")


async def test_reader_only_sessions_give_way_to_reads_oldest_first(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_sessions=3)) as b:
        event = await b.publish("written", "t", 1)
        for name in ("r1", "r2", "r3", "r4"):
            async with b.subscribe(name):
                await trio.sleep(1)
        sessions = {session.id for session in b._sessions}
        assert sessions == {"written", "r3", "r4"}
        assert b.get_stats()["metrics"]["sessionsEvicted"] == 2
        before = event.id.rpartition("-")[0] + "-0"  # type: ignore[union-attr]
        async with b.subscribe("written", before) as sub:
            assert sub.receive_nowait() == event  # history intact, resumed exactly


async def test_a_publish_evicts_reader_only_sessions_before_written_ones(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_sessions=2)) as b:
        await b.publish("written", "t", 1)
        async with b.subscribe("reader"):
            pass
        await b.publish("new", "t", 2)
        assert {session.id for session in b._sessions} == {"written", "new"}
        await trio.sleep(1)
        await b.publish("newer", "t", 3)  # only written sessions left: the oldest goes
        assert {session.id for session in b._sessions} == {"new", "newer"}
        assert b.get_stats()["metrics"]["sessionsEvicted"] == 2


async def test_a_publish_moves_a_reader_only_session_to_the_written_ones(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    async with open_broadcaster(make_config(max_sessions=2)) as b:
        async with b.subscribe("a"):
            pass
        await b.publish("a", "t", 1)  # now written: a read may not drop it
        await b.publish("b", "t", 2)
        with pytest.raises(SessionLimitError):
            async with b.subscribe("c"):
                pass
        assert {session.id for session in b._sessions} == {"a", "b"}


async def test_idle_sessions_of_both_kinds_expire_after_session_ttl(
    autojump_clock: MockClock, make_config: MakeConfig
) -> None:
    config = make_config(session_ttl=10.0, cleanup_interval=1.0)
    async with open_broadcaster(config) as b:
        await b.publish("written", "t", 1)
        async with b.subscribe("reader"):
            pass
        await trio.sleep(10.5)
        assert len(b._sessions) == 0
        assert b.get_stats()["metrics"]["sessionsExpired"] == 2

"""One task notices every stream client leaving: the hang-up watcher, on local socket pairs.

Each test runs on trio's virtual clock; sockets are local pairs, nothing listens.
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from trio_sse.server._hangup import HangupWatcher

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")


@asynccontextmanager
async def running_watcher() -> AsyncIterator[HangupWatcher]:
    watcher = HangupWatcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        yield watcher
        nursery.cancel_scope.cancel()


async def settled() -> None:
    await trio.testing.wait_all_tasks_blocked()
    await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("how", ["close", "shutdown", "reset"])
async def test_a_peer_that_leaves_is_reported_once(
    how: str, autojump_clock: trio.testing.MockClock
) -> None:
    left, right = trio.socket.socketpair()
    calls: list[str] = []
    async with running_watcher() as watcher:
        with left:
            assert watcher.watch(left.fileno(), lambda: calls.append("gone"))
            await settled()
            assert calls == []
            if how == "shutdown":
                right.shutdown(trio.socket.SHUT_WR)
            elif how == "reset":
                await right.send(b"x")  # then close with unread data in flight: the peer's end
                right.close()
            right.close()
            await settled()
            assert calls == ["gone"]
            assert watcher.watched == 0
            watcher.unwatch(left.fileno())  # harmless once it was reported


async def test_bytes_a_client_sends_are_read_and_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.socket.socketpair()
    calls: list[str] = []
    async with running_watcher() as watcher:
        with left, right:
            watcher.watch(left.fileno(), lambda: calls.append("gone"))
            await right.send(b"GET /more HTTP/1.1\r\n\r\n" * 10_000)  # pipelined bytes
            await settled()
            assert calls == []
            with trio.move_on_after(1):
                await left.recv(1)  # nothing left: the watcher drained it
                pytest.fail("the watcher left bytes unread")
            watcher.unwatch(left.fileno())
            right.close()
            await settled()
            assert calls == []  # unwatched: not reported


async def test_before_and_after_the_watcher_runs_sockets_are_refused_so_streams_fall_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watcher = HangupWatcher()
    left, right = trio.socket.socketpair()
    with left, right:
        assert not watcher.watch(left.fileno(), lambda: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        left, right = trio.socket.socketpair()
        with left, right:
            watcher.watch(left.fileno(), lambda: None)
            nursery.cancel_scope.cancel()
    assert watcher.watched == 0
    left, right = trio.socket.socketpair()
    with left, right:
        assert not watcher.watch(left.fileno(), lambda: None)

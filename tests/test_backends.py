"""Every backend passes the same conformance checks."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from trio_sse import BroadcasterConfig, SSEEvent, open_broadcaster
from trio_sse.backends import Backend, Deliver, InMemoryBackend
from trio_sse.testing import check_backend


async def test_in_memory_backend_passes_the_conformance_checks(autojump_clock: MockClock) -> None:
    await check_backend(InMemoryBackend)


class _Reordering(InMemoryBackend):
    """A broken backend: delivers each event only after the next one."""

    def __init__(self) -> None:
        super().__init__()
        self._held: tuple[str, SSEEvent, float | None] | None = None

    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> None:
        held, self._held = self._held, (session_id, event, ttl)
        if held is not None:
            await super().publish(*held)


async def test_the_conformance_checks_catch_a_backend_that_loses_events(
    autojump_clock: MockClock,
) -> None:
    with pytest.raises(trio.TooSlowError):
        await check_backend(_Reordering)


async def test_an_in_memory_backend_serves_one_broadcaster_at_a_time(
    autojump_clock: MockClock,
) -> None:
    backend: Backend = InMemoryBackend()
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.run, lambda s, e, t: None)
        with pytest.raises(RuntimeError):
            await backend.run(lambda s, e, t: None)
        nursery.cancel_scope.cancel()


Published = tuple[str, SSEEvent, float | None]
"""What a backend carries: session id, event, TTL."""


class DeferredBackend(Backend):
    """A backend that delivers later, from its own task, as a networked one would."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Published](100)
        self._running = False

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._running = True
        try:
            task_status.started()
            async for session_id, event, ttl in self._receive:
                await trio.sleep(0.01)  # the network
                deliver(session_id, event, ttl)
        finally:
            self._running = False

    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> None:
        if not self._running:
            raise trio.ClosedResourceError("not running")
        await self._send.send((session_id, event, ttl))


async def test_a_deferred_backend_passes_the_conformance_checks(autojump_clock: MockClock) -> None:
    await check_backend(DeferredBackend)


async def test_concurrent_publishes_through_a_deferred_backend_get_distinct_ordered_ids(
    autojump_clock: MockClock,
) -> None:
    async with open_broadcaster(backend=DeferredBackend()) as b, b.subscribe("s") as sub:
        published: list[SSEEvent] = []

        async def publish(n: int) -> None:
            published.append(await b.publish("s", "t", n))

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(publish, n)
        received = [await sub.receive() for _ in range(20)]
        ids = [event.id for event in received]
        assert len(set(ids)) == 20
        assert sorted(ids, key=lambda i: int((i or "").rsplit("-", 1)[1])) == ids
        assert sorted(published, key=lambda e: ids.index(e.id)) == received


async def test_a_publish_cancelled_in_the_backend_leaves_a_hole_that_resumes_exactly(
    autojump_clock: MockClock,
) -> None:
    backend = DeferredBackend()
    async with open_broadcaster(backend=backend) as b:
        first = await b.publish("s", "t", 1)
        await trio.sleep(1)
        with trio.CancelScope() as scope:
            backend._send, real = (
                trio.open_memory_channel[Published](0)[0],
                backend._send,
            )
            scope.deadline = trio.current_time() + 0.5
            await b.publish("s", "t", "lost in flight")  # blocks: nobody reads that channel
        assert scope.cancelled_caught
        backend._send = real
        third = await b.publish("s", "t", 3)
        await trio.sleep(1)
        async with b.subscribe("s", last_event_id=first.id) as sub:
            assert await sub.receive() == third  # no reset: nothing retained was lost


async def test_a_backend_delivering_out_of_order_is_logged_and_does_not_kill_the_broadcaster(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_broadcaster() as b, b.subscribe("s") as sub:
        event = await b.publish("s", "t", 1)
        b._deliver("s", event, None)  # a second delivery of the same event
        b._deliver("s", SSEEvent("t", "x", id="other-9"), None)  # an event of another epoch
        assert "out of order" in caplog.text
        assert "epoch" in caplog.text
        assert await sub.receive() == event
        with pytest.raises(trio.WouldBlock):
            sub.receive_nowait()
        assert (await b.publish("s", "t", 2)).json() == 2


async def test_a_ttl_carried_by_a_deferred_backend_runs_from_delivery(
    autojump_clock: MockClock,
) -> None:
    config = BroadcasterConfig(event_ttl=None, cleanup_interval=1000.0)
    async with open_broadcaster(config, backend=DeferredBackend()) as b:
        start = trio.current_time()
        cursor = await b.publish("s", "t", "kept")  # delivered at +0.01
        event = await b.publish("s", "t", "short", ttl=5)  # delivered at +0.02, expires at +5.02
        await trio.sleep_until(start + 5.015)
        async with b.subscribe("s", last_event_id=cursor.id) as sub:
            assert await sub.receive() == event
        await trio.sleep_until(start + 5.025)
        async with b.subscribe("s", last_event_id=cursor.id) as sub:
            with pytest.raises(trio.WouldBlock):
                sub.receive_nowait()

"""Conformance checks for backends, in the spirit of ``trio.testing.check_two_way_stream``."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import trio

from .._broadcaster import Broadcaster, open_broadcaster
from .._config import BroadcasterConfig
from .._history import parse_event_id
from .._protocol import SSEEvent
from ..backends import Backend, SharedBackend

_TTLS = (None, 0.5, 30.0, 1e9)
"""TTLs the checks publish with; each must reach ``deliver`` unchanged."""


async def check_backend(
    make_backend: Callable[[], Backend], *, flush: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Check the :class:`~trio_sse.backends.Backend` contract on fresh backends.

    - ``publish`` after ``run`` started reaches ``deliver`` exactly once per event, with its TTL
      unchanged, in order within each session;
    - ``run`` returns promptly when cancelled, and ``publish`` then raises
      ``trio.ClosedResourceError``;
    - ``publish`` before ``run`` starts raises ``trio.ClosedResourceError``.

    A :class:`~trio_sse.backends.SharedBackend` (each call of ``make_backend`` a new one on
    the same store) must also pass, through two broadcasters: both see one order of the
    events both published; the second replays what only the first saw; and, given ``flush``
    (empties the store, as a Redis restarted without persistence), a flush changes the epoch
    and an old cursor gets a ``reset``.

    Raises:
        AssertionError: the backend breaks the contract.
    """
    await _check_delivery_order(make_backend())
    await _check_closed_after_cancel(make_backend())
    backend = make_backend()
    try:
        await backend.publish("s", SSEEvent("t", "x", id="e-1"), None)
    except trio.ClosedResourceError:
        pass
    else:
        raise AssertionError("publish before run must raise trio.ClosedResourceError")
    if isinstance(backend, SharedBackend):
        await _check_one_order(make_backend)
        await _check_replay_elsewhere(make_backend)
        if flush is not None:
            await _check_flush_changes_epoch(make_backend, flush)


async def _check_delivery_order(backend: Backend) -> None:
    delivered: list[tuple[str, str | None, float | None]] = []
    shared = isinstance(backend, SharedBackend)
    sessions = [f"check-{secrets.token_hex(4)}-{n}" for n in "ab"] if shared else ["a", "b"]
    sent = [
        (session, SSEEvent("t", n, id=None if shared else f"e-{n}"), _TTLS[n % len(_TTLS)])
        for n in range(20)
        for session in sessions
    ]
    all_arrived = trio.Event()

    def deliver(session_id: str, event: SSEEvent, ttl: float | None) -> None:
        delivered.append((session_id, event.data if shared else event.id, ttl))
        if len(delivered) >= len(sent):
            all_arrived.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.run, deliver)
            if isinstance(backend, SharedBackend):
                for session in sessions:
                    snapshot = await backend.replay(session, None, 1)
                    backend.watch(session, snapshot.epoch, snapshot.head)
            for session, event, ttl in sent:
                await backend.publish(session, event, ttl)
            await all_arrived.wait()
            await trio.sleep(0.05)  # nothing extra may arrive
            nursery.cancel_scope.cancel()
    for session in sessions:
        got = [(key, ttl) for s, key, ttl in delivered if s == session]
        want = [(event.data if shared else event.id, ttl) for s, event, ttl in sent if s == session]
        assert got == want, f"session {session}: delivered {got}, published {want}"


async def _check_closed_after_cancel(backend: Backend) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.run, lambda s, e, t: None)
            nursery.cancel_scope.cancel()
    try:
        await backend.publish("s", SSEEvent("t", "x", id="e-1"), None)
    except trio.ClosedResourceError:
        return
    raise AssertionError("publish after run ended must raise trio.ClosedResourceError")


_CONFIG = BroadcasterConfig(event_ttl=None)


async def _check_one_order(make_backend: Callable[[], Backend]) -> None:
    session = f"check-{secrets.token_hex(4)}"
    with trio.fail_after(10):
        async with (
            open_broadcaster(_CONFIG, backend=make_backend()) as a,
            open_broadcaster(_CONFIG, backend=make_backend()) as b,
            a.subscribe(session) as on_a,
            b.subscribe(session) as on_b,
        ):
            published: list[SSEEvent] = []

            async def publish(broadcaster: Broadcaster, n: int) -> None:
                published.append(await broadcaster.publish(session, "t", n))

            async with trio.open_nursery() as nursery:
                for n in range(20):
                    nursery.start_soon(publish, (a, b)[n % 2], n)
            got_a = [await on_a.receive() for _ in range(20)]
            got_b = [await on_b.receive() for _ in range(20)]
    assert got_a == got_b, f"two broadcasters saw two orders: {got_a} / {got_b}"
    seqs = [_seq(event) for event in got_a]
    assert seqs == list(range(seqs[0], seqs[0] + 20)), f"ids not consecutive: {seqs}"
    assert sorted(published, key=_seq) == got_a


async def _check_replay_elsewhere(make_backend: Callable[[], Backend]) -> None:
    session = f"check-{secrets.token_hex(4)}"
    with trio.fail_after(10):
        async with (
            open_broadcaster(_CONFIG, backend=make_backend()) as a,
            open_broadcaster(_CONFIG, backend=make_backend()) as b,
        ):
            events = [await a.publish(session, "t", n) for n in range(5)]
            async with b.subscribe(session, last_event_id=events[0].id) as sub:
                got = [await sub.receive() for _ in range(4)]
                with trio.move_on_after(0.1):
                    extra = await sub.receive()
                    raise AssertionError(f"replayed more than was published: {extra}")
    assert got == events[1:], f"replayed {got}, published {events[1:]}"


async def _check_flush_changes_epoch(
    make_backend: Callable[[], Backend], flush: Callable[[], Awaitable[None]]
) -> None:
    session = f"check-{secrets.token_hex(4)}"
    with trio.fail_after(10):
        async with open_broadcaster(_CONFIG, backend=make_backend()) as a:
            before = await a.publish(session, "t", "before")
            await flush()
            after = await a.publish(session, "t", "after")
            async with a.subscribe(session, last_event_id=before.id) as sub:
                reset = await sub.receive()
                assert reset.type == "reset", f"an old cursor got {reset}, not a reset"
                assert reset.json()["reason"] == "epoch-changed"
                assert await sub.receive() == after
    assert _epoch(before) != _epoch(after), "a flush did not change the epoch"


def _seq(event: SSEEvent) -> int:
    parsed = parse_event_id(event.id or "")
    assert parsed is not None, f"bad id {event.id!r}"
    return parsed[1]


def _epoch(event: SSEEvent) -> str:
    parsed = parse_event_id(event.id or "")
    assert parsed is not None, f"bad id {event.id!r}"
    return parsed[0]

"""Conformance checks for backends, in the spirit of ``trio.testing.check_two_way_stream``."""

from __future__ import annotations

from collections.abc import Callable

import trio

from .._protocol import SSEEvent
from ..backends import Backend

_TTLS = (None, 0.5, 30.0, 1e9)
"""TTLs the checks publish with; each must reach ``deliver`` unchanged."""


async def check_backend(make_backend: Callable[[], Backend]) -> None:
    """Check the :class:`~trio_sse.backends.Backend` contract on fresh backends.

    - ``publish`` after ``run`` started reaches ``deliver`` exactly once per event, with its TTL
      unchanged, in order within each session;
    - ``run`` returns promptly when cancelled, and ``publish`` then raises
      ``trio.ClosedResourceError``;
    - ``publish`` before ``run`` starts raises ``trio.ClosedResourceError``.

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


async def _check_delivery_order(backend: Backend) -> None:
    delivered: list[tuple[str, str | None, float | None]] = []
    sent = [
        (session, SSEEvent("t", n, id=f"e-{n}"), _TTLS[n % len(_TTLS)])
        for n in range(20)
        for session in "ab"
    ]
    all_arrived = trio.Event()

    def deliver(session_id: str, event: SSEEvent, ttl: float | None) -> None:
        delivered.append((session_id, event.id, ttl))
        if len(delivered) >= len(sent):
            all_arrived.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(backend.run, deliver)
            for session, event, ttl in sent:
                await backend.publish(session, event, ttl)
            await all_arrived.wait()
            await trio.sleep(0.01)  # nothing extra may arrive
            nursery.cancel_scope.cancel()
    for session in "ab":
        got = [(event_id, ttl) for s, event_id, ttl in delivered if s == session]
        want = [(event.id, ttl) for s, event, ttl in sent if s == session]
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

"""Every backend passes the same conformance checks."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from trio_sse.backends import Backend, InMemoryBackend
from trio_sse.testing import check_backend


async def test_in_memory_backend_passes_the_conformance_checks(autojump_clock: MockClock) -> None:
    await check_backend(InMemoryBackend)


class _Reordering(InMemoryBackend):
    """A broken backend: delivers each event only after the next one."""

    def __init__(self) -> None:
        super().__init__()
        self._held: tuple[str, object] | None = None

    async def publish(self, session_id: str, event: object) -> None:  # type: ignore[override]
        held, self._held = self._held, (session_id, event)
        if held is not None:
            await super().publish(*held)  # type: ignore[arg-type]


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
        await nursery.start(backend.run, lambda s, e: None)
        with pytest.raises(RuntimeError):
            await backend.run(lambda s, e: None)
        nursery.cancel_scope.cancel()

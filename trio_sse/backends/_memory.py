"""The default backend: one process, delivery by a direct call."""

from __future__ import annotations

import trio

from .._protocol import SSEEvent
from ._base import Backend, Deliver


class InMemoryBackend(Backend):
    """Delivers each published event synchronously to the one broadcaster it serves."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self._deliver is not None:
            raise RuntimeError("an InMemoryBackend serves one broadcaster at a time")
        self._deliver = deliver
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._deliver = None

    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> SSEEvent:
        # No checkpoint here: the broadcaster has just taken the event's sequence number and
        # must deliver it before any other publish runs (the caller already checkpointed).
        if self._deliver is None:
            raise trio.ClosedResourceError("the backend is not running")
        self._deliver(session_id, event, ttl)
        return event

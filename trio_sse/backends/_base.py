"""The fan-out transport between ``publish`` and the broadcasters that deliver events.

A broadcaster builds each event (id, encoding, history position) and hands it to its backend's
:meth:`Backend.publish`. The backend carries it to the ``deliver`` function of the broadcaster(s)
it serves; ``deliver`` appends the event to local history and offers it to local subscribers.
The in-memory backend calls ``deliver`` directly. A shared backend (Redis) would carry the event
to other processes too, calling each process's ``deliver`` from the task :meth:`Backend.run`
starts in the broadcaster's nursery.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import trio

from .._protocol import SSEEvent

Deliver = Callable[[str, SSEEvent], None]
"""``deliver(session_id, event)``: append to history and fan out locally. Never blocks."""


class Backend(abc.ABC):
    """How published events reach the broadcaster(s) that deliver them.

    Contract (checked by :func:`trio_sse.testing.check_backend`):

    - :meth:`run` is started with ``nursery.start`` by the broadcaster that owns the backend; it
      calls ``task_status.started()`` once it can publish and runs until cancelled. It must not
      swallow cancellation.
    - After ``run`` has started, every event given to :meth:`publish` is passed to ``deliver``
      exactly once, events of one session in the order ``publish`` was called.
    - After ``run`` has returned or been cancelled, :meth:`publish` raises
      ``trio.ClosedResourceError``.
    """

    @abc.abstractmethod
    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve ``deliver`` until cancelled."""

    @abc.abstractmethod
    async def publish(self, session_id: str, event: SSEEvent) -> None:
        """Carry ``event`` of ``session_id`` to ``deliver``."""

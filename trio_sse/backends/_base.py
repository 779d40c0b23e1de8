"""The fan-out transport between ``publish`` and the broadcasters that deliver events.

A broadcaster builds each event (id, encoding, history position) and hands it, with its TTL, to
its backend's :meth:`Backend.publish`. The backend carries both to the ``deliver`` function of
the broadcaster(s) it serves; ``deliver`` appends the event to local history (expiring ``ttl``
seconds after delivery) and offers it to local subscribers. The in-memory backend calls
``deliver`` directly. A shared backend (Redis) would carry the event to other processes too,
calling each process's ``deliver`` from the task :meth:`Backend.run` starts in the broadcaster's
nursery. The TTL travels as relative seconds because trio's clock is local to each process.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import trio

from .._protocol import SSEEvent

Deliver = Callable[[str, SSEEvent, float | None], None]
"""``deliver(session_id, event, ttl)``: append to history and fan out locally. Never blocks.

``ttl`` is the event's time in history in seconds, counted from delivery; None: no TTL.
"""


class Backend(abc.ABC):
    """How published events reach the broadcaster(s) that deliver them.

    Contract (checked by :func:`trio_sse.testing.check_backend`):

    - :meth:`run` is started with ``nursery.start`` by the broadcaster that owns the backend; it
      calls ``task_status.started()`` once it can publish and runs until cancelled. It must not
      swallow cancellation.
    - After ``run`` has started, every event given to :meth:`publish` is passed to ``deliver``
      exactly once, with its ``ttl`` unchanged, events of one session in the order ``publish``
      was called.
    - After ``run`` has returned or been cancelled, :meth:`publish` raises
      ``trio.ClosedResourceError``.
    """

    @abc.abstractmethod
    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve ``deliver`` until cancelled."""

    @abc.abstractmethod
    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> None:
        """Carry ``event`` of ``session_id`` and its ``ttl`` (seconds, or None) to ``deliver``."""

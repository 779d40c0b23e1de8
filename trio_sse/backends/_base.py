"""The fan-out transport between ``publish`` and the broadcasters that deliver events.

A broadcaster builds each event and hands it, with its TTL, to its backend's
:meth:`Backend.publish`. The backend carries both to the ``deliver`` function of the
broadcaster(s) it serves; ``deliver`` appends the event to local history (expiring ``ttl``
seconds after delivery) and offers it to local subscribers. The TTL travels as relative seconds
because trio's clock is local to each process.

Two kinds of backend:

- A local one (:class:`Backend`, ``assigns_ids = False``, e.g. the in-memory default): the
  broadcaster numbers each event ``<epoch>-<seq>`` from its own history before ``publish``.
- A shared one (:class:`SharedBackend`, ``assigns_ids = True``, e.g. Redis): many broadcasters
  publish to one session, so the backend numbers the events. ``publish`` receives an event
  without id and returns it with the id the backend assigned; the local history is a cache that
  adopts the backend's epoch, and a cursor it cannot serve is replayed by
  :meth:`~SharedBackend.replay`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import trio

from .._protocol import SSEEvent

Deliver = Callable[[str, SSEEvent, float | None], None]
"""``deliver(session_id, event, ttl)``: append to history and fan out locally. Never blocks.

``ttl`` is the event's time in history in seconds, counted from delivery; None: no TTL.
"""

SessionEnded = Callable[[str], None]
"""``ended(session_id)``: a session was closed (on any broadcaster sharing the backend)."""


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

    assigns_ids: ClassVar[bool] = False
    """False: events reach :meth:`publish` with their id. True: see :class:`SharedBackend`."""

    @abc.abstractmethod
    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve ``deliver`` until cancelled."""

    @abc.abstractmethod
    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> SSEEvent | None:
        """Carry ``event`` of ``session_id`` and its ``ttl`` (seconds, or None) to ``deliver``.

        A local backend may return None; a shared one returns the event with its new id.
        """


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a shared backend holds of one session, read in one atomic step.

    Attributes:
        epoch: The session's epoch; ``""`` if the backend holds nothing of it.
        head: The sequence number of the newest event published (0: none).
        lost_through: Every event up to this sequence number has left the backend.
        events: Retained events after the requested cursor, oldest first, each with its
            remaining TTL (seconds, or None).
    """

    epoch: str
    head: int
    lost_through: int
    events: list[tuple[int, SSEEvent, float | None]]


class SharedBackend(Backend):
    """A backend many broadcasters share: it assigns ids and keeps the history of record.

    Beyond :class:`Backend`'s contract:

    - :meth:`publish` receives an event without id and returns it with the id
      ``<epoch>-<seq>`` it assigned; ``seq`` grows by one per event of the session, whichever
      broadcaster published it, and the epoch changes when the backend lost the session's data.
    - ``run`` delivers the events of the sessions :meth:`watch` names (from the position given),
      in sequence order, exactly once each, to every broadcaster watching them; a new epoch is
      delivered from its first event.
    - :meth:`close_session` ends the session everywhere: ``ended(session_id)`` is called in
      every broadcaster that watches it.
    - Errors reaching the backend raise a :class:`~trio_sse.CapacityError` subclass.
    """

    assigns_ids: ClassVar[bool] = True

    @abc.abstractmethod
    async def run_shared(
        self,
        deliver: Deliver,
        ended: SessionEnded,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """:meth:`run`, also reporting sessions closed elsewhere to ``ended``."""

    async def run(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.run_shared(deliver, lambda session_id: None, task_status=task_status)

    @abc.abstractmethod
    async def publish(self, session_id: str, event: SSEEvent, ttl: float | None) -> SSEEvent:
        """Number ``event`` (given without id), store it, and return it with its id."""

    @abc.abstractmethod
    async def replay(self, session_id: str, after: tuple[str, int] | None, limit: int) -> Snapshot:
        """The session's epoch and head, and up to ``limit`` newest events after ``after``
        (``(epoch, seq)``; a cursor of another epoch: every retained event; None: none)."""

    @abc.abstractmethod
    def watch(self, session_id: str, epoch: str, seq: int) -> None:
        """Deliver ``session_id``'s events after ``seq`` of ``epoch`` (if not watched yet)."""

    @abc.abstractmethod
    def unwatch(self, session_id: str) -> None:
        """Stop delivering ``session_id``'s events."""

    @abc.abstractmethod
    async def close_session(self, session_id: str) -> bool:
        """Forget the session's data and end it on every broadcaster; whether it existed."""

    @abc.abstractmethod
    def statistics(self) -> dict[str, Any]:
        """The backend's counters, JSON-ready with camelCase keys (``/stats`` ``backend``)."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the backend is reachable now (``/readyz``)."""

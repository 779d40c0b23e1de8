"""Writes handed over by publishers, coalesced: one socket write per stream per burst.

A loopback ``send`` costs about 8 us of kernel time whatever it carries, so when events arrive
in bursts, writing each on its own is what limits fan-out. While a stream's writer waits idle,
the publisher hands each event's bytes to its transport (no task switch per delivery); the
transport keeps them and asks to be flushed. One task per server flushes every transport that
has something as soon as the server has nothing else to run (no runnable task, no I/O ready:
``trio.testing.wait_all_tasks_blocked``), or ``max_delay`` after the first handover if it stays
busy. Publishes that run meanwhile (several publish requests in flight, a burst from one
publisher) reach each socket in one write. A lone event is written as soon as its publish
request is done, at the cost of one task switch per publish (not per subscriber).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, Protocol

import trio
import trio.testing


class Flushable(Protocol):
    """Something holding bytes for a socket, written by :meth:`flush` without blocking."""

    def flush(self) -> None: ...


class WriteCoalescer:
    """Flushes the transports that asked for it, once per wake-up of :meth:`run`."""

    def __init__(self, max_delay: float = 0.005) -> None:
        self._max_delay = max_delay
        self._dirty: list[Flushable] = []
        self._wakeup = trio.Event()
        self.events = 0
        """Events handed over so far."""
        self.flushes = 0
        """Transports flushed so far: socket writes, each carrying one or more events."""
        self.pending_bytes = 0
        """Bytes handed over and not yet written or taken back (transports keep it current)."""
        self._last_parts: list[bytes] = []
        self._last_encoded = b""

    def hand_over(self, target: Flushable, size: int, first: bool) -> None:
        """Count an event of ``size`` bytes that ``target`` keeps; ``first`` schedules a flush
        (once per target until it is flushed)."""
        self.events += 1
        self.pending_bytes += size
        if first:
            if not self._dirty:
                self._wakeup.set()
            self._dirty.append(target)

    def shared(self, parts: list[bytes], encode: Callable[[list[bytes]], bytes]) -> bytes:
        """``encode(parts)``, computed once for a run of calls with equal ``parts``.

        In one pass every stream of a session flushes the same events, so their framing (and
        the copy it makes) is done once for all of them. Holds the last result only.
        """
        if parts != self._last_parts:  # the same bytes objects: compared by identity first
            self._last_encoded = encode(parts)
            self._last_parts = parts.copy()
        return self._last_encoded

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Flush forever; start it in a nursery that outlives the streams."""
        task_status.started()
        while True:
            await self._wakeup.wait()
            with trio.move_on_after(self._max_delay):
                await trio.testing.wait_all_tasks_blocked()
            self._wakeup = trio.Event()
            self.flush_all()

    def flush_all(self) -> None:
        """Flush every transport scheduled so far."""
        dirty, self._dirty = self._dirty, []
        self.flushes += len(dirty)
        for target in dirty:
            target.flush()
        self._last_parts, self._last_encoded = [], b""  # hold nothing between passes

"""One subscriber: a bounded trio memory channel, its replay, and the slow-consumer policy.

The broadcaster offers each event with ``offer`` (never blocking: ``send_nowait``). A full
queue (by count or by bytes) applies the policy: ``disconnect`` closes the subscription at once
and frees what it held, so its client reconnects and resumes from history; ``drop`` skips the
event and remembers how many were skipped, and the next event that does get through is preceded
by a ``gap`` notice saying so. Replayed history waits in a plain list in front of the channel
(newest first, so ``pop()`` takes the oldest): it was taken in the same synchronous step that
registered the subscriber, which is what makes the handoff from replay to live events lossless
and free of duplicates.

A subscription may be given an *output* when it is created (:class:`SubscriberOutput`: the
server's socket transport). While the reader waits with nothing queued, ``offer`` hands each
event to that output instead of the channel, so no task wakes per delivery.

The broadcaster calls only ``offer``, ``end`` and ``is_stale``: package-internal methods,
documented here, that user code has no reason to call.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from ._config import BroadcasterConfig
from ._protocol import SSEEvent
from ._stats import Counters

GAP_EVENT_TYPE: Final = "gap"


class SubscriberOutput(Protocol):
    """Where a subscription may hand events straight to, past its channel (package-internal).

    The server's socket transport is one: it takes an event's bytes for the socket while the
    stream's writer waits idle.
    """

    def attach(self, wake: Callable[[], None]) -> None:
        """Called once by the subscription it is given to: ``wake`` makes the reader's waiting
        :meth:`Subscription.receive_batch` return ``[]`` (to write what the output kept)."""
        ...

    def offer(self, event: SSEEvent, now: float) -> bool:
        """Take ``event`` without blocking (``now`` is ``trio.current_time()``); False: queue it
        in the channel instead."""
        ...


class CloseReason(enum.Enum):
    """Why a subscription ended."""

    CLOSED = "closed"
    """The subscriber left its ``async with`` block (normally or by cancellation)."""
    SLOW_CONSUMER = "slow-consumer"
    """Its queue was full under the ``disconnect`` policy; resume from history."""
    STALE = "stale"
    """Events waited unread longer than ``max_subscriber_idle_time``."""
    SESSION_CLOSED = "session-closed"
    """The session was ended with ``close_session``."""
    SHUTDOWN = "shutdown"
    """The broadcaster is closing."""


@dataclass(frozen=True, slots=True)
class _Gap:
    """A channel item: ``event``, after ``dropped`` events this subscriber missed."""

    dropped: int
    event: SSEEvent


class _Wake:
    """The channel item of :meth:`Subscription.wake`: not an event."""


_WAKE = _Wake()


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """A snapshot of one subscription."""

    session_id: str
    """The session subscribed to."""
    queued_events: int
    """Events waiting to be read (replay included)."""
    queued_bytes: int
    """Encoded bytes waiting to be read."""
    max_queue_size: int
    """Capacity of the live queue."""
    delivered: int
    """Events read so far."""
    dropped: int
    """Events skipped under the ``drop`` policy so far."""
    close_reason: CloseReason | None
    """None while open."""


class Subscription:
    """A live view of one session, from ``Broadcaster.subscribe``.

    Iterate it (``async for event in subscription``) or call :meth:`receive`. Iteration ends
    when the subscription is closed by the broadcaster; :attr:`close_reason` says why.

    Attributes:
        last_event_id: The cursor to resume from: the id of the last event read or, before any
            read, where this subscription started (the session's newest id, or the cursor it
            resumed after exactly). A poll returns it as the next cursor.
    """

    __slots__ = (
        "__weakref__",
        "_counters",
        "_delivered",
        "_drop_policy",
        "_dropped_pending",
        "_dropped_total",
        "_in_channel",
        "_max_queue_bytes",
        "_max_queue_size",
        "_on_close",
        "_output",
        "_parked",
        "_queued",
        "_queued_bytes",
        "_ready",
        "_receive",
        "_send",
        "_waiting_since",
        "_wake_pending",
        "close_reason",
        "last_event_id",
        "session_id",
    )

    def __init__(
        self,
        session_id: str,
        replay: list[SSEEvent],
        config: BroadcasterConfig,
        counters: Counters,
        on_close: Callable[[Subscription], None],
        now: float,
        cursor: str | None = None,
        output: SubscriberOutput | None = None,
    ) -> None:
        self.session_id = session_id
        self.close_reason: CloseReason | None = None
        # Resuming after this id later loses nothing this subscription has not delivered.
        self.last_event_id: str | None = cursor
        # One slot more than events may take: room for a wake() marker (see _offer).
        self._send, self._receive = trio.open_memory_channel[SSEEvent | _Gap | _Wake](
            config.max_queue_size + 1
        )
        self._max_queue_size = config.max_queue_size
        self._in_channel = 0  # events (not wake markers) in the channel
        self._wake_pending = False
        self._parked = False
        self._output = output
        self._max_queue_bytes = config.max_queue_bytes
        self._drop_policy = config.slow_consumer_policy == "drop"
        self._counters = counters
        self._on_close = on_close
        self._ready = replay[::-1]  # events to hand out before the channel, oldest last
        self._queued = len(replay)  # events in _ready and in the channel
        self._queued_bytes = sum(event.size for event in replay)
        self._waiting_since: float | None = now if replay else None
        self._dropped_pending = 0
        self._dropped_total = 0
        self._delivered = 0
        counters.queued_events += self._queued
        counters.queued_bytes += self._queued_bytes
        if output is not None:
            output.attach(self.wake)

    # -- reading side ---------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> SSEEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> SSEEvent:
        """The next event, waiting for one if need be.

        Raises:
            trio.EndOfChannel: the subscription was closed (see :attr:`close_reason`).
        """
        while True:
            item = await self._next_item()
            if item is not _WAKE:
                return self._consume(item)

    async def _next_item(self) -> SSEEvent | _Gap | _Wake:
        if self._ready:
            await trio.lowlevel.checkpoint()
            if self._ready:  # else: closed while we yielded; the channel says so below
                return self._ready[-1]
        self._parked = True  # nothing left to read: a direct writer may deliver meanwhile
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.EndOfChannel from None
        finally:
            self._parked = False
        if item is _WAKE:
            self._wake_pending = False
        return item

    async def receive_batch(self, max_events: int = 1000) -> list[SSEEvent]:
        """Wait for at least one event, then return up to ``max_events`` of those waiting.

        One wake-up for everything queued: a server writes the batch in one send. Returns an
        empty list if :meth:`wake` was called while it waited.

        Raises:
            trio.EndOfChannel: the subscription was closed (see :attr:`close_reason`).
        """
        item = await self._next_item()
        if item is _WAKE:
            return []
        batch = [self._consume(item)]
        while len(batch) < max_events:
            try:
                batch.append(self.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    def receive_nowait(self) -> SSEEvent:
        """The next event if one is waiting.

        Raises:
            trio.WouldBlock: nothing is waiting.
            trio.EndOfChannel: the subscription was closed.
        """
        if self._ready:
            return self._consume(self._ready[-1])
        while True:
            try:
                item = self._receive.receive_nowait()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise trio.EndOfChannel from None
            if item is not _WAKE:
                return self._consume(item)
            self._wake_pending = False

    def wake(self) -> None:
        """Make a :meth:`receive_batch` that is waiting return ``[]`` now (once).

        A server uses it to write a heartbeat on a quiet stream without a timer per stream.
        It takes no queue slot from events and never blocks.
        """
        if self.close_reason is None and not self._wake_pending:
            with contextlib.suppress(trio.WouldBlock):
                self._send.send_nowait(_WAKE)
                self._wake_pending = True  # one marker at most: it never takes an event's slot

    def _consume(self, item: SSEEvent | _Gap | _Wake) -> SSEEvent:
        """Account for ``item`` leaving the queue (the replay's last, or a channel item)."""
        if self._ready and item is self._ready[-1]:
            self._ready.pop()
        else:
            self._in_channel -= 1
        assert not isinstance(item, _Wake)
        if isinstance(item, _Gap):
            self._ready.append(item.event)
            return SSEEvent(GAP_EVENT_TYPE, {"dropped": item.dropped})
        self._consumed(item)
        return item

    def _consumed(self, event: SSEEvent) -> None:
        size = event.size
        self._queued -= 1
        self._queued_bytes -= size
        self._delivered += 1
        counters = self._counters
        counters.queued_events -= 1
        counters.queued_bytes -= size
        counters.events_delivered += 1
        # Still behind after this read: the wait starts again now.
        self._waiting_since = trio.current_time() if self._queued else None
        if event.id is not None:
            self.last_event_id = event.id

    # -- broadcaster side (package-internal) ------------------------------------------

    def offer(self, event: SSEEvent, size: int, now: float) -> bool:
        """Queue ``event`` without blocking; False means: disconnect this slow consumer.

        Package-internal: the broadcaster's fan-out calls it.
        """
        # The reader waits with nothing queued or in hand (_queued counts an item it took but
        # has not consumed yet): hand the event to the output without waking it, if it can.
        if (
            self._parked
            and not self._queued
            and not self._dropped_pending
            and self._output is not None
            and self._output.offer(event, now)
        ):
            self._delivered += 1
            self._counters.events_delivered += 1
            if event.id is not None:
                self.last_event_id = event.id
            return True
        if self._queued_bytes + size > self._max_queue_bytes:
            return self._full()
        if self._in_channel >= self._max_queue_size:
            return self._full()
        item: SSEEvent | _Gap = event
        if self._dropped_pending:
            item = _Gap(self._dropped_pending, event)
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            return self._full()
        self._dropped_pending = 0
        self._in_channel += 1
        if not self._queued:
            self._waiting_since = now
        self._queued += 1
        self._queued_bytes += size
        self._counters.queued_events += 1
        self._counters.queued_bytes += size
        return True

    def _full(self) -> bool:
        if not self._drop_policy:
            return False
        self._dropped_pending += 1
        self._dropped_total += 1
        self._counters.events_dropped += 1
        return True

    def is_stale(self, now: float, idle_time: float) -> bool:
        """Whether events have waited unread ``idle_time`` at ``now`` (package-internal: the
        cleanup pass asks)."""
        return self._waiting_since is not None and now - self._waiting_since >= idle_time

    def end(self, reason: CloseReason) -> None:
        """End the subscription and free what it holds. Idempotent; never blocks.

        Package-internal: the broadcaster calls it (leaving ``subscribe``'s block, a slow
        consumer, a stale one, a closed session, shutdown); the first reason wins.
        """
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self._send.close()
        self._receive.close()  # wakes a waiting reader and discards the buffered events
        self._ready.clear()
        self._counters.queued_events -= self._queued
        self._counters.queued_bytes -= self._queued_bytes
        self._queued = self._queued_bytes = 0
        self._waiting_since = None
        self._on_close(self)

    def statistics(self) -> SubscriptionStatistics:
        """A snapshot of this subscription's queue and totals."""
        return SubscriptionStatistics(
            session_id=self.session_id,
            queued_events=self._queued,
            queued_bytes=self._queued_bytes,
            max_queue_size=self._max_queue_size,
            delivered=self._delivered,
            dropped=self._dropped_total,
            close_reason=self.close_reason,
        )

    def __repr__(self) -> str:
        state = self.close_reason.value if self.close_reason else "open"
        return f"<Subscription {self.session_id!r} {state} queued={self._queued}>"

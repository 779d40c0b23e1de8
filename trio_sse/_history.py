"""Bounded per-session history: by count, by bytes and by TTL; replay after an event id.

Each retained event sits beside its expiry deadline (``trio.current_time()`` at delivery plus
its TTL, or infinity): TTLs are history's metadata, so the wire event (``SSEEvent``) carries none.
The TTL travels from ``publish`` through the backend as a relative number of seconds, because
trio's clock is per process; each broadcaster starts it when the event is delivered, which for
the in-memory backend is the moment of the publish.

Event ids are ``<epoch>-<seq>``. The epoch is a fresh random token each time a history is
created, so a broadcaster restart or an expired session is visible in every id issued after it.
Within a history sequence numbers are contiguous and events only ever leave from the front
(bounds, TTL, shedding), so the event with sequence ``s`` sits at index ``s - first_seq``.

Replay is exact when the cursor is the id of an event of this epoch that is still retained, or
the id just before the oldest retained one. Otherwise (malformed id, another epoch, an id from
the future, or events lost between the cursor and the oldest retained one) replay starts with a
``reset`` event that says why and carries the cursor just before the replayed events, followed by
everything retained: the client knows it missed something and gets all that is left.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections import deque
from dataclasses import dataclass

from ._exceptions import InvalidEventError
from ._protocol import SSEEvent
from ._stats import Counters

RESET_EVENT_TYPE = "reset"
ECHOED_ID_MAX_CHARS = 256
"""A reset notice echoes at most this much of the client's cursor."""


def check_ttl(ttl: float | None) -> None:
    """Refuse a TTL that is not a positive number of seconds (None: no TTL).

    Raises:
        InvalidEventError: ``ttl`` is not None, not a number, a bool, NaN, or not positive.
    """
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0
    ):
        raise InvalidEventError(f"ttl must be positive seconds or None, not {ttl!r}")


def expiry(now: float, ttl: float | None) -> float:
    """The deadline of an event delivered at ``now`` with ``ttl``: ``math.inf`` for no TTL."""
    return math.inf if ttl is None else now + ttl


def new_epoch() -> str:
    """A fresh random epoch token (8 hex digits, no ``-``)."""
    return secrets.token_hex(4)


def parse_event_id(event_id: str) -> tuple[str, int] | None:
    """Split ``<epoch>-<seq>`` into its parts, or None if it is not of that form."""
    epoch, dash, seq = event_id.rpartition("-")
    if not dash or not epoch or not seq.isascii() or not seq.isdigit() or len(seq) > 19:
        return None
    return epoch, int(seq)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a new subscriber receives before live events.

    Attributes:
        events: The retained events after the cursor, oldest first (a ``reset`` event first
            when the cursor could not be resumed exactly).
        reset_reason: Why the cursor could not be resumed, or None.
    """

    events: list[SSEEvent]
    reset_reason: str | None = None


class History:
    """The retained events of one session, bounded by ``max_count`` and ``max_bytes``."""

    __slots__ = (
        "_counters",
        "_deadlines",
        "_events",
        "_seqs",
        "bytes",
        "epoch",
        "last_seq",
        "lost_through",
        "max_bytes",
        "max_count",
        "reserved",
    )

    def __init__(
        self, max_count: int, max_bytes: int, counters: Counters, epoch: str | None = None
    ) -> None:
        self.epoch = epoch or new_epoch()
        self._counters = counters
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.reserved = 0  # the last sequence number handed to a publish
        self.last_seq = 0  # the sequence number of the newest event appended
        self.lost_through = 0  # every event up to this sequence number has left history
        self.bytes = 0
        self._events: deque[SSEEvent] = deque()
        self._seqs: deque[int] = deque()  # sequence number of each retained event
        self._deadlines: deque[float] = deque()  # when each retained event expires

    def __len__(self) -> int:
        return len(self._events)

    def id_for(self, seq: int) -> str:
        """The id of sequence number ``seq`` in this history."""
        return f"{self.epoch}-{seq}"

    def next_id(self) -> str:
        """The id the next reserved sequence number will have."""
        return f"{self.epoch}-{self.reserved + 1}"

    def reserve(self) -> int:
        """Hand out the next sequence number (after :meth:`next_id` was used to build an event).

        A reserved number that is never appended (its publish failed) leaves a harmless hole.
        """
        self.reserved += 1
        return self.reserved

    def adopt(self, epoch: str, seq: int) -> None:
        """Start over in ``epoch`` after ``seq`` (a shared backend's position): the cache is
        emptied and the next event appended must be newer than ``seq``."""
        self.clear()
        self.epoch = epoch
        self.reserved = self.last_seq = self.lost_through = seq

    def append(self, event: SSEEvent, seq: int, expires_at: float) -> None:
        """Add ``event``, which holds the id of ``seq`` and expires at ``expires_at`` (see
        :func:`expiry`), then evict the oldest events until both bounds hold again.

        Raises:
            ValueError: ``seq`` is not newer than the newest appended event, or was never
                reserved (a backend that reordered or invented deliveries).
        """
        if not self.last_seq < seq <= self.reserved:
            raise ValueError(f"event {event.id!r} is out of order for this history")
        self.last_seq = seq
        self._events.append(event)
        self._seqs.append(seq)
        self._deadlines.append(expires_at)
        self.bytes += event.size
        self._counters.history_events += 1
        self._counters.history_bytes += event.size
        while len(self._events) > self.max_count or self.bytes > self.max_bytes:
            self._pop_front()
            self._counters.events_evicted += 1

    def expire(self, now: float) -> int:
        """Remove expired events from the front; return how many left."""
        removed = 0
        while self._deadlines and self._deadlines[0] <= now:
            self._pop_front()
            removed += 1
        self._counters.events_expired += removed
        return removed

    def trim(self, keep: int) -> int:
        """Keep only the newest ``keep`` events; return how many left."""
        removed = 0
        while len(self._events) > keep:
            self._pop_front()
            removed += 1
        return removed

    def clear(self) -> None:
        """Drop every retained event (the session is going away)."""
        self.trim(0)

    def _pop_front(self) -> None:
        event = self._events.popleft()
        self.lost_through = self._seqs.popleft()
        self._deadlines.popleft()
        self.bytes -= event.size
        self._counters.history_events -= 1
        self._counters.history_bytes -= event.size

    def replay(self, last_event_id: str | None, now: float) -> Replay:
        """The events a subscriber resuming after ``last_event_id`` must receive first.

        None (a first connect) replays nothing: the subscriber starts with live events.
        Expired events at the front leave first, exactly as a cleanup pass would remove them,
        so a cursor behind them gets a ``reset`` whether or not that pass has run yet.
        """
        if last_event_id is None:
            return Replay([])
        self.expire(now)
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            return self._reset("unknown-id", last_event_id, now)
        epoch, seq = parsed
        if epoch != self.epoch:
            return self._reset("epoch-changed", last_event_id, now)
        if seq > self.reserved:
            return self._reset("unknown-id", last_event_id, now)
        if seq < self.lost_through:
            return self._reset("history-expired", last_event_id, now)
        # Replays are short and recent: walk back from the newest event to the cursor.
        start = len(self._seqs)
        while start and self._seqs[start - 1] > seq:
            start -= 1
        after = itertools.islice(zip(self._events, self._deadlines, strict=True), start, None)
        return Replay([event for event, deadline in after if now < deadline])

    def _reset(self, reason: str, last_event_id: str, now: float) -> Replay:
        live = zip(self._events, self._deadlines, strict=True)
        retained = [event for event, deadline in live if now < deadline]
        # The cursor just before the replayed events: resuming from it replays them all.
        before = self._seqs[0] - 1 if self._seqs else self.last_seq
        reset = reset_notice(reason, last_event_id, retained, f"{self.epoch}-{before}")
        return Replay([reset, *retained], reason)


def reset_notice(
    reason: str, last_event_id: str, retained: list[SSEEvent], before_id: str
) -> SSEEvent:
    """The ``reset`` event that precedes ``retained`` for a cursor that could not be resumed;
    its id ``before_id`` is the cursor just before them (resuming from it replays them all)."""
    echoed = last_event_id[:ECHOED_ID_MAX_CHARS]
    data = {
        "reason": reason,
        # a cursor may hold lone surrogates, which have no UTF-8 form
        "lastEventId": echoed.encode("utf-8", "backslashreplace").decode("utf-8"),
        "oldestId": retained[0].id if retained else None,
    }
    return SSEEvent(RESET_EVENT_TYPE, data, id=before_id)

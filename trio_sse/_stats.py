"""Counters the broadcaster keeps up to date, and the frozen snapshots it hands out.

Every figure is maintained incrementally where it changes, so a snapshot costs the same with
one session or a hundred thousand: no walk over sessions or subscribers happens here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._config import EVENT_OVERHEAD_BYTES


class Counters:
    """Mutable running totals, shared by the broadcaster, sessions and subscriptions."""

    __slots__ = (
        "cleanup_count",
        "cleanup_errors",
        "events_delivered",
        "events_dropped",
        "events_evicted",
        "events_expired",
        "events_published",
        "history_bytes",
        "history_events",
        "last_cleanup_seconds",
        "memory_sheds",
        "queued_bytes",
        "queued_events",
        "sessions_evicted",
        "sessions_expired",
        "slow_consumer_disconnects",
        "stale_subscribers_removed",
        "subscribers",
        "subscribers_removed",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.last_cleanup_seconds = 0.0

    # Counters are typed here for mypy; __init__ sets each of them.
    cleanup_count: int
    cleanup_errors: int
    events_delivered: int
    events_dropped: int
    events_evicted: int
    events_expired: int
    events_published: int
    history_bytes: int
    history_events: int
    last_cleanup_seconds: float
    memory_sheds: int
    queued_bytes: int
    queued_events: int
    sessions_evicted: int
    sessions_expired: int
    slow_consumer_disconnects: int
    stale_subscribers_removed: int
    subscribers: int
    subscribers_removed: int

    def held_bytes(self) -> int:
        """Encoded bytes held plus ``EVENT_OVERHEAD_BYTES`` per held event (``heldBytes``)."""
        events = self.history_events + self.queued_events
        return self.history_bytes + self.queued_bytes + EVENT_OVERHEAD_BYTES * events


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Totals since the broadcaster started."""

    cleanup_count: int
    """Cleanup passes completed."""
    cleanup_errors: int
    """Cleanup or memory-check passes that raised (logged; the broadcaster went on)."""
    events_published: int
    """Events accepted by ``publish``."""
    events_delivered: int
    """Events handed to a subscriber's reader, replayed and ``reset`` events included."""
    events_dropped: int
    """Events skipped for a full subscriber under the ``drop`` policy."""
    events_expired: int
    """Events removed from history because their TTL ran out."""
    events_evicted: int
    """Events removed from history by the count or byte bound, or by memory shedding."""
    sessions_expired: int
    """Sessions removed after ``session_ttl`` without subscribers or publishes."""
    sessions_evicted: int
    """Idle sessions evicted to make room under ``max_sessions``."""
    subscribers_removed: int
    """Subscriptions ended, for any reason."""
    slow_consumer_disconnects: int
    """Subscriptions ended because their queue was full (``disconnect`` policy)."""
    stale_subscribers_removed: int
    """Subscriptions ended after ``max_subscriber_idle_time`` with unread events."""
    memory_sheds: int
    """Memory checks that found the critical level and trimmed histories."""
    last_cleanup_seconds: float
    """Duration of the last cleanup pass (process time spent, not virtual time)."""

    @classmethod
    def of(cls, counters: Counters) -> MetricsSnapshot:
        return cls(*[getattr(counters, name) for name in _METRIC_FIELDS])

    def as_dict(self) -> dict[str, Any]:
        """The camelCase JSON shape (``metrics`` in ``get_stats()``)."""
        return {key: getattr(self, name) for name, key in _METRIC_KEYS}


_METRIC_FIELDS = tuple(MetricsSnapshot.__dataclass_fields__)
_METRIC_KEYS = tuple((name, _camel(name)) for name in _METRIC_FIELDS)  # computed once


@dataclass(frozen=True, slots=True)
class BroadcasterStatistics:
    """A consistent view of what a broadcaster holds right now."""

    memory_usage_mb: float
    """Resident memory of the whole process, in MiB."""
    memory_level: str
    """``normal``, ``warning`` or ``critical`` (shedding)."""
    total_sessions: int
    """Sessions held (with or without subscribers)."""
    total_events: int
    """Events retained in all histories."""
    total_subscribers: int
    """Open subscriptions."""
    history_bytes: int
    """Encoded bytes retained in all histories."""
    queued_bytes: int
    """Encoded bytes waiting in subscriber queues and replays (one count per subscriber)."""
    queued_events: int
    """Events waiting in subscriber queues and replays."""
    held_bytes: int
    """``history_bytes + queued_bytes + EVENT_OVERHEAD_BYTES * (total_events + queued_events)``:
    the memory histories and queues hold (an event held by a history and a queue counts
    twice), which the configuration bounds (``BroadcasterConfig.held_bytes_bound``)."""
    metrics: MetricsSnapshot | None
    """Running totals; None when ``enable_metrics`` is off."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``get_stats()`` (camelCase keys)."""
        metrics = self.metrics
        return {
            "memoryUsageMB": round(self.memory_usage_mb, 3),
            "memoryLevel": self.memory_level,
            "totalSessions": self.total_sessions,
            "totalEvents": self.total_events,
            "totalSubscribers": self.total_subscribers,
            "historyBytes": self.history_bytes,
            "queuedBytes": self.queued_bytes,
            "queuedEvents": self.queued_events,
            "heldBytes": self.held_bytes,
            "metrics": None if metrics is None else metrics.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup pass removed."""

    events_expired: int
    sessions_expired: int
    stale_subscribers: int
    seconds: float

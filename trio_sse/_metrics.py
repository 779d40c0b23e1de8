"""Prometheus exposition of the broadcaster's statistics, through prometheus-client.

A registry of our own per scrape: no global state, nothing registered at import.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._stats import BroadcasterStatistics

_GAUGES = {
    "memory_usage_mb": ("trio_sse_process_resident_memory_mebibytes", "Process RSS in MiB"),
    "total_sessions": ("trio_sse_sessions", "Sessions held"),
    "total_events": ("trio_sse_history_events", "Events retained in histories"),
    "total_subscribers": ("trio_sse_subscribers", "Open subscriptions"),
    "history_bytes": ("trio_sse_history_bytes", "Encoded bytes retained in histories"),
    "queued_bytes": ("trio_sse_queued_bytes", "Encoded bytes waiting for subscribers"),
    "held_bytes": ("trio_sse_held_bytes", "history_bytes + queued_bytes"),
}


_STREAM_WRITES = {
    "eventsHandedOver": ("trio_sse_stream_events_handed_over", "Events handed to stream sockets"),
    "coalescedWrites": ("trio_sse_stream_coalesced_writes", "Socket writes carrying them"),
}


class _Snapshot(Collector):
    def __init__(
        self, stats: BroadcasterStatistics, connections: int, writes: Mapping[str, int]
    ) -> None:
        self._stats = stats
        self._connections = connections
        self._writes = writes

    def collect(self) -> Iterator[Metric]:
        for field, (name, doc) in _GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=getattr(self._stats, field))
        yield GaugeMetricFamily(
            "trio_sse_connections", "Open streams and long polls", value=self._connections
        )
        for key, (name, doc) in _STREAM_WRITES.items():
            yield CounterMetricFamily(name, doc, value=self._writes.get(key, 0))
        yield GaugeMetricFamily(
            "trio_sse_stream_pending_bytes",
            "Bytes handed to stream sockets, not written yet",
            value=self._writes.get("pendingBytes", 0),
        )
        level = GaugeMetricFamily(
            "trio_sse_memory_level", "1 for the current level", labels=["level"]
        )
        for name in ("normal", "warning", "critical"):
            level.add_metric([name], 1.0 if self._stats.memory_level == name else 0.0)
        yield level
        metrics = self._stats.metrics
        if metrics is None:
            return
        for field in type(metrics).__dataclass_fields__:
            value = getattr(metrics, field)
            if field == "last_cleanup_seconds":
                yield GaugeMetricFamily("trio_sse_last_cleanup_seconds", "Last pass", value=value)
            else:
                doc = f"{field.replace('_', ' ')} since start"
                yield CounterMetricFamily(f"trio_sse_{field}", doc, value=value)


def prometheus_text(
    stats: BroadcasterStatistics, connections: int, writes: Mapping[str, int]
) -> bytes:
    """The Prometheus text format of ``stats``, open ``connections`` and stream ``writes``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats, connections, writes))
    return generate_latest(registry)

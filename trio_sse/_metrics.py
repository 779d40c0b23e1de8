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
    "held_bytes": (
        "trio_sse_held_bytes",
        "Bytes the configuration bounds (encoded + per-event overhead)",
    ),
}


_SOCKET_GAUGES = {
    "open": ("trio_sse_open_sockets", "Accepted sockets open (streams, requests, idle)"),
    "waiting": ("trio_sse_waiting_sockets", "Open sockets without a complete request yet"),
    "limit": ("trio_sse_max_sockets", "Accepted sockets allowed open at once"),
    "reserved": ("trio_sse_reserved_sockets", "Share kept for publishes and health checks"),
}
_SOCKET_COUNTERS = {
    "refused": ("trio_sse_sockets_refused", "Sockets refused at max_sockets (503, closed)"),
    "evicted": ("trio_sse_sockets_evicted", "Sockets closed before a complete request, for room"),
    "shed": ("trio_sse_requests_shed", "Requests refused 503 as only the reserved share was left"),
    "timedOut": ("trio_sse_requests_timed_out", "Requests refused 408 (head or body too slow)"),
    "acceptErrors": ("trio_sse_accept_errors", "Accepts failed for lack of descriptors"),
}


_STREAM_WRITES = {
    "eventsHandedOver": ("trio_sse_stream_events_handed_over", "Events handed to stream sockets"),
    "coalescedWrites": ("trio_sse_stream_coalesced_writes", "Socket writes carrying them"),
}


class _Snapshot(Collector):
    def __init__(
        self,
        stats: BroadcasterStatistics,
        connections: int,
        writes: Mapping[str, int],
        sockets: Mapping[str, int],
    ) -> None:
        self._stats = stats
        self._connections = connections
        self._writes = writes
        self._sockets = sockets

    def collect(self) -> Iterator[Metric]:
        for field, (name, doc) in _GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=getattr(self._stats, field))
        yield GaugeMetricFamily(
            "trio_sse_connections", "Open streams and long polls", value=self._connections
        )
        for key, (name, doc) in _SOCKET_GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=self._sockets.get(key, 0))
        for key, (name, doc) in _SOCKET_COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=self._sockets.get(key, 0))
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
    stats: BroadcasterStatistics,
    connections: int,
    writes: Mapping[str, int],
    sockets: Mapping[str, int] | None = None,
) -> bytes:
    """The Prometheus text format of ``stats``, open ``connections`` (streams and polls),
    stream ``writes`` and accepted ``sockets`` (the lean server's; empty behind ASGI)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats, connections, writes, sockets or {}))
    return generate_latest(registry)

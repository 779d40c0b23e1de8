"""Reading the process's resident memory, and the pressure levels derived from it."""

from __future__ import annotations

import enum
import os
import resource
import sys

MiB = 1024 * 1024


class MemoryLevel(enum.Enum):
    """How the process's RSS compares with the configured thresholds."""

    NORMAL = "normal"
    WARNING = "warning"
    CRITICAL = "critical"


def process_rss_bytes() -> int:
    """Current resident set size of this process in bytes.

    Reads ``/proc/self/statm`` (Linux, a few microseconds); elsewhere falls back to the peak RSS
    that ``getrusage`` reports, which over-states the current value but never under-states it.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def next_level(
    current: MemoryLevel, rss_mb: float, warning_mb: float, critical_mb: float
) -> MemoryLevel:
    """The level after a reading of ``rss_mb``.

    Critical is entered above ``critical_mb`` and left only once back at or under
    ``warning_mb`` (hysteresis), so shedding goes on until memory has really recovered.
    All figures are MiB.
    """
    if rss_mb > critical_mb:
        return MemoryLevel.CRITICAL
    if rss_mb > warning_mb:
        return MemoryLevel.CRITICAL if current is MemoryLevel.CRITICAL else MemoryLevel.WARNING
    return MemoryLevel.NORMAL

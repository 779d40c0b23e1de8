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
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class RSSReader:
    """:func:`process_rss_bytes` with ``/proc/self/statm`` kept open: one ``pread`` a reading.

    Reading RSS is in every ``/stats`` answer, where opening the file each time cost as much as
    the rest of the answer. Opened on first use, reopened after a fork (``/proc/self`` is
    resolved when the file is opened); :meth:`close` it when done (the broadcaster does).
    """

    def __init__(self) -> None:
        self._fd = -1
        self._pid = -1

    def __call__(self) -> int:
        try:
            if self._pid != os.getpid():
                self.close()
                self._fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
                self._pid = os.getpid()
            return int(os.pread(self._fd, 64, 0).split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return process_rss_bytes()

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = -1


def next_level(
    current: MemoryLevel,
    rss_mb: float,
    held_mb: float,
    *,
    warning_mb: float,
    critical_mb: float,
    held_threshold_mb: float,
) -> MemoryLevel:
    """The level after a reading of ``rss_mb`` (RSS, less what the broadcaster cannot free) and
    ``held_mb`` (``heldBytes``).

    Held bytes above ``held_threshold_mb`` are critical. RSS enters critical above
    ``critical_mb`` and leaves it only once back at or under ``warning_mb`` (hysteresis), so
    shedding goes on until memory has really recovered. All figures are MiB.
    """
    if held_mb > held_threshold_mb or rss_mb > critical_mb:
        return MemoryLevel.CRITICAL
    if rss_mb > warning_mb:
        return MemoryLevel.CRITICAL if current is MemoryLevel.CRITICAL else MemoryLevel.WARNING
    return MemoryLevel.NORMAL

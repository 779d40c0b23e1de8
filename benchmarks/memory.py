"""Memory that is what it says (issue 10): RSS against ``heldBytes``, and recovery after a burst.

Each measurement runs in a fresh subprocess, one per data shape, so one shape's heap does not
flatter another's:

- ratio: publish events of about 8 KB (built fresh each time, as a server decodes each
  request) into 16 sessions until ``heldBytes`` reaches 8 MiB; print RSS growth / heldBytes.
- burst: 900 publishes of 80 KB into 9 sessions with the thresholds set just above the starting
  RSS, so the burst reaches critical; then time from the burst's end and from the last shed
  to the level being back to normal, against ``memory_check_interval``.

    .venv/bin/python benchmarks/memory.py            # every shape, both measurements
    .venv/bin/python benchmarks/memory.py --shapes string floats
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable

import trio

SHAPES: dict[str, Callable[[int], object]] = {
    "string": lambda size: "x" * size,
    "floats": lambda size: [random.random() * 1000 for _ in range(size // 19)],
    "empty lists": lambda size: [[] for _ in range(size // 3)],
    "empty objects": lambda size: [{} for _ in range(size // 3)],
}
RATIO_EVENT_BYTES = 8 * 1024
RATIO_TARGET_HELD = 8 * 1024 * 1024
BURST_EVENTS, BURST_EVENT_BYTES, BURST_SESSIONS = 900, 80 * 1000, 9
CHECK_INTERVAL = 0.5
MiB = 1024 * 1024


def rss() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def big_config(**extra: object) -> object:
    from trio_sse import BroadcasterConfig

    values: dict[str, object] = {
        "max_event_bytes": 96 * 1024,
        "max_history_per_session": 1000,
        "max_history_bytes_per_session": 256 * MiB,
        "max_queue_bytes": 256 * MiB,
        "event_ttl": None,
        **extra,
    }
    known = set(BroadcasterConfig.__dataclass_fields__)
    return BroadcasterConfig(**{k: v for k, v in values.items() if k in known})


async def ratio(shape: str) -> dict[str, object]:
    from trio_sse import open_broadcaster

    make = SHAPES[shape]
    async with open_broadcaster(big_config()) as b:  # type: ignore[arg-type]
        await b.publish("warm-up", "t", make(RATIO_EVENT_BYTES))
        before, n = rss(), 0
        while b.get_stats()["heldBytes"] < RATIO_TARGET_HELD:
            await b.publish(f"s{n % 16}", "t", make(RATIO_EVENT_BYTES))
            n += 1
        held = b.get_stats()["heldBytes"]
        grown = rss() - before
    return {"events": n, "held_mib": held / MiB, "rss_mib": grown / MiB, "ratio": grown / held}


async def burst(shape: str) -> dict[str, object]:
    from trio_sse import open_broadcaster

    make = SHAPES[shape]
    start_mb = rss() / MiB
    config = big_config(
        memory_warning_threshold_mb=start_mb + 20,
        memory_critical_threshold_mb=start_mb + 40,
        memory_held_threshold_mb=10_000.0,  # let RSS drive it, as in the issue
        memory_check_interval=CHECK_INTERVAL,
    )
    async with open_broadcaster(config) as b:  # type: ignore[arg-type]
        started = time.perf_counter()
        levels = set()
        for n in range(BURST_EVENTS):
            await b.publish(f"s{n % BURST_SESSIONS}", "t", make(BURST_EVENT_BYTES))
            levels.add(b.memory_level.value)
        ended = time.perf_counter()
        peak_mb = rss() / MiB
        await trio.sleep(CHECK_INTERVAL)  # at least one check sees the burst
        sheds, shed_at, normal_at = b.get_stats()["metrics"]["memorySheds"], ended, None
        while time.perf_counter() < ended + 60 and normal_at is None:
            now = time.perf_counter()
            stats = b.get_stats()
            if stats["metrics"]["memorySheds"] != sheds:
                sheds, shed_at = stats["metrics"]["memorySheds"], now
            if stats["memoryLevel"] == "normal":
                normal_at = now
            levels.add(stats["memoryLevel"])
            await trio.sleep(0.005)
        stats = b.get_stats()
        after_mb = rss() / MiB
    return {
        "reached_critical": "critical" in levels,
        "burst_s": ended - started,
        "start_mib": start_mb,
        "peak_mib": peak_mb,
        "after_mib": after_mb,
        "sheds": sheds,
        "events_left": stats["totalEvents"],
        "normal_after_burst_s": None if normal_at is None else normal_at - ended,
        "normal_after_last_shed_s": None if normal_at is None else max(0.0, normal_at - shed_at),
    }


def child(kind: str, shape: str) -> None:
    result = trio.run(ratio if kind == "ratio" else burst, shape)
    print(json.dumps(result))


def run(kind: str, shape: str) -> dict[str, object]:
    argv = [sys.executable, __file__, "--child", kind, shape]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def seconds(value: object) -> str:
    return "never (60 s)" if value is None else f"{value:.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"load average {os.getloadavg()}")
    print(f"{'shape':<14} {'events':>6} {'heldBytes MiB':>13} {'RSS growth MiB':>14} {'ratio':>6}")
    for shape in args.shapes:
        r = run("ratio", shape)
        print(
            f"{shape:<14} {r['events']:>6} {r['held_mib']:>13.1f} {r['rss_mib']:>14.1f}"
            f" {r['ratio']:>6.2f}"
        )
    print(
        f"\nburst: {BURST_EVENTS} x {BURST_EVENT_BYTES} B; memory_check_interval {CHECK_INTERVAL}s"
    )
    print("RSS in MiB; thresholds: warning start + 20, critical start + 40")
    print(
        f"{'shape':<14} {'critical':>8} {'start':>5} {'peak':>5} {'after':>5}"
        f" {'sheds':>5} {'left':>5} {'normal after burst':>18} {'after last shed':>15}"
    )
    for shape in args.shapes:
        r = run("burst", shape)
        burst_end, last_shed = r["normal_after_burst_s"], r["normal_after_last_shed_s"]
        print(
            f"{shape:<14} {r['reached_critical']!s:>8}"
            f" {r['start_mib']:>5.0f} {r['peak_mib']:>5.0f} {r['after_mib']:>5.0f}"
            f" {r['sheds']:>5} {r['events_left']:>5} {seconds(burst_end):>18}"
            f" {seconds(last_shed):>15}"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()

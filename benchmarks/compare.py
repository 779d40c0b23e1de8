"""trio-sse against peer SSE servers, end to end, under the same load client.

Run from the project root, after ``pip install -e '.[bench]'``::

    .venv/bin/python benchmarks/compare.py           # full run, about 4 minutes
    .venv/bin/python benchmarks/compare.py --quick   # smoke check, under 40 s
    .venv/bin/python benchmarks/compare.py --servers trio-sse,node
    .venv/bin/python benchmarks/compare.py --audience-processes 2   # streams read by 2

Each server in turn runs in its own child process on 127.0.0.1 and a free port, is probed through
``/proc`` and driven by ``http_load.py``'s load client, then stopped (SIGTERM, SIGKILL if it
hangs) whatever happened. The load client is this process (the driver, on trio: httpx publishers,
``/stats``, the idle and churn streams) and the audience: ``audience.py`` in one child process
(``--audience-processes N``: N, each its share), which reads the fan-out and latency streams in
plain Python on ``select.epoll``, with a real chunked/SSE decoder, at about 5-6 CPU-us per read.
Read by one trio task per stream, as before, those streams cost the client a whole core at about
50,000 deliveries/s and hid the fastest servers. ``client CPU`` is the audience's CPU time
(``/proc/<pid>/stat``, every process summed), ``driver CPU`` this process's. The servers
(``SERVERS``):

- ``trio-sse``: ``trio_sse.serve``, launched exactly as ``http_load.py`` launches it;
- ``sse-starlette``: ``peers/starlette_server.py``, sse-starlette on uvicorn;
- ``node``: ``peers/node_server.js``, Node.js ``http`` and nothing else;
- ``minimal-trio``: ``peers/minimal_trio.py``, trio writing pre-encoded frames to its sockets.

Scenarios, in order, for each server (``FULL`` / ``QUICK`` hold the sizes):

1. idle: K streams (5,000, or 1,000 if the fd limit is too low; quick: 1,000) that read nothing
   after ``retry:``; server RSS growth / K, 1 s after ``/stats`` shows them all.
2. fan-out: 1,000 streams, read by the audience; E events (100; quick: 50) published back
   to back with ``publishers`` (16) POSTs in flight. deliveries/s = 1,000 x E / (first POST until
   the last subscriber has all E); server CPU-us per delivery = the server's CPU over that
   interval (publish requests included) / deliveries. Median of ``fanout_rounds`` (5; quick: 1).
   The full run adds one round of 100 events with 1 POST in flight (each event written alone).
3. latency: the same streams, 50 events/s for 10 s (quick: 2 s), each POST its own task; latency
   = arrival ``time.time()`` in the audience - the stamp taken just before the POST. p50 / p99 /
   max. Everything
   stops ``latency_drain`` s after the publishing ends; what did not arrive by then is reported
   (the percentiles are then lower bounds).
4. churn: 50 workers open a stream, read to ``retry:`` and close it, C cycles (20,000; quick: 500)
   while 20 events/s are published; then ``/stats`` must come back to 0 subscribers (waited for up
   to 5 s). RSS growth and cycles/s are over the last 90% of the cycles (the first tenth lets
   memory that the earlier scenarios freed be reused first, so the growth shows leaks).
5. scaling: for each count in ``sweep`` (250, 1,000, 4,000; quick: 250, 2,000), that many
   streams read by the audience; one fan-out round of ``sweep_events`` events (100; quick: 20)
   with 16 POSTs in flight (deliveries/s, CPU-us per delivery), then a latency round of 20
   events/s for 5 s (quick: 1 s) (p99; a lower bound if some did not arrive within
   ``latency_drain`` s).

It prints one table with a column per server and a scaling table, writes
``benchmarks/results/compare.json`` (quick: ``compare-quick.json``) and draws
``docs/performance-compare.png`` and ``docs/performance-compare-scaling.png`` (quick:
``benchmarks/results/compare-quick.png`` and ``compare-quick-scaling.png``). Before the full run
it waits up to 3 minutes for the 1-minute load average to fall to 1.5; the load averages are in
the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import trio
from audience import HOST, raise_fd_limit
from http_load import (
    POOL,
    Audience,
    KiB,
    LoadClient,
    Results,
    Round,
    Scenario,
    ServerProcess,
    Tally,
    Usage,
    add_audience_option,
    churn_workers,
    close_streams,
    deliver,
    export_trio_sse,
    fanout_round,
    fmt,
    free_port,
    open_audience,
    report_header,
    server_warnings,
    warm_up,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
RESULTS_DIR = BENCH / "results"
PLOT = ROOT / "docs" / "performance-compare.png"
LOAD_LIMIT = 1.5
LOAD_WAIT = 180.0
FD_MARGIN = 1024
"""Descriptors beyond the idle connections that the client and a server may need."""


def _python(script: str, *options: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, str(PEERS / script), str(port), *options]


SERVERS: dict[str, Callable[[int], list[str] | None]] = {
    "trio-sse": lambda port: None,  # http_load.ServerProcess's own command
    "sse-starlette": _python("starlette_server.py"),
    "node": lambda port: ["node", str(PEERS / "node_server.js"), str(port)],
    "minimal-trio": _python("minimal_trio.py"),
    "sse-starlette-batched": _python("starlette_server.py", "--batch"),
}
"""Command of each server for a port (None: ``trio_sse.serve`` as ``http_load.py`` runs it)."""
DEFAULT_SERVERS = ("trio-sse", "sse-starlette", "node", "minimal-trio")


@dataclass(frozen=True)
class Plan:
    """How much work each scenario does, for every server."""

    subscribers: int
    idle_connections: int
    fanout_events: int
    fanout_rounds: int
    publishers: int
    single_publisher_events: int
    """Events of the extra round with one POST in flight; 0 skips it."""
    latency_rate: float
    latency_seconds: float
    latency_drain: float
    churn_cycles: int
    churn_rate: float
    deadline: float
    """Seconds one server may take for all its scenarios before they are cancelled."""
    sweep: tuple[int, ...] = ()
    """Subscriber counts of the scaling scenario (empty: skipped)."""
    sweep_events: int = 100
    """Events of each scaling fan-out round, whatever the number of subscribers."""
    sweep_rate: float = 20.0
    """Events/s of each scaling latency round."""
    sweep_seconds: float = 5.0
    """Seconds of publishing in each scaling latency round (then ``latency_drain`` at most)."""
    audience_processes: int = 1
    """Processes reading the ``subscribers`` streams (``audience.py``), each its share."""


FULL = Plan(
    subscribers=1000,
    idle_connections=5000,
    fanout_events=100,
    fanout_rounds=5,
    publishers=16,
    single_publisher_events=100,
    latency_rate=50.0,
    latency_seconds=10.0,
    latency_drain=10.0,
    churn_cycles=20000,
    churn_rate=20.0,
    deadline=240.0,
    sweep=(250, 1000, 4000),
)
QUICK = Plan(
    subscribers=1000,
    idle_connections=1000,
    fanout_events=50,
    fanout_rounds=1,
    publishers=16,
    single_publisher_events=0,
    latency_rate=50.0,
    latency_seconds=2.0,
    latency_drain=5.0,
    churn_cycles=500,
    churn_rate=20.0,
    deadline=60.0,
    sweep=(250, 2000),
    sweep_events=20,
    sweep_seconds=1.0,
)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str


def rows(plan: Plan) -> list[Row]:
    """The table's rows, in order."""
    fanout = f"{plan.subscribers:,} subs x {plan.fanout_events} events, {plan.publishers} POSTs"
    latency = f"{plan.subscribers:,} subs x {plan.latency_rate:g}/s, {plan.latency_seconds:g} s"
    churn = f"{plan.churn_cycles:,} cycles, {plan.churn_rate:g} events/s"
    head = [
        Row("deliveries_per_s", f"fan-out deliveries/s ({fanout})", "1/s"),
        Row("cpu_us_per_delivery", "server CPU-us per delivery", "us"),
        Row("fanout_received_pct", "fan-out received, % of expected", "%"),
        Row("fanout_server_cpu_pct", "fan-out server CPU, % of one core", "%"),
        Row("fanout_client_cpu_pct", "fan-out client CPU, % of one core", "%"),
        Row("fanout_driver_cpu_pct", "fan-out driver CPU, % of one core", "%"),
        Row("deliveries_per_read", "fan-out deliveries per client read", ""),
    ]
    single = [
        Row("deliveries_per_s_1", "deliveries/s, 1 POST at once", "1/s"),
        Row("cpu_us_per_delivery_1", "server CPU-us per delivery, 1 POST at once", "us"),
    ]
    tail = [
        Row("latency_p50_ms", f"latency p50 ({latency})", "ms"),
        Row("latency_p99_ms", "latency p99", "ms"),
        Row("latency_max_ms", "latency max", "ms"),
        Row("latency_received_pct", "latency received, % of expected", "%"),
        Row("idle_kib", f"RSS per idle connection ({plan.idle_connections:,} open)", "KiB"),
        Row("churn_cycles_per_s", f"churn cycles/s ({churn})", "1/s"),
        Row("churn_failed", "churn failed cycles", ""),
        Row("churn_subscribers_after", "subscribers after churn (5 s wait)", ""),
        Row("churn_seconds_to_zero", "seconds until 0 subscribers", "s"),
        Row("churn_rss_growth_mib", "RSS growth, last 90% of churn", "MiB"),
        Row("worst_wait_pct", "server waiting for a CPU, worst scenario", "%"),
    ]
    return [*head, *(single if plan.single_publisher_events else []), *tail]


@dataclass
class Outcome:
    """What one server's run produced."""

    figures: dict[str, float] = field(default_factory=dict)
    sweep: dict[int, dict[str, float]] = field(default_factory=dict)
    """Scaling figures by subscriber count."""
    results: Results = field(default_factory=Results)
    run: dict[str, Any] = field(default_factory=dict)

    def wait(self, usage: Usage) -> None:
        share = 100 * usage.server_wait / max(usage.seconds, 1e-9)
        self.figures["worst_wait_pct"] = max(self.figures.get("worst_wait_pct", 0.0), share)


# -- scenarios ------------------------------------------------------------------------------


async def idle(client: LoadClient, outcome: Outcome, count: int) -> None:
    async with Scenario(client, outcome.results, "idle"):
        before = client.server.sample()
        streams = await client.open_streams(count)
        try:
            await trio.sleep(1.0)
            held = client.server.sample()
        finally:
            await close_streams(streams)
        await client.expect_subscribers(0)
    outcome.figures["idle_kib"] = (held.server_rss - before.server_rss) / count / KiB


def cpu_us(done: Round) -> float:
    return done.usage.server_cpu / max(done.received, 1) * 1e6


def median(values: list[float]) -> float:
    return statistics.median(values)


async def fanout(client: LoadClient, outcome: Outcome, audience: Audience, plan: Plan) -> None:
    async with Scenario(client, outcome.results, "fan-out") as scenario:
        rounds = [
            await fanout_round(client, audience, f"f{n}", plan.fanout_events, plan.publishers)
            for n in range(plan.fanout_rounds)
        ]
        scenario.note_rounds(rounds)
    outcome.figures.update(
        deliveries_per_s=median([r.rate for r in rounds]),
        cpu_us_per_delivery=median([cpu_us(r) for r in rounds]),
        fanout_received_pct=median([100 * r.received / r.expected for r in rounds]),
        fanout_server_cpu_pct=median([r.busy(r.usage.server_cpu) for r in rounds]),
        fanout_client_cpu_pct=median([r.busy(r.usage.client_cpu) for r in rounds]),
        fanout_driver_cpu_pct=median([r.busy(r.usage.driver_cpu) for r in rounds]),
        deliveries_per_read=median([r.received / max(r.reads, 1) for r in rounds]),
    )
    for done in rounds:
        outcome.wait(done.usage)


async def single_publisher(
    client: LoadClient, outcome: Outcome, audience: Audience, events: int
) -> None:
    async with Scenario(client, outcome.results, "fan-out, 1 POST at once") as scenario:
        done = await fanout_round(client, audience, "s1", events, 1)
        scenario.note_rounds([done])
    outcome.figures.update(deliveries_per_s_1=done.rate, cpu_us_per_delivery_1=cpu_us(done))
    outcome.wait(done.usage)


async def latency(client: LoadClient, outcome: Outcome, audience: Audience, plan: Plan) -> None:
    async with Scenario(client, outcome.results, "latency") as scenario:
        count = round(plan.latency_rate * plan.latency_seconds)
        tally = await audience.expect("lat", count, latencies=True)
        publish = client.publish_paced("lat", plan.latency_rate, count)
        limit = plan.latency_seconds + plan.latency_drain
        done = await deliver(client, audience, tally, publish, limit)
        scenario.note_rounds([done])
    outcome.figures.update(
        latency_p50_ms=tally.latency["p50"] * 1e3,
        latency_p99_ms=tally.latency["p99"] * 1e3,
        latency_max_ms=tally.latency["max"] * 1e3,
        latency_received_pct=100 * done.received / done.expected,
    )
    outcome.wait(done.usage)
    if not done.complete:
        outcome.results.warnings.append(
            f"latency: {done.received:,} of {done.expected:,} deliveries arrived within "
            f"{limit:g} s of the first POST; the percentiles are lower bounds"
        )


async def with_audience(client: LoadClient, outcome: Outcome, plan: Plan) -> None:
    """Fan-out and latency on the same ``plan.subscribers`` streams (the audience's)."""
    async with open_audience(client, plan.subscribers, plan.audience_processes) as audience:
        await fanout(client, outcome, audience, plan)
        if plan.single_publisher_events:
            await single_publisher(client, outcome, audience, plan.single_publisher_events)
        await latency(client, outcome, audience, plan)
    await client.expect_subscribers(0)


async def scaling(client: LoadClient, outcome: Outcome, plan: Plan) -> None:
    """For each count in ``plan.sweep``: a fan-out round and a latency round on that many."""
    for count in plan.sweep:
        async with (
            open_audience(client, count, plan.audience_processes) as audience,
            Scenario(client, outcome.results, f"scaling, {count:,}") as scenario,
        ):
            burst = await fanout_round(
                client, audience, f"x{count}", plan.sweep_events, plan.publishers
            )
            paced = await latency_round(client, audience, f"y{count}", plan)
            scenario.note_rounds([burst, paced.round])
        await client.expect_subscribers(0)
        outcome.sweep[count] = {
            "deliveries_per_s": burst.rate,
            "cpu_us_per_delivery": cpu_us(burst),
            "latency_p99_ms": paced.tally.latency["p99"] * 1e3,
            "latency_received_pct": 100 * paced.round.received / paced.round.expected,
        }
        outcome.wait(burst.usage)
        outcome.wait(paced.round.usage)


@dataclass(frozen=True)
class Paced:
    round: Round
    tally: Tally


async def latency_round(client: LoadClient, audience: Audience, tag: str, plan: Plan) -> Paced:
    """``plan.sweep_rate`` events/s for ``plan.sweep_seconds``, stamped, on ``audience``."""
    count = max(1, round(plan.sweep_rate * plan.sweep_seconds))
    tally = await audience.expect(tag, count, latencies=True)
    publish = client.publish_paced(tag, plan.sweep_rate, count)
    done = await deliver(client, audience, tally, publish, plan.sweep_seconds + plan.latency_drain)
    return Paced(done, tally)


async def churn(client: LoadClient, outcome: Outcome, plan: Plan) -> None:
    """Cycles under publishing; RSS is compared from the end of the first tenth to the end."""
    settle = plan.churn_cycles // 10
    async with Scenario(client, outcome.results, "churn"):
        async with trio.open_nursery() as nursery:
            budget = round(plan.churn_rate * plan.deadline)
            nursery.start_soon(client.publish_paced, "churn", plan.churn_rate, budget)
            completed = await churn_workers(client, settle)
            start = client.server.sample()
            completed += await churn_workers(client, plan.churn_cycles - settle)
            nursery.cancel_scope.cancel()
        usage = Usage.between(start, client.server.sample())
        seconds = await client.expect_subscribers(0, timeout=5.0)
        after = client.server.sample()
        stats = await client.stats()
    outcome.figures.update(
        churn_cycles_per_s=(plan.churn_cycles - settle) / usage.seconds,
        churn_failed=plan.churn_cycles - completed,
        churn_subscribers_after=stats["totalSubscribers"],
        churn_seconds_to_zero=seconds,
        churn_rss_growth_mib=(after.server_rss - start.server_rss) / KiB / KiB,
    )
    outcome.wait(usage)


async def measure(server: ServerProcess, plan: Plan, outcome: Outcome) -> None:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as http:
        client = LoadClient(http, server)
        with trio.fail_after(plan.deadline):
            await warm_up(client)
            await idle(client, outcome, plan.idle_connections)
            await with_audience(client, outcome, plan)
            await churn(client, outcome, plan)
            await scaling(client, outcome, plan)


# -- running the servers --------------------------------------------------------------------


def run_server(name: str, plan: Plan, env: dict[str, str] | None = None) -> Outcome:
    """Launch one server (``trio-sse@REV``: trio-sse as of git revision REV), measure it,
    stop it whatever happened."""
    print(f"{name}:", file=sys.stderr)
    outcome = Outcome(run={"load_average_at_launch": os.getloadavg()})
    started = time.perf_counter()
    port = free_port()
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as tree:
        if name.startswith("trio-sse@"):
            env = export_trio_sse(name.partition("@")[2], Path(tree))
            outcome.run["trio_sse_served_from"] = f"git archive {env['TRIO_SSE_EXPORTED_COMMIT']}"
        server = ServerProcess(port, log, SERVERS[name.partition("@")[0]](port), env)
        try:
            trio.run(measure, server, plan, outcome)
        except Exception as error:  # keep what was measured, and why it stopped
            outcome.run["error"] = "".join(traceback.format_exception(error))
            outcome.results.warnings.append(f"run stopped: {error!r} (traceback in the JSON)")
            print(outcome.run["error"], file=sys.stderr)
        finally:
            outcome.run["server_stop"] = stop = server.stop()
            lines = server.log_lines()
    if stop["killed"] or stop["exit_code"] != 0:
        outcome.results.warnings.append(f"server stop: {stop}")
    outcome.run["server_log_warnings"] = server_warnings(lines)
    outcome.results.warnings += [f"server log: {line}" for line in server_warnings(lines)]
    outcome.run["wall_seconds"] = round(time.perf_counter() - started, 1)
    return outcome


def fit_idle(plan: Plan) -> Plan:
    """``plan`` with fewer idle connections if the fd limit cannot hold them (and a margin)."""
    raise_fd_limit(plan.idle_connections + FD_MARGIN)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= plan.idle_connections + FD_MARGIN:
        return plan
    print(f"fd limit {soft}: 1,000 idle connections instead", file=sys.stderr)
    return Plan(**{**asdict(plan), "idle_connections": 1000})


def wait_for_quiet(limit: float = LOAD_LIMIT, longest: float = LOAD_WAIT) -> dict[str, Any]:
    """Wait (``longest`` seconds at most) until the 1-minute load average is at most ``limit``."""
    before = os.getloadavg()
    started = time.monotonic()
    while os.getloadavg()[0] > limit and time.monotonic() - started < longest:
        print(f"load average {os.getloadavg()[0]:.2f} > {limit}: waiting", file=sys.stderr)
        time.sleep(10)
    return {
        "load_average_before_wait": before,
        "waited_for_load_seconds": round(time.monotonic() - started, 1),
        "load_average_at_start": os.getloadavg(),
    }


# -- reporting ------------------------------------------------------------------------------


def table(plan: Plan, outcomes: dict[str, Outcome]) -> str:
    names = list(outcomes)
    width = max(len(row.label) for row in rows(plan)) + 1
    widths = [max(15, len(name) + 2) for name in names]
    head = f"{'figure':<{width}} {'unit':<4}" + "".join(
        f"{n:>{w}}" for n, w in zip(names, widths, strict=True)
    )
    lines = [head, "-" * len(head)]
    for row in rows(plan):
        values = [outcomes[n].figures.get(row.key, math.nan) for n in names]
        cells = "".join(f"{fmt(v):>{w}}" for v, w in zip(values, widths, strict=True))
        lines.append(f"{row.label:<{width}} {row.unit:<4}{cells}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    names = ["trio-sse", "trio", "hypercorn", "quart", "quart-trio", "h11", "httpx"]
    names += ["sse-starlette", "starlette", "uvicorn", "anyio", "matplotlib"]
    found = {name: metadata.version(name) for name in names}
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
    return {"python": platform.python_version(), "node": node.stdout.strip(), **found}


SWEEP_COLUMNS = (
    ("deliveries_per_s", "deliveries/s", "{:,.0f}"),
    ("cpu_us_per_delivery", "CPU-us", "{:.1f}"),
    ("latency_p99_ms", "p99 ms", "{:,.0f}"),
)


def sweep_table(plan: Plan, outcomes: dict[str, Outcome]) -> str:
    """Scaling: one line per server and subscriber count."""
    rate = f"{plan.sweep_rate:g} events/s for {plan.sweep_seconds:g} s"
    lines = [
        f"scaling: fan-out of {plan.sweep_events} events ({plan.publishers} POSTs in flight), "
        f"then latency at {rate}",
        f"{'server':<15} {'subscribers':>11}"
        + "".join(f"{heading:>14}" for _, heading, _ in SWEEP_COLUMNS),
    ]
    for name, outcome in outcomes.items():
        for count, figures in outcome.sweep.items():
            cells = "".join(f"{fmt.format(figures[key]):>14}" for key, _, fmt in SWEEP_COLUMNS)
            partial_mark = "" if figures["latency_received_pct"] >= 100 else " (p99 lower bound)"
            lines.append(f"{name:<15} {count:>11,}{cells}{partial_mark}")
    return "\n".join(lines)


def report(plan: Plan, quick: bool, run: dict[str, Any], outcomes: dict[str, Outcome]) -> Any:
    return {
        **report_header("compare", quick, plan, versions()),
        "rows": [asdict(row) for row in rows(plan)],
        **run,
        "servers": {
            name: {
                "figures": {k: None if math.isnan(v) else v for k, v in o.figures.items()},
                "sweep": o.sweep,
                **o.run,
                "notes": o.results.notes,
                "warnings": o.results.warnings,
            }
            for name, o in outcomes.items()
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="less of everything, no load wait")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, of {', '.join(SERVERS)} (default: the first four)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: benchmarks/results/)")
    parser.add_argument("--plot", type=Path, help="PNG file (default: docs/ or results/)")
    parser.add_argument(
        "--trio-sse-at",
        metavar="REVISION",
        help="also run trio-sse as of this git revision (git archive), beside the work tree's: "
        "before and after a change, in one run",
    )
    add_audience_option(parser)
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="only redraw the plots of a results file"
    )
    args = parser.parse_args(argv)
    if args.replot:
        replot(args.replot, args.plot or PLOT)
        return
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    if args.trio_sse_at:
        names.insert(
            names.index("trio-sse") + 1 if "trio-sse" in names else 0,
            f"trio-sse@{args.trio_sse_at}",
        )
    unknown = sorted({name.partition("@")[0] for name in names} - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {list(SERVERS)}")
    if args.audience_processes < 1:
        parser.error("--audience-processes must be at least 1")
    suffix = "-quick" if args.quick else ""
    output = args.output or RESULTS_DIR / f"compare{suffix}.json"
    plot_path = args.plot or (RESULTS_DIR / "compare-quick.png" if args.quick else PLOT)
    plan = fit_idle(
        replace(QUICK if args.quick else FULL, audience_processes=args.audience_processes)
    )
    run: dict[str, Any] = (
        {"load_average_at_start": os.getloadavg()} if args.quick else wait_for_quiet()
    )
    started = time.perf_counter()
    outcomes = {name: run_server(name, plan) for name in names}
    run["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(table(plan, outcomes))
    if plan.sweep:
        print(sweep_table(plan, outcomes))
    for name, o in outcomes.items():
        for warning in o.results.warnings:
            print(f"WARNING {name}: {warning}")
    load = ", ".join(f"{x:.2f}" for x in run["load_average_at_start"])
    print(f"idle connections {plan.idle_connections:,}; {HOST}; load average at start {load}")
    print(f"wall time {run['wall_seconds']:.1f} s")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report(plan, args.quick, run, outcomes), indent=2) + "\n")
    print(f"written to {output}")
    draw(plan, outcomes, run, args.quick, plot_path)
    print(f"plot in {plot_path}")
    if plan.sweep:
        scaling_path = plot_path.with_name(f"{plot_path.stem}-scaling.png")
        draw_scaling(plan, outcomes, run, args.quick, scaling_path)
        print(f"scaling plot in {scaling_path}")
    if any("error" in o.run for o in outcomes.values()):
        sys.exit(1)


# -- the plot -------------------------------------------------------------------------------


def replot(results: Path, plot_path: Path) -> None:
    """Draw the plots of a results file again (e.g. after a change to the drawing code)."""
    saved = json.loads(results.read_text())
    plan = Plan(**saved["plan"])
    outcomes = {
        name: Outcome(
            figures=server["figures"],
            sweep={int(count): figures for count, figures in server["sweep"].items()},
        )
        for name, server in saved["servers"].items()
    }
    run = {"load_average_at_start": saved["load_average_at_start"]}
    draw(plan, outcomes, run, saved["quick"], plot_path)
    if plan.sweep:
        draw_scaling(
            plan,
            outcomes,
            run,
            saved["quick"],
            plot_path.with_name(f"{plot_path.stem}-scaling.png"),
        )
    print(f"plots redrawn from {results}")


COLORS = {
    "trio-sse": "#d62728",
    "sse-starlette": "#7f7f7f",
    "sse-starlette-batched": "#bcbcbc",
    "node": "#2ca02c",
}
OTHER_COLOR = "#1f77b4"
P99_GOAL_MS = 100.0


def draw(
    plan: Plan, outcomes: dict[str, Outcome], run: dict[str, Any], quick: bool, path: Path
) -> None:
    """Bar charts: deliveries/s, CPU-us per delivery, latency p99, one bar per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), layout="constrained")
    names = list(outcomes)
    fanout = f"{plan.subscribers:,} subscribers, {plan.publishers} POSTs in flight"
    bars(axes[0], names, outcomes, "deliveries_per_s", "{:,.0f}")
    axes[0].yaxis.set_major_formatter(thousands())
    axes[0].set_title(f"fan-out deliveries/s (higher is better)\n{fanout}")
    bars(axes[1], names, outcomes, "cpu_us_per_delivery", "{:.1f}")
    axes[1].set_title("server CPU-us per delivery (lower is better)\nsame fan-out rounds")
    latency_bars(axes[2], names, outcomes)
    rate = f"{plan.subscribers:,} subscribers x {plan.latency_rate:g} events/s"
    axes[2].set_title(f"latency p99, ms, log scale (lower is better)\n{rate}")
    save(fig, "trio-sse and peer SSE servers", run, quick, path)


def draw_scaling(
    plan: Plan, outcomes: dict[str, Outcome], run: dict[str, Any], quick: bool, path: Path
) -> None:
    """Lines: deliveries/s and latency p99 against the number of subscribers, per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for name, outcome in outcomes.items():
        counts = sorted(outcome.sweep)
        style = {"color": COLORS.get(name, OTHER_COLOR), "marker": "o", "label": name}
        axes[0].plot(counts, [outcome.sweep[c]["deliveries_per_s"] for c in counts], **style)
        axes[1].plot(counts, [outcome.sweep[c]["latency_p99_ms"] for c in counts], **style)
    axes[0].set_title(
        f"fan-out deliveries/s (higher is better)\n"
        f"{plan.sweep_events} events per round, {plan.publishers} POSTs in flight"
    )
    axes[0].yaxis.set_major_formatter(thousands())
    axes[0].set_ylim(bottom=0)
    axes[1].set_title(
        f"latency p99, ms, log scale (lower is better)\n{plan.sweep_rate:g} events/s "
        f"for {plan.sweep_seconds:g} s (hollow: some never arrived)"
    )
    axes[1].set_yscale("log")
    axes[1].yaxis.set_major_formatter(thousands())
    axes[1].axhline(P99_GOAL_MS, color="black", linestyle="--", linewidth=1)
    for name, outcome in outcomes.items():
        short = [c for c, f in outcome.sweep.items() if f["latency_received_pct"] < 100]
        axes[1].plot(
            short,
            [outcome.sweep[c]["latency_p99_ms"] for c in short],
            linestyle="none",
            marker="o",
            markersize=10,
            markerfacecolor="white",
            color=COLORS.get(name, OTHER_COLOR),
        )
    for axis in axes:
        axis.set_xscale("log")
        axis.set_xticks(list(plan.sweep), [f"{c:,}" for c in plan.sweep])
        axis.minorticks_off()
        axis.set_xlabel("subscribers")
        axis.legend(fontsize=9)
    save(fig, "Scaling with subscribers", run, quick, path)


def save(fig: Any, title: str, run: dict[str, Any], quick: bool, path: Path) -> None:
    """Title ``fig`` with the run's conditions, write it to ``path`` and free it."""
    import matplotlib.pyplot as plt

    load = run["load_average_at_start"][0]
    kind = "quick run" if quick else "full run"
    fig.suptitle(
        f"{title}, end to end on loopback, {os.cpu_count()} cores "
        f"({kind}, {datetime.now(UTC):%Y-%m-%d}, load average {load:.2f} at start)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def thousands() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")


def bars(axis: Any, names: list[str], outcomes: dict[str, Outcome], key: str, fmt: str) -> Any:
    values = [outcomes[n].figures.get(key, math.nan) for n in names]
    colors = [COLORS.get(n, OTHER_COLOR) for n in names]
    drawn = axis.bar(names, [0 if math.isnan(v) else v for v in values], color=colors)
    labels = ["n/a" if math.isnan(v) else fmt.format(v) for v in values]
    axis.bar_label(drawn, labels=labels, padding=2, fontsize=9)
    axis.margins(y=0.15)
    axis.tick_params(axis="x", labelsize=9, labelrotation=15)
    return drawn


def latency_bars(axis: Any, names: list[str], outcomes: dict[str, Outcome]) -> None:
    """p99 bars; hatched and marked with >= where some deliveries never arrived."""
    from matplotlib.ticker import NullFormatter

    drawn = bars(axis, names, outcomes, "latency_p99_ms", "{:,.0f}")
    labels = []
    for bar, name in zip(drawn, names, strict=True):
        figures = outcomes[name].figures
        value = figures.get("latency_p99_ms", math.nan)
        lower_bound = figures.get("latency_received_pct", 100.0) < 100.0
        if lower_bound:
            bar.set_hatch("//")
        prefix = ">= " if lower_bound else ""
        labels.append("n/a" if math.isnan(value) else f"{prefix}{value:,.0f}")
    for text, label in zip(axis.texts, labels, strict=False):
        text.set_text(label)
    axis.set_yscale("log")
    axis.set_ylim(bottom=1)
    axis.yaxis.set_major_formatter(thousands())
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.axhline(P99_GOAL_MS, color="black", linestyle="--", linewidth=1)
    axis.annotate(
        f"goal {P99_GOAL_MS:g} ms",
        (0, P99_GOAL_MS),
        xycoords=("axes fraction", "data"),
        xytext=(4, 3),
        textcoords="offset points",
        fontsize=8,
    )


if __name__ == "__main__":
    main()

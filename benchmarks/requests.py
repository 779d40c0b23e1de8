"""What one request costs: trio-sse's request path against sse-starlette and Node, one run.

Run from the project root (``tools/bench`` installs the ``bench`` extra first)::

    tools/bench requests.py            # full run, about 3-4 minutes
    tools/bench requests.py --quick    # smoke check, under a minute
    tools/bench requests.py --servers trio-sse,node

The figures of issue 9 ("every request as lean as the stream"). Each server in turn (``SERVERS``
in ``compare.py``: ``trio-sse`` is ``trio_sse.serve`` with publishing auth off, as
``trio-sse serve --no-auth``; ``sse-starlette`` on uvicorn; ``node``, the ``http`` module) runs
in its own process on 127.0.0.1 and a free port and is stopped afterwards whatever happened.
Server CPU is utime + stime from ``/proc/<pid>/stat`` (10 ms ticks; every round does about
``Plan.seconds`` of work, so a tick is under 1%); ``server waiting for a CPU`` comes from
``/proc/<pid>/schedstat``. Requests are sent by ``keepalive.py``'s client (blocking sockets in a
worker thread, each response read in full before the next request, no pipelining: a few
CPU-us per request, where httpx costs about 200; a ``Connection: close`` answer, which
Hypercorn gives every 1,000th request, opens a new connection, counted under ``reconnects``);
streams are read by ``audience.py`` processes (epoll, a real chunked/SSE decoder), which check
that every event arrived.

Scenarios, for each server, in order (``FULL`` / ``QUICK`` hold the sizes):

1. ``healthz``: ``GET /healthz`` back to back on one keep-alive connection for ``seconds``;
   server CPU-us per request and requests/s. Median of ``rounds``.
2. ``stats`` (trio-sse only): the same with ``GET /stats``.
3. ``publish``: 20 sessions ``u0`` ... ``u19`` with one subscriber each (the audience); one
   keep-alive connection sends ``POST /sessions/u<n>/events`` (``{"type": "tick", "data":
   <64 chars>}``) sequentially, round robin over the sessions. A first round of 200 sets the
   size of the measured ones (about ``seconds`` each). Server CPU-us per publish request =
   server CPU from the first request until every subscriber has every event / requests;
   publishes/s = requests / (first request to last response). Median of ``rounds``.
4. ``batch`` (trio-sse only; reported "not available" when the server refuses the request
   shape): the same 20 subscribers; one connection sends requests of ``batch_size`` (100)
   events each: ``POST /sessions/u<n>/events`` with a JSON array of ``{"type", "data"}``,
   ``POST /events`` with a JSON array of ``{"session", "type", "data"}`` (5 events for each
   of the 20 sessions), and the same as NDJSON (``Content-Type: application/x-ndjson``).
   Server CPU-us per event. A probe to an unsubscribed session must answer 202 with 100
   ``ids`` first.
5. ``per-user``: ``users`` (2,000) sessions with one subscriber each; ``publishers`` (16)
   keep-alive connections, each sequential, publish to the sessions in a random order, every
   session getting the same number of events. deliveries/s = deliveries / (first request until
   the last subscriber has its events); server CPU-us per delivery over the same interval
   (publish requests included: one delivery per publish). A first round of one event per
   session sizes the measured ones.

Every round is bounded in requests and in time (``Plan.round_limit``), every server's
scenarios by ``Plan.deadline``. The table has a column per server and, for each figure,
trio-sse's value divided by the best peer's, and issue 9's goal. It is printed and written with
the raw rounds, client CPU, versions, git commit and load averages to
``benchmarks/results/requests.json`` (quick: ``requests-quick.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any

import httpx
import trio
from audience import HOST, raise_fd_limit, session_name
from compare import SERVERS, versions, wait_for_quiet
from http_load import (
    POOL,
    Audience,
    LoadClient,
    ServerProcess,
    Usage,
    export_trio_sse,
    fmt,
    free_port,
    open_audience,
    report_header,
    server_warnings,
    warm_up,
)
from keepalive import (
    Connection,
    ResponseError,
    Sent,
    request_bytes,
    run_parallel,
    run_sequential,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = RESULTS_DIR.parent.parent
DEFAULT_SERVERS = ("trio-sse", "sse-starlette", "node")
BATCH_SERVERS = ("trio-sse",)
"""Servers with a batch publish API (scenario 4)."""
STATS_SERVERS = ("trio-sse",)
"""Servers whose ``/stats`` is measured (the peers' is a stub)."""
DATA_CHARS = 64
MAX_REQUESTS = 200_000
"""No round sends more requests than this, whatever its calibration says."""
DRAIN = 10.0
"""Seconds a round waits, after its last response, for the subscribers to have every event."""
LOAD_LIMIT = 1.5
LOAD_WAIT = 60.0


@dataclass(frozen=True)
class Plan:
    seconds: float
    """Work per measured round, in seconds (sets the request counts)."""
    rounds: int
    """Measured rounds per figure (medians)."""
    round_limit: float
    """Seconds after which a round stops sending, whatever is left."""
    deadline: float
    """Seconds one server may take for all its scenarios before they are cancelled."""
    sessions: int = 20
    users: int = 2000
    publishers: int = 16
    batch_size: int = 100


FULL = Plan(seconds=2.5, rounds=3, round_limit=15.0, deadline=150.0)
QUICK = Plan(seconds=0.7, rounds=1, round_limit=5.0, deadline=50.0)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    lower_is_better: bool
    goal: str = ""
    compared: bool = True
    """Show trio-sse's figure over the best peer's (not for the client's or the machine's)."""


def rows(plan: Plan) -> list[Row]:
    users = f"{plan.users:,} sessions x 1 subscriber, {plan.publishers} connections"
    batch = f"{plan.batch_size} events per request"
    return [
        Row(
            "publish_cpu_us",
            f"CPU per publish request ({plan.sessions} sessions)",
            "us",
            True,
            "<= 0.7x",
        ),
        Row("publishes_per_s", "publishes/s on one connection", "1/s", False),
        Row(
            "users_deliveries_per_s",
            f"per-user deliveries/s ({users})",
            "1/s",
            False,
            ">= 1.5x node, 2x starlette",
        ),
        Row("users_cpu_us", "per-user CPU per delivery", "us", True),
        Row("healthz_cpu_us", "CPU per GET /healthz", "us", True, "<= 100 us"),
        Row("healthz_per_s", "GET /healthz/s on one connection", "1/s", False),
        Row("stats_cpu_us", "CPU per GET /stats", "us", True, "<= 100 us"),
        Row(
            "batch_session_cpu_us",
            f"batch POST /sessions/{{id}}/events, CPU per event ({batch})",
            "us",
            True,
            "<= 10 us",
        ),
        Row(
            "batch_events_cpu_us",
            "batch POST /events (JSON array), CPU per event",
            "us",
            True,
            "<= 10 us",
        ),
        Row(
            "batch_ndjson_cpu_us",
            "batch POST /events (NDJSON), CPU per event",
            "us",
            True,
            "<= 10 us",
        ),
        Row(
            "publish_client_cpu_us",
            "client CPU per publish request (one connection)",
            "us",
            True,
            compared=False,
        ),
        Row("worst_wait_pct", "server waiting for a CPU, worst round", "%", True, compared=False),
    ]


@dataclass
class Outcome:
    """What one server's run produced."""

    figures: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    """Figures that could not be measured, and why."""
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)

    def keep(self, scenario: str, done: Done) -> None:
        self.rounds.setdefault(scenario, []).append(done.record())
        wait = 100 * done.usage.server_wait / max(done.usage.seconds, 1e-9)
        self.figures["worst_wait_pct"] = max(self.figures.get("worst_wait_pct", 0.0), wait)
        if done.sent.reconnects:
            reconnects = self.run.setdefault("reconnects", {})
            reconnects[scenario] = reconnects.get(scenario, 0) + done.sent.reconnects
        if done.sent.error or done.sent.unexpected:
            self.warnings.append(f"{scenario}: {done.sent.error or done.sent.unexpected}")
        if done.expected and done.received != done.expected:
            self.warnings.append(
                f"{scenario}: {done.received:,} of {done.expected:,} events arrived"
            )


@dataclass(frozen=True)
class Done:
    """One round: the requests, what arrived, what it cost."""

    requests: int
    """Requests sent (answered or not)."""
    sent: Sent
    usage: Usage
    """Server CPU and wait, audience CPU: from the first request until the subscribers had
    everything (or ``DRAIN`` ran out); ``seconds`` is the same interval."""
    expected: int = 0
    """Events the subscribers should have received in all (0: no subscribers involved)."""
    received: int = 0

    @property
    def answered(self) -> int:
        return self.sent.answered

    def record(self) -> dict[str, Any]:
        """For the JSON (``asdict`` would turn the status ``Counter`` into nonsense)."""
        sent = {**vars(self.sent), "statuses": dict(self.sent.statuses)}
        return {**vars(self), "sent": sent, "usage": asdict(self.usage)}

    def cpu_us(self, per: float) -> float:
        return self.usage.server_cpu / max(per, 1) * 1e6


def tick_data(tag: str, n: int) -> str:
    """An event's data as ``audience.py`` counts it: the tag, a stamp, padding."""
    return f"{tag} {time.time():.6f} {n} ".ljust(DATA_CHARS, "x")


def publish_request(session: str, tag: str, n: int) -> bytes:
    body = json.dumps({"type": "tick", "data": tick_data(tag, n)}).encode()
    return request_bytes("POST", f"/sessions/{session}/events", body)


# -- measuring ------------------------------------------------------------------------------


async def send(
    client: LoadClient,
    runner: Callable[[float], Sent],
    requests: int,
    plan: Plan,
    audience: Audience | None = None,
    expect: int = 0,
    tag: str = "",
    seconds: float | None = None,
) -> Done:
    """Run ``runner`` in a thread; with an ``audience``, wait until each stream has ``expect``.

    ``runner`` stops sending after ``seconds`` (default: ``plan.round_limit``).
    """
    tally = await audience.expect(tag, expect, latencies=False) if audience else None
    pids = audience.pids if audience else []
    start = client.server.sample(pids)
    deadline = time.perf_counter() + (plan.round_limit if seconds is None else seconds)
    sent = await trio.to_thread.run_sync(runner, deadline)
    if tally is not None:
        with trio.move_on_after(DRAIN):
            await tally.done.wait()
    end = client.server.sample(pids)
    usage = Usage.between(start, end)
    if tally is None or audience is None:
        return Done(requests, sent, usage)
    if tally.finished_at is not None:
        usage = Usage(
            tally.finished_at - start.wall,
            usage.server_cpu,
            usage.server_wait,
            usage.client_cpu,
            usage.driver_cpu,
        )
    await trio.sleep(0.1)  # duplicates would arrive by now
    await audience.report(tally)
    return Done(requests, sent, usage, expect * audience.streams, tally.total)


def sized(rate: float, plan: Plan, unit: int, least: int = 1) -> int:
    """Requests for ``plan.seconds`` at ``rate``, a multiple of ``unit``, at least ``least``."""
    wanted = min(rate * plan.seconds, MAX_REQUESTS)
    return max(least, round(wanted / unit)) * unit


async def route(client: LoadClient, outcome: Outcome, plan: Plan, path: str, key: str) -> None:
    """Scenarios 1-2: ``GET path`` back to back on one connection."""
    raw = request_bytes("GET", path)
    port = client.server.port
    rounds = []
    for _ in range(plan.rounds):
        runner = partial(run_sequential, port, repeat(raw, MAX_REQUESTS), 200)
        done = await send(client, runner, MAX_REQUESTS, plan, seconds=plan.seconds)
        outcome.keep(key, done)
        if done.sent.statuses[200] != done.answered or not done.answered:
            outcome.unavailable[f"{key}_cpu_us"] = done.sent.unexpected or done.sent.error
            return
        rounds.append(done)
    outcome.figures[f"{key}_cpu_us"] = median([d.cpu_us(d.answered) for d in rounds])
    outcome.figures[f"{key}_per_s"] = median([d.answered / d.sent.seconds for d in rounds])


async def publish(client: LoadClient, audience: Audience, outcome: Outcome, plan: Plan) -> None:
    """Scenario 3: publishes to ``plan.sessions`` sessions, one connection, sequentially."""

    async def one_round(tag: str, requests: int) -> Done:
        raws = [publish_request(session_name(n % plan.sessions), tag, n) for n in range(requests)]
        runner = partial(run_sequential, client.server.port, raws, 202)
        done = await send(client, runner, requests, plan, audience, requests // plan.sessions, tag)
        outcome.keep("publish", done)
        return done

    first = await one_round("p0", 10 * plan.sessions)
    requests = sized(first.answered / first.sent.seconds, plan, plan.sessions)
    rounds = [await one_round(f"p{n + 1}", requests) for n in range(plan.rounds)]
    outcome.figures.update(
        publish_cpu_us=median([d.cpu_us(d.answered) for d in rounds]),
        publishes_per_s=median([d.answered / d.sent.seconds for d in rounds]),
        publish_client_cpu_us=median([d.sent.cpu / max(d.answered, 1) * 1e6 for d in rounds]),
    )


@dataclass(frozen=True)
class BatchShape:
    key: str
    path: Callable[[int], str]
    """The request path of request number n."""
    item: Callable[[int, str, int], dict[str, Any]]
    """Event k of request n with a tag: the object in the body."""
    ndjson: bool = False


def _session_item(n: int, tag: str, k: int) -> dict[str, Any]:
    return {"type": "tick", "data": tick_data(tag, k)}


def _events_item(sessions: int) -> Callable[[int, str, int], dict[str, Any]]:
    def item(n: int, tag: str, k: int) -> dict[str, Any]:
        return {"session": session_name(k % sessions), **_session_item(n, tag, k)}

    return item


def batch_shapes(plan: Plan) -> list[BatchShape]:
    by_session = BatchShape(
        "batch_session",
        lambda n: f"/sessions/{session_name(n % plan.sessions)}/events",
        _session_item,
    )
    events = _events_item(plan.sessions)
    return [
        by_session,
        BatchShape("batch_events", lambda n: "/events", events),
        BatchShape("batch_ndjson", lambda n: "/events", events, ndjson=True),
    ]


def batch_request(shape: BatchShape, n: int, tag: str, size: int, session: str = "") -> bytes:
    """Request ``n`` of ``shape``; with ``session``, every event goes to that one instead."""
    items = [shape.item(n, tag, k) for k in range(size)]
    path = shape.path(n)
    if session:
        path = path if path == "/events" else f"/sessions/{session}/events"
        items = [{**item, "session": session} if "session" in item else item for item in items]
    if shape.ndjson:
        body = b"".join(json.dumps(item).encode() + b"\n" for item in items)
        return request_bytes("POST", path, body, "application/x-ndjson")
    return request_bytes("POST", path, json.dumps(items).encode())


async def probe(client: LoadClient, shape: BatchShape, plan: Plan) -> str:
    """Why ``shape`` cannot be measured on this server, or "" if it can.

    One request to an unsubscribed session must answer 202 with one id per event.
    """

    def ask() -> tuple[int, bytes]:
        connection = Connection(client.server.port)
        try:
            return connection.request(raw)
        finally:
            connection.close()

    raw = batch_request(shape, 0, "probe", plan.batch_size, session="probe")
    try:
        status, body = await trio.to_thread.run_sync(ask)
    except (OSError, ResponseError) as error:
        return f"not available: {type(error).__name__}: {error}"
    text = body[:160].decode(errors="replace")
    if status != 202:
        return f"not available: HTTP {status} {text}"
    try:
        ids = json.loads(body)["ids"]
    except (ValueError, KeyError, TypeError):
        ids = None
    if not isinstance(ids, list) or len(ids) != plan.batch_size:
        return f"not available: 202 without {plan.batch_size} ids: {text}"
    return ""


async def batches(client: LoadClient, audience: Audience, outcome: Outcome, plan: Plan) -> None:
    """Scenario 4: requests of ``plan.batch_size`` events, one connection."""
    for shape in batch_shapes(plan):
        key = f"{shape.key}_cpu_us"
        why = await probe(client, shape, plan)
        if why:
            outcome.unavailable[key] = why
            continue

        async def one_round(tag: str, requests: int, shape: BatchShape = shape) -> Done:
            raws = [batch_request(shape, n, tag, plan.batch_size) for n in range(requests)]
            runner = partial(run_sequential, client.server.port, raws, 202)
            each = requests * plan.batch_size // plan.sessions
            done = await send(client, runner, requests, plan, audience, each, tag)
            outcome.keep(shape.key, done)
            return done

        first = await one_round(f"{shape.key[6]}0", plan.sessions)
        requests = sized(first.answered / first.sent.seconds, plan, plan.sessions)
        rounds = [await one_round(f"{shape.key[6]}{n + 1}", requests) for n in range(plan.rounds)]
        outcome.figures[key] = median([d.cpu_us(d.answered * plan.batch_size) for d in rounds])


async def per_user(client: LoadClient, audience: Audience, outcome: Outcome, plan: Plan) -> None:
    """Scenario 5: ``plan.users`` sessions, ``plan.publishers`` connections in parallel."""
    shuffle = random.Random(9).shuffle

    async def one_round(tag: str, each: int) -> Done:
        targets = [session_name(n) for n in range(plan.users)] * each
        shuffle(targets)
        raws = [publish_request(session, tag, n) for n, session in enumerate(targets)]
        runner = partial(run_parallel, client.server.port, plan.publishers, raws, 202)
        done = await send(client, runner, len(raws), plan, audience, each, tag)
        outcome.keep("per-user", done)
        return done

    first = await one_round("u0", 1)
    each = sized(first.received / first.usage.seconds, plan, plan.users) // plan.users
    rounds = [await one_round(f"u{n + 1}", each) for n in range(plan.rounds)]
    outcome.figures.update(
        users_deliveries_per_s=median([d.received / d.usage.seconds for d in rounds]),
        users_cpu_us=median([d.cpu_us(d.received) for d in rounds]),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


async def measure(name: str, server: ServerProcess, plan: Plan, outcome: Outcome) -> None:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as http:
        client = LoadClient(http, server)
        with trio.fail_after(plan.deadline):
            await warm_up(client)
            print("  healthz ...", file=sys.stderr)
            await route(client, outcome, plan, "/healthz", "healthz")
            if name in STATS_SERVERS:
                print("  stats ...", file=sys.stderr)
                await route(client, outcome, plan, "/stats", "stats")
            async with open_audience(client, plan.sessions, sessions=plan.sessions) as audience:
                print("  publish, one connection ...", file=sys.stderr)
                await publish(client, audience, outcome, plan)
                if name in BATCH_SERVERS:
                    print("  batch publish ...", file=sys.stderr)
                    await batches(client, audience, outcome, plan)
            await client.expect_subscribers(0)
            async with open_audience(client, plan.users, sessions=plan.users) as audience:
                print(f"  per-user, {plan.users:,} sessions ...", file=sys.stderr)
                await per_user(client, audience, outcome, plan)
    for text, count in client.take_anomalies().items():
        outcome.warnings.append(f"{count} x {text}")


def run_server(name: str, plan: Plan, env: dict[str, str] | None = None) -> Outcome:
    """Launch one server (in ``env``), measure it, stop it whatever happened."""
    print(f"{name}:", file=sys.stderr)
    outcome = Outcome(run={"load_average_at_launch": os.getloadavg()})
    started = time.perf_counter()
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = ServerProcess(port, log, SERVERS[name](port), env)
        try:
            trio.run(measure, name, server, plan, outcome)
        except Exception as error:  # keep what was measured, and why it stopped
            outcome.run["error"] = "".join(traceback.format_exception(error))
            outcome.warnings.append(f"run stopped: {error!r} (traceback in the JSON)")
            print(outcome.run["error"], file=sys.stderr)
        finally:
            outcome.run["server_stop"] = stop = server.stop()
            lines = server.log_lines()
    if stop["killed"] or stop["exit_code"] != 0:
        outcome.warnings.append(f"server stop: {stop}")
    outcome.warnings += [f"server log: {line}" for line in server_warnings(lines)]
    outcome.run["server_log_head"] = lines[:60]
    outcome.run["wall_seconds"] = round(time.perf_counter() - started, 1)
    return outcome


# -- reporting ------------------------------------------------------------------------------


def ratio(row: Row, outcomes: dict[str, Outcome]) -> str:
    """trio-sse's figure over the best peer's, and that peer's name."""
    mine = outcomes.get("trio-sse", Outcome()).figures.get(row.key, math.nan)
    peers = {
        name: o.figures[row.key]
        for name, o in outcomes.items()
        if name != "trio-sse" and o.figures.get(row.key, 0) > 0
    }
    if math.isnan(mine) or not peers or not row.compared:
        return ""
    pick = min if row.lower_is_better else max
    best = pick(peers, key=lambda name: peers[name])
    return f"{mine / peers[best]:.2f}x {best}"


def cell(outcome: Outcome, key: str) -> str:
    if key in outcome.unavailable:
        return "not avail."
    return fmt(outcome.figures.get(key, math.nan))


def table(plan: Plan, outcomes: dict[str, Outcome]) -> str:
    names = list(outcomes)
    shown = [
        r
        for r in rows(plan)
        if any(r.key in o.figures or r.key in o.unavailable for o in outcomes.values())
    ] or rows(plan)
    width = max(len(row.label) for row in shown) + 1
    widths = [max(12, len(name) + 2) for name in names]
    head = (
        f"{'figure':<{width}} {'unit':<4}"
        + "".join(f"{n:>{w}}" for n, w in zip(names, widths, strict=True))
        + f"  {'trio-sse / best peer':<22} goal (issue 9)"
    )
    lines = [head, "-" * len(head)]
    for row in shown:
        cells = "".join(
            f"{cell(outcomes[n], row.key):>{w}}" for n, w in zip(names, widths, strict=True)
        )
        lines.append(
            f"{row.label:<{width}} {row.unit:<4}{cells}  {ratio(row, outcomes):<22} {row.goal}"
        )
    return "\n".join(lines)


def report(plan: Plan, quick: bool, run: dict[str, Any], outcomes: dict[str, Outcome]) -> Any:
    return {
        **report_header("requests", quick, plan, versions()),
        "rows": [asdict(row) for row in rows(plan)],
        **run,
        "servers": {
            name: {
                "figures": {k: None if math.isnan(v) else v for k, v in o.figures.items()},
                "ratios": {r.key: ratio(r, outcomes) for r in rows(plan) if ratio(r, outcomes)},
                "unavailable": o.unavailable,
                **o.run,
                "rounds": o.rounds,
                "warnings": o.warnings,
            }
            for name, o in outcomes.items()
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter rounds, no load wait")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, of {', '.join(SERVERS)} (default: {', '.join(DEFAULT_SERVERS)})",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default: benchmarks/results/)")
    parser.add_argument(
        "--trio-sse-at",
        metavar="REVISION",
        help="serve trio_sse/ as of this git revision (git archive), not the work tree's",
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; known: {list(SERVERS)}")
    plan = QUICK if args.quick else FULL
    output = args.output or RESULTS_DIR / ("requests-quick.json" if args.quick else "requests.json")
    raise_fd_limit(plan.users * 2 + 1024)
    run: dict[str, Any] = (
        {"load_average_at_start": os.getloadavg()}
        if args.quick
        else wait_for_quiet(LOAD_LIMIT, LOAD_WAIT)
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trio-sse-") as tree:
        env = None
        if args.trio_sse_at:
            env = export_trio_sse(args.trio_sse_at, Path(tree))
            run["trio_sse_served_from"] = f"git archive {env['TRIO_SSE_EXPORTED_COMMIT']}"
        else:
            run["trio_sse_served_from"] = "work tree"
        outcomes = {n: run_server(n, plan, env if n == "trio-sse" else None) for n in names}
    run["wall_seconds"] = round(time.perf_counter() - started, 1)
    run["load_average_at_end"] = os.getloadavg()
    print(table(plan, outcomes))
    for name, o in outcomes.items():
        for key, why in o.unavailable.items():
            print(f"{name}: {key}: {why}")
        for scenario, count in o.run.get("reconnects", {}).items():
            print(f"{name}: {scenario}: {count} new connections after Connection: close")
        for warning in o.warnings:
            print(f"WARNING {name}: {warning}")
    load = ", ".join(f"{x:.2f}" for x in run["load_average_at_start"])
    end = ", ".join(f"{x:.2f}" for x in run["load_average_at_end"])
    print(f"{HOST}; {os.cpu_count()} cores; load average at start {load}, at end {end}")
    print(f"wall time {run['wall_seconds']:.1f} s")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report(plan, args.quick, run, outcomes), indent=2) + "\n")
    print(f"written to {output}")
    if any("error" in o.run for o in outcomes.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""End-to-end load benchmark of the HTTP server: server, driver and audience in their processes.

Run from the project root::

    .venv/bin/python benchmarks/http_load.py          # full run, under a minute
    .venv/bin/python benchmarks/http_load.py --quick  # smoke check, under 20 s
    .venv/bin/python benchmarks/http_load.py --audience-processes 2   # streams read by 2

The server is ``trio_sse.serve`` in a child process (this file run with ``--serve PORT``) on
127.0.0.1, on a port this process found free: ``auth_publish=False``, ``max_subscribers``,
``max_subscribers_per_session`` and ``max_connections`` raised to ``CAPACITY``, heartbeat 15 s,
every other setting at its default. Its CPU time is read from ``/proc/<pid>/stat`` (utime + stime of
all its threads, in clock ticks: 10 ms resolution) and its resident memory from
``/proc/<pid>/statm``. ``server waiting for a CPU`` is the time its main thread was runnable but
not running (``/proc/<pid>/schedstat``), as % of the interval: the share of the figures lost to
other load on the machine (the client included). Every process raises its soft
``RLIMIT_NOFILE`` to the hard limit.

The load client is two parts. The driver runs here, on trio: it publishes, polls ``/stats``,
reads the idle and churn streams itself (raw trio sockets, ``EventStream``) and drives the
audience. The audience is the subscribers of figures 3-4: ``audience.py`` in a child process
(``--audience-processes N``: N processes, each its share of the streams), plain Python on
``select.epoll`` with non-blocking sockets, no trio and no task per stream. One trio task per
stream cost 94-100% of a core at about 50,000 deliveries/s, so the fastest servers were measured
as client-bound; the audience reads one event per ``recv`` at about 5-6 CPU-us (150,000+
deliveries/s on one core), and less per event when several arrive in one read. Both parts write
``GET /sessions/bench/events HTTP/1.1`` by hand, check for ``200`` and
``Transfer-Encoding: chunked``, decode the chunked framing (``ChunkedDecoder``, in
``audience.py``: a chunk's size line and closing CRLF are stripped wherever TCP splits them), and
split the decoded body into SSE blocks at blank lines (``\\n\\n``; the server writes ``\\n``
line ends and one-line data), keeping an incomplete tail for the next read. Counting a marker
such as ``\\nid: `` in the raw bytes would be cheaper, but is only right while every event sits
whole inside one chunk, which depends on how the server batches its writes; decoding is right
whatever the server does. A block counts as a delivery if it is a ``tick`` event of the running
scenario (its data starts with the scenario's tag and the publish time); ``retry:`` blocks and
heartbeat comments are skipped; anything else (a ``reset``, a ``slow consumer`` comment, a tick
of another scenario), a refused or ended stream, is counted as an anomaly and reported. The
driver tells the audience which tag and how many events to expect before it publishes (a line on
its stdin, acknowledged); the audience answers ``done`` with the ``time.perf_counter()`` at which
its last stream had them all (CLOCK_MONOTONIC, one clock for every process), and afterwards
reports its counts, anomalies and latency percentiles (``audience.py`` describes the protocol).
Events are published with ``POST /sessions/bench/events`` over keep-alive httpx connections (up
to ``POOL``), data 64 bytes: ``"<tag> <time.time()> xxx..."``. ``client CPU`` is the audience
processes' CPU time (``/proc/<pid>/stat``, summed); ``driver CPU`` is this process's
``time.process_time()``.

Figures, in the order they run (numbers for the full run; ``FULL`` and ``QUICK`` hold them):

1. idle: ``server RSS per idle connection`` opens K streams (quick: 200) that read nothing after
   the ``retry:`` block and waits until ``/stats`` shows K subscribers and K active connections,
   waits 1 s, and divides the growth of the server's RSS (from before opening, after a warm-up
   stream and publish) by K. KiB = 1024 bytes. It runs first, on a fresh server, so the growth
   is not hidden by memory that earlier scenarios freed.
2. publish: ``publish requests/s`` and ``server CPU-us per publish`` send P POSTs with nobody
   subscribed, ``PUBLISHERS`` at a time, back to back. This is the cost of the HTTP publish path
   alone (Quart routing, JSON, ``broadcaster.publish``), used to separate it out of figure 3.
3. fan-out: ``subscribers`` streams (1,000) are opened by the audience; once ``/stats`` shows
   them all, E events (100; quick: 50) are published back to back, ``PUBLISHERS`` (4) POSTs in
   flight at a time. ``deliveries/s`` = 1,000 x E / the time from the first POST until the last
   subscriber has all E. ``server CPU-us per delivery (all server work)`` = the server's CPU time
   over that interval / deliveries: the E publish requests are included; the next line first
   subtracts figure 2's CPU per publish for each POST answered. ``events published/s`` is POSTs
   answered per second, from the first POST to the last answer. ``server CPU``, ``client CPU``
   (the audience processes, summed) and ``driver CPU`` (this process: publishing) are CPU time
   over the interval as % of one core: a server near 100% is the bottleneck (it runs on one
   thread); an audience process near 100% would mean the figure measures the client (then try
   ``--audience-processes 2``). ``deliveries per client socket read`` hints at batching: near 1,
   each event went out on its own; above 1, the server wrote several per send or sends piled up
   in the socket before the audience read them. Median of ``fanout_rounds`` rounds (3; quick: 1);
   every round, with its raw counts, is in the JSON. ``received`` must be 100%; the server's
   ``eventsDelivered`` counter is kept beside it.
   batching: the same, one round each with 1, 16 and 64 POSTs in flight (quick: 16). The server
   takes every event already queued for a stream in one write, so the cost per delivery depends
   on how many publishes arrive while it is busy fanning out the previous ones: these rows show
   how much. With 1 POST in flight every event goes out alone.
4. latency: the same streams; events are published at 50/s for ``latency_seconds`` (10 s;
   quick: 2 s) on a fixed schedule, each POST its own task (so a slow answer does not delay the
   next; up to ``POOL`` in flight). Each event carries ``time.time()`` taken just before its
   POST; on arrival, latency = ``time.time()`` in the audience right after the socket read that
   completed it minus that stamp (same machine, same clock). It includes the publish request (so
   a server slow to answer POSTs while it fans out adds to it), the fan-out, the socket and the
   audience's own delay: p50, p99 and max over every delivery (nearest rank, computed in the
   audience; with several processes the driver merges their samples, in whole microseconds).
   The other lines are figure 3's, over the first POST to the last delivery. If the server
   cannot take 50 POSTs/s while it fans out, or deliver 1,000 x 50 events/s, latency grows for
   as long as the publishing lasts. ``latency_seconds`` + ``LATENCY_DRAIN`` (10 s) after the
   first POST everything stops (POSTs not yet answered are cancelled); what is missing then is
   reported (``received`` below 100% and a warning: the percentiles cover only what arrived, so
   they are lower bounds).
5. churn: ``CHURN_WORKERS`` tasks each repeatedly open a stream, read until the ``retry:`` block,
   and close it, C cycles in all (quick: 300), while events are published at 20/s.
   ``cycles/s`` counts completed cycles over the elapsed time; ``server CPU-us per cycle`` is CPU
   over the same interval / cycles. Afterwards ``/stats`` must come back to 0 subscribers and 0
   active connections (waited for up to 5 s; the time taken is a figure, 0 when the first poll
   already showed it); ``server RSS growth`` is RSS then minus RSS before the churn (after
   figures 3-4 freed their memory, so it shows leaks rather than first allocations).

After each scenario the non-zero changes of the server's ``/stats`` counters are kept in the
JSON; slow-consumer disconnects, dropped events and stale-subscriber removals are printed as
warnings, as are client anomalies, server log lines at WARNING or above, and intervals in which
the server waited for a CPU more than ``CONTENTION`` (10%) of the time. Everything is on loopback
on one (shared, 2-core) machine: the audience and the driver compete with the server for CPU, and
other load shows up directly in the figures. Compare figures from the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from itertools import chain
from pathlib import Path
from typing import IO, Any

import httpx
import trio
from audience import (
    HOST,
    OPEN_CONCURRENCY,
    RETRY,
    STREAM_PATH,
    STREAM_REQUEST,
    ChunkedDecoder,
    StreamError,
    check_head,
    percentile,
    raise_fd_limit,
    unpack_latencies,
)

DATA_CHARS = 64
CAPACITY = 5_000
"""max_subscribers, max_subscribers_per_session and max_connections of the server."""
PUBLISHERS = 4
"""POSTs in flight at once in a burst of publishes (but see ``Plan.batching_publishers``)."""
POOL = 64
"""Keep-alive connections the client may hold: at least every number of POSTs in flight."""
CHURN_WORKERS = 50
GRACE = 5.0
"""The server's graceful_timeout."""
RECEIVE_SIZE = 65536
"""Bytes per read of the streams this process reads itself (idle, churn)."""
LATENCY_DRAIN = 10.0
"""The latency scenario stops this long after the end of its publishing schedule."""
CONTENTION = 0.10
"""Share of an interval the server may wait for a CPU before its figures are flagged."""
WATCHED = ("slowConsumerDisconnects", "eventsDropped", "staleSubscribersRemoved")
"""Server counters that must not move during a benchmark."""
ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = Path(__file__).resolve().parent / "audience.py"
AUDIENCE_READY = 60.0
"""Seconds the audience processes may take to open their streams."""
RESULTS_DIR = ROOT / "benchmarks" / "results"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KiB = 1024
MiB = 1024 * 1024
Stats = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """How much work each scenario does."""

    subscribers: int
    fanout_events: int
    fanout_rounds: int
    batching_publishers: tuple[int, ...]
    publish_requests: int
    latency_rate: float
    latency_seconds: float
    idle_connections: int
    churn_cycles: int
    churn_rate: float
    deadline: float
    """Seconds from starting the server until every scenario is cancelled if still running."""
    audience_processes: int = 1
    """Processes reading the ``subscribers`` streams (``audience.py``), each its share."""


FULL = Plan(
    subscribers=1000,
    fanout_events=100,
    fanout_rounds=3,
    batching_publishers=(1, 16, 64),
    publish_requests=500,
    latency_rate=50.0,
    latency_seconds=10.0,
    idle_connections=1000,
    churn_cycles=2000,
    churn_rate=20.0,
    deadline=170.0,
)
QUICK = Plan(
    subscribers=1000,
    fanout_events=50,
    fanout_rounds=1,
    batching_publishers=(16,),
    publish_requests=100,
    latency_rate=50.0,
    latency_seconds=2.0,
    idle_connections=200,
    churn_cycles=300,
    churn_rate=20.0,
    deadline=36.0,
)


# -- the server process ---------------------------------------------------------------------


def run_server(port: int) -> None:
    """The child process: serve until SIGTERM."""
    import trio_sse  # only the server imports it
    from trio_sse import BroadcasterConfig, ServerSettings, serve

    raise_fd_limit()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info("trio_sse from %s", Path(trio_sse.__file__).parent)
    config = BroadcasterConfig(max_subscribers=CAPACITY, max_subscribers_per_session=CAPACITY)
    settings = ServerSettings(
        host=HOST,
        port=port,
        auth_publish=False,
        max_connections=CAPACITY,
        heartbeat_interval=15.0,
        graceful_timeout=GRACE,
    )
    trio.run(partial(serve, config, settings, handle_signals=True))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    """Clocks and server memory at one moment."""

    wall: float
    server_cpu: float
    server_wait: float
    """Seconds the server's main thread spent runnable but waiting for a CPU."""
    server_rss: int
    client_cpu: float
    """CPU seconds of the audience processes sampled (the client's readers), summed."""
    driver_cpu: float
    """CPU seconds of this process (publishing, ``/stats``, the audience's driver)."""


@dataclass(frozen=True)
class Usage:
    """What was spent between two samples."""

    seconds: float
    server_cpu: float
    server_wait: float
    client_cpu: float
    driver_cpu: float

    @classmethod
    def between(cls, start: Sample, end: Sample) -> Usage:
        return cls(
            end.wall - start.wall,
            end.server_cpu - start.server_cpu,
            end.server_wait - start.server_wait,
            end.client_cpu - start.client_cpu,
            end.driver_cpu - start.driver_cpu,
        )


def process_cpu(pid: int) -> float:
    """CPU seconds (utime + stime, all threads) of a process, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3, "state"
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def export_trio_sse(revision: str, into: Path) -> dict[str, str]:
    """``trio_sse/`` as of ``revision`` (``git archive``) in ``into``: the server's environment.

    The work tree is left alone; the exported package comes first on the server's
    ``PYTHONPATH``, ahead of the editable install.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", commit, "trio_sse"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return {**os.environ, "PYTHONPATH": str(into), "TRIO_SSE_EXPORTED_COMMIT": commit}


class ServerProcess:
    """A server in a child process, stopped with SIGTERM (SIGKILL if it hangs).

    By default ``trio_sse.serve`` (this file with ``--serve PORT``); ``command`` runs another
    server, which must listen on ``HOST`` and ``port``. ``env``: its environment (default:
    this process's).
    """

    def __init__(
        self,
        port: int,
        log: IO[bytes],
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self._log = log
        if command is None:
            command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )

    def sample(self, audience: Sequence[int] = ()) -> Sample:
        """The server's clocks and memory, with the CPU of the ``audience`` processes."""
        pid = self.process.pid
        cpu = process_cpu(pid)
        wait = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        client = sum(process_cpu(reader) for reader in audience)
        return Sample(time.perf_counter(), cpu, wait, rss, client, time.process_time())

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"the server exited with code {code}:\n{self.log_tail()}")

    def stop(self) -> dict[str, Any]:
        """Stop it, whatever it is doing; how it went."""
        started = time.perf_counter()
        killed = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=GRACE + 5)
            except subprocess.TimeoutExpired:
                killed = True
                self.process.kill()
                self.process.wait(timeout=10)
        seconds = round(time.perf_counter() - started, 2)
        return {"exit_code": self.process.returncode, "seconds": seconds, "killed": killed}

    def log_lines(self) -> list[str]:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace").splitlines()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_lines()[-lines:])


# -- reading event streams ------------------------------------------------------------------


class EventStream:
    """One ``GET /sessions/bench/events`` on a raw trio socket, read as complete SSE blocks.

    For the idle and churn scenarios; fan-out and latency streams are read by the audience.
    """

    def __init__(self, stream: trio.SocketStream, early: bytes) -> None:
        self._stream = stream
        self._early = early
        self._body = ChunkedDecoder()
        self._tail = b""

    @classmethod
    async def open(cls, port: int) -> EventStream:
        stream = await trio.open_tcp_stream(HOST, port)
        try:
            await stream.send_all(STREAM_REQUEST)
            head, rest = await _read_head(stream)
            check_head(head, rest)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(stream, rest)

    async def receive_blocks(self) -> list[bytes]:
        """Wait for the next read; the SSE blocks it completes (maybe none)."""
        data, self._early = self._early or await self._stream.receive_some(RECEIVE_SIZE), b""
        if not data:
            raise StreamError("the server closed the connection")
        blocks = (self._tail + self._body.feed(data)).split(b"\n\n")
        self._tail = blocks.pop()
        if self._body.ended:
            raise StreamError(f"the response ended after {blocks[-3:]!r}")
        return blocks

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _read_head(stream: trio.SocketStream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(RECEIVE_SIZE)
        if not chunk or len(data) > 16 * KiB:
            raise StreamError(f"no response head: {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


# -- the audience: subscribers read by their own processes ----------------------------------

Message = dict[str, Any]
LATENCY_KEYS = ("p50", "p99", "max")


class AudienceError(Exception):
    """An audience process failed, exited, or answered out of turn."""


@dataclass
class Tally:
    """One ``expect`` sent to every audience process, and what they answered."""

    tag: str
    expected: int
    """Ticks of ``tag`` each stream must receive."""
    latencies: bool
    pending: int
    """Audience processes that have not said ``done`` yet."""
    done: trio.Event = field(default_factory=trio.Event)
    finished_at: float | None = None
    """``time.perf_counter()`` when the last stream of the last process had them all."""
    total: int = 0
    """Ticks of ``tag`` received, as of the last ``report``."""
    reads: int = 0
    """Socket reads that completed at least one SSE block, as of the last ``report``."""
    latency: dict[str, float] = field(default_factory=dict)
    """``p50``, ``p99`` and ``max`` in seconds (NaN when none arrived), from ``report``."""

    def arrive(self, finished_at: float) -> None:
        self.finished_at = max(self.finished_at or finished_at, finished_at)
        self.pending -= 1
        if self.pending == 0:
            self.done.set()


class AudienceProcess:
    """One ``audience.py`` child: its pipes, its share of the streams, its answers."""

    def __init__(self, process: trio.Process, streams: int) -> None:
        self.process = process
        self.streams = streams
        self.closing = False
        self._answers_in, self._answers = trio.open_memory_channel[Message](16)

    @classmethod
    async def start(
        cls, port: int, streams: int, sessions: int = 0, first: int = 0
    ) -> AudienceProcess:
        """Start one; ``sessions``/``first``: see ``audience.py`` (0: all on ``bench``)."""
        command = [sys.executable, str(AUDIENCE), "--port", str(port), "--streams", str(streams)]
        if sessions:
            command += ["--sessions", str(sessions), "--first-session", str(first)]
        pipe = subprocess.PIPE
        process = await trio.lowlevel.open_process(command, stdin=pipe, stdout=pipe, cwd=ROOT)
        return cls(process, streams)

    async def tell(self, command: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(command.encode() + b"\n")

    async def answer(self, event: str) -> Message:
        """The next answer, which must be ``event``."""
        message = await self._answers.receive()
        if message["event"] != event:
            raise AudienceError(f"expected {event!r} from the audience, got {message}"[:300])
        return message

    async def listen(self, on_done: Callable[[Message], None]) -> None:
        """Read the process's lines: ``done`` goes to ``on_done``, the rest to :meth:`answer`."""
        async for message in self._messages():
            if message["event"] == "error":
                raise AudienceError(f"audience process {self.process.pid}: {message['message']}")
            if message["event"] == "done":
                on_done(message)
            else:
                await self._answers_in.send(message)
        if not self.closing:
            code = await self.process.wait()
            raise AudienceError(f"audience process {self.process.pid} exited with code {code}")

    async def _messages(self) -> AsyncIterator[Message]:
        assert self.process.stdout is not None
        buffer = b""
        while data := await self.process.stdout.receive_some(RECEIVE_SIZE):
            *lines, buffer = (buffer + data).split(b"\n")
            for line in lines:
                yield json.loads(line)

    async def stop(self) -> None:
        """Kill the process if it is still running, and reap it."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


class Audience:
    """The subscribers: ``audience.py`` processes, each reading its share of the streams."""

    def __init__(self, processes: list[AudienceProcess], anomalies: Counter[str]) -> None:
        self.processes = processes
        self.streams = sum(process.streams for process in processes)
        self.anomalies = anomalies
        self.tally = Tally("", 0, latencies=False, pending=0)

    @property
    def pids(self) -> list[int]:
        return [reader.process.pid for reader in self.processes]

    def on_done(self, message: Message) -> None:
        if message["tag"] == self.tally.tag:
            self.tally.arrive(message["finished_at"])

    async def ready(self) -> None:
        for reader in self.processes:
            await reader.answer("ready")

    async def expect(self, tag: str, events: int, *, latencies: bool) -> Tally:
        """Count ``events`` ticks of ``tag`` on every stream from now on; publish after this."""
        self.tally = Tally(tag, events, latencies, pending=len(self.processes))
        await self._ask(f"expect {tag} {events} {int(latencies)}", "expecting")
        return self.tally

    async def report(self, tally: Tally) -> None:
        """Fill in ``tally``'s counts and latencies; anomalies are added to ``anomalies``."""
        samples = tally.latencies and len(self.processes) > 1
        answers = await self._ask(f"report {int(samples)}", "report")
        tally.total = sum(answer["total"] for answer in answers)
        tally.reads = sum(answer["reads"] for answer in answers)
        for answer in answers:
            self.anomalies.update(answer["anomalies"])
        tally.latency = latency_summary(answers, samples)

    async def _ask(self, command: str, event: str) -> list[Message]:
        for reader in self.processes:
            await reader.tell(command)
        return [await reader.answer(event) for reader in self.processes]

    async def close(self, timeout: float = 5.0) -> None:
        """Ask every process to close its streams and exit; wait ``timeout`` s at most."""
        for reader in self.processes:
            reader.closing = True
            await reader.tell("close")
        with trio.move_on_after(timeout):
            for reader in self.processes:
                await reader.process.wait()


def latency_summary(answers: list[Message], samples: bool) -> dict[str, float]:
    """p50, p99 and max over every process's latencies, in seconds (NaN when none arrived)."""
    if samples:
        ordered = sorted(chain.from_iterable(unpack_latencies(a["samples"]) for a in answers))
        if ordered:
            return dict(zip(LATENCY_KEYS, _spread(ordered), strict=True))
    elif len(answers) == 1 and answers[0]["count"]:
        return {key: answers[0][key] for key in LATENCY_KEYS}
    return dict.fromkeys(LATENCY_KEYS, math.nan)


def _spread(ordered: list[float]) -> tuple[float, float, float]:
    return percentile(ordered, 0.5), percentile(ordered, 0.99), ordered[-1]


@asynccontextmanager
async def open_audience(
    client: LoadClient, count: int, processes: int = 1, sessions: int = 0
) -> AsyncIterator[Audience]:
    """``count`` streams read by ``processes`` audience processes, once the server has them all.

    ``sessions`` 0: every stream on session ``bench``; else spread over sessions ``u0`` ...
    (``audience.py --sessions``), each process taking the next numbers.

    On the way out the processes are asked to close; any still running is killed, whatever
    happened.
    """
    shares = [count // processes + (n < count % processes) for n in range(processes)]
    started: list[AudienceProcess] = []
    try:
        async with trio.open_nursery() as nursery:
            for n, share in enumerate(shares):
                first = sum(shares[:n])
                reader = await AudienceProcess.start(client.server.port, share, sessions, first)
                started.append(reader)
            audience = Audience(started, client.anomalies)
            for reader in started:
                nursery.start_soon(reader.listen, audience.on_done)
            with trio.fail_after(AUDIENCE_READY):
                await audience.ready()
            await client.expect_subscribers(count)
            yield audience
            await audience.close()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for reader in started:
                await reader.stop()


# -- the load client ------------------------------------------------------------------------


class LoadClient:
    """Publishing, stats and streams against one server; collects anomalies."""

    def __init__(self, http: httpx.AsyncClient, server: ServerProcess) -> None:
        self.http = http
        self.server = server
        self.anomalies: Counter[str] = Counter()
        self.published = 0
        """Publish requests answered with 202."""

    async def publish(self, tag: str) -> None:
        data = f"{tag} {time.time():.6f} ".ljust(DATA_CHARS, "x")
        try:
            response = await self.http.post(STREAM_PATH, json={"type": "tick", "data": data})
        except httpx.TransportError as error:
            self.anomalies[f"publish: {type(error).__name__}: {error}"[:120]] += 1
            return
        if response.status_code == 202:
            self.published += 1
        else:
            self.anomalies[f"publish: HTTP {response.status_code} {response.text[:100]}"] += 1

    async def publish_burst(self, tag: str, count: int, publishers: int = PUBLISHERS) -> None:
        """``count`` publishes back to back, ``publishers`` at a time."""
        remaining = iter(range(count))

        async def publisher() -> None:
            for _ in remaining:
                await self.publish(tag)

        async with trio.open_nursery() as nursery:
            for _ in range(publishers):
                nursery.start_soon(publisher)

    async def publish_paced(self, tag: str, rate: float, count: int) -> None:
        """``count`` publishes started at ``rate`` per second, each in its own task."""
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for n in range(count):
                await trio.sleep_until(start + n / rate)
                nursery.start_soon(self.publish, tag)

    async def stats(self) -> Stats:
        response = await self.http.get("/stats")
        response.raise_for_status()
        stats: Stats = response.json()
        return stats

    async def wait_stats(
        self, want: Callable[[Stats], bool], timeout: float
    ) -> tuple[Stats, float]:
        """Poll ``/stats`` until ``want`` holds or ``timeout`` passes: last stats, seconds."""
        started = time.perf_counter()
        stats = await self.stats()
        with trio.move_on_after(timeout):
            while not want(stats):
                await trio.sleep(0.02)
                stats = await self.stats()
        return stats, time.perf_counter() - started

    async def wait_ready(self, timeout: float = 20.0) -> None:
        with trio.fail_after(timeout):
            while True:
                self.server.check_alive()
                try:
                    if (await self.http.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)

    async def open_streams(self, count: int, timeout: float = 60.0) -> list[EventStream]:
        """Open ``count`` streams and wait until the server counts them as subscribers."""
        streams: list[EventStream] = []
        limiter = trio.CapacityLimiter(OPEN_CONCURRENCY)

        async def open_one() -> None:
            async with limiter:
                streams.append(await EventStream.open(self.server.port))

        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(open_one)
        await self.expect_subscribers(count)
        return streams

    async def expect_subscribers(self, count: int, timeout: float = 10.0) -> float:
        """Wait until ``/stats`` shows ``count`` subscribers and active connections; seconds."""
        stats, seconds = await self.wait_stats(partial(_open_now, count), timeout)
        if not _open_now(count, stats):
            subscribers, active = stats["totalSubscribers"], stats["activeConnections"]
            self.anomalies[f"server shows {subscribers} subscribers, {active} connections"] += 1
        return seconds

    def take_anomalies(self) -> dict[str, int]:
        taken = dict(self.anomalies)
        self.anomalies.clear()
        return taken


def _open_now(count: int, stats: Stats) -> bool:
    return bool(stats["totalSubscribers"] == count and stats["activeConnections"] == count)


async def close_streams(streams: list[EventStream]) -> None:
    for stream in streams:
        await stream.aclose()


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    scenario: str
    name: str
    value: float
    unit: str
    runs: list[float] | None = None


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(
        self, scenario: str, name: str, value: float, unit: str, runs: list[float] | None = None
    ) -> None:
        self.figures.append(Figure(scenario, name, value, unit, runs))

    def note(self, scenario: str, **values: Any) -> None:
        self.notes.setdefault(scenario, {}).update(values)


def counter_changes(before: Stats, after: Stats) -> dict[str, int]:
    """Non-zero changes of the server's ``metrics`` counters."""
    old, new = before["metrics"] or {}, after["metrics"] or {}
    changes = {key: new[key] - old.get(key, 0) for key in new if isinstance(new[key], int)}
    return {key: change for key, change in changes.items() if change}


class Scenario:
    """``async with``: notes the server's counter changes and the client's anomalies."""

    def __init__(self, client: LoadClient, results: Results, name: str) -> None:
        self.client, self.results, self.name = client, results, name
        self._before: Stats = {}

    async def __aenter__(self) -> Scenario:
        for text, count in self.client.take_anomalies().items():
            self.results.warnings.append(f"before {self.name}: {count} x {text}")
        self._before = await self.client.stats()
        print(f"  {self.name} ...", file=sys.stderr)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        anomalies = self.client.take_anomalies()
        changes = {}
        if exc_type is None:  # else the server may be gone: keep what the client saw
            changes = counter_changes(self._before, await self.client.stats())
        self.results.note(self.name, server_counters=changes, anomalies=anomalies)
        for key in WATCHED:
            if changes.get(key):
                self.results.warnings.append(f"{self.name}: server {key} +{changes[key]}")
        for text, count in anomalies.items():
            self.results.warnings.append(f"{self.name}: {count} x {text}")

    def add(self, name: str, value: float, unit: str, runs: list[float] | None = None) -> None:
        self.results.add(self.name, name, value, unit, runs)

    def check_contention(self, usage: Usage, during: str = "") -> None:
        """Warn when the server spent over ``CONTENTION`` of ``usage`` waiting for a CPU."""
        share = usage.server_wait / usage.seconds
        if share > CONTENTION:
            self.results.warnings.append(
                f"{self.name}: the server waited for a CPU {100 * share:.0f}% of the time"
                f"{during}: other load on the machine depressed these figures"
            )

    def note_rounds(self, rounds: list[Round]) -> None:
        self.results.note(self.name, rounds=[asdict(r) for r in rounds])
        worst = max((r.usage for r in rounds), key=lambda u: u.server_wait / u.seconds)
        self.check_contention(worst, " (worst round)" if len(rounds) > 1 else "")


# -- scenarios ------------------------------------------------------------------------------


async def warm_up(client: LoadClient) -> None:
    """One stream and one publish, so first-use costs fall before any baseline."""
    await client.wait_ready()
    stream = await EventStream.open(client.server.port)
    await client.publish("warm-up")
    await stream.aclose()
    await client.wait_stats(partial(_open_now, 0), 5.0)


async def idle(client: LoadClient, results: Results, count: int) -> None:
    async with Scenario(client, results, "idle") as scenario:
        before = client.server.sample()
        streams = await client.open_streams(count)
        await trio.sleep(1.0)
        held = client.server.sample()
        await close_streams(streams)
        seconds = await client.expect_subscribers(0)
        after = client.server.sample()
        scenario.add(
            f"server RSS per idle connection ({count:,})", _kib(held, before, count), "KiB"
        )
        scenario.add("server RSS change once they are closed", _mib(after, held), "MiB")
        scenario.add("seconds until /stats shows 0 subscribers", seconds, "s")


def _kib(end: Sample, start: Sample, count: int) -> float:
    return (end.server_rss - start.server_rss) / count / KiB


def _mib(end: Sample, start: Sample) -> float:
    return (end.server_rss - start.server_rss) / MiB


async def publish_only(client: LoadClient, results: Results, count: int) -> float:
    """Figure 2; returns the server's CPU seconds per publish request."""
    async with Scenario(client, results, "publish") as scenario:
        start = client.server.sample()
        await client.publish_burst("publish", count)
        usage = Usage.between(start, client.server.sample())
        scenario.add(
            f"publish requests/s (no subscribers, {PUBLISHERS} at once)",
            count / usage.seconds,
            "req/s",
        )
        scenario.add("server CPU-us per publish request", usage.server_cpu / count * 1e6, "us")
        scenario.add("server waiting for a CPU, % of the time", _wait(usage), "%")
        scenario.check_contention(usage)
    return usage.server_cpu / count


@dataclass(frozen=True)
class Round:
    """Events published to every open stream, and what arrived."""

    events: int
    """Events to publish."""
    published: int
    """Publish requests answered with 202 (fewer if the time limit cut publishing short)."""
    publish_seconds: float
    """From the first POST until the last was answered (or publishing was cut short)."""
    expected: int
    """Deliveries expected: events x subscribers."""
    received: int
    reads: int
    """Socket reads that completed at least one SSE block."""
    usage: Usage
    """From the first POST until the last subscriber had every event (or the time limit)."""
    complete: bool

    @property
    def rate(self) -> float:
        return self.received / self.usage.seconds

    def busy(self, cpu: float) -> float:
        return 100 * cpu / self.usage.seconds


async def deliver(
    client: LoadClient, audience: Audience, tally: Tally, publish: Awaitable[None], limit: float
) -> Round:
    """Publish, and wait until every subscriber has its events: ``limit`` seconds at most."""
    published = client.published
    start = client.server.sample(audience.pids)
    publish_seconds = limit
    with trio.move_on_after(limit):
        await publish
        publish_seconds = time.perf_counter() - start.wall
        await tally.done.wait()
    end = client.server.sample(audience.pids)
    seconds = (tally.finished_at or end.wall) - start.wall
    usage = replace(Usage.between(start, end), seconds=seconds)
    await trio.sleep(0.2)  # anything beyond what was expected (duplicates) would arrive by now
    await audience.report(tally)
    expected = tally.expected * audience.streams
    if tally.total != expected:
        client.anomalies[f"{tally.tag}: received {tally.total} of {expected}"] += 1
    published = client.published - published
    return Round(
        tally.expected,
        published,
        publish_seconds,
        expected,
        tally.total,
        tally.reads,
        usage,
        tally.done.is_set(),
    )


def add_rounds(scenario: Scenario, label: str, rounds: list[Round], publish_cpu: float) -> None:
    """The figures of fan-out or latency rounds (medians when there are several)."""

    def add(name: str, values: list[float], unit: str) -> None:
        scenario.add(name, statistics.median(values), unit, values if len(values) > 1 else None)

    add(f"deliveries/s ({label})", [r.rate for r in rounds], "1/s")
    add(
        "events published/s (POSTs answered)",
        [r.published / r.publish_seconds for r in rounds],
        "1/s",
    )
    add("received, % of deliveries expected", [100 * r.received / r.expected for r in rounds], "%")
    add("server CPU-us per delivery (all server work)", [_per(r, 0.0) for r in rounds], "us")
    add("... without the publish requests' CPU", [_per(r, publish_cpu) for r in rounds], "us")
    add("server CPU, % of one core", [r.busy(r.usage.server_cpu) for r in rounds], "%")
    add(
        "server waiting for a CPU, % of the time",
        [r.busy(r.usage.server_wait) for r in rounds],
        "%",
    )
    add("client CPU, % of one core", [r.busy(r.usage.client_cpu) for r in rounds], "%")
    add("driver CPU, % of one core", [r.busy(r.usage.driver_cpu) for r in rounds], "%")
    add("deliveries per client socket read", [r.received / max(r.reads, 1) for r in rounds], "")
    scenario.note_rounds(rounds)


def _per(round: Round, publish_cpu: float) -> float:
    """Server CPU-us per delivery made, less ``publish_cpu`` seconds per POST answered."""
    cpu = round.usage.server_cpu - round.published * publish_cpu
    return cpu / max(round.received, 1) * 1e6


async def fanout_round(
    client: LoadClient, audience: Audience, tag: str, events: int, publishers: int
) -> Round:
    tally = await audience.expect(tag, events, latencies=False)
    publish = client.publish_burst(tag, events, publishers)
    done = await deliver(client, audience, tally, publish, 90.0)
    await trio.sleep(0.5)
    return done


async def fanout(
    client: LoadClient, results: Results, audience: Audience, plan: Plan, publish_cpu: float
) -> None:
    async with Scenario(client, results, "fan-out") as scenario:
        events = plan.fanout_events
        rounds = [
            await fanout_round(client, audience, f"f{n}", events, PUBLISHERS)
            for n in range(plan.fanout_rounds)
        ]
        label = f"{audience.streams:,} subscribers x {events} events"
        add_rounds(scenario, label, rounds, publish_cpu)


async def batching(client: LoadClient, results: Results, audience: Audience, plan: Plan) -> None:
    """Figure 3 once for each number of POSTs in flight in ``plan.batching_publishers``."""
    async with Scenario(client, results, "batching") as scenario:
        rounds = []
        for publishers in plan.batching_publishers:
            tag = f"b{publishers}"
            done = await fanout_round(client, audience, tag, plan.fanout_events, publishers)
            rounds.append(done)
            at_once = f"{publishers} POST{'s' if publishers > 1 else ''} at once"
            scenario.add(f"deliveries/s, {at_once}", done.rate, "1/s")
            scenario.add(f"server CPU-us per delivery, {at_once}", _per(done, 0.0), "us")
            reads = done.received / max(done.reads, 1)
            scenario.add(f"deliveries per client socket read, {at_once}", reads, "")
        scenario.note_rounds(rounds)


async def latency(
    client: LoadClient, results: Results, audience: Audience, plan: Plan, publish_cpu: float
) -> None:
    async with Scenario(client, results, "latency") as scenario:
        count = round(plan.latency_rate * plan.latency_seconds)
        tally = await audience.expect("lat", count, latencies=True)
        publish = client.publish_paced("lat", plan.latency_rate, count)
        limit = plan.latency_seconds + LATENCY_DRAIN
        done = await deliver(client, audience, tally, publish, limit)
        ms = {key: value * 1e3 for key, value in tally.latency.items()}
        label = f"{audience.streams:,} subscribers x {plan.latency_rate:g} events/s"
        scenario.add(f"latency p50 ({label}, {plan.latency_seconds:g} s)", ms["p50"], "ms")
        scenario.add("latency p99", ms["p99"], "ms")
        scenario.add("latency max", ms["max"], "ms")
        add_rounds(scenario, "over the first publish to the last delivery", [done], publish_cpu)
        if not done.complete:
            scenario.results.warnings.append(
                f"latency: {done.received:,} of {done.expected:,} deliveries arrived within "
                f"{limit:g} s of the first POST ({done.published} of {done.events} POSTs "
                "answered); the latency figures cover those only, so they are lower bounds"
            )


def _wait(usage: Usage) -> float:
    return 100 * usage.server_wait / usage.seconds


async def churn_cycle(client: LoadClient) -> bool:
    """Open a stream, read until its ``retry:`` block, close it; False if that failed."""
    try:
        with trio.fail_after(5.0):
            stream = await EventStream.open(client.server.port)
            try:
                while not any(b.startswith(RETRY) for b in await stream.receive_blocks()):
                    pass
            finally:
                await stream.aclose()
    except (StreamError, OSError, trio.BrokenResourceError, trio.TooSlowError) as error:
        client.anomalies[f"churn cycle: {type(error).__name__}: {error}"[:120]] += 1
        return False
    return True


async def churn_workers(client: LoadClient, cycles: int) -> int:
    """Run ``cycles`` cycles on ``CHURN_WORKERS`` tasks; how many completed."""
    remaining: Iterator[int] = iter(range(cycles))
    completed = 0

    async def worker() -> None:
        nonlocal completed
        for _ in remaining:
            succeeded = await churn_cycle(client)  # (not `completed += await`: it races)
            completed += succeeded

    async with trio.open_nursery() as nursery:
        for _ in range(CHURN_WORKERS):
            nursery.start_soon(worker)
    return completed


async def churn(client: LoadClient, results: Results, plan: Plan) -> None:
    async with Scenario(client, results, "churn") as scenario:
        start = client.server.sample()
        async with trio.open_nursery() as nursery:
            budget = round(plan.churn_rate * plan.deadline)
            nursery.start_soon(client.publish_paced, "churn", plan.churn_rate, budget)
            completed = await churn_workers(client, plan.churn_cycles)
            nursery.cancel_scope.cancel()
        usage = Usage.between(start, client.server.sample())
        seconds = await client.expect_subscribers(0, timeout=5.0)
        after = client.server.sample()
        label = (
            f"{plan.churn_cycles:,} cycles, {CHURN_WORKERS} at once, {plan.churn_rate:g} events/s"
        )
        scenario.add(f"connect/disconnect cycles/s ({label})", completed / usage.seconds, "1/s")
        scenario.add("failed cycles", plan.churn_cycles - completed, "")
        scenario.add("server CPU-us per cycle", usage.server_cpu / max(completed, 1) * 1e6, "us")
        scenario.add("server waiting for a CPU, % of the time", _wait(usage), "%")
        scenario.check_contention(usage)
        scenario.add("seconds until /stats shows 0 subscribers", seconds, "s")
        scenario.add("server RSS growth", _kib(after, start, 1), "KiB")


async def run_all(plan: Plan, server: ServerProcess, results: Results) -> None:
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30.0) as http:
        client = LoadClient(http, server)
        with trio.fail_after(plan.deadline):
            await warm_up(client)
            await idle(client, results, plan.idle_connections)
            publish_cpu = await publish_only(client, results, plan.publish_requests)
            await with_audience(client, results, plan, publish_cpu)
            await churn(client, results, plan)


async def with_audience(
    client: LoadClient, results: Results, plan: Plan, publish_cpu: float
) -> None:
    """Fan-out and latency, on the same ``plan.subscribers`` streams (the audience's)."""
    async with open_audience(client, plan.subscribers, plan.audience_processes) as audience:
        await fanout(client, results, audience, plan, publish_cpu)
        await batching(client, results, audience, plan)
        await latency(client, results, audience, plan, publish_cpu)
    await client.expect_subscribers(0)


# -- reporting ------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(results: Results) -> str:
    lines = [f"{'scenario':<9} {'figure':<62} {'value':>10}  {'unit':<5} all runs"]
    lines.append("-" * len(lines[0]))
    for f in results.figures:
        runs = ", ".join(fmt(run) for run in f.runs) if f.runs else ""
        lines.append(f"{f.scenario:<9} {f.name:<62} {fmt(f.value):>10}  {f.unit:<5} {runs}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    names = ("trio-sse", "trio", "hypercorn", "quart", "quart-trio", "h11", "httpx")
    found = {name: metadata.version(name) for name in names}
    return {"python": platform.python_version(), **found}


def git_state() -> dict[str, Any]:
    """The commit measured, and the files of ``trio_sse`` changed in the work tree beyond it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    try:
        changed = git("status", "--porcelain", "--", "trio_sse").splitlines()
        return {"commit": git("rev-parse", "HEAD"), "trio_sse_uncommitted": changed}
    except (OSError, subprocess.SubprocessError):
        return {}


def report_header(
    benchmark: str, quick: bool, plan: Any, versions: dict[str, str]
) -> dict[str, Any]:
    """What every benchmark's JSON starts with: what ran, when, where, from which commit."""
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "git": git_state(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "quick": quick,
        "plan": asdict(plan),
    }


def report(results: Results, plan: Plan, quick: bool, run: dict[str, Any]) -> dict[str, Any]:
    return {
        **report_header("http_load", quick, plan, versions()),
        "constants": {
            "capacity": CAPACITY,
            "publishers": PUBLISHERS,
            "churn_workers": CHURN_WORKERS,
        },
        **run,
        "figures": [asdict(figure) for figure in results.figures],
        "notes": results.notes,
        "warnings": results.warnings,
    }


def server_warnings(lines: list[str]) -> list[str]:
    bad = ("WARNING", "ERROR", "CRITICAL", "Traceback")
    return [line for line in lines if line.startswith(bad)][:20]


def benchmark(plan: Plan, results: Results) -> dict[str, Any]:
    """Start the server, run every scenario, stop the server; facts about the run."""
    raise_fd_limit()
    run: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        server = ServerProcess(free_port(), log)
        try:
            trio.run(run_all, plan, server, results)
        except Exception as error:  # report what was measured, and why it stopped
            run["error"] = "".join(traceback.format_exception(error))
            results.warnings.append(f"run stopped: {error!r} (traceback in the JSON)")
            print(run["error"], file=sys.stderr)
        finally:
            run["server_stop"] = stop = server.stop()
            lines = server.log_lines()
        if stop["killed"] or stop["exit_code"] != 0:
            results.warnings.append(f"server stop: {stop}")
        run["server_log_warnings"] = server_warnings(lines)
        results.warnings += [f"server log: {line}" for line in run["server_log_warnings"]]
    run["wall_seconds"] = round(time.perf_counter() - started, 1)
    return run


def add_audience_option(parser: argparse.ArgumentParser) -> None:
    """``--audience-processes N`` (http_load.py and compare.py)."""
    parser.add_argument(
        "--audience-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes reading the fan-out and latency streams (default: 1)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer events and connections")
    parser.add_argument("--output", type=Path, help="JSON file (default: benchmarks/results/)")
    add_audience_option(parser)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        run_server(args.serve)
        return
    if args.audience_processes < 1:
        parser.error("--audience-processes must be at least 1")
    plan = replace(QUICK if args.quick else FULL, audience_processes=args.audience_processes)
    output = args.output or RESULTS_DIR / (
        "http_load-quick.json" if args.quick else "http_load.json"
    )
    results = Results()
    run = benchmark(plan, results)
    print(table(results))
    print("\n".join(["", *(f"WARNING {w}" for w in results.warnings)]))
    load = ", ".join(f"{x:.2f}" for x in run["load_average_at_start"])
    print(f"wall time {run['wall_seconds']:.1f} s; load average at start {load}")
    print(f"server stop: {run['server_stop']}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report(results, plan, args.quick, run), indent=2) + "\n")
    print(f"written to {output}")
    if "error" in run:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Hostile clients (issue 10): a publish and a new stream while 3,000 attack sockets are open.

``trio-sse serve --no-auth`` runs in a subprocess on 127.0.0.1 and a free port with every
deadline at its default (``head_timeout`` 10 s, ``min_body_rate`` 500 B/s after
``body_rate_grace`` 5 s). Its socket limit is derived from its open-file limit, which it raises
to the hard limit; with a hard limit of at least 4,096 the 3,000 sockets fit in the general
share and none is evicted (the limit is printed). This process raises its own soft limit too.

It opens, 100 at a time, 1,000 of each attack:

- slow head: ``GET /sessions/h/events`` and then a header trickled a byte every 0.5 s;
  deadline: accept + ``head_timeout``;
- slow body: a complete ``POST`` head with ``Content-Length: 100000``, then the body a byte
  every 0.5 s (2 B/s); deadline: end of the head + ``body_rate_grace``;
- idle: connected, sends nothing; deadline: accept + ``head_timeout``.

With all 3,000 open it times, ``TRIES`` times each, a publish (``POST``, a new connection,
until the ``202`` head) and a new stream (a new connection, until its ``retry:`` field), and
then waits for every attack socket to be closed by the server, noting when each was closed
relative to its deadline (the client's clock: accept and head times as the client saw them).
Bounded: 3,000 sockets, 20 timed requests, a 60 s deadline; loopback only.

    tools/bench hostile.py
"""

from __future__ import annotations

import re
import resource
import signal
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

import trio

PER_KIND = 1000
TRIES = 10
GAP = 0.5
"""Seconds between two trickled bytes."""
HEAD_TIMEOUT, BODY_RATE_GRACE = 10.0, 5.0
"""The server's defaults (``trio_sse/_settings.py``), which the deadlines are measured from."""
GOAL = 0.100
DEADLINE = 60.0


@dataclass
class Attack:
    kind: str
    deadline: float = 0.0
    closed: float | None = None
    answer: bytes = b""
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.answer.split(b" ", 2)[1].decode() if self.answer else "closed, no answer"


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


async def until_closed(stream: trio.SocketStream, attack: Attack) -> None:
    while True:
        try:
            chunk = await stream.receive_some()
        except trio.BrokenResourceError:  # reset: closed with our bytes unread
            chunk = b""
        if not chunk:
            attack.closed = trio.current_time()
            return
        attack.answer += chunk


async def trickle(stream: trio.SocketStream, attack: Attack) -> None:
    while True:
        await trio.sleep(GAP)
        try:
            await stream.send_all(b"a")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


async def attacker(port: int, attack: Attack, *, task_status: trio.TaskStatus[None]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream, trio.open_nursery() as nursery:
        accepted = trio.current_time()
        if attack.kind == "slow head":
            await stream.send_all(b"GET /sessions/h/events HTTP/1.1\r\nHost: b\r\nX-Pad: ")
            attack.deadline = accepted + HEAD_TIMEOUT
        elif attack.kind == "slow body":
            await stream.send_all(
                b"POST /sessions/b/events HTTP/1.1\r\nHost: b\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            )
            attack.deadline = trio.current_time() + BODY_RATE_GRACE
        else:
            attack.deadline = accepted + HEAD_TIMEOUT
        if attack.kind != "idle":
            nursery.start_soon(trickle, stream, attack)
        task_status.started()
        await until_closed(stream, attack)
        nursery.cancel_scope.cancel()


async def read_until(stream: trio.SocketStream, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await stream.receive_some()
        if not chunk:
            raise RuntimeError(f"closed before {marker!r}: {data!r}")
        data += chunk
    return data


async def time_publish(port: int, n: int) -> float:
    body = b'{"type": "t", "data": %d}' % n
    start = trio.current_time()
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(
            b"POST /sessions/bench/events HTTP/1.1\r\nHost: b\r\nContent-Type: application/json"
            b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        head = await read_until(stream, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202 "), head
    return trio.current_time() - start


async def time_stream(port: int, n: int) -> float:
    start = trio.current_time()
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /sessions/probe%d/events HTTP/1.1\r\nHost: b\r\n\r\n" % n)
        data = await read_until(stream, b"retry:")
    assert data.startswith(b"HTTP/1.1 200 "), data
    return trio.current_time() - start


class Server:
    """``trio-sse serve`` in a subprocess; its output collected."""

    def __init__(self) -> None:
        self.output = ""
        self.process: trio.Process | None = None

    async def run(self, *, task_status: trio.TaskStatus[int]) -> None:
        command = [sys.executable, "-m", "trio_sse", "serve", "--no-auth", "--port", "0"]
        self.process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert self.process.stdout is not None
        started = False
        try:
            while chunk := await self.process.stdout.receive_some():
                self.output += chunk.decode(errors="replace")
                match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", self.output)
                if match and "open-file limit" in self.output and not started:
                    started = True
                    task_status.started(int(match[1]))
        finally:
            with trio.CancelScope(shield=True):
                await self.stop()

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def main() -> None:
    limit = raise_open_file_limit()
    attacks = [Attack(kind) for kind in ("slow head", "slow body", "idle") for _ in range(PER_KIND)]
    server = Server()
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run)
            banner = next(line for line in server.output.splitlines() if "open-file limit" in line)
            print(f"client open-file limit {limit}; server: {banner.strip()}")
            async with trio.open_nursery() as attackers:  # each ends when the server closes it
                started = trio.current_time()
                for first in range(0, len(attacks), 100):
                    async with trio.open_nursery() as batch:  # 100 connecting at once
                        for attack in attacks[first : first + 100]:
                            batch.start_soon(attackers.start, attacker, port, attack)
                opened = trio.current_time() - started
                print(f"{len(attacks)} attack sockets opened in {opened:.2f} s")
                publishes, streams, open_counts = [], [], []
                for n in range(TRIES):
                    open_counts.append(sum(a.closed is None for a in attacks))
                    publishes.append(await time_publish(port, n))
                    streams.append(await time_stream(port, n))
                open_counts.append(sum(a.closed is None for a in attacks))
                nursery.cancel_scope.deadline = trio.current_time() + HEAD_TIMEOUT + 10
            nursery.cancel_scope.cancel()  # stops the server
    report(attacks, publishes, streams, open_counts)


def report(
    attacks: list[Attack], publishes: list[float], streams: list[float], open_counts: list[int]
) -> None:
    print(f"attack sockets still open at each timed try: min {min(open_counts)}")
    print(f"\n{'request (new connection)':<34} {'tries':>5} {'median ms':>9} {'max ms':>7} <100ms")
    for name, times in (
        ("publish: POST until 202", publishes),
        ("new stream: until retry:", streams),
    ):
        worst = max(times)
        print(
            f"{name:<34} {len(times):>5} {statistics.median(times) * 1000:>9.1f}"
            f" {worst * 1000:>7.1f} {'yes' if worst < GOAL else 'NO':>6}"
        )
    print(
        f"\n{'attack':<10} {'sockets':>7} {'answers':<24} {'deadline':<25}"
        f" {'closed - deadline (s): min / median / max':>41}"
    )
    deadlines = {
        "slow head": "accept + head_timeout",
        "slow body": "head + body_rate_grace",
        "idle": "accept + head_timeout",
    }
    for kind, deadline in deadlines.items():
        mine = [a for a in attacks if a.kind == kind]
        answers = ", ".join(f"{s} x{n}" for s, n in Counter(a.status for a in mine).items())
        lags = sorted(a.closed - a.deadline for a in mine if a.closed is not None)
        never = sum(a.closed is None for a in mine)
        spread = (
            f"{lags[0]:+.3f} / {statistics.median(lags):+.3f} / {lags[-1]:+.3f}" if lags else "-"
        )
        print(f"{kind:<10} {len(mine):>7} {answers:<24} {deadline:<25} {spread:>41}")
        if never:
            print(f"  {never} {kind} sockets were never closed by the server")
    late = sum(a.closed is None or a.closed - a.deadline > 0.25 for a in attacks)
    print(f"closed more than 0.25 s after their deadline (or never): {late} of {len(attacks)}")


if __name__ == "__main__":
    trio.run(main)

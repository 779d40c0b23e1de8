"""``trio-sse serve --workers 2``: one parent, two workers on one port, sessions in Redis.

Real processes on loopback and the Redis on 127.0.0.1:6379, database :data:`DB` (used by no
other test, flushed before and after). Every wait is bounded; every process is stopped by PID.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import pytest

pytestmark = pytest.mark.real_time

DB = 11
REDIS = f"redis://127.0.0.1:6379/{DB}"
TIMEOUT = 15.0


def _flush_db() -> None:
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as sock:
        sock.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(str(DB))}\r\n{DB}\r\n".encode())
        sock.sendall(b"*1\r\n$7\r\nFLUSHDB\r\n")
        answer = b""
        while answer.count(b"\r\n") < 2:
            answer += sock.recv(100)
        assert answer == b"+OK\r\n+OK\r\n", answer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    banner: list[str]
    pids: set[int] = field(default_factory=set)

    @property
    def token(self) -> str:
        for line in self.banner:
            if "publish token" in line:
                return line.rsplit(" ", 1)[1]
        raise AssertionError(self.banner)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)


@contextmanager
def workers(*args: str) -> Iterator[Server]:
    _flush_db()
    port = _free_port()
    command = [sys.executable, "-m", "trio_sse", "serve", "--workers", "2", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--backend", REDIS, "--graceful-timeout", "5", *args],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    server = Server(process, port, [])
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        text = b""
        while b"workers (pids" not in text:
            left = deadline - time.monotonic()
            assert left > 0, text
            if select.select([process.stdout], [], [], left)[0]:
                chunk = os.read(process.stdout.fileno(), 4096)
                assert chunk, text
                text += chunk
        server.banner = text.decode().splitlines()
        pids = next(line for line in server.banner if "workers (pids" in line)
        server.pids = {int(p) for p in pids.split("pids ")[1].split(")")[0].split()}
        yield server
    finally:
        for pid in (process.pid, *server.pids):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
        _flush_db()


def _pid_of(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/stats")
    response = connection.getresponse()
    assert response.status == 200
    return int(json.loads(response.read())["pid"])


def _one_connection_per_worker(server: Server) -> dict[int, http.client.HTTPConnection]:
    """Open connections until each worker holds one; the others are closed."""
    found: dict[int, http.client.HTTPConnection] = {}
    deadline = time.monotonic() + TIMEOUT
    while set(found) != server.pids:
        assert time.monotonic() < deadline, found
        connection = server.connect()
        pid = _pid_of(connection)
        assert pid in server.pids
        if pid in found:
            connection.close()
        else:
            found[pid] = connection
    return found


def _publish(connection: http.client.HTTPConnection, token: str, session: str, n: int) -> str:
    body = json.dumps({"type": "t", "data": n})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection.request("POST", f"/sessions/{session}/events", body, headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    assert response.status == 202, answer
    return str(answer["id"])


def _open_stream(connection: http.client.HTTPConnection, session: str) -> http.client.HTTPResponse:
    connection.request(
        "GET", f"/sessions/{session}/events", headers={"Accept": "text/event-stream"}
    )
    response = connection.getresponse()
    assert response.status == 200
    assert _read_until(response, "retry:").startswith("retry:")  # the first field of a stream
    return response


def _read_until(response: http.client.HTTPResponse, prefix: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = response.readline().decode()
        assert line, f"stream ended before {prefix!r}"
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} within {TIMEOUT} s")


def test_both_workers_accept_connections() -> None:
    with workers("--no-auth") as server:
        assert len(server.pids) == 2
        connections = _one_connection_per_worker(server)
        assert set(connections) == server.pids
        for connection in connections.values():
            connection.close()


def test_an_event_published_on_one_worker_reaches_a_stream_on_the_other() -> None:
    with workers("--no-auth") as server:
        (pid_a, a), (pid_b, b) = _one_connection_per_worker(server).items()
        assert pid_a != pid_b
        stream = _open_stream(a, "crossed")
        for n in range(3):
            _publish(b, "", "crossed", n)
        assert [json.loads(_read_until(stream, "data:")[5:]) for _ in range(3)] == [0, 1, 2]
        a.close()
        b.close()


def test_the_generated_token_works_on_every_worker() -> None:
    with workers() as server:
        ids = set()
        for connection in _one_connection_per_worker(server).values():
            ids.add(_publish(connection, server.token, "tokens", 1))
            connection.request("POST", "/sessions/tokens/events", json.dumps({"type": "t"}))
            refused = connection.getresponse()
            refused.read()
            assert refused.status == 401  # auth is really on
            connection.close()
        assert len(ids) == 2


def test_sigterm_drains_every_stream_and_exits_0() -> None:
    with workers("--no-auth", "--shutdown-retry-ms", "700") as server:
        connections = _one_connection_per_worker(server)
        streams = [_open_stream(c, f"drain-{pid}") for pid, c in connections.items()]
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for stream in streams:
            retry = int(_read_until(stream, "retry:")[6:])
            assert 700 <= retry <= 1400
            stream.read()  # the stream ends (a hang would hit the socket timeout)
        assert server.process.wait(TIMEOUT) == 0
        assert time.monotonic() - started < 5.0 + 1.0  # within the graceful timeout
        for pid in server.pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_several_workers_need_a_shared_backend() -> None:
    port = str(_free_port())
    done = subprocess.run(
        [sys.executable, "-m", "trio_sse", "serve", "--workers", "2", "--port", port],
        capture_output=True,
        timeout=TIMEOUT,
        text=True,
    )
    assert done.returncode == 2
    assert "needs a shared backend" in done.stderr
    assert "in-memory sessions are per process" in done.stderr

"""The Redis backend: conformance, the replay-to-live handoff, and faults.

Every test here uses real sockets and the real clock (``real_time``) and is bounded by
``trio.fail_after``. Plain tests use the Redis on 127.0.0.1:6379 (``.ci/run`` starts it), each
under its own key prefix; tests that kill, freeze or restart Redis start their own
``/usr/bin/redis-server`` on a free port and stop it by PID.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import coredis
import pytest
import trio

from trio_sse import BroadcasterConfig
from trio_sse.backends import RedisBackend
from trio_sse.testing import check_backend

pytestmark = pytest.mark.real_time

SHARED_URL = "redis://127.0.0.1:6379/0"
REDIS_SERVER = "/usr/bin/redis-server"
CONFIG = BroadcasterConfig(event_ttl=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server this test owns: started on a free port, stopped by PID."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = f"{REDIS_SERVER} --port {self.port} --bind 127.0.0.1 --appendonly no --save"
        self.process = subprocess.Popen(
            [*command.split(), ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if not shutil.which(REDIS_SERVER):
        pytest.skip("no /usr/bin/redis-server")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _shared_prefix() -> str:
    return f"test-{secrets.token_hex(4)}"


async def _delete_prefix(url: str, prefix: str) -> None:
    client = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(keys)


async def test_the_redis_backend_passes_the_conformance_checks() -> None:
    prefix = _shared_prefix()
    try:
        with trio.fail_after(60):
            await check_backend(
                lambda: RedisBackend(SHARED_URL, CONFIG, prefix=prefix),
                flush=lambda: _delete_prefix(SHARED_URL, prefix),
            )
    finally:
        await _delete_prefix(SHARED_URL, prefix)

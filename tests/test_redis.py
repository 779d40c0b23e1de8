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
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio

from trio_sse import (
    BackendUnavailableError,
    Broadcaster,
    BroadcasterConfig,
    CapacityError,
    CloseReason,
    ConfigError,
    ServerSettings,
    SSEEvent,
    Subscription,
    open_broadcaster,
)
from trio_sse._cli import main
from trio_sse.backends import RedisBackend
from trio_sse.testing import check_backend

from .server_helpers import PUBLISH_ANY, bearer, running_server, wait_until

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


@asynccontextmanager
async def shared_prefix() -> AsyncIterator[str]:
    prefix = _shared_prefix()
    try:
        yield prefix
    finally:
        await _delete_prefix(SHARED_URL, prefix)


async def receive_all(sub: Subscription, n: int) -> list[SSEEvent]:
    return [await sub.receive() for _ in range(n)]


async def assert_nothing_more(sub: Subscription, wait: float = 0.3) -> None:
    with trio.move_on_after(wait):
        extra = await sub.receive()
        raise AssertionError(f"unexpected {extra}")


async def test_closing_a_session_on_one_broadcaster_ends_it_on_every_broadcaster() -> None:
    async with shared_prefix() as prefix:
        with trio.fail_after(10):
            async with (
                open_broadcaster(CONFIG, backend=RedisBackend(SHARED_URL, prefix=prefix)) as a,
                open_broadcaster(CONFIG, backend=RedisBackend(SHARED_URL, prefix=prefix)) as b,
            ):
                event = await a.publish("s", "t", 1)
                async with b.subscribe("s", last_event_id=event.id) as sub:
                    await a.publish("s", "t", 2)
                    assert (await sub.receive()).json() == 2
                    assert await a.close_session("s")
                    with pytest.raises(trio.EndOfChannel):
                        await sub.receive()
                    assert sub.close_reason is CloseReason.SESSION_CLOSED
                assert b.get_stats()["backend"]["watched"] == 0


async def test_a_publish_whose_reply_was_lost_is_applied_once() -> None:
    async with shared_prefix() as prefix:
        backend = RedisBackend(SHARED_URL, CONFIG, prefix=prefix)
        real_attempt = backend._attempt
        lost = 0

        async def lose_first_reply(call: Any, what: str) -> Any:
            nonlocal lost
            result = await real_attempt(call, what)
            if what == "publish" and lost == 0:
                lost += 1  # applied in Redis, but the reply never reaches us
                raise BackendUnavailableError("connection lost mid-reply")
            return result

        backend._attempt = lose_first_reply  # type: ignore[method-assign]
        with trio.fail_after(10):
            async with open_broadcaster(CONFIG, backend=backend) as b, b.subscribe("s") as sub:
                first = await b.publish("s", "t", "once")
                second = await b.publish("s", "t", "twice?")
                assert await receive_all(sub, 2) == [first, second]
                await assert_nothing_more(sub)
        assert lost == 1
        assert backend.stats.publish_retries == 1
        assert [_seq(first), _seq(second)] == [1, 2]


def _seq(event: SSEEvent) -> int:
    return int((event.id or "").rpartition("-")[2])


async def test_while_redis_is_down_publish_fails_fast_and_streams_stay_open() -> None:
    with private_redis() as redis, trio.fail_after(20):
        backend = RedisBackend(redis.url, CONFIG, timeout=1.0)
        async with open_broadcaster(CONFIG, backend=backend) as b, b.subscribe("s") as sub:
            before = await b.publish("s", "t", "before")
            assert await sub.receive() == before
            redis.stop()
            started = trio.current_time()
            with pytest.raises(CapacityError):
                await b.publish("s", "t", "during")
            assert trio.current_time() - started < 1.1
            assert not backend.ready
            assert sub.close_reason is None  # the stream stays open
            with pytest.raises(BackendUnavailableError):
                async with b.subscribe("s", last_event_id=before.id):
                    pass  # a replay needs Redis: refused, never hung
            redis.start()  # empty: a new epoch
            after = await _publish_when_back(b, "after")
            reset = await sub.receive()
            assert reset.type == "reset" and reset.json()["reason"] == "epoch-changed"
            assert await sub.receive() == after
            await assert_nothing_more(sub)
            assert backend.ready


async def _publish_when_back(b: Broadcaster, data: str) -> SSEEvent:
    while True:
        try:
            return await b.publish("s", "t", data)
        except BackendUnavailableError:
            await trio.sleep(0.05)


async def test_a_frozen_redis_is_detected_within_the_timeout_and_nothing_retained_is_lost() -> None:
    with private_redis() as redis, trio.fail_after(30):
        a_backend = RedisBackend(redis.url, CONFIG, timeout=0.5, block_ms=100)
        b_backend = RedisBackend(redis.url, CONFIG, timeout=0.5, block_ms=100)
        async with (
            open_broadcaster(CONFIG, backend=a_backend) as a,
            open_broadcaster(CONFIG, backend=b_backend) as b,
            b.subscribe("s") as sub,
        ):
            first = await a.publish("s", "t", 0)
            assert await sub.receive() == first
            redis.freeze()
            started = trio.current_time()
            with pytest.raises(BackendUnavailableError):
                await a.publish("s", "t", "maybe")  # its outcome is unknown
            assert trio.current_time() - started < 0.5 + 0.3
            assert sub.close_reason is None
            await trio.sleep(0.3)  # b's reader times out too
            redis.thaw()
            rest = [await _publish_when_back(a, str(n)) for n in range(1, 4)]
            got = [await sub.receive() for _ in range(len(rest))]
            if got[0].data == "maybe":  # applied once the server resumed: delivered once
                got = [*got[1:], await sub.receive()]
            assert got == rest
            await assert_nothing_more(sub)
            seqs = [_seq(event) for event in [first, *got]]
            assert seqs == sorted(set(seqs))


async def test_redis_restarted_empty_gives_every_subscriber_one_reset_then_live_events() -> None:
    with private_redis() as redis, trio.fail_after(30):
        async with (
            open_broadcaster(CONFIG, backend=RedisBackend(redis.url, CONFIG)) as a,
            open_broadcaster(CONFIG, backend=RedisBackend(redis.url, CONFIG)) as b,
            a.subscribe("s") as on_a,
            b.subscribe("s") as on_b,
            b.subscribe("s") as on_b2,
        ):
            old = [await a.publish("s", "t", n) for n in range(3)]
            for sub in (on_a, on_b, on_b2):
                assert await receive_all(sub, 3) == old
            redis.stop()
            redis.start()
            new = [await _publish_when_back(a, str(n)) for n in range(2)]
            new.append(await b.publish("s", "t", "from b"))
            for sub in (on_a, on_b, on_b2):
                reset, *live = await receive_all(sub, 4)
                assert reset.type == "reset"
                assert reset.json()["lastEventId"] == old[-1].id
                assert live == new
                await assert_nothing_more(sub, 0.1)
            assert {event.id.rpartition("-")[0] for event in new if event.id} != {
                old[0].id.rpartition("-")[0] if old[0].id else ""
            }


def test_serve_with_a_bad_backend_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--no-auth", "--backend", "http://127.0.0.1:6379"]) == 2
    assert "bad Redis URL" in capsys.readouterr().err
    assert main(["serve", "--no-auth", "--backend", "redis://127.0.0.1:notaport"]) == 2


def test_the_backend_is_read_from_toml_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trio-sse.toml"
    path.write_text('[server]\nbackend = "redis://127.0.0.1:6379/0"\n')
    assert ServerSettings.from_toml(path, table="server").backend == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("TRIO_SSE_BACKEND", "redis://127.0.0.1:6380/1")
    assert ServerSettings.from_env().backend == "redis://127.0.0.1:6380/1"
    monkeypatch.setenv("TRIO_SSE_BACKEND", "mysql://x")
    with pytest.raises(ConfigError):
        ServerSettings.from_env()


async def test_an_unreachable_redis_at_start_is_retried_while_readyz_answers_503() -> None:
    with private_redis() as redis:
        redis.stop()
        async with running_server(backend=redis.url, backend_timeout=0.5, deadline=20) as h:
            answer = await h.client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json() == {"status": "backend unavailable"}
            publish = await h.client.post(
                "/sessions/s/events", json={"data": 1}, headers=bearer(PUBLISH_ANY)
            )
            assert publish.status_code == 503
            assert "retry-after" in publish.headers
            redis.start()
            await wait_until(lambda: h.running.broadcaster.backend_ready, within=5)
            assert (await h.client.get("/readyz")).status_code == 200
            assert h.stats()["backend"]["kind"] == "redis"
            publish = await h.client.post(
                "/sessions/s/events", json={"data": 1}, headers=bearer(PUBLISH_ANY)
            )
            assert publish.status_code in (200, 201, 202), publish.text

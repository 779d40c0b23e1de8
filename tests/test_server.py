"""End-to-end tests of the HTTP server: a real Hypercorn server, real sockets, httpx clients.

Every test serves on 127.0.0.1 with port 0 (a free port) through ``running_server``, which runs
the whole test (start, body, shutdown) under ``trio.fail_after`` (10 s; 20 s for the 200-stream
shutdown), so a hang fails instead of blocking the suite. Streams are read with the project's
own sans-IO parser. Every test uses the real clock (``real_time``): a virtual clock would fire
socket timeouts early.
"""

from __future__ import annotations

import json
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trio_sse import BroadcasterConfig, MessageEvent, make_token
from trio_sse.server._hangup import HangupWatcher
from trio_sse.server._transport import SocketTransport

from .server_helpers import (
    CLIENT_TIMEOUT,
    KEY,
    PUBLISH_ANY,
    EventStream,
    Harness,
    bearer,
    open_stream,
    raw_exchange,
    running_server,
    wait_until,
)

pytestmark = pytest.mark.real_time


async def read_at_least(stream: EventStream, size: int) -> bytes:
    while len(stream.raw) < size:
        assert await stream.read_chunk() is not None, "the stream ended"
    return bytes(stream.raw)


def error_of(response: httpx.Response) -> str:
    """The reason of a JSON error answer (fails if the answer is not one)."""
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    return str(body["error"])


# -- streams ------------------------------------------------------------------------------


async def test_a_stream_has_sse_headers_starts_with_retry_and_delivers_published_events() -> None:
    async with running_server() as h, h.stream("s") as stream:
        assert stream.status == 200
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        start = b"retry: %d\n\n" % h.settings.retry_ms
        assert (await read_at_least(stream, len(start))).startswith(start)

        event_id = await h.publish("s", {"n": 1}, type="order")
        assert await stream.next_event() == MessageEvent("order", '{"n":1}', event_id)


async def test_multi_line_and_empty_data_arrive_intact() -> None:
    texts = ["first\nsecond", "blank\n\nline", "trailing\n", "\nleading", "", "crlf\r\nnext"]
    async with running_server() as h, h.stream("s") as stream:
        for text in texts:
            await h.publish("s", text)
        received = [event.data for event in await stream.events(len(texts))]
    assert received == [text.replace("\r\n", "\n") for text in texts]


async def test_an_idle_stream_receives_heartbeat_comments() -> None:
    async with running_server(heartbeat_interval=0.2) as h, h.stream("s") as stream:
        start = trio.current_time()
        while stream.raw.count(b":\n\n") < 3:
            assert await stream.read_chunk() is not None, "the stream ended"
        elapsed = trio.current_time() - start
    assert stream.raw == b"retry: 3000\n\n" + b":\n\n" * 3
    assert 0.5 <= elapsed < 3, "heartbeats come every heartbeat_interval, not faster"


async def test_a_head_request_gets_the_stream_headers_and_an_empty_body() -> None:
    async with running_server() as h:
        response = await h.client.head("/sessions/s/events")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.content == b""
        await wait_until(lambda: h.subscribers() == 0, what="the HEAD to leave")


@pytest.mark.parametrize("via", ["header", "query", "header-over-query"])
async def test_a_reconnect_after_an_event_id_resumes_exactly_after_it(via: str) -> None:
    async with running_server() as h:
        async with h.stream("s") as stream:
            seen = [await h.publish("s", n) for n in range(5)]
            assert [event.id for event in await stream.events(5)] == seen
        missed = [await h.publish("s", n) for n in range(5, 8)]
        cursor = seen[2]
        headers = None if via == "query" else {"Last-Event-ID": cursor}
        params = {
            "header": None,
            "query": {"lastEventId": cursor},
            "header-over-query": {"lastEventId": seen[0]},  # ignored: the header wins
        }[via]
        async with h.stream("s", headers=headers, params=params) as stream:
            replayed = await stream.events(5)
            live = await h.publish("s", 8)
            after = await stream.next_event()
    assert [(e.id, e.data) for e in replayed] == [
        (event_id, str(n)) for n, event_id in enumerate(seen[3:] + missed, start=3)
    ]
    assert (after.id, after.data) == (live, "8"), "no duplicate between replay and live events"


def future_id(last: str) -> str:
    return last.rsplit("-", 1)[0] + "-999"


@pytest.mark.parametrize(
    ("cursor_from", "reason"),
    [
        (lambda last: "garbage", "unknown-id"),
        (lambda last: "0badc0de-2", "epoch-changed"),
        (future_id, "unknown-id"),
    ],
    ids=["malformed", "other-epoch", "from-the-future"],
)
async def test_a_cursor_that_cannot_resume_gets_a_reset_event_then_the_history(
    cursor_from: Callable[[str], str], reason: str
) -> None:
    async with running_server() as h:
        ids = [await h.publish("s", n) for n in range(2)]
        cursor = cursor_from(ids[-1])
        async with h.stream("s", headers={"Last-Event-ID": cursor}) as stream:
            reset, *history = await stream.events(3)
    assert reset.type == "reset"
    assert reset.json() == {"reason": reason, "lastEventId": cursor, "oldestId": ids[0]}
    assert [event.id for event in history] == ids


async def test_events_queued_while_the_client_is_busy_arrive_batched() -> None:
    """Through the ASGI path (a kept-alive connection); tests/test_fastpath.py checks the lean
    path, which writes an event at once while the socket takes it, and batches otherwise."""
    count = 50
    async with running_server() as h:
        assert (await h.client.get("/healthz")).status_code == 200  # keep this connection
        async with h.stream("s") as stream:
            await read_at_least(stream, len(b"retry: 3000\n\n"))
            chunks_before = stream.chunk_count
            for n in range(count):  # in-process, while the client reads nothing
                await h.broadcaster.publish("s", "message", n)
            events = await stream.events(count)
            chunks = stream.chunk_count - chunks_before
    assert [event.data for event in events] == [str(n) for n in range(count)]
    assert chunks < count, "several queued events go out in one write"


# -- publishing and bad input ------------------------------------------------------------


async def test_publish_answers_202_with_the_new_event_id() -> None:
    async with running_server() as h:
        response = await h.post_event("s", {"type": "t", "data": {"k": [1, 2]}, "ttl": 60})
        assert response.status_code == 202
        event_id = response.json()["id"]
        second = await h.post_event("s", {"data": "plain"})
        assert second.status_code == 202
        assert h.stats()["totalEvents"] == 2
        poll = await h.poll("s", after=event_id.rsplit("-", 1)[0] + "-0")
    assert poll["events"] == [
        {"id": event_id, "type": "t", "data": '{"k":[1,2]}'},
        {"id": second.json()["id"], "type": "message", "data": "plain"},
    ]


VALID_EVENT = b'{"type": "t", "data": 1}'


def nested(depth: int) -> bytes:
    return b'{"data": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("session", "body", "status"),
    [
        pytest.param("x" * 129, VALID_EVENT, 400, id="session-id-129-chars"),
        pytest.param("a%20b", VALID_EVENT, 400, id="session-id-with-space"),
        pytest.param("a%2Fb", VALID_EVENT, 400, id="session-id-with-slash"),
        pytest.param("%C3%A9", VALID_EVENT, 400, id="session-id-non-ascii"),
        pytest.param("s", b'{"type": "t", "data": ', 400, id="malformed-json"),
        pytest.param("s", b'{"data": "\xff\xfe"}', 400, id="invalid-utf8"),
        pytest.param("s", b'["t", 1]', 400, id="json-not-an-object"),
        pytest.param("s", b'{"data": 1, "extra": 2}', 400, id="unknown-field"),
        pytest.param("s", b'{"type": 1, "data": 1}', 400, id="type-not-a-string"),
        pytest.param("s", b'{"type": "a\\nb", "data": 1}', 400, id="type-with-newline"),
        pytest.param("s", b'{"type": "", "data": 1}', 400, id="type-empty"),
        pytest.param("s", b'{"type": "reset", "data": 1}', 400, id="type-reset-reserved"),
        pytest.param("s", b'{"type": "gap", "data": 1}', 400, id="type-gap-reserved"),
        pytest.param("s", b'{"data": 1, "ttl": "10"}', 400, id="ttl-a-string"),
        pytest.param("s", b'{"data": 1, "ttl": true}', 400, id="ttl-a-bool"),
        pytest.param("s", b'{"data": 1, "ttl": -1}', 400, id="ttl-negative"),
        pytest.param("s", b'{"data": NaN}', 400, id="data-nan"),
        pytest.param("s", nested(100_000), 400, id="data-nested-100000-deep"),
        pytest.param("s", b'{"data": ' + b"7" * 5000 + b"}", 400, id="data-int-of-5000-digits"),
        pytest.param("s", json.dumps({"data": "x" * 70_000}).encode(), 413, id="event-too-big"),
    ],
)
async def test_a_bad_publish_is_a_json_4xx_and_creates_no_state(
    session: str, body: bytes, status: int
) -> None:
    async with running_server() as h:
        response = await h.post_event(session, body)
        assert response.status_code == status, response.text[:200]
        error_of(response)
        stats = h.stats()
    assert (stats["totalSessions"], stats["totalEvents"]) == (0, 0)


async def test_nested_data_of_any_depth_is_published_or_refused_never_a_server_error() -> None:
    # Around Python's recursion limit, parsing or re-encoding deep JSON raises RecursionError;
    # the scan crosses both thresholds whatever the stack depth of the handler.
    async with running_server() as h:
        answers = {}
        for depth in range(600, 1400, 4):
            answers[depth] = (await h.post_event("s", nested(depth))).status_code
    server_errors = {depth: status for depth, status in answers.items() if status >= 500}
    assert server_errors == {}
    assert set(answers.values()) <= {202, 400, 413}


async def test_a_body_over_max_body_bytes_is_refused_from_its_content_length() -> None:
    async with running_server() as h:
        head = (
            "POST /sessions/s/events HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: Bearer {PUBLISH_ANY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {h.settings.max_body_bytes + 1}\r\n\r\n"
        )
        status, headers, body = await raw_exchange(h.running.port, head.encode())
        assert status == 413
        assert headers["content-type"].startswith("application/json")
        assert isinstance(json.loads(body)["error"], str)
        assert h.stats()["totalSessions"] == 0


async def test_a_body_over_max_body_bytes_is_refused_without_content_length() -> None:
    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"data": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}'

    async with running_server(max_body_bytes=4096) as h:
        response = await h.client.post(
            "/sessions/s/events", content=chunked(), headers=bearer(PUBLISH_ANY)
        )
        assert response.status_code == 413
        error_of(response)
        assert h.stats()["totalSessions"] == 0


@pytest.mark.parametrize("session", ["x" * 129, "a%20b", "%C3%A9", "a%2Fb"])
@pytest.mark.parametrize("route", ["stream", "poll", "delete"])
async def test_every_route_refuses_an_invalid_session_id(route: str, session: str) -> None:
    async with running_server() as h:
        if route == "stream":
            async with h.stream(session) as stream:
                status, error = stream.status, (await stream.error())["error"]
        else:
            method = "GET" if route == "poll" else "DELETE"
            url = f"/sessions/{session}" + ("/poll" if route == "poll" else "")
            response = await h.client.request(method, url, headers=bearer(PUBLISH_ANY))
            status, error = response.status_code, error_of(response)
        assert 400 <= status < 500
        assert isinstance(error, str)
        assert h.stats()["totalSessions"] == 0


async def test_a_128_character_session_id_is_accepted_everywhere() -> None:
    session = "a1._~-" * 21 + "zz"
    assert len(session) == 128
    async with running_server() as h:
        await h.publish(session)
        async with h.stream(session) as stream:
            assert stream.status == 200
        assert (await h.poll(session))["events"] == []


async def test_a_last_event_id_over_256_characters_is_a_json_400() -> None:
    async with running_server() as h:
        async with h.stream("s", headers={"Last-Event-ID": "x" * 257}) as stream:
            assert stream.status == 400
            assert "error" in await stream.error()
        async with h.stream("s", params={"lastEventId": "x" * 257}) as stream:
            assert stream.status == 400
        response = await h.client.get("/sessions/s/poll", params={"after": "x" * 257})
        assert response.status_code == 400
        error_of(response)
        assert h.stats()["totalSessions"] == 0
        async with h.stream("s", headers={"Last-Event-ID": "x" * 256}) as stream:
            assert (await stream.next_event()).type == "reset"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/sessions", 404),
        ("PUT", "/sessions/s", 405),
        ("GET", "/sessions/s/events/more", 404),
        ("PUT", "/sessions/s/events", 405),
        ("DELETE", "/sessions/s/events", 405),
        ("POST", "/stats", 405),
        ("POST", "/sessions/s/poll", 405),
    ],
)
async def test_unknown_routes_and_wrong_methods_answer_json(
    method: str, path: str, status: int
) -> None:
    async with running_server() as h:
        response = await h.client.request(method, path, headers=bearer(PUBLISH_ANY))
        assert response.status_code == status
        error_of(response)
        if status == 405:
            assert method not in response.headers["allow"]


# -- polling ------------------------------------------------------------------------------


async def test_a_poll_returns_the_events_after_its_cursor_and_the_next_cursor() -> None:
    async with running_server() as h:
        ids = [await h.publish("s", n, type="t") for n in range(3)]
        result = await h.poll("s", after=ids[0])
    assert result == {
        "events": [
            {"id": ids[1], "type": "t", "data": "1"},
            {"id": ids[2], "type": "t", "data": "2"},
        ],
        "next": ids[2],
    }


async def long_poll_while(
    h: Harness, action: Callable[[], Awaitable[object]], **params: str
) -> tuple[httpx.Response, float]:
    """Long-poll session ``s``; once the poll has subscribed, run ``action``.

    Returns the poll's answer and the seconds it took.
    """
    answers: list[httpx.Response] = []

    async def long_poll() -> None:
        answers.append(await h.client.get("/sessions/s/poll", params=params))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await wait_until(lambda: h.subscribers() == 1, what="the poll to subscribe")
        await action()
    return answers[0], trio.current_time() - start


async def test_a_long_poll_returns_as_soon_as_an_event_is_published() -> None:
    published: list[str] = []

    async def publish_later() -> None:
        await trio.sleep(0.2)
        published.append(await h.publish("s", "now"))

    async with running_server() as h:
        cursor = (await h.poll("s"))["next"]
        poll, elapsed = await long_poll_while(h, publish_later, after=cursor, wait="1")
    assert poll.status_code == 200
    assert [event["id"] for event in poll.json()["events"]] == published
    assert 0.2 <= elapsed < 0.9, "the poll returned when the event came, not after wait=1"


async def test_an_empty_poll_returns_a_cursor_that_resumes_exactly() -> None:
    async with running_server() as h:
        first = await h.poll("s", wait="0")
        assert first["events"] == []
        event_id = await h.publish("s", "later")
        second = await h.poll("s", after=first["next"], wait="0")
        third = await h.poll("s", after=second["next"], wait="0")
    assert second["events"] == [{"id": event_id, "type": "message", "data": "later"}]
    assert second["next"] == event_id
    assert third == {"events": [], "next": event_id}


async def test_a_poll_with_an_unknown_cursor_starts_with_a_reset_event() -> None:
    async with running_server() as h:
        ids = [await h.publish("s", n) for n in range(2)]
        result = await h.poll("s", after="bogus")
    reset, *history = result["events"]
    assert reset["type"] == "reset"
    assert json.loads(reset["data"])["lastEventId"] == "bogus"
    assert [event["id"] for event in history] == ids
    assert result["next"] == ids[-1]


@pytest.mark.parametrize("wait", ["abc", "-1", "nan", "inf", "2.5"])
async def test_a_poll_with_an_invalid_wait_is_a_json_400(wait: str) -> None:
    async with running_server(max_poll_wait=2) as h:
        response = await h.client.get("/sessions/s/poll", params={"wait": wait})
        assert response.status_code == 400
        error_of(response)
        assert h.running.endpoint.active.value == 0


async def test_a_long_poll_whose_session_is_deleted_answers_200_with_no_events() -> None:
    async def delete() -> None:
        deleted = await h.client.delete("/sessions/s", headers=bearer(PUBLISH_ANY))
        assert deleted.status_code == 200

    async with running_server() as h:
        poll, elapsed = await long_poll_while(h, delete, wait="5")
        assert poll.status_code == 200, poll.text
        assert poll.json()["events"] == []
        assert elapsed < 1
        resumed = await h.poll("s", after=poll.json()["next"])
    assert [event["type"] for event in resumed["events"]] == ["reset"]


async def test_a_long_poll_open_at_shutdown_answers_at_once_with_what_it_has() -> None:
    async def stop() -> None:
        h.stop.set()

    async with running_server() as h:
        poll, elapsed = await long_poll_while(h, stop, wait="5")
        assert poll.status_code == 200, poll.text
        assert poll.json()["events"] == []
        assert elapsed < 1
        with trio.fail_after(1):
            await h.stopped.wait()


# -- deleting sessions -------------------------------------------------------------------


async def test_delete_ends_open_streams_and_forgets_the_history() -> None:
    async with running_server() as h:
        async with h.stream("s") as stream, h.stream("s") as other:
            event_id = await h.publish("s", 1)
            for reader in (stream, other):
                assert (await reader.next_event()).id == event_id
            response = await h.client.delete("/sessions/s", headers=bearer(PUBLISH_ANY))
            assert response.status_code == 200
            assert response.json() == {"deleted": "s"}
            for reader in (stream, other):
                assert await reader.read_to_end() == []
                assert reader.ended
        await wait_until(lambda: h.subscribers() == 0)
        assert h.stats()["totalSessions"] == 0
        assert h.stats()["totalEvents"] == 0
        resumed = await h.poll("s", after=event_id)
    assert [event["type"] for event in resumed["events"]] == ["reset"]


async def test_delete_of_an_unknown_session_is_a_json_404() -> None:
    async with running_server() as h:
        response = await h.client.delete("/sessions/nope", headers=bearer(PUBLISH_ANY))
        assert response.status_code == 404
        error_of(response)


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("not-a-jwt", 401), (make_token(KEY, subscribe=["*"]), 403)],
    ids=["no-token", "malformed", "subscribe-only"],
)
async def test_delete_needs_a_publish_token(token: str | None, status: int) -> None:
    async with running_server() as h:
        await h.publish("s")
        headers = bearer(token) if token else {}
        response = await h.client.delete("/sessions/s", headers=headers)
        assert response.status_code == status
        error_of(response)
        assert h.stats()["totalSessions"] == 1


# -- stats, metrics, health ---------------------------------------------------------------


async def test_stats_and_metrics_report_subscribers_and_connections() -> None:
    async with running_server() as h, h.stream("s") as stream:
        await h.publish("s", "x")
        await stream.next_event()
        stats = (await h.client.get("/stats")).json()
        metrics = await h.client.get("/metrics")
    assert stats["totalSubscribers"] == 1
    assert stats["totalSessions"] == 1
    assert stats["totalEvents"] == 1
    assert stats["activeConnections"] == 1
    assert stats["heldBytes"] > 0
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert re.search(r"^trio_sse_subscribers 1\.0$", metrics.text, re.MULTILINE)
    assert re.search(r"^trio_sse_connections 1\.0$", metrics.text, re.MULTILINE)
    handed_over = stats["streamWrites"]["eventsHandedOver"]
    assert handed_over == 1  # the stream waited idle: the event went straight to its socket
    assert stats["streamWrites"]["coalescedWrites"] == 1
    assert re.search(r"^trio_sse_stream_events_handed_over_total 1\.0$", metrics.text, re.MULTILINE)
    assert re.search(r"^trio_sse_stream_pending_bytes 0\.0$", metrics.text, re.MULTILINE)


async def test_health_and_readiness_answer_200() -> None:
    async with running_server() as h:
        health = await h.client.get("/healthz")
        ready = await h.client.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_once_the_broadcaster_is_closed_readiness_and_new_work_get_503() -> None:
    async with running_server() as h:
        h.broadcaster.close()  # what a shutdown does first
        ready = await h.client.get("/readyz")
        health = await h.client.get("/healthz")
        publish = await h.post_event("s", {"data": 1})
        poll = await h.client.get("/sessions/s/poll")
        async with h.stream("s") as stream:
            stream_status = stream.status
            stream_headers = stream.response.headers
            assert "error" in await stream.error()
    assert ready.status_code == 503
    assert ready.json() == {"status": "shutting down"}
    assert health.status_code == 200
    for response in (publish, poll):
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        error_of(response)
    assert stream_status == 503
    assert stream_headers["retry-after"].isdigit()


# -- disconnects and slow readers ---------------------------------------------------------


@pytest.mark.parametrize("watcher", ["epoll", "a task per stream"])
async def test_an_idle_client_that_disconnects_is_unsubscribed_within_a_second(
    watcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks_watching: list[SocketTransport] = []

    async def wait_disconnect(transport: SocketTransport) -> None:
        tasks_watching.append(transport)
        await trio.sleep_forever()

    if watcher == "epoll":  # then no stream has a task of its own waiting for its client
        monkeypatch.setattr(SocketTransport, "wait_disconnect", wait_disconnect)
    else:  # as where select.epoll does not exist
        monkeypatch.setattr(HangupWatcher, "watch", lambda self, fd, on_hangup: False)
    async with running_server(heartbeat_interval=10) as h:
        async with h.stream("s") as stream:
            await read_at_least(stream, 1)
            assert h.subscribers() == 1
        await wait_until(lambda: h.subscribers() == 0, what="subscriber removal")
        await wait_until(lambda: h.running.endpoint.active.value == 0, what="slot release")
    assert tasks_watching == []


async def test_a_busy_client_that_disconnects_mid_stream_is_unsubscribed_within_a_second() -> None:
    async def publish_forever(h: Harness) -> None:
        for n in range(100_000):
            await h.broadcaster.publish("s", "tick", n)
            await trio.sleep(0.002)

    async with running_server(heartbeat_interval=10) as h:
        async with trio.open_nursery() as nursery:
            async with h.stream("s") as stream:
                nursery.start_soon(publish_forever, h)
                await stream.events(20)
            await wait_until(lambda: h.subscribers() == 0, what="subscriber removal")
            await wait_until(lambda: h.running.endpoint.active.value == 0, what="slot release")
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def stalled_stream(port: int, session: str) -> AsyncIterator[trio.SocketStream]:
    """A raw connection that sends a stream request and never reads the answer.

    Its receive buffer is made small before connecting, so the server's writes block after a
    few tens of KB instead of filling megabytes of kernel buffers first.
    """
    sock = trio.socket.socket()
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        await stream.send_all(
            b"GET /sessions/%s/events HTTP/1.1\r\nHost: test\r\n\r\n" % session.encode()
        )
        yield stream


async def test_a_reader_that_stops_reading_is_dropped_while_another_gets_every_event() -> None:
    config = BroadcasterConfig(max_queue_size=50)
    bound = config.held_bytes_bound(sessions=1, subscribers=2)
    data = "x" * 30_000
    async with running_server(config, send_timeout=1, heartbeat_interval=0.5) as h:
        async with stalled_stream(h.running.port, "s"), h.stream("s") as reader:
            await wait_until(lambda: h.subscribers() == 2, what="both subscribers")
            published, received, held = [], [], []
            dropped_after: int | None = None
            for n in range(200):  # 200 x 30 KB: 6 MB in all
                published.append((await h.broadcaster.publish("s", "big", data)).id)
                received.append((await reader.next_event()).id)
                held.append(h.stats()["heldBytes"])
                if dropped_after is None and h.subscribers() == 1:
                    dropped_after = n + 1
            assert received == published, "the reading subscriber got every event, in order"
            assert dropped_after is not None, "the stalled subscriber was never dropped"
            assert max(held) <= bound
            # Its connection, stuck in a write, is released by TCP_USER_TIMEOUT (send_timeout).
            grace = h.settings.send_timeout + h.settings.heartbeat_interval + 2
            await wait_until(lambda: h.running.endpoint.active.value == 1, within=grace)
            assert h.subscribers() == 1


# -- shutdown -----------------------------------------------------------------------------


async def test_shutdown_ends_every_open_stream_with_a_jittered_retry() -> None:
    streams, grace, low = 200, 5.0, 1000
    farewells: list[int] = []

    async def follow(client: httpx.AsyncClient, n: int) -> None:
        async with open_stream(client, f"s{n % 10}") as stream:
            await stream.read_to_end()
        match = re.search(rb"retry: (\d+)\n\n\Z", stream.raw)
        assert match, f"the stream did not end with a retry: {bytes(stream.raw[-60:])!r}"
        farewells.append(int(match.group(1)))

    async with running_server(deadline=20, graceful_timeout=grace, shutdown_retry_ms=low) as h:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(
            base_url=h.running.url, limits=limits, timeout=CLIENT_TIMEOUT
        ) as client:
            async with trio.open_nursery() as nursery:
                for n in range(streams):
                    nursery.start_soon(follow, client, n)
                await wait_until(lambda: h.subscribers() == streams, within=8)
                stop_at = trio.current_time()
                h.stop.set()
            streams_ended = trio.current_time() - stop_at
            await h.stopped.wait()
            serve_returned = trio.current_time() - stop_at
    assert len(farewells) == streams
    assert all(low <= value <= 2 * low for value in farewells), sorted(farewells)
    assert len(set(farewells)) > 1, "the reconnection times are jittered"
    assert streams_ended < grace, "streams ended by themselves, before graceful_timeout"
    assert serve_returned < grace + 2


# -- authorisation ------------------------------------------------------------------------

OTHER_KEY_TOKEN = make_token("another-key-entirely-0123456789abcdef", publish=["*"])


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="no-token"),
        pytest.param(bearer("not.a.jwt"), 401, id="malformed-token"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, 401, id="basic-auth"),
        pytest.param(bearer(OTHER_KEY_TOKEN), 401, id="other-key"),
        pytest.param(bearer(make_token(KEY, publish=["other-*"])), 403, id="pattern-mismatch"),
        pytest.param(bearer(make_token(KEY, subscribe=["*"])), 403, id="subscribe-only"),
        pytest.param(bearer(make_token(KEY, publish=["orders-*"], ttl=-10)), 401, id="expired"),
        pytest.param(bearer(make_token(KEY, publish=["orders-*"])), 202, id="matching-pattern"),
        pytest.param(bearer(make_token(KEY, publish=["orders-1"], ttl=3600)), 202, id="exact-id"),
        pytest.param({"Cookie": f"trio_sse_token={PUBLISH_ANY}"}, 401, id="cookie-never-publishes"),
    ],
)
async def test_publishing_needs_a_valid_token_with_a_matching_pattern(
    headers: dict[str, str], status: int
) -> None:
    async with running_server() as h:
        response = await h.post_event("orders-1", {"data": 1}, token=None, headers=headers)
        assert response.status_code == status
        if status != 202:
            error_of(response)
            assert h.stats()["totalSessions"] == 0
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"


SUBSCRIBE_A = make_token(KEY, subscribe=["room-a"])


async def subscribe(
    h: Harness, route: str, session: str, headers: dict[str, str]
) -> tuple[int, httpx.Headers]:
    """Open a stream or a poll; return its status and headers (checking a refusal is JSON)."""
    if route == "stream":
        async with h.stream(session, headers=headers) as stream:
            if stream.status != 200:
                assert isinstance((await stream.error())["error"], str)
            return stream.status, stream.response.headers
    response = await h.client.get(f"/sessions/{session}/poll", headers=headers)
    if response.status_code != 200:
        error_of(response)
    return response.status_code, response.headers


@pytest.mark.parametrize("route", ["stream", "poll"])
@pytest.mark.parametrize(
    ("session", "headers", "status"),
    [
        pytest.param("room-a", {}, 401, id="no-token"),
        pytest.param("room-a", bearer("garbage"), 401, id="bad-token"),
        pytest.param("room-a", bearer(SUBSCRIBE_A), 200, id="header"),
        pytest.param("room-a", {"Cookie": f"trio_sse_token={SUBSCRIBE_A}"}, 200, id="cookie"),
        pytest.param("room-b", bearer(SUBSCRIBE_A), 403, id="other-session"),
        pytest.param("room-a", bearer(PUBLISH_ANY), 403, id="publish-only"),
    ],
)
async def test_subscribing_needs_a_token_when_auth_subscribe_is_on(
    route: str, session: str, headers: dict[str, str], status: int
) -> None:
    async with running_server(auth_subscribe=True) as h:
        answer, answer_headers = await subscribe(h, route, session, headers)
    assert answer == status
    if status == 401:
        assert answer_headers["www-authenticate"] == "Bearer"


async def test_rs256_tokens_are_verified_with_the_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rs256 = make_token(private_pem, publish=["*"], algorithm="RS256")
    async with running_server(jwt_key=None, jwt_public_key=public_pem) as h:
        accepted = await h.post_event("s", {"data": 1}, token=rs256)
        hs256 = await h.post_event("s", {"data": 1}, token=PUBLISH_ANY)
    assert accepted.status_code == 202
    assert hs256.status_code == 401, "an HS256 token is refused when only RS256 is configured"


# -- CORS ---------------------------------------------------------------------------------

APP = "https://app.example"


@pytest.mark.parametrize("credentials", [False, True])
async def test_cors_allows_the_configured_origin_on_publish_stream_and_errors(
    credentials: bool,
) -> None:
    evil = {"Origin": "https://evil.example"}
    async with running_server(cors_origins=(APP,), cors_allow_credentials=credentials) as h:
        posted = await h.post_event("s", {"data": 1}, headers={"Origin": APP})
        refused = await h.post_event("s", {"data": 1}, token=None, headers={"Origin": APP})
        async with h.stream("s", headers={"Origin": APP}) as stream:
            stream_headers = stream.response.headers
        other_post = await h.post_event("s", {"data": 1}, headers=evil)
        async with h.stream("s", headers=evil) as stream:
            other_stream_headers = stream.response.headers
    assert refused.status_code == 401, "errors carry CORS headers so the page can read them"
    for headers in (posted.headers, refused.headers, stream_headers):
        assert headers["access-control-allow-origin"] == APP
        assert headers["access-control-expose-headers"] == "Retry-After"
        assert headers.get("access-control-allow-credentials") == ("true" if credentials else None)
    for headers in (other_post.headers, other_stream_headers):
        assert "access-control-allow-origin" not in headers
        assert "access-control-allow-credentials" not in headers
    for headers in (posted.headers, stream_headers, other_post.headers, other_stream_headers):
        assert "origin" in headers["vary"].lower(), "the answer depends on Origin"


async def test_cors_preflight_lists_the_allowed_methods_and_headers() -> None:
    async with running_server(cors_origins=(APP,)) as h:
        response = await h.client.options(
            "/sessions/s/events",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert response.status_code in (200, 204)
    headers = response.headers
    assert headers["access-control-allow-origin"] == APP
    assert "POST" in headers["access-control-allow-methods"]
    allowed = headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "last-event-id"} <= {
        name.strip() for name in allowed.split(",")
    }


async def test_cors_wildcard_allows_any_origin_without_credentials() -> None:
    async with running_server(cors_origins=("*",)) as h:
        posted = await h.post_event("s", {"data": 1}, headers={"Origin": "https://any.example"})
        async with h.stream("s", headers={"Origin": "https://any.example"}) as stream:
            stream_headers = stream.response.headers
        preflight = await h.client.options(
            "/sessions/s/events",
            headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST"},
        )
    for headers in (posted.headers, stream_headers, preflight.headers):
        assert headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in headers


# -- limits -------------------------------------------------------------------------------


async def test_streams_and_polls_past_max_connections_get_503_with_retry_after() -> None:
    async with running_server(max_connections=2) as h:
        async with h.stream("s1") as first, h.stream("s2") as second:
            assert (first.status, second.status) == (200, 200)
            async with h.stream("s3") as third:
                assert third.status == 503
                assert third.response.headers["retry-after"].isdigit()
                assert "error" in await third.error()
            poll = await h.client.get("/sessions/s3/poll")
            assert poll.status_code == 503
            assert poll.headers["retry-after"].isdigit()
            error_of(poll)
        await wait_until(lambda: h.running.endpoint.active.value == 0, what="slot release")
        async with h.stream("s3") as again:
            assert again.status == 200


async def test_a_new_session_past_max_sessions_gets_503_with_retry_after() -> None:
    async with running_server(BroadcasterConfig(max_sessions=1)) as h, h.stream("a") as stream:
        assert stream.status == 200
        response = await h.post_event("b", {"data": 1})
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        error_of(response)
        async with h.stream("b") as refused:
            assert refused.status == 503
            assert "retry-after" in refused.response.headers
        assert h.stats()["totalSessions"] == 1


# -- robustness ---------------------------------------------------------------------------

FUZZ_SESSIONS = ["s", "fuzz", "x" * 129, "a b", "%FF", "%00", "..", "ü", "a%2Fb", ""]
FUZZ_PIECES = ["sessions", "events", "poll", "stats", "metrics", "healthz", "readyz", "static"]
FUZZ_VALUES = ["", "0", "0.05", "-1", "nan", "1e9", "abc", "x" * 300, "%FF", "\u00ff\u0100"]
FUZZ_TOKENS = [PUBLISH_ANY, "garbage", "", "a.b.c", "x" * 5000, make_token(KEY, subscribe=["*"])]


def fuzz_request(client: httpx.AsyncClient, rng: random.Random) -> httpx.Request:
    """A random request, weighted towards the API's own routes, ids and tokens."""
    method = rng.choice(["GET", "GET", "POST", "POST", "DELETE", "PUT"])
    if rng.random() < 0.8:
        session = rng.choice(["s", "fuzz"] if rng.random() < 0.5 else FUZZ_SESSIONS)
        path = f"/sessions/{session}" + rng.choice(["/events", "/events", "/poll", "", "/x/y"])
    else:
        path = "/" + "/".join(rng.choices(FUZZ_PIECES, k=rng.randint(0, 3)))
    params = {
        name: rng.choice(FUZZ_VALUES)
        for name in rng.sample(["after", "wait", "lastEventId", "junk"], k=rng.randint(0, 3))
    }
    headers: dict[bytes, bytes] = {}
    if rng.random() < 0.7:
        scheme = rng.choice(["Bearer", "Bearer", "bearer", "Basic", ""])
        token = PUBLISH_ANY if rng.random() < 0.5 else rng.choice(FUZZ_TOKENS)
        headers[b"Authorization"] = f"{scheme} {token}".strip().encode()
    if rng.random() < 0.3:
        headers[b"Last-Event-ID"] = rng.choice([b"\xff\xfe", b"x" * 300, b"zz-1", b""])
    if rng.random() < 0.3:
        headers[b"Origin"] = rng.choice([b"https://app.example", b"\xff", b"null"])
    if rng.random() < 0.2:
        headers[b"Cookie"] = rng.choice([b"trio_sse_token=\xff", b";;=;", b"a" * 4000])
    if rng.random() < 0.3:
        headers[b"Content-Type"] = rng.choice([b"application/json", b"text/plain", b"\xe9"])
    body = rng.choice(
        [
            b"",
            b"{}",
            b'{"type": "t", "data": {"a": [1, 2]}}',
            b'{"type": "t", "data": "ok", "ttl": 5}',
            b'{"type": "\xff", "data": 1}',
            b'{"data": "\xed\xa0\x80"}',  # an encoded lone surrogate
            b'{"data": "\\ud800"}',  # a lone surrogate, JSON-escaped
            json.dumps({"data": "y" * rng.randint(0, 80_000)}).encode(),
            b"[" * 50 + b"]" * 50,
            rng.randbytes(rng.randint(1, 2000)),
        ]
    )
    content = body if method in ("POST", "PUT") or rng.random() < 0.2 else None
    return client.build_request(method, path, params=params, headers=headers, content=content)


async def test_random_requests_never_get_a_server_error() -> None:
    rng = random.Random(20240611)
    failures = []
    async with running_server(max_poll_wait=0.1, cors_origins=(APP,)) as h:
        for _ in range(200):
            request = fuzz_request(h.client, rng)
            response = await h.client.send(request, stream=True)
            try:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    await response.aread()
            finally:
                await response.aclose()
            if response.status_code >= 500 and response.status_code != 503:
                failures.append((request.method, str(request.url)[:120], response.status_code))
        health = await h.client.get("/healthz")
    assert failures == []
    assert health.status_code == 200

"""One URL, one answer: the same table of requests through every front door.

The doors: ``trio_sse.serve`` on fresh connections, the same server with every request on
one kept-alive connection, ``create_app()`` under Hypercorn's trio worker, and the ``TrioSSE``
extension mounted under a prefix of a user's own Quart-Trio app (also under Hypercorn). Each
request is sent as raw bytes, and the status, the body and the headers a client acts on must
be the same everywhere (event ids and epochs, random per server, are masked).

Every server listens on 127.0.0.1, port 0; each test runs under ``trio.fail_after``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from trio_sse import (
    BroadcasterConfig,
    ServerSettings,
    TrioSSE,
    create_app,
    make_token,
    open_broadcaster,
    serve,
)

from .server_helpers import exchange_on

pytestmark = pytest.mark.real_time

KEY = "front-doors-test-key-0123456789abcdef"
TOKEN = make_token(KEY, publish=["s", "t*"])
SETTINGS = ServerSettings(
    port=0,
    jwt_key=KEY,
    cors_origins=("https://app.example",),
    max_body_bytes=4096,
    max_batch_events=3,
    heartbeat_interval=5,
)
CONFIG = BroadcasterConfig(max_event_bytes=2048)
PREFIX = "/api"
ACTED_ON = (
    "content-type",
    "allow",
    "retry-after",
    "www-authenticate",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "vary",
)
"""Headers whose value clients act on; the rest (date, server) may differ by server."""


def post(path: str, body: bytes, *headers: str, token: bool = True) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *headers]
    if token:
        lines.append(f"Authorization: Bearer {TOKEN}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    return ("\r\n".join([f"{method} {path} HTTP/1.1", "Host: t", *headers]) + "\r\n\r\n").encode()


REQUESTS: list[tuple[str, Callable[[str], bytes]]] = [
    ("healthz", lambda p: get(f"{p}/healthz")),
    ("readyz", lambda p: get(f"{p}/readyz")),
    ("head-healthz", lambda p: get(f"{p}/healthz", method="HEAD")),
    ("publish", lambda p: post(f"{p}/sessions/s/events", b'{"type":"t","data":1}')),
    ("publish-batch", lambda p: post(f"{p}/sessions/s/events", b'[{"data":1},{"data":"x"}]')),
    ("batch-many", lambda p: post(f"{p}/events", b'[{"session":"t1","data":1},{"session":"s"}]')),
    (
        "ndjson",
        lambda p: post(
            f"{p}/events",
            b'{"session":"t2"}\n{"session":"t3"}\n',
            "Content-Type: application/x-ndjson",
        ),
    ),
    ("batch-bad-index", lambda p: post(f"{p}/events", b'[{"session":"s"},{"session":"s","x":1}]')),
    (
        "batch-too-many",
        lambda p: post(f"{p}/events", b"[" + b",".join([b'{"session":"s"}'] * 4) + b"]"),
    ),
    ("batch-not-allowed", lambda p: post(f"{p}/events", b'[{"session":"s"},{"session":"u"}]')),
    ("batch-not-array", lambda p: post(f"{p}/events", b'{"session":"s"}')),
    ("publish-no-token", lambda p: post(f"{p}/sessions/s/events", b"{}", token=False)),
    ("publish-bad-json", lambda p: post(f"{p}/sessions/s/events", b'{"data":')),
    (
        "publish-too-big",
        lambda p: post(f"{p}/sessions/s/events", b'{"data":"' + b"x" * 3000 + b'"}'),
    ),
    ("publish-over-body-limit", lambda p: post(f"{p}/sessions/s/events", b"x" * 5000)),
    ("reserved-type", lambda p: post(f"{p}/sessions/s/events", b'{"type":"reset"}')),
    ("slash-in-session", lambda p: post(f"{p}/sessions/a%2Fb/events", b"{}")),
    ("dot-dot-session", lambda p: get(f"{p}/sessions/%2E%2E/poll")),
    ("dot-session", lambda p: get(f"{p}/sessions/./poll")),
    ("space-in-session", lambda p: get(f"{p}/sessions/a%20b/poll")),
    ("long-session", lambda p: get(f"{p}/sessions/{'x' * 129}/poll")),
    ("not-utf8", lambda p: get(f"{p}/sessions/%FF/poll")),
    ("poll", lambda p: get(f"{p}/sessions/s/poll?after=0")),
    ("poll-bad-wait", lambda p: get(f"{p}/sessions/s/poll?wait=x")),
    ("poll-long-cursor", lambda p: get(f"{p}/sessions/s/poll?after={'1' * 300}")),
    (
        "delete-unknown",
        lambda p: get(f"{p}/sessions/t-nobody", f"Authorization: Bearer {TOKEN}", method="DELETE"),
    ),
    (
        "delete-not-allowed",
        lambda p: get(f"{p}/sessions/other", f"Authorization: Bearer {TOKEN}", method="DELETE"),
    ),
    ("unknown-path", lambda p: get(f"{p}/nothing/here")),
    ("trailing-slash", lambda p: get(f"{p}/stats/")),
    ("wrong-method", lambda p: get(f"{p}/sessions/s/events", method="PUT")),
    ("post-stats", lambda p: post(f"{p}/stats", b"")),
    ("stream-refused", lambda p: get(f"{p}/sessions/s/events", "Last-Event-ID: " + "1" * 300)),
    ("head-stream", lambda p: get(f"{p}/sessions/s/events", method="HEAD")),
    ("absolute-form", lambda p: get(f"http://t{p}/healthz")),
    ("cors", lambda p: get(f"{p}/healthz", "Origin: https://app.example")),
    ("cors-other-origin", lambda p: get(f"{p}/healthz", "Origin: https://evil.example")),
    (
        "preflight",
        lambda p: get(
            f"{p}/sessions/s/events",
            "Origin: https://app.example",
            "Access-Control-Request-Method: POST",
            method="OPTIONS",
        ),
    ),
]
IDS = re.compile(rb"[0-9a-f]{8}-[0-9]+")


async def answer(
    stream: trio.SocketStream, request: bytes
) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, the acted-on headers, the body with ids masked, and whether the server closed
    the connection after it."""
    if request.startswith(b"HEAD "):
        await stream.send_all(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some()
        head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        body = b""
        status = int(head[0].split()[1])
    else:
        status, headers, body = await exchange_on(stream, request)
    closed = headers.get("connection", "").lower() == "close"
    return status, _acted_on(headers), IDS.sub(b"<id>", body), closed


def _acted_on(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in ACTED_ON if name in headers}


@asynccontextmanager
async def lean() -> AsyncIterator[tuple[int, str]]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(partial(serve, CONFIG, SETTINGS, stop=stop))
        yield running.port, ""
        stop.set()


@asynccontextmanager
async def under_hypercorn(app: Any, prefix: str) -> AsyncIterator[tuple[int, str]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) the socket now
    config.graceful_timeout = 1
    config.accesslog = config.errorlog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        yield port, prefix
        stop.set()


@asynccontextmanager
async def quart_app() -> AsyncIterator[tuple[int, str]]:
    async with open_broadcaster(CONFIG) as broadcaster:
        async with under_hypercorn(create_app(broadcaster, SETTINGS), "") as door:
            yield door


@asynccontextmanager
async def embedded() -> AsyncIterator[tuple[int, str]]:
    app = QuartTrio("users_app")

    @app.get("/")
    async def home() -> str:
        return "the user's own page"

    TrioSSE(app, prefix=PREFIX, config=CONFIG, settings=SETTINGS)
    async with under_hypercorn(app, PREFIX) as door:
        yield door


async def answers(door: Callable[[], Any], *, kept_alive: bool) -> dict[str, Any]:
    """Every request's answer through ``door``: each on a fresh connection, or all on one
    kept-alive connection (a new one only after an answer that closed it)."""
    results: dict[str, Any] = {}
    async with door() as (port, prefix), AsyncExitStack() as connections:
        stream: trio.SocketStream | None = None
        for name, make in REQUESTS:
            if stream is None or not kept_alive:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await connections.enter_async_context(stream)
            status, headers, body, closed = await answer(stream, make(prefix))
            results[name] = (status, headers, body)
            if closed:
                stream = None
    return results


async def test_every_front_door_gives_the_same_answer_to_every_request() -> None:
    with trio.fail_after(30):
        reference = await answers(lean, kept_alive=False)
        doors = {
            "lean, one kept-alive connection": partial(answers, lean, kept_alive=True),
            "create_app under Hypercorn": partial(answers, quart_app, kept_alive=False),
            "TrioSSE(prefix=/api) in a user's app": partial(answers, embedded, kept_alive=False),
        }
        for door, run in doors.items():
            results = await run()
            differences = {
                name: (reference[name], results[name])
                for name in reference
                if results[name] != reference[name]
            }
            assert differences == {}, f"{door}: {differences}"


async def test_the_reference_answers_are_the_documented_ones() -> None:
    """The table is not vacuous: the lean server's answers are the ones docs/http-api.md gives."""
    with trio.fail_after(15):
        results = await answers(lean, kept_alive=False)
    statuses = {name: status for name, (status, _, _) in results.items()}
    assert statuses == {
        "healthz": 200,
        "readyz": 200,
        "head-healthz": 200,
        "publish": 202,
        "publish-batch": 202,
        "batch-many": 202,
        "ndjson": 202,
        "batch-bad-index": 400,
        "batch-too-many": 413,
        "batch-not-allowed": 403,
        "batch-not-array": 400,
        "publish-no-token": 401,
        "publish-bad-json": 400,
        "publish-too-big": 413,
        "publish-over-body-limit": 413,
        "reserved-type": 400,
        "slash-in-session": 400,
        "dot-dot-session": 400,
        "dot-session": 400,
        "space-in-session": 400,
        "long-session": 400,
        "not-utf8": 400,
        "poll": 200,
        "poll-bad-wait": 400,
        "poll-long-cursor": 400,
        "delete-unknown": 404,
        "delete-not-allowed": 403,
        "unknown-path": 404,
        "trailing-slash": 404,
        "wrong-method": 405,
        "post-stats": 405,
        "stream-refused": 400,
        "head-stream": 200,
        "absolute-form": 200,
        "cors": 200,
        "cors-other-origin": 200,
        "preflight": 204,
    }
    assert results["batch-bad-index"][2] == b'{"error":"unknown field(s): x","index":1}'
    assert results["publish-batch"][2] == b'{"ids":["<id>","<id>"]}'
    assert results["wrong-method"][1]["allow"] == "GET, HEAD, OPTIONS, POST"
    assert results["cors"][1]["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in results["cors-other-origin"][1]
    assert results["publish-no-token"][1]["www-authenticate"] == "Bearer"

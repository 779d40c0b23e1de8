"""The example app (``examples/quart_app.py``): trio-sse embedded in a user's Quart-Trio app.

Each test imports the example and serves it the way its ``main()`` does: ``hypercorn.trio.serve``
on a socket the example binds (127.0.0.1, port 0), started with ``nursery.start``, driven by
httpx (the Quart test client hangs on endless streams). Every test runs under ``trio.fail_after``
and uses the real clock (``real_time``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.trio import serve
from quart_trio import QuartTrio

from examples.quart_app import create_app, hypercorn_config, listening_socket, shutdown_trigger
from trio_sse import Broadcaster, ServerSettings, TrioSSE
from trio_sse.server._routes import json_body

from .server_helpers import (
    CLIENT_TIMEOUT,
    KEY,
    PUBLISH_ANY,
    EventStream,
    bearer,
    running_server,
    wait_until,
)

pytestmark = pytest.mark.real_time

API_KEY = "example-test-key"
DEADLINE = 10.0
GRACEFUL_TIMEOUT = 5.0


@dataclass
class Example:
    """The example app serving, an httpx client for it, and the event that stops it."""

    app: QuartTrio
    client: httpx.AsyncClient
    stop: trio.Event
    stopped: trio.Event

    @property
    def sse(self) -> TrioSSE:
        sse: TrioSSE = self.app.extensions["trio_sse"]
        return sse

    @property
    def broadcaster(self) -> Broadcaster:
        return self.sse.broadcaster

    def subscribers(self) -> int:
        return int(self.broadcaster.get_stats()["totalSubscribers"])

    async def start_job(self) -> dict[str, str]:
        response = await self.client.post("/jobs", headers={"X-API-Key": API_KEY})
        assert response.status_code == 202, response.text
        return dict(response.json())


@asynccontextmanager
async def running_example(
    app: QuartTrio | None = None,
    *,
    job_steps: int = 3,
    step_seconds: float = 0.3,
    **settings: Any,
) -> AsyncIterator[Example]:
    """The example (``app``, or a new one) on 127.0.0.1:0 for the block, all under
    ``trio.fail_after(DEADLINE)``.

    On exit ``stop`` is set (the example's shutdown trigger runs) and the block waits for the
    server to return. An error in the block propagates as itself, not in an exception group.
    """
    values: dict[str, Any] = {
        "port": 0,
        "jwt_key": KEY,
        "heartbeat_interval": 0.2,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        **settings,
    }
    server_settings = ServerSettings(**values)
    if app is None:
        app = create_app(
            server_settings, api_key=API_KEY, job_steps=job_steps, step_seconds=step_seconds
        )
    sock = listening_socket(server_settings)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = hypercorn_config(sock, server_settings)
    stop, stopped = trio.Event(), trio.Event()
    body_error: BaseException | None = None

    async def serve_until_stopped(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            trigger = shutdown_trigger(app, stop.wait)
            await serve(app, config, shutdown_trigger=trigger, task_status=task_status)
        finally:
            stopped.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_until_stopped)
            try:
                async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as client:
                    yield Example(app, client, stop, stopped)
            except trio.Cancelled:
                raise
            except BaseException as exc:  # re-raised below, outside the nursery, unwrapped
                body_error = exc
            finally:
                stop.set()
    if body_error is not None:
        raise body_error


@asynccontextmanager
async def open_events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    """An open stream (``GET url``), read with trio-sse's parser; abandoned on exit."""
    async with client.stream("GET", url, headers=headers) as response:
        stream = EventStream(response, response.aiter_bytes())
        try:
            yield stream
        finally:
            await stream.stop_reading()


# -- the app's own stream route ------------------------------------------------------------


async def test_app_route_streams_the_jobs_progress_in_order_with_heartbeats_when_quiet() -> None:
    async with running_example(job_steps=3, step_seconds=0.5) as example:
        job = await example.start_job()
        assert job["events"] == f"/jobs/{job['id']}/events"
        headers = {"X-API-Key": API_KEY, "Last-Event-ID": job["lastEventId"]}
        async with open_events(example.client, job["events"], headers) as stream:
            assert stream.status == 200
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            events = await stream.events(4)
            raw = bytes(stream.raw)
    assert [(e.type, json.loads(e.data)) for e in events] == [
        ("progress", {"step": 1, "of": 3}),
        ("progress", {"step": 2, "of": 3}),
        ("progress", {"step": 3, "of": 3}),
        ("done", {"id": job["id"]}),
    ]
    epoch, _, first = job["lastEventId"].rpartition("-")
    assert [e.id for e in events] == [f"{epoch}-{int(first) + n}" for n in range(1, 5)]
    assert raw.startswith(b"retry: 3000\n\n")
    # 0.5 s between progress events, a heartbeat after 0.2 s of quiet: heartbeats between them
    before_each = raw.split(b"event: ")[:3]
    assert all(b"\n:\n\n" in part for part in before_each), raw


async def test_app_route_refuses_without_the_api_key_and_subscribes_no_one() -> None:
    async with running_example() as example:
        client = example.client
        url = "/jobs/job-1/events"
        refused = [
            await client.get(url),
            await client.get(url, headers={"X-API-Key": "wrong"}),
            await client.get(url, headers={"Cookie": "api_key=wrong"}),
            # the cookie is for EventSource only: a cross-site form could send it with a POST
            await client.post("/jobs", headers={"Cookie": f"api_key={API_KEY}"}),
        ]
        assert [r.status_code for r in refused] == [401] * 4
        assert all("error" in r.json() for r in refused)
        stats = example.broadcaster.get_stats()
        assert (stats["totalSubscribers"], stats["totalSessions"]) == (0, 0)
        async with open_events(client, url, {"Cookie": f"api_key={API_KEY}"}) as stream:
            assert stream.status == 200
            await wait_until(lambda: example.subscribers() == 1, what="the cookie's stream")


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_with_last_event_id_gets_exactly_the_missed_events(how: str) -> None:
    async with running_example() as example:
        publish = partial(example.broadcaster.publish, "job-r", "progress")
        ids = [str((await publish(n)).id) for n in range(5)]
        headers = {"X-API-Key": API_KEY}
        url = "/jobs/job-r/events"
        if how == "header":
            headers["Last-Event-ID"] = ids[1]
        else:
            url += f"?lastEventId={ids[1]}"
        async with open_events(example.client, url, headers) as stream:
            replayed = await stream.events(3)
            live = (await publish(5)).id
            assert (await stream.next_event()).id == live
    assert [(e.id, e.type, e.data) for e in replayed] == [
        (ids[n], "progress", str(n)) for n in (2, 3, 4)
    ]


async def test_stream_refusals_from_sse_stream_are_json_answers() -> None:
    async with running_example(max_last_event_id_chars=16) as example:
        headers = {"X-API-Key": API_KEY, "Last-Event-ID": "x" * 17}
        response = await example.client.get("/jobs/job-1/events", headers=headers)
        assert response.status_code == 400
        assert response.json() == {"error": "last event id is longer than 16 characters"}
        assert example.subscribers() == 0


async def test_a_client_that_leaves_is_unsubscribed_within_a_second() -> None:
    # A heartbeat far away: the disconnect itself must be noticed, not a failed write.
    async with running_example(heartbeat_interval=30.0) as example:
        headers = {"X-API-Key": API_KEY}
        async with open_events(example.client, "/jobs/job-l/events", headers) as stream:
            await stream.read_chunk()  # retry:
            await wait_until(lambda: example.subscribers() == 1, what="subscribed")
        waited = await wait_until(lambda: example.subscribers() == 0, what="unsubscribed")
        assert waited < 1.0
        assert example.sse.api.streams.active.value == 0


# -- the API mounted under /sse ------------------------------------------------------------

TOKEN = bearer(PUBLISH_ANY)
EVENT = {"Content-Type": "application/json"}
REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/healthz", {}, b""),
    ("GET", "/readyz", {}, b""),
    ("POST", "/sessions/x/events", {**EVENT, **TOKEN}, b'{"type":"t","data":1}'),
    ("POST", "/sessions/x/events", {**EVENT, **TOKEN}, b'{"type":"t","data":"two"}'),
    ("POST", "/sessions/x/events", EVENT, b'{"type":"t","data":3}'),
    ("POST", "/sessions/x/events", {**EVENT, **TOKEN}, b'{"type":'),
    ("POST", "/events", {**EVENT, **TOKEN}, b'[{"session":"y","data":1},{"session":"y"}]'),
    ("GET", "/sessions/x/poll", {}, b""),
    ("GET", "/sessions/x/poll?after={first}", {}, b""),
    ("GET", "/sessions/a%2Fb/poll", {}, b""),
    ("GET", "/nope", {}, b""),
    ("DELETE", "/stats", {}, b""),
    ("PUT", "/sessions/x/events", {}, b""),
    ("DELETE", "/sessions/y", TOKEN, b""),
    ("DELETE", "/sessions/y", TOKEN, b""),
]


EVENT_ID = re.compile(rb'"[0-9a-f]+-(\d+)"')


def without_epochs(body: bytes) -> Any:
    """The JSON body with each event id's epoch (random per session) replaced by ``E``."""
    return json.loads(EVENT_ID.sub(rb'"E-\1"', body)) if body else None


async def answers(client: httpx.AsyncClient, prefix: str) -> list[tuple[Any, ...]]:
    """What the API answers to ``REQUESTS``, then ``/stats``, with ids made comparable."""
    seen: list[tuple[Any, ...]] = []
    first = ""
    for method, path, headers, body in REQUESTS:
        url = prefix + path.format(first=first)
        response = await client.request(method, url, headers=headers, content=body)
        if not first and response.status_code == 202:
            first = response.json()["id"]
        seen.append(
            (
                method,
                path,
                response.status_code,
                response.headers.get("content-type"),
                response.headers.get("allow"),
                response.headers.get("www-authenticate"),
                without_epochs(response.content),
            )
        )
    stats = (await client.get(prefix + "/stats")).json()
    seen.append(tuple(sorted(stats)))
    seen.append((stats["totalEvents"], stats["totalSessions"], stats["totalSubscribers"]))
    return seen


async def test_mounted_api_gives_the_lean_servers_answers_under_its_prefix() -> None:
    async with running_example() as example:
        embedded = await answers(example.client, "/sse")
    async with running_server(heartbeat_interval=0.2) as lean:
        expected = await answers(lean.client, "")
    assert embedded == expected
    statuses = [row[2] for row in expected[: len(REQUESTS)]]
    assert statuses == [200, 200, 202, 202, 401, 400, 202, 200, 200, 400, 404, 405, 405, 200, 404]


async def test_paths_outside_the_prefix_reach_the_apps_own_routes() -> None:
    async with running_example() as example:
        client = example.client
        page = await client.get("/")
        assert page.status_code == 200 and "Start a job" in page.text
        for path in ("/nope", "/ssex/healthz", "/stats"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("text/html"), path  # Quart's
        under = await client.get("/sse/nope")
        assert under.status_code == 404
        assert under.content == json_body({"error": "no such route"})


# -- shutdown -----------------------------------------------------------------------------


async def test_shutdown_ends_open_streams_with_retry_and_the_server_exits_promptly() -> None:
    async with running_example(job_steps=50, step_seconds=0.05) as example:
        client = example.client
        job = await example.start_job()  # the app's routes, on kept-alive connections
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/sse/stats")).status_code == 200
        headers = {"X-API-Key": API_KEY, "Last-Event-ID": job["lastEventId"]}
        async with open_events(client, job["events"], headers) as stream:
            await stream.next_event()
            start = trio.current_time()
            example.stop.set()
            await stream.read_to_end()
            ended = trio.current_time() - start
            tail = bytes(stream.raw).rsplit(b"\n\n", 2)[-2]
        with trio.fail_after(GRACEFUL_TIMEOUT / 5):
            await example.stopped.wait()
        exited = trio.current_time() - start
    assert tail.startswith(b"retry: ") and 2000 <= int(tail[7:]) <= 4000, tail
    assert ended < 0.5
    assert exited < 1.0


async def test_the_same_app_serves_again_after_a_shutdown_with_a_new_broadcaster() -> None:
    app = create_app(ServerSettings(port=0), api_key=API_KEY)
    broadcasters = []
    for _ in range(2):
        async with running_example(app) as example:
            job = await example.start_job()
            assert job["lastEventId"].endswith("-1")
            broadcasters.append(example.broadcaster)
        assert example.stopped.is_set()
    first, second = broadcasters
    assert first is not second and first.closed and second.closed

"""End-to-end tests of the browser client (``trio_sse/static/trio-sse.js``) and the demo page.

Debian's Chromium (``/usr/bin/chromium``), driven by Playwright's SYNC API: its async API runs
on asyncio, not trio. So these are plain sync tests, and the server runs ``trio.run(serve, ...)``
in a background thread. ``tools/test`` installs Chromium; without it these tests fail, they do
not skip.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from trio_sse import RunningServer, ServerSettings, make_token, serve

from .chromium import PLAYWRIGHT_MISSING

if PLAYWRIGHT_MISSING is None:
    from playwright.sync_api import Page

pytestmark = pytest.mark.real_time

FAST = {
    "backoff": {"initial": 100, "maximum": 1000, "jitter": 0.2},
    "pollWait": 1000,
    "pollInterval": 100,
    "streamRetryInterval": 2000,
    "stallTimeout": 5000,
}
"""Client options that keep reconnects, polling and the return to streaming quick."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """``trio.run(serve, ...)`` in a daemon thread; ``stop()`` shuts it down gracefully."""

    def __init__(self, port: int, **overrides: Any) -> None:
        self.port = port
        settings: dict[str, Any] = {
            "port": port,
            "auth_publish": False,
            "heartbeat_interval": 0.5,
            "retry_ms": 200,
            "shutdown_retry_ms": 100,
            "graceful_timeout": 2.0,
            **overrides,
        }
        self.settings = ServerSettings(**settings)
        self._started: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"server-{port}", daemon=True)
        self._thread.start()
        started = self._started.get(timeout=15)
        if isinstance(started, BaseException):
            raise RuntimeError(f"the server did not start on port {port}") from started
        self.running: RunningServer
        self.running, self._stop, self._token = started

    @property
    def url(self) -> str:
        return self.running.url

    def _run(self) -> None:
        async def main() -> None:
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                running = await nursery.start(partial(serve, None, self.settings, stop=stop))
                self._started.put((running, stop, trio.lowlevel.current_trio_token()))

        try:
            trio.run(main)
        except BaseException as error:
            self._error = error
            self._started.put(error)

    def stop(self) -> None:
        if self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the server thread did not stop within 15 s"
        if self._error is not None:
            raise self._error


@pytest.fixture
def server() -> Iterator[ServerThread]:
    running = ServerThread(free_port())
    yield running
    running.stop()


def open_demo(page: Page, server: ServerThread, **options: Any) -> None:
    query = f"?options={json.dumps({**FAST, **options})}"
    page.goto(f"{server.url}/{query}")
    page.wait_for_function("() => window.demo !== undefined")


def subscribe(page: Page, session: str) -> None:
    page.fill("#sub-session", session)
    page.click("#subscribe button[type=submit]")
    wait_for_state(page, "open")


def wait_for_state(page: Page, state: str) -> None:
    page.wait_for_function("state => demo.client?.state === state", arg=state)


def publish(server: ServerThread, session: str, data: Any, type_: str = "message") -> str:
    response = httpx.post(
        f"{server.url}/sessions/{session}/events", json={"type": type_, "data": data}, timeout=5
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_for_logged(page: Page, event_id: str) -> None:
    page.wait_for_selector(f'#log li.event[data-id="{event_id}"]', state="attached")


def text_of(page: Page, selector: str) -> str:
    return page.text_content(selector) or ""


def snapshot(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("demo.snapshot()")
    return result


def test_demo_page_loads_and_shows_stats(page: Page, server: ServerThread) -> None:
    open_demo(page, server)
    assert page.title() == "trio-sse demo"
    page.wait_for_function(
        "() => document.querySelector('#stats-state').textContent.startsWith('updated')"
    )
    assert page.text_content('[data-stat="totalSessions"]') == "0"
    assert "MiB" in text_of(page, '[data-stat="memory"]')
    assert page.text_content("#sub-state") == "closed"


def test_subscribe_then_publish_from_the_form_and_from_python(
    page: Page, server: ServerThread
) -> None:
    open_demo(page, server)
    subscribe(page, "room-1")
    assert page.get_attribute("#sub-state", "data-state") == "open"

    page.fill("#pub-session", "room-1")
    page.fill("#pub-type", "chat")
    page.fill("#pub-data", '{"text": "from the form"}')
    page.click("#publish button[type=submit]")
    page.wait_for_function("() => document.querySelector('#pub-result').textContent.includes('id')")
    form_id = text_of(page, "#pub-result").split("id ")[1]
    wait_for_logged(page, form_id)

    python_id = publish(server, "room-1", {"text": "from python"})
    wait_for_logged(page, python_id)

    assert "from python" in text_of(page, f'#log li[data-id="{python_id}"]')
    counts = snapshot(page)["counts"]
    assert counts == {f"chat {form_id}": 1, f"message {python_id}": 1}


@pytest.mark.parametrize(
    "downtime",
    [
        pytest.param(0.0, id="eventsource-retries"),
        pytest.param(2.0, id="polls-then-new-eventsource"),
    ],
)
def test_server_restart_resumes_and_no_handler_runs_twice(
    page: Page, server: ServerThread, downtime: float
) -> None:
    """A quick restart is bridged by EventSource's own retry; a longer one makes the client
    poll, then open a new EventSource (and register its listeners again)."""
    open_demo(page, server)
    subscribe(page, "restart")
    before = [publish(server, "restart", n) for n in range(3)]
    for event_id in before:
        wait_for_logged(page, event_id)

    server.stop()
    page.wait_for_function("() => demo.client.state !== 'open'")
    if downtime:
        page.wait_for_function("() => demo.client.state === 'polling'")
        page.wait_for_timeout(downtime * 1000)
    restarted = ServerThread(server.port)  # the same port: the page comes back to it
    try:
        during = [publish(restarted, "restart", n) for n in range(3, 6)]
        for event_id in during:
            wait_for_logged(page, event_id)
        wait_for_state(page, "open")
        after = [publish(restarted, "restart", n) for n in range(6, 9)]
        for event_id in after:
            wait_for_logged(page, event_id)
        page.wait_for_timeout(300)  # a duplicate would have arrived by now
        state = snapshot(page)
    finally:
        restarted.stop()

    counts = state["counts"]
    assert {key: n for key, n in counts.items() if n != 1} == {}, "a handler ran twice"
    for event_id in [*before, *during, *after]:
        assert counts[f"message {event_id}"] == 1
    # the new server has a new epoch: the resume is announced by one reset notice
    assert len([key for key in counts if key.startswith("reset ")]) == 1
    assert state["listenerCount"] == 3  # message, reset, gap: one listener each
    assert state["handlerCount"] == 3
    states = state["states"]
    assert states[-2:] == ["reconnecting", "open"], states
    if downtime:
        assert states[-3] == "polling", states


def test_unsubscribe_stops_events_and_destroy_leaves_no_listener(
    page: Page, server: ServerThread
) -> None:
    open_demo(page, server)
    subscribe(page, "leave")
    first = publish(server, "leave", "before")
    wait_for_logged(page, first)

    page.click("#unsubscribe")
    assert page.text_content("#sub-state") == "closed"
    state = snapshot(page)
    assert state["state"] == "closed"
    assert (state["handlerCount"], state["listenerCount"], state["eventTypes"]) == (0, 0, [])

    # the stream is gone from the server too
    page.wait_for_function(
        """async () => (await (await fetch('stats')).json()).totalSubscribers === 0"""
    )
    late = publish(server, "leave", "after")
    page.wait_for_timeout(1000)
    assert page.locator(f'#log li[data-id="{late}"]').count() == 0
    assert snapshot(page)["counts"] == {f"message {first}": 1}


MODULE_CYCLES = """
async ({ url }) => {
  const { SSEClient } = await import("/static/trio-sse.js");
  const client = new SSEClient({ url });
  await new Promise((resolve) => client.onConnectionChange((s) => s === "open" && resolve()));
  const types = ["message", "chat", "*", "progress"];
  const noop = () => {};
  for (let i = 0; i < 10000; i++) {
    const type = types[i % types.length];
    const unsubscribe = client.on(type, noop);
    const other = client.on(type, noop);
    unsubscribe();
    unsubscribe();  // idempotent: must not remove `other`
    const listeners = type === "*" ? 3 : 1;  // "*" listens for message, reset and gap
    if (client.handlerCount !== 1 || client.listenerCount !== listeners) {
      return { failedAt: i, handlers: client.handlerCount, listeners: client.listenerCount };
    }
    other();
  }
  const after = {
    handlerCount: client.handlerCount,
    eventTypes: client.eventTypes,
    listenerCount: client.listenerCount,
  };
  client.destroy();
  return after;
}
"""


def test_module_on_unsubscribe_cycles_leave_the_registry_empty(
    page: Page, server: ServerThread
) -> None:
    page.goto(f"{server.url}/healthz")
    result = page.evaluate(MODULE_CYCLES, {"url": f"{server.url}/sessions/cycles/events"})
    assert result == {"handlerCount": 0, "eventTypes": [], "listenerCount": 0}


EVENTS_OF = """
async ({ url, options }) => {
  const { SSEClient } = await import("/static/trio-sse.js");
  const client = new SSEClient({ url, ...options });
  window.client = client;
  window.received = [];
  window.statesSeen = [];
  client.onConnectionChange((state) => statesSeen.push(state));
  client.on("message", () => { throw new Error("boom"); });
  client.on("message", (event) => received.push(event.id));
  return null;
}
"""


def test_a_throwing_handler_is_reported_and_the_others_still_run(
    page: Page, server: ServerThread
) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(f"{server.url}/healthz")
    url = f"{server.url}/sessions/throw/events"
    page.evaluate(EVENTS_OF, {"url": url, "options": FAST})
    page.wait_for_function("() => client.state === 'open'")
    event_id = publish(server, "throw", "x")
    page.wait_for_function("id => received.includes(id)", arg=event_id)
    assert page.evaluate("received") == [event_id]
    assert any(line.startswith("error: trio-sse: handler failed") for line in console), console
    page.evaluate("client.destroy()")
    assert page.evaluate("[client.state, client.handlerCount, client.listenerCount]") == [
        "closed",
        0,
        0,
    ]


def test_polling_fallback_when_the_stream_is_refused(page: Page, server: ServerThread) -> None:
    page.goto(f"{server.url}/healthz")
    # the stream URL answers 404 (EventSource gives up each time); the poll endpoint works
    options = {**FAST, "pollUrl": "/sessions/fallback/poll", "streamRetryInterval": 60_000}
    page.evaluate(EVENTS_OF, {"url": f"{server.url}/sessions-missing/events", "options": options})
    page.wait_for_function("() => client.state === 'polling'")
    ids = [publish(server, "fallback", n) for n in range(3)]
    page.wait_for_function("n => received.length >= n", arg=len(ids))
    page.wait_for_timeout(300)  # a duplicate would have arrived by now
    assert page.evaluate("received") == ids
    assert page.evaluate("statesSeen") == ["connecting", "reconnecting", "polling"]
    assert page.evaluate("client.lastEventId") == ids[-1]
    page.evaluate("client.destroy()")
    assert page.evaluate("client.state") == "closed"


def test_a_quiet_stream_is_not_taken_for_a_stalled_one(page: Page, server: ServerThread) -> None:
    """Heartbeats are invisible to EventSource: the stall check asks the poll endpoint, which
    has nothing either, so the client keeps streaming."""
    page.goto(f"{server.url}/healthz")
    options = {**FAST, "stallTimeout": 300}
    page.evaluate(EVENTS_OF, {"url": f"{server.url}/sessions/quiet/events", "options": options})
    page.wait_for_function("() => client.state === 'open'")
    page.wait_for_timeout(1500)  # five stall checks
    event_id = publish(server, "quiet", "finally")
    page.wait_for_function("id => received.includes(id)", arg=event_id)
    assert page.evaluate("statesSeen") == ["connecting", "open"]
    assert page.evaluate("received") == [event_id]
    page.evaluate("client.destroy()")


def test_a_stalled_stream_falls_back_to_polling(page: Page, server: ServerThread) -> None:
    """A stream that is open but delivers nothing (as behind a buffering proxy): here it is
    another, silent session, while the poll endpoint sees the published events."""
    page.goto(f"{server.url}/healthz")
    options = {
        **FAST,
        "stallTimeout": 300,
        "pollUrl": "/sessions/busy/poll",
        "streamRetryInterval": 60_000,
    }
    page.evaluate(EVENTS_OF, {"url": f"{server.url}/sessions/silent/events", "options": options})
    page.wait_for_function("() => client.state === 'open'")
    page.wait_for_timeout(800)  # a first stall check notes where the poll endpoint is
    ids = [publish(server, "busy", n) for n in range(3)]
    page.wait_for_function("() => client.state === 'polling'")
    later = publish(server, "busy", "while polling")
    page.wait_for_function("n => received.length >= n", arg=4)
    page.wait_for_timeout(300)  # a duplicate would have arrived by now
    assert page.evaluate("received") == [*ids, later]
    assert page.evaluate("statesSeen") == ["connecting", "open", "polling"]
    assert "stalled" in page.evaluate("client.lastError.message")
    page.evaluate("client.destroy()")


def test_a_refused_subscription_fails_with_the_reason_and_a_token_cookie_opens_it(
    page: Page,
) -> None:
    key = "test-hs256-key-not-a-secret-0123456789"
    server = ServerThread(free_port(), auth_subscribe=True, jwt_key=key)
    try:
        open_demo(page, server)
        subscribe_form = "#subscribe button[type=submit]"
        page.fill("#sub-session", "private")
        page.click(subscribe_form)
        # the stream is refused (EventSource cannot say why), then a poll tells: 401, for good
        wait_for_state(page, "failed")
        assert page.get_attribute("#sub-state", "data-state") == "failed"
        assert "401" in text_of(page, "#sub-state")

        page.fill("#sub-token", make_token(key, subscribe=["private"]))
        page.click(subscribe_form)
        wait_for_state(page, "open")
        event_id = publish(server, "private", "for token holders")
        wait_for_logged(page, event_id)
        assert snapshot(page)["counts"] == {f"message {event_id}": 1}
    finally:
        server.stop()


def test_a_garbled_poll_answer_counts_as_a_failure(page: Page, server: ServerThread) -> None:
    page.goto(f"{server.url}/healthz")
    # both URLs answer, neither as the client expects: a 404 stream, a poll that is CSS
    options = {**FAST, "pollUrl": "/static/demo.css", "maxRetries": 4}
    page.evaluate(EVENTS_OF, {"url": f"{server.url}/sessions-missing/events", "options": options})
    page.wait_for_function("() => client.state === 'failed'")
    assert page.evaluate("statesSeen") == ["connecting", "reconnecting", "polling", "failed"]
    assert page.evaluate("client.lastError.message") == "poll answer is not the expected JSON"
    assert page.evaluate("received") == []
    page.evaluate("client.destroy()")

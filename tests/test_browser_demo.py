"""The demo page's protections: security headers, and a page that talks to its own origin only.

The header tests are plain HTTP against ``trio_sse.serve`` on 127.0.0.1 port 0
(``running_server``: ``nursery.start`` under ``trio.fail_after``). The browser tests drive the
page in Debian's Chromium with Playwright's sync API, on servers run in threads, as in
``tests/test_browser.py`` (whose fixtures and helpers they reuse).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .server_helpers import running_server
from .test_browser import (
    FAST,
    Page,
    ServerThread,
    free_port,
    publish,
    server,  # noqa: F401 - a fixture
    wait_for_logged,
    wait_for_state,
)

pytestmark = pytest.mark.real_time

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@pytest.mark.parametrize(
    "path", ["/", "/static/demo.js", "/static/demo.css", "/static/trio-sse.js"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_the_demo_page_and_its_files_carry_the_security_headers(
    path: str, method: str
) -> None:
    async with running_server() as h:
        response = await h.client.request(method, path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_api_answers_do_not_carry_the_page_headers() -> None:
    async with running_server() as h:
        response = await h.client.get("/healthz")
    assert "content-security-policy" not in response.headers


async def test_the_page_has_no_inline_script_or_style() -> None:
    async with running_server() as h:
        html = (await h.client.get("/")).text
    assert "<script>" not in html and "<script " in html  # only <script src=...>
    assert 'src="static/demo.js"' in html
    assert "<style" not in html and "style=" not in html
    assert " on" + "click=" not in html and "javascript:" not in html


def test_the_page_works_under_its_policy(page: Page, server: ServerThread) -> None:  # noqa: F811 - server
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(f"{server.url}/?options={json.dumps(FAST)}")
    page.wait_for_function("() => window.demo !== undefined")
    page.wait_for_function(
        "() => document.querySelector('#stats-state').textContent.startsWith('updated')"
    )
    page.fill("#sub-session", "csp")
    page.click("#subscribe button[type=submit]")
    wait_for_state(page, "open")
    wait_for_logged(page, publish(server, "csp", "under the policy"))
    assert violations == []


def test_options_in_the_link_cannot_point_the_page_at_another_origin(
    page: Page,
    server: ServerThread,  # noqa: F811
) -> None:
    elsewhere = ServerThread(free_port())  # another port: another origin
    try:
        warnings: list[str] = []
        page.on("console", lambda message: warnings.append(message.text))
        hostile: dict[str, Any] = {
            **FAST,
            "url": f"{elsewhere.url}/sessions/stolen/events",
            "pollUrl": f"{elsewhere.url}/sessions/stolen/poll",
            "withCredentials": True,
            "token": "planted",
        }
        page.goto(f"{server.url}/?options={json.dumps(hostile)}")
        page.wait_for_function("() => window.demo !== undefined")
        page.fill("#sub-session", "mine")
        page.click("#subscribe button[type=submit]")
        wait_for_state(page, "open")
        wait_for_logged(page, publish(server, "mine", "same origin"))
        assert elsewhere.running.broadcaster.get_stats()["totalSessions"] == 0
        assert server.running.broadcaster.get_stats()["totalSubscribers"] == 1
        for name in ("url", "pollUrl", "withCredentials", "token"):
            assert f'trio-sse demo: ignoring the option "{name}" from the URL' in warnings
    finally:
        elsewhere.stop()


def test_the_policy_blocks_requests_to_another_origin(
    page: Page,
    server: ServerThread,  # noqa: F811
) -> None:
    """Defence in depth: even a script of the page cannot reach another origin."""
    elsewhere = ServerThread(free_port())
    try:
        page.goto(f"{server.url}/")
        page.wait_for_function("() => window.demo !== undefined")
        outcome = page.evaluate(
            """async (url) => {
                try { await fetch(url); return "fetched"; } catch (error) { return error.name; }
            }""",
            f"{elsewhere.url}/healthz",
        )
        assert outcome == "TypeError"
        same = page.evaluate("async () => (await fetch('healthz')).status")
        assert same == 200
    finally:
        elsewhere.stop()

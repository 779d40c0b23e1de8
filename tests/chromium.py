"""Debian's Chromium under Playwright's sync API, as fixtures for every browser test module.

``browser`` (one per module) and ``page`` (one per test, failing the test on any uncaught error
in the page) are registered for the whole suite by ``tests/conftest.py``. Playwright's async
API runs on asyncio, not trio, so browser tests are plain sync tests. ``tools/test`` installs
Chromium; without it these tests fail, they do not skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError as error:  # pragma: no cover - reported by the browser fixture
    PLAYWRIGHT_MISSING: ImportError | None = error
else:
    PLAYWRIGHT_MISSING = None

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
"""Longest wait for anything in the page."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if PLAYWRIGHT_MISSING is not None:
        pytest.fail(
            f"the Python package playwright is missing ({PLAYWRIGHT_MISSING}): "
            "run tools/test, which installs it"
        )
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run tools/test, which installs Debian's chromium "
            "(or, as root: apt-get install -y chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"

"""Shared helpers. Every test here runs on trio's virtual clock unless it says otherwise."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from trio_sse import BroadcasterConfig

from .chromium import browser, page  # noqa: F401 - fixtures for the browser test modules


class FakeRSS:
    """A settable stand-in for the process RSS probe, in MiB."""

    def __init__(self, mb: float = 10.0) -> None:
        self.mb = mb

    def __call__(self) -> int:
        return int(self.mb * 1024 * 1024)


@pytest.fixture
def rss() -> FakeRSS:
    return FakeRSS()


@pytest.fixture
def make_config() -> Callable[..., BroadcasterConfig]:
    """Small bounds so that tests reach them quickly."""

    def make(**overrides: object) -> BroadcasterConfig:
        values: dict[str, object] = {
            "max_queue_size": 10,
            "max_history_per_session": 20,
            "event_ttl": None,
        }
        values.update(overrides)
        return BroadcasterConfig.from_mapping(values)

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests never really sleep: every async test must run on ``autojump_clock``
    unless it is marked ``real_time`` (tests that use real sockets, where a virtual clock
    would fire timeouts early)."""
    for item in items:
        function = getattr(item, "obj", None)
        if not inspect.iscoroutinefunction(function) or item.get_closest_marker("real_time"):
            continue
        if "autojump_clock" not in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} must use autojump_clock or be real_time")

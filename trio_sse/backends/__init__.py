"""Backends: the extension point that carries published events to the broadcasters.

``RedisBackend`` is loaded on first use (PEP 562), so a process that does not use Redis does
not import coredis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend as Backend
from ._base import Deliver as Deliver
from ._base import SessionEnded as SessionEnded
from ._base import SharedBackend as SharedBackend
from ._base import Snapshot as Snapshot
from ._memory import InMemoryBackend as InMemoryBackend

if TYPE_CHECKING:
    from ._redis import RedisBackend as RedisBackend

__all__ = [
    "Backend",
    "Deliver",
    "InMemoryBackend",
    "RedisBackend",
    "SessionEnded",
    "SharedBackend",
    "Snapshot",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        from ._redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

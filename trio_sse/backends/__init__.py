"""Backends: the extension point that carries published events to the broadcasters."""

from ._base import Backend as Backend
from ._base import Deliver as Deliver
from ._memory import InMemoryBackend as InMemoryBackend

__all__ = ["Backend", "Deliver", "InMemoryBackend"]

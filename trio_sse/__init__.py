"""trio-sse: Server-Sent Events on Trio; every resource bounded, every subscriber cleaned up.

Layers, low to high. A module imports only modules of its own row and of the rows before it,
never of a row after it (``tests/test_layers.py`` checks every ``import`` of every module,
including imports inside functions and under ``TYPE_CHECKING``: an import moved into a function
still points where it points). Names are relative to ``trio_sse``; ``pkg.*`` is the package
``pkg`` and every module in it; ``__init__`` is this module. Every module is in exactly one row::

    errors       _exceptions
    protocol     _protocol.*  protocol
    leaves       _config  _settings  _stats  _memory
    history      _history  _subscription
    sessions     _sessions
    backends     backends.*
    broadcaster  _broadcaster
    auth         _auth  _metrics
    http         server.*
    quart        _app  _quart
    client       _client
    cli          _commands  _workers  _cli  _demo  _settings_doc  __main__
    testing      testing.*
    facade       __init__

- errors: the one exception tree; imports nothing.
- protocol: the sans-IO wire format (``SSEEvent``, ``encode``, ``EventStreamParser``); no trio.
- leaves: frozen config and settings, statistics snapshots, the memory probe.
- history: bounded per-session replay; bounded per-subscriber channels.
- sessions: the registry of histories and subscribers, bounded by ``max_sessions``.
- backends: the transport between ``publish`` and delivery: in memory, or shared (Redis).
- broadcaster: fan-out and supervised cleanup (``open_broadcaster``), using a backend.
- auth: bearer tokens; Prometheus text.
- http: ``trio_sse.server``, one HTTP layer: routes, endpoints, transports, ``serve``.
- quart: the Quart-Trio front door (``create_app``) and the Quart extension.
- client: the Python client (``SSEClient``).
- cli: the ``trio-sse`` command line.
- testing: public test helpers (the backend conformance check).
- facade: this module. It imports only the error tree when it is imported; every other public
  name is loaded on first use (PEP 562 ``__getattr__``), so ``import trio_sse.protocol`` costs
  what the protocol costs. Type checkers read the same names from the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._exceptions import AuthError as AuthError
from ._exceptions import BackendUnavailableError as BackendUnavailableError
from ._exceptions import BatchError as BatchError
from ._exceptions import CapacityError as CapacityError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import EventTooLargeError as EventTooLargeError
from ._exceptions import InvalidEventError as InvalidEventError
from ._exceptions import MemoryPressureError as MemoryPressureError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import SessionLimitError as SessionLimitError
from ._exceptions import StreamStalled as StreamStalled
from ._exceptions import SubscriberLimitError as SubscriberLimitError
from ._exceptions import TrioSSEError as TrioSSEError

if TYPE_CHECKING:
    from ._app import SSEApp as SSEApp
    from ._app import create_app as create_app
    from ._auth import Authorizer as Authorizer
    from ._auth import make_token as make_token
    from ._broadcaster import Broadcaster as Broadcaster
    from ._broadcaster import open_broadcaster as open_broadcaster
    from ._client import ANY_EVENT as ANY_EVENT
    from ._client import ConnectionState as ConnectionState
    from ._client import SSEClient as SSEClient
    from ._config import BroadcasterConfig as BroadcasterConfig
    from ._config import SlowConsumerPolicy as SlowConsumerPolicy
    from ._memory import MemoryLevel as MemoryLevel
    from ._protocol import EventStreamParser as EventStreamParser
    from ._protocol import MessageEvent as MessageEvent
    from ._protocol import SSEEvent as SSEEvent
    from ._quart import TrioSSE as TrioSSE
    from ._settings import ServerSettings as ServerSettings
    from ._stats import BroadcasterStatistics as BroadcasterStatistics
    from ._stats import CleanupReport as CleanupReport
    from ._stats import MetricsSnapshot as MetricsSnapshot
    from ._subscription import CloseReason as CloseReason
    from ._subscription import Subscription as Subscription
    from ._subscription import SubscriptionStatistics as SubscriptionStatistics
    from .server import RunningServer as RunningServer
    from .server import serve as serve

__version__ = "0.1.0.dev0"

# The public names loaded on first use, and the module each comes from. It must say what the
# TYPE_CHECKING block says (tests/test_layers.py compares them).
_LAZY: dict[str, str] = {
    "SSEApp": "._app",
    "create_app": "._app",
    "Authorizer": "._auth",
    "make_token": "._auth",
    "Broadcaster": "._broadcaster",
    "open_broadcaster": "._broadcaster",
    "ANY_EVENT": "._client",
    "ConnectionState": "._client",
    "SSEClient": "._client",
    "BroadcasterConfig": "._config",
    "SlowConsumerPolicy": "._config",
    "MemoryLevel": "._memory",
    "EventStreamParser": "._protocol",
    "MessageEvent": "._protocol",
    "SSEEvent": "._protocol",
    "TrioSSE": "._quart",
    "RunningServer": ".server",
    "serve": ".server",
    "ServerSettings": "._settings",
    "BroadcasterStatistics": "._stats",
    "CleanupReport": "._stats",
    "MetricsSnapshot": "._stats",
    "CloseReason": "._subscription",
    "Subscription": "._subscription",
    "SubscriptionStatistics": "._subscription",
}

if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name stays an error

    def __getattr__(name: str) -> object:
        """Import the module of a public name on first use (PEP 562)."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ANY_EVENT",
    "AuthError",
    "Authorizer",
    "BackendUnavailableError",
    "BatchError",
    "Broadcaster",
    "BroadcasterConfig",
    "BroadcasterStatistics",
    "CapacityError",
    "CleanupReport",
    "CloseReason",
    "ConfigError",
    "ConnectionState",
    "EventStreamParser",
    "EventTooLargeError",
    "InvalidEventError",
    "MemoryLevel",
    "MemoryPressureError",
    "MessageEvent",
    "MetricsSnapshot",
    "ProtocolError",
    "RunningServer",
    "SSEApp",
    "SSEClient",
    "SSEEvent",
    "ServerSettings",
    "SessionLimitError",
    "SlowConsumerPolicy",
    "StreamStalled",
    "SubscriberLimitError",
    "Subscription",
    "SubscriptionStatistics",
    "TrioSSE",
    "TrioSSEError",
    "create_app",
    "make_token",
    "open_broadcaster",
    "serve",
]

"""trio-sse: Server-Sent Events on Trio; every resource bounded, every subscriber cleaned up.

Layers, low to high (a module imports only from the layers above it in this list):

- ``trio_sse.protocol``: the sans-IO wire format (``SSEEvent``, ``encode``, ``EventStreamParser``).
- history and subscriptions: bounded per-session replay; bounded per-subscriber channels.
- sessions: the registry of histories and subscribers, bounded by ``max_sessions``.
- ``trio_sse.backends``: the transport interface between ``publish`` and delivery, and the
  in-memory default (it knows only the protocol layer).
- the broadcaster: fan-out and supervised cleanup (``open_broadcaster``), using a backend.
- HTTP: the Quart-Trio app (``create_app``), its lean stream endpoint, and ``serve`` on
  Hypercorn's trio worker; then the command line (``trio-sse``).
"""

from ._app import SSEApp as SSEApp
from ._app import create_app as create_app
from ._auth import AuthError as AuthError
from ._auth import Authorizer as Authorizer
from ._auth import make_token as make_token
from ._broadcaster import Broadcaster as Broadcaster
from ._broadcaster import open_broadcaster as open_broadcaster
from ._client import ANY_EVENT as ANY_EVENT
from ._client import ConnectionState as ConnectionState
from ._client import SSEClient as SSEClient
from ._client import StreamStalled as StreamStalled
from ._config import BroadcasterConfig as BroadcasterConfig
from ._config import SlowConsumerPolicy as SlowConsumerPolicy
from ._exceptions import CapacityError as CapacityError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import EventTooLargeError as EventTooLargeError
from ._exceptions import InvalidEventError as InvalidEventError
from ._exceptions import MemoryPressureError as MemoryPressureError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import SessionLimitError as SessionLimitError
from ._exceptions import SubscriberLimitError as SubscriberLimitError
from ._exceptions import TrioSSEError as TrioSSEError
from ._memory import MemoryLevel as MemoryLevel
from ._protocol import EventStreamParser as EventStreamParser
from ._protocol import MessageEvent as MessageEvent
from ._protocol import SSEEvent as SSEEvent
from ._serve import RunningServer as RunningServer
from ._serve import serve as serve
from ._settings import ServerSettings as ServerSettings
from ._stats import BroadcasterStatistics as BroadcasterStatistics
from ._stats import CleanupReport as CleanupReport
from ._stats import MetricsSnapshot as MetricsSnapshot
from ._subscription import CloseReason as CloseReason
from ._subscription import Subscription as Subscription
from ._subscription import SubscriptionStatistics as SubscriptionStatistics

__version__ = "0.1.0.dev0"

__all__ = [
    "ANY_EVENT",
    "AuthError",
    "Authorizer",
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
    "TrioSSEError",
    "create_app",
    "make_token",
    "open_broadcaster",
    "serve",
]

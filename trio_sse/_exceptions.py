"""The one error tree of trio-sse.

::

    TrioSSEError
    ├── ConfigError              (also ValueError) a setting is missing, mistyped or out of range
    ├── InvalidEventError        (also ValueError) an event that could not be put on the wire safely
    │   └── EventTooLargeError   its encoded size is over ``max_event_bytes``
    ├── ProtocolError            (also ValueError) an incoming event stream broke a parser limit
    └── CapacityError            a configured bound refuses new work; try again later
        ├── SessionLimitError    ``max_sessions`` reached and no idle session could be evicted
        ├── SubscriberLimitError ``max_subscribers_per_session`` or ``max_subscribers`` reached
        └── MemoryPressureError  memory is over the critical threshold; shedding load

Closed or broken resources raise trio's own ``trio.ClosedResourceError`` with trio's meaning.
"""

from __future__ import annotations


class TrioSSEError(Exception):
    """Base class of every error trio-sse raises on its own account."""


class ConfigError(TrioSSEError, ValueError):
    """A configuration value is missing, mistyped or out of range."""


class InvalidEventError(TrioSSEError, ValueError):
    """An event cannot be encoded safely (control characters, unserialisable data...)."""


class EventTooLargeError(InvalidEventError):
    """The encoded event is larger than ``max_event_bytes``."""


class ProtocolError(TrioSSEError, ValueError):
    """An incoming event stream exceeded a limit of the parser."""


class CapacityError(TrioSSEError):
    """A configured bound refuses new work. Clients should retry later."""


class SessionLimitError(CapacityError):
    """``max_sessions`` is reached and no idle session without subscribers can be evicted."""


class SubscriberLimitError(CapacityError):
    """``max_subscribers_per_session`` (for this session) or ``max_subscribers`` is reached."""


class MemoryPressureError(CapacityError):
    """Memory is above the critical threshold; new subscriptions are refused until it recovers."""

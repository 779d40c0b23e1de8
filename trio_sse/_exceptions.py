"""The one error tree of trio-sse.

::

    TrioSSEError
    ├── ConfigError              (also ValueError) a setting is missing, mistyped or out of range
    ├── InvalidEventError        (also ValueError) an event that cannot be put on the wire safely
    │   └── EventTooLargeError   its encoded size is over ``max_event_bytes``
    ├── ProtocolError            (also ValueError) a bad event stream or server answer
    ├── CapacityError            a configured bound refuses new work; try again later
    │   ├── SessionLimitError    ``max_sessions`` reached and no idle session could be evicted
    │   ├── SubscriberLimitError ``max_subscribers_per_session`` or ``max_subscribers`` reached
    │   ├── MemoryPressureError  memory is over the critical threshold; shedding load
    │   └── BackendUnavailableError  the shared backend (Redis) did not answer in time
    ├── BatchError               one event of a batch publish was refused; none was published
    ├── AuthError                a request's token is missing, invalid (401) or not allowed (403)
    └── StreamStalled            the client's stream went silent for ``stall_timeout`` seconds

Closed, broken or exhausted resources raise trio's own ``trio.ClosedResourceError``,
``trio.BrokenResourceError``, ``trio.EndOfChannel`` and ``trio.WouldBlock`` with trio's meaning.
Every class is importable from ``trio_sse``; this module imports nothing, so the lowest layer
(the sans-IO protocol) can raise them.
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
    """An incoming event stream exceeded a limit of the parser, or an answer was malformed."""


class CapacityError(TrioSSEError):
    """A configured bound refuses new work. Clients should retry later."""


class SessionLimitError(CapacityError):
    """``max_sessions`` is reached and no idle session without subscribers can be evicted."""


class SubscriberLimitError(CapacityError):
    """``max_subscribers_per_session`` (for this session) or ``max_subscribers`` is reached."""


class MemoryPressureError(CapacityError):
    """Memory is above the critical threshold; new subscriptions are refused until it recovers."""


class BackendUnavailableError(CapacityError):
    """The shared backend (Redis) is down, frozen or unreachable; a publish may or may not have
    been applied (retrying it is safe only within the backend's idempotency window)."""


class AuthError(TrioSSEError):
    """A request is not authorised. ``status`` is 401 (no or bad token) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StreamStalled(TrioSSEError):
    """No byte arrived on the client's stream for ``stall_timeout`` seconds."""


class BatchError(TrioSSEError):
    """An event of a batch publish was refused, so none of the batch was published.

    Attributes:
        index: The position of the first refused event in the batch.
        error: Why it was refused (an :class:`InvalidEventError` or
            :class:`EventTooLargeError`).
    """

    def __init__(self, index: int, error: TrioSSEError) -> None:
        super().__init__(f"event {index} of the batch: {error}")
        self.index = index
        self.error = error

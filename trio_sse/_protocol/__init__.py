"""Sans-IO wire format: no trio, quart, httpx or redis is imported below this package."""

from ._encoder import encode, encode_comment, encode_retry
from ._event import MessageEvent, SSEEvent
from ._parser import EventStreamParser

__all__ = [
    "EventStreamParser",
    "MessageEvent",
    "SSEEvent",
    "encode",
    "encode_comment",
    "encode_retry",
]

"""The SSE wire protocol, sans-IO: encode events to bytes and parse byte streams to events.

Nothing here touches sockets or clocks, so it serves servers, clients and tests alike::

    from trio_sse.protocol import EventStreamParser, SSEEvent, encode

    parser = EventStreamParser()
    events = parser.feed(encode(SSEEvent("greeting", {"hello": "world"}, id="1")))
"""

from ._protocol import (
    EventStreamParser as EventStreamParser,
)
from ._protocol import (
    MessageEvent as MessageEvent,
)
from ._protocol import (
    SSEEvent as SSEEvent,
)
from ._protocol import (
    encode as encode,
)
from ._protocol import (
    encode_comment as encode_comment,
)
from ._protocol import (
    encode_retry as encode_retry,
)

__all__ = [
    "EventStreamParser",
    "MessageEvent",
    "SSEEvent",
    "encode",
    "encode_comment",
    "encode_retry",
]

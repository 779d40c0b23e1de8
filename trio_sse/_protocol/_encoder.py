"""Bytes for the wire: events, comments and the reconnection time. No I/O."""

from __future__ import annotations

from .._exceptions import InvalidEventError
from ._event import LINE_BREAK, SSEEvent, check_token


def encode(event: SSEEvent) -> bytes:
    """The wire form of ``event``: the buffer computed once when it was created."""
    return event.encoded


def encode_comment(text: str = "") -> bytes:
    """A comment block (``: text``), e.g. a heartbeat; clients ignore it.

    Multi-line text becomes several comment lines.
    """
    lines = LINE_BREAK.split(text)
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode() + b"\n"


def encode_retry(milliseconds: int) -> bytes:
    """A block that only sets the client's reconnection time."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        raise InvalidEventError(f"retry must be a non-negative int, not {milliseconds!r}")
    return b"retry: %d\n\n" % milliseconds


__all__ = ["check_token", "encode", "encode_comment", "encode_retry"]

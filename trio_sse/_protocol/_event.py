"""Event values: validated when created, encoded once.

An :class:`SSEEvent` is the wire event: what the broadcaster publishes, nothing more. Its wire
form is computed in ``__post_init__`` and kept on the instance, so fanning it out to any number
of subscribers never encodes it again. How long an event stays in history (its TTL) is history's
business (``trio_sse/_history.py``), not the event's. A :class:`MessageEvent` is what the parser
dispatches, shaped like the browser's ``MessageEvent`` (type, data, lastEventId).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import InvalidEventError

_FORBIDDEN = re.compile(r"[\r\n\x00]")
# WHATWG: a line ends with CRLF, LF or CR; nothing else (str.splitlines splits on more).
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def check_token(what: str, value: str) -> None:
    """Refuse a field value that could end the line it is written on.

    Raises:
        InvalidEventError: ``value`` is not a str or holds CR, LF or NUL. Stripping would hide
            an injection, so nothing is stripped.
    """
    if not isinstance(value, str):
        raise InvalidEventError(f"event {what} must be a str, not {type(value).__name__}")
    match = _FORBIDDEN.search(value)
    if match is not None:
        raise InvalidEventError(
            f"event {what} {value!r} contains {match.group()!r} at index {match.start()}; "
            "CR, LF and NUL are not allowed"
        )


def data_text(data: Any) -> str:
    """The text form of event data: a str as it is, anything else as compact JSON."""
    if isinstance(data, str):
        return data
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidEventError(
            f"event data is neither a str nor JSON-serialisable: {exc}"
        ) from exc


def _encode_fields(type: str, text: str, id: str | None, retry: int | None) -> bytes:
    head = f"event: {type}\n"
    if id is not None:
        head += f"id: {id}\n" if id else "id\n"
    if retry is not None:
        head += f"retry: {retry}\n"
    if text and "\n" not in text and "\r" not in text:  # the common case: one data line
        return f"{head}data: {text}\n\n".encode()
    lines = (f"data: {line}\n" if line else "data\n" for line in LINE_BREAK.split(text))
    return f"{head}{''.join(lines)}\n".encode()


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event, immutable and validated.

    Attributes:
        type: The event name (the ``event:`` field); ``"message"`` is the browser's default.
        data: A str, or any JSON-serialisable value (sent as compact JSON). Multi-line text is
            sent as several ``data:`` lines and arrives joined by ``\\n``.
        id: The event id (``<epoch>-<seq>`` when the broadcaster assigns it), or None.
        retry: A reconnection time in milliseconds to send with the event, or None.
        encoded: The wire bytes, computed once here; every subscriber receives this buffer.
        size: ``len(encoded)``.
    """

    type: str
    data: Any
    id: str | None = None
    retry: int | None = None
    encoded: bytes = field(init=False, repr=False, compare=False)
    size: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_token("type", self.type)
        if not self.type:
            raise InvalidEventError("event type must not be empty")
        if self.id is not None:
            check_token("id", self.id)
        if self.retry is not None and (
            isinstance(self.retry, bool) or not isinstance(self.retry, int) or self.retry < 0
        ):
            raise InvalidEventError(f"retry must be a non-negative int (ms), not {self.retry!r}")
        try:
            encoded = _encode_fields(self.type, data_text(self.data), self.id, self.retry)
        except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
            raise InvalidEventError(f"event cannot be encoded as UTF-8: {exc}") from exc
        object.__setattr__(self, "encoded", encoded)
        object.__setattr__(self, "size", len(encoded))


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """An event as the parser dispatches it (the browser's ``MessageEvent``).

    Attributes:
        type: The event type; ``"message"`` when the block had no ``event:`` field.
        data: The data lines joined by ``\\n``.
        id: The last event id in force when it was dispatched (``""`` if none yet).
    """

    type: str
    data: str
    id: str = ""

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)

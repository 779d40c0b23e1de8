"""Event values: validated when created, encoded once.

An :class:`SSEEvent` is the wire event: what the broadcaster publishes, nothing more. Its wire
form is computed when it is created and is all it keeps (the data's text is read back from it,
issue 10), so fanning it out never encodes it again and holding it costs its encoded size.
How long an event stays in history (its TTL) is history's business (``trio_sse/_history.py``),
not the event's. A :class:`MessageEvent` is what the parser dispatches,
shaped like the browser's ``MessageEvent`` (type, data, lastEventId).
"""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError, dataclass
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


class SSEEvent:
    """One server-sent event, immutable and validated; it holds only its wire bytes.

    ``SSEEvent(type, data, id=None, retry=None)``: ``data`` is a str, or any JSON-serialisable
    value (sent as compact JSON). The event keeps neither: it keeps the wire bytes, and
    :attr:`data` reads the text back from them, so a retained event costs its encoded size
    plus a fixed overhead (``docs/architecture.md`` section 6), whatever the shape of the value
    it was built from.

    Attributes:
        type: The event name (the ``event:`` field); ``"message"`` is the browser's default.
        id: The event id (``<epoch>-<seq>`` when the broadcaster assigns it), or None.
        retry: A reconnection time in milliseconds to send with the event, or None.
        encoded: The wire bytes, computed once here; every subscriber receives this buffer.
        size: ``len(encoded)``.
    """

    __slots__ = ("encoded", "id", "retry", "size", "type")
    __match_args__ = ("type", "data", "id", "retry")

    type: str
    id: str | None
    retry: int | None
    encoded: bytes
    size: int

    def __init__(
        self, type: str, data: Any, id: str | None = None, retry: int | None = None
    ) -> None:
        check_token("type", type)
        if not type:
            raise InvalidEventError("event type must not be empty")
        if id is not None:
            check_token("id", id)
        if retry is not None and (
            isinstance(retry, bool) or not isinstance(retry, int) or retry < 0
        ):
            raise InvalidEventError(f"retry must be a non-negative int (ms), not {retry!r}")
        try:
            encoded = _encode_fields(type, data_text(data), id, retry)
        except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
            raise InvalidEventError(f"event cannot be encoded as UTF-8: {exc}") from exc
        setter = object.__setattr__
        setter(self, "type", type)
        setter(self, "id", id)
        setter(self, "retry", retry)
        setter(self, "encoded", encoded)
        setter(self, "size", len(encoded))

    @property
    def data(self) -> str:
        """The data as text: a str data as given (line breaks as ``\\n``), a value as JSON.

        Read back from :attr:`encoded` (the ``data:`` lines joined by ``\\n``), as a client
        receives it; :meth:`json` decodes it.
        """
        encoded = self.encoded
        body = encoded[encoded.find(b"\ndata") + 1 : -2]  # the data lines; the head has none
        if b"\n" not in body:
            return body[6:].decode()  # "data: text" or "data"
        return "\n".join(line[6:] for line in body.decode().split("\n"))

    def json(self) -> Any:
        """The data parsed as JSON (the value the event was built from, if it was not a str)."""
        return json.loads(self.data)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSEEvent):
            return NotImplemented
        return self.encoded == other.encoded  # the bytes hold every field

    def __hash__(self) -> int:
        return hash(self.encoded)

    def __repr__(self) -> str:
        return (
            f"SSEEvent(type={self.type!r}, data={self.data!r}, id={self.id!r}, "
            f"retry={self.retry!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (SSEEvent, (self.type, self.data, self.id, self.retry))


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

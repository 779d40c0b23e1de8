"""Incremental event-stream parser following the WHATWG HTML standard.

Strategy (HTML Living Standard, "9.2.6 Interpreting an event stream"): bytes are decoded as UTF-8
with an incremental decoder (so a code point split across chunks survives) and one leading BOM is
dropped. Text that holds no line break is only collected, so a long line fed in tiny chunks costs
linear time. A CR at the end of a chunk ends its line at once; if the next chunk starts with LF,
that LF is the second half of the same CRLF and is skipped. An unterminated final block is never
dispatched: the caller simply stops feeding.
"""

from __future__ import annotations

import codecs

from .._exceptions import ProtocolError
from ._event import LINE_BREAK, MessageEvent

_DEFAULT_MAX_BUFFER = 1 << 20


class EventStreamParser:
    """Turn chunks of an ``text/event-stream`` body into :class:`MessageEvent` values.

    Args:
        max_buffer: Most characters held for one incomplete line plus the data of the event
            being built; beyond it :class:`~trio_sse.ProtocolError` is raised, so a hostile
            stream cannot grow the parser without bound. None removes the limit.

    Attributes:
        retry: The last valid reconnection time (ms) the stream set, or None.
        last_event_id: The last event id in force (``""`` until the stream sets one).
    """

    def __init__(self, *, max_buffer: int | None = _DEFAULT_MAX_BUFFER) -> None:
        self.retry: int | None = None
        self.last_event_id = ""
        self._max_buffer = max_buffer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._start = True  # nothing decoded yet: a BOM may still come
        self._skip_lf = False  # the previous chunk ended with CR
        self._pending: list[str] = []  # pieces of the incomplete last line
        self._pending_len = 0
        self._data: list[str] = []
        self._data_len = 0
        self._type = ""
        self._id_buffer = ""

    def feed(self, chunk: bytes) -> list[MessageEvent]:
        """Parse ``chunk`` and return the events it completed, in order."""
        text = self._decoder.decode(chunk)
        if self._start and text:
            self._start = False
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        if not text:
            return []
        if "\n" not in text and "\r" not in text:
            self._hold(text)
            return []
        if self._pending:
            text = "".join(self._pending) + text
            self._pending.clear()
            self._pending_len = 0
        lines = LINE_BREAK.split(text)
        rest = lines.pop()
        self._skip_lf = text.endswith("\r")
        events: list[MessageEvent] = []
        for line in lines:
            self._line(line, events)
        if rest:
            self._hold(rest)
        return events

    def _hold(self, text: str) -> None:
        self._pending.append(text)
        self._pending_len += len(text)
        self._check_size()

    def _check_size(self) -> None:
        limit = self._max_buffer
        if limit is not None and self._pending_len + self._data_len > limit:
            raise ProtocolError(f"event stream block exceeds max_buffer={limit} characters")

    def _line(self, line: str, events: list[MessageEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        name, colon, value = line.partition(":")
        if not colon:
            value = ""
        elif not name:
            return  # a comment
        elif value.startswith(" "):
            value = value[1:]
        self._field(name, value)

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
            self._data_len += len(value) + 1
            self._check_size()
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)
        # any other field name is ignored

    def _dispatch(self, events: list[MessageEvent]) -> None:
        self.last_event_id = self._id_buffer
        if self._data:
            data = "\n".join(self._data)
            events.append(MessageEvent(self._type or "message", data, self.last_event_id))
        self._data.clear()
        self._data_len = 0
        self._type = ""

"""The sans-IO wire protocol: event values, the encoder and the WHATWG event-stream parser.

The parser is checked against HTML Living Standard "9.2.6 Interpreting an event stream". Every
stream in the two tables below is also fed whole, byte by byte, split inside every CRLF and in
random chunks, and must give the same events and reconnection time each way.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_sse._protocol
from trio_sse import InvalidEventError, ProtocolError
from trio_sse.protocol import (
    EventStreamParser,
    MessageEvent,
    SSEEvent,
    encode,
    encode_comment,
    encode_retry,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


def feed_all(chunks: Iterable[bytes], **options: Any) -> tuple[list[MessageEvent], int | None]:
    """Feed ``chunks`` to a fresh parser: every event it dispatched, and its final ``retry``."""
    parser = EventStreamParser(**options)
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser.retry


def split_at(raw: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``raw`` cut at each offset in ``cuts`` (empty chunks included, they must be harmless)."""
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[start:end] for start, end in itertools.pairwise(bounds)]


def message(data: str, id: str = "", type: str = "message") -> MessageEvent:
    return MessageEvent(type, data, id)


# --- Table 1: an event, its exact wire bytes, and the data a client reads back ------------------

ROUND_TRIPS: dict[str, tuple[SSEEvent, bytes, str]] = {
    "plain-str": (
        SSEEvent("greeting", "hello"),
        b"event: greeting\ndata: hello\n\n",
        "hello",
    ),
    "with-id": (
        SSEEvent("message", "hi", id="1700000000-7"),
        b"event: message\nid: 1700000000-7\ndata: hi\n\n",
        "hi",
    ),
    "multi-line-lf": (
        SSEEvent("e", "a\nb\nc"),
        b"event: e\ndata: a\ndata: b\ndata: c\n\n",
        "a\nb\nc",
    ),
    "multi-line-crlf": (
        SSEEvent("e", "a\r\nb"),
        b"event: e\ndata: a\ndata: b\n\n",
        "a\nb",
    ),
    "multi-line-cr": (
        SSEEvent("e", "a\rb"),
        b"event: e\ndata: a\ndata: b\n\n",
        "a\nb",
    ),
    "mixed-breaks-and-empty-lines": (
        SSEEvent("e", "a\r\n\rb\n"),
        b"event: e\ndata: a\ndata\ndata: b\ndata\n\n",
        "a\n\nb\n",
    ),
    "other-unicode-breaks-are-not-line-ends": (
        SSEEvent("e", "a\u2028b\x85c\x0bd\x0ce\x1cf"),
        "event: e\ndata: a\u2028b\x85c\x0bd\x0ce\x1cf\n\n".encode(),
        "a\u2028b\x85c\x0bd\x0ce\x1cf",
    ),
    "empty-data": (
        SSEEvent("e", ""),
        b"event: e\ndata\n\n",
        "",
    ),
    "leading-space-kept-once": (
        SSEEvent("e", " x"),
        b"event: e\ndata:  x\n\n",
        " x",
    ),
    "colon-in-data": (
        SSEEvent("e", "key: value"),
        b"event: e\ndata: key: value\n\n",
        "key: value",
    ),
    "nul-in-data": (
        SSEEvent("e", "a\x00b"),
        b"event: e\ndata: a\x00b\n\n",
        "a\x00b",
    ),
    "json-dict": (
        SSEEvent("e", {"b": 1, "a": [1, 2], "c": None}),
        b'event: e\ndata: {"b":1,"a":[1,2],"c":null}\n\n',
        '{"b":1,"a":[1,2],"c":null}',
    ),
    "json-list": (
        SSEEvent("e", [1, "two", True, 2.5]),
        b'event: e\ndata: [1,"two",true,2.5]\n\n',
        '[1,"two",true,2.5]',
    ),
    "json-int": (
        SSEEvent("e", 42),
        b"event: e\ndata: 42\n\n",
        "42",
    ),
    "json-newline-is-escaped": (
        SSEEvent("e", {"text": "a\nb"}),
        b'event: e\ndata: {"text":"a\\nb"}\n\n',
        '{"text":"a\\nb"}',
    ),
    "json-unicode-not-escaped": (
        SSEEvent("e", {"name": "zoë ✓"}),
        'event: e\ndata: {"name":"zoë ✓"}\n\n'.encode(),
        '{"name":"zoë ✓"}',
    ),
    "unicode-str": (
        SSEEvent("événement", "héllo ✓ 🎉", id="ид"),
        "event: événement\nid: ид\ndata: héllo ✓ 🎉\n\n".encode(),
        "héllo ✓ 🎉",
    ),
    "type-with-colon-and-leading-space": (
        SSEEvent(" a:b", "x"),
        b"event:  a:b\ndata: x\n\n",
        "x",
    ),
    "empty-id": (
        SSEEvent("reset", "x", id=""),
        b"event: reset\nid\ndata: x\n\n",
        "x",
    ),
    "retry": (
        SSEEvent("message", "x", id="5", retry=3000),
        b"event: message\nid: 5\nretry: 3000\ndata: x\n\n",
        "x",
    ),
    "retry-zero": (
        SSEEvent("e", "x", retry=0),
        b"event: e\nretry: 0\ndata: x\n\n",
        "x",
    ),
}

# --- Table 2: raw streams only a parser sees, the events it dispatches, its final retry ---------

_MALFORMED_RETRIES = {
    "exponent": b"1e3",
    "two-spaces": b"  5",
    "negative": b" -1",
    "plus-sign": b" +5",
    "decimal": b" 5.0",
    "hex": b" 0x10",
    "trailing-space": b" 5 ",
    "empty": b"",
    "fullwidth-digit": " \uff15".encode(),
    "arabic-indic-digit": " \u0663".encode(),
    "superscript-digit": " \u00b2".encode(),
}

STREAMS: dict[str, tuple[bytes, list[MessageEvent], int | None]] = {
    "empty-stream": (b"", [], None),
    "blank-lines-only": (b"\n\n\r\n\r", [], None),
    "leading-bom-dropped": (b"\xef\xbb\xbfdata: x\n\n", [message("x")], None),
    "second-bom-kept-in-field-name": (b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", [], None),
    "bom-kept-in-value": (b"data: \xef\xbb\xbfx\n\n", [message("\ufeffx")], None),
    "bom-after-stream-start-kept": (
        b"data: a\n\n\xef\xbb\xbfdata: b\n\n",
        [message("a")],
        None,
    ),
    "comments-ignored": (
        b": hello\n:\ndata: x\n: data: not data\n:: also a comment\ndata: y\n\n",
        [message("x\ny")],
        None,
    ),
    "comments-only-dispatch-nothing": (b":\n\n: heartbeat\n\n", [], None),
    "data-without-colon-is-empty-line": (b"data\n\n", [message("")], None),
    "two-data-without-colon": (b"data\ndata\n\n", [message("\n")], None),
    "empty-data-value-adds-line": (b"data: a\ndata:\n\n", [message("a\n")], None),
    "no-space-after-colon": (b"data:x\n\n", [message("x")], None),
    "only-one-space-stripped": (b"data:  x\n\n", [message(" x")], None),
    "tab-not-stripped": (b"data:\tx\n\n", [message("\tx")], None),
    "event-without-colon-means-message": (b"event\ndata: x\n\n", [message("x")], None),
    "empty-event-means-message": (b"event:\ndata: x\n\n", [message("x")], None),
    "last-event-field-wins": (
        b"event: a\nevent: b\ndata: x\n\n",
        [message("x", type="b")],
        None,
    ),
    "unknown-and-miscased-fields-ignored": (
        b"foo: bar\nDATA: x\nData: y\ndata : z\n data: w\nid : 9\ndata: ok\n\n",
        [message("ok")],
        None,
    ),
    "unknown-field-alone-dispatches-nothing": (b"foo: bar\n\n", [], None),
    "id-with-nul-ignored": (
        b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n",
        [message("a", id="1"), message("b", id="1")],
        None,
    ),
    "last-id-carried-to-later-events": (
        b"id: 1\ndata: a\n\ndata: b\n\nevent: c\ndata: c\n\n",
        [message("a", id="1"), message("b", id="1"), message("c", id="1", type="c")],
        None,
    ),
    "id-after-data-in-same-block-applies": (
        b"data: a\nid: 2\n\n",
        [message("a", id="2")],
        None,
    ),
    "id-in-block-without-data-kept": (
        b"id: 7\n\ndata: a\n\n",
        [message("a", id="7")],
        None,
    ),
    "empty-id-resets": (
        b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\ndata: c\n\nid:\ndata: d\n\n",
        [message("a", id="1"), message("b"), message("c", id="3"), message("d")],
        None,
    ),
    "id-keeps-spaces-after-first": (b"id:  x \ndata: a\n\n", [message("a", id=" x ")], None),
    "event-without-data-dispatches-nothing": (b"event: ping\n\n", [], None),
    "event-type-reset-after-empty-block": (
        b"event: ping\n\ndata: x\n\n",
        [message("x")],
        None,
    ),
    "event-type-reset-after-dispatch": (
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [message("1", type="a"), message("2")],
        None,
    ),
    "unterminated-final-line-not-dispatched": (b"data: a\n\ndata: b", [message("a")], None),
    "unterminated-final-block-not-dispatched": (b"data: a\n\ndata: b\n", [message("a")], None),
    "cr-only-line-ends": (
        b"event: e\rdata: a\rdata: b\r\rdata: c\r\r",
        [message("a\nb", type="e"), message("c")],
        None,
    ),
    "crlf-line-ends": (
        b"id: 1\r\ndata: a\r\ndata: b\r\n\r\n",
        [message("a\nb", id="1")],
        None,
    ),
    "mixed-line-ends": (
        b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\r",
        [message("a\nb\nc"), message("d")],
        None,
    ),
    "cr-then-crlf-is-two-line-ends": (b"data: a\r\r\n", [message("a")], None),
    "lf-then-cr-is-two-line-ends": (b"data: a\n\r", [message("a")], None),
    "many-events-in-one-chunk": (
        b"data: 1\n\ndata: 2\n\nevent: x\ndata: 3\n\n",
        [message("1"), message("2"), message("3", type="x")],
        None,
    ),
    "multi-byte-utf8": (
        "event: ✓\ndata: é ✓ 🎉\n\n".encode(),
        [message("é ✓ 🎉", type="✓")],
        None,
    ),
    "invalid-utf8-replaced": (b"data: a\xffb\n\n", [message("a\ufffdb")], None),
    "truncated-utf8-replaced": (b"data: \xe2\x82\n\n", [message("\ufffd")], None),
    "invalid-utf8-in-field-name": (b"dat\xff: x\ndata: y\n\n", [message("y")], None),
    "retry-set-without-event": (b"retry: 1000\n\n", [], 1000),
    "retry-leading-zeros": (b"retry: 007\n\n", [], 7),
    "retry-last-valid-wins": (b"retry: 1000\nretry: 0\ndata: x\n\n", [message("x")], 0),
    "retry-in-unterminated-block-applies": (b"retry: 1000\n", [], 1000),
    "retry-malformed-all-ignored": (
        b"".join(b"retry:" + value + b"\n" for value in _MALFORMED_RETRIES.values()) + b"\n",
        [],
        None,
    ),
    **{
        f"retry-malformed-{name}-keeps-previous": (
            b"retry: 1000\nretry:" + value + b"\ndata: x\n\n",
            [message("x")],
            1000,
        )
        for name, value in _MALFORMED_RETRIES.items()
    },
}

# Every input of both tables as (raw, events, retry), keyed by a readable name.
ALL_STREAMS: dict[str, tuple[bytes, list[MessageEvent], int | None]] = {
    **{
        f"encoded-{name}": (wire, [message(data, event.id or "", event.type)], event.retry)
        for name, (event, wire, data) in ROUND_TRIPS.items()
    },
    **STREAMS,
}


def whole(raw: bytes) -> list[bytes]:
    return [raw]


def byte_by_byte(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def inside_every_crlf(raw: bytes) -> list[bytes]:
    return split_at(raw, [match.start() + 1 for match in re.finditer(rb"\r\n", raw)])


CHUNKERS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": whole,
    "byte-by-byte": byte_by_byte,
    "inside-every-crlf": inside_every_crlf,
}


# --- Encoder and parser on the tables ----------------------------------------------------------


@pytest.mark.parametrize(("event", "wire", "data"), ROUND_TRIPS.values(), ids=ROUND_TRIPS)
def test_encoder_writes_exact_bytes(event: SSEEvent, wire: bytes, data: str) -> None:
    assert encode(event) == wire


@pytest.mark.parametrize(("event", "wire", "data"), ROUND_TRIPS.values(), ids=ROUND_TRIPS)
def test_encoded_event_parses_back_to_the_same_message(
    event: SSEEvent, wire: bytes, data: str
) -> None:
    assert feed_all([wire]) == ([message(data, event.id or "", event.type)], event.retry)


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS)
@pytest.mark.parametrize(("raw", "events", "retry"), ALL_STREAMS.values(), ids=ALL_STREAMS)
def test_parser_follows_whatwg_however_the_stream_is_chunked(
    chunker: Callable[[bytes], list[bytes]],
    raw: bytes,
    events: list[MessageEvent],
    retry: int | None,
) -> None:
    assert feed_all(chunker(raw)) == (events, retry)


@PROPERTY_SETTINGS
@given(st.data())
def test_random_chunking_of_table_streams_gives_the_same_events(data: st.DataObject) -> None:
    raw, events, retry = ALL_STREAMS[data.draw(st.sampled_from(sorted(ALL_STREAMS)), label="name")]
    cuts = data.draw(st.lists(st.integers(0, len(raw))), label="cuts")
    assert feed_all(split_at(raw, cuts)) == (events, retry)


# Bytes that exercise every branch of the parser when strung together at random.
_STREAM_TOKENS = [
    b"data",
    b"event",
    b"id",
    b"retry",
    b"x",
    b"1",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xe2\x82\xac",
    b"\xe2\x82",
    b"\xff",
]


@PROPERTY_SETTINGS
@given(st.data())
def test_any_chunking_of_an_arbitrary_stream_matches_feeding_it_whole(data: st.DataObject) -> None:
    raw = data.draw(st.lists(st.sampled_from(_STREAM_TOKENS)).map(b"".join), label="raw")
    cuts = data.draw(st.lists(st.integers(0, len(raw))), label="cuts")
    assert feed_all(split_at(raw, cuts)) == feed_all([raw])


_TOKEN_CHARACTERS = st.characters(codec="utf-8", exclude_characters="\r\n\x00")


@PROPERTY_SETTINGS
@given(
    type=st.text(_TOKEN_CHARACTERS, min_size=1),
    data=st.text(st.characters(codec="utf-8")),
    id=st.none() | st.text(_TOKEN_CHARACTERS),
    retry=st.none() | st.integers(min_value=0),
)
def test_any_valid_event_survives_encode_and_parse(
    type: str, data: str, id: str | None, retry: int | None
) -> None:
    event = SSEEvent(type, data, id=id, retry=retry)
    expected = message(re.sub(r"\r\n?", "\n", data), id or "", type)
    assert feed_all([encode(event)]) == ([expected], retry)


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == [message("a\nb")]
    assert parser.feed(b"\n") == []


def test_cr_at_chunk_end_ends_the_line_without_waiting_for_the_next_chunk() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\r\r") == [message("a")]


def test_events_are_returned_by_the_feed_that_completes_them() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [message("a")]
    assert parser.feed(b"\n") == [message("b")]


@pytest.mark.parametrize(
    ("raw", "last_event_id"),
    [
        (b"", ""),
        (b"id: 1\ndata: a\n\n", "1"),
        (b"id: 1\n\n", "1"),
        (b"id: 1\n\nid\n\n", ""),
        (b"id: 1\n\nid: 2\x00\n\n", "1"),
        (b"id: 1\n\nid: 2\n", "1"),
    ],
    ids=["none", "with-event", "without-data", "reset", "nul-ignored", "set-only-at-dispatch"],
)
def test_last_event_id_is_the_id_in_force_after_the_last_dispatch(
    raw: bytes, last_event_id: str
) -> None:
    parser = EventStreamParser()
    parser.feed(raw)
    assert parser.last_event_id == last_event_id


def test_message_json_parses_the_data() -> None:
    [event], _ = feed_all([encode(SSEEvent("e", {"a": [1, None]}))])
    assert event.json() == {"a": [1, None]}


# --- SSEEvent validation -----------------------------------------------------------------------

INVALID_EVENTS: dict[str, dict[str, Any]] = {
    "type-with-lf": {"type": "a\nb"},
    "type-with-cr": {"type": "a\rb"},
    "type-with-crlf": {"type": "a\r\n"},
    "type-with-nul": {"type": "a\x00b"},
    "type-empty": {"type": ""},
    "type-int": {"type": 5},
    "type-none": {"type": None},
    "type-bytes": {"type": b"e"},
    "type-lone-surrogate": {"type": "\ud800"},
    "id-with-lf": {"id": "1\ndata: injected"},
    "id-with-cr": {"id": "1\r"},
    "id-with-nul": {"id": "1\x00"},
    "id-int": {"id": 1},
    "id-lone-surrogate": {"id": "\udfff"},
    "retry-negative": {"retry": -1},
    "retry-true": {"retry": True},
    "retry-false": {"retry": False},
    "retry-float": {"retry": 1.5},
    "retry-str": {"retry": "1000"},
    "data-object": {"data": object()},
    "data-nan": {"data": math.nan},
    "data-inf-in-dict": {"data": {"x": math.inf}},
    "data-set": {"data": {1, 2}},
    "data-bytes": {"data": b"raw"},
    "data-tuple-key": {"data": {(1, 2): "v"}},
    "data-lone-surrogate": {"data": "a\ud800"},
    "data-lone-surrogate-in-json": {"data": {"k": "\udc80"}},
}


@pytest.mark.parametrize("fields", INVALID_EVENTS.values(), ids=INVALID_EVENTS)
def test_invalid_event_is_refused_not_repaired(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidEventError):
        SSEEvent(**{"type": "t", "data": "d", **fields})


def test_event_is_encoded_once_when_created() -> None:
    event = SSEEvent("e", {"big": list(range(100))}, id="1", retry=10)
    first = encode(event)
    assert encode(event) is first
    assert event.encoded is first
    assert event.size == len(first)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        *[(SSEEvent("e", "d"), name) for name in ("type", "data", "id", "retry", "encoded")],
        *[(MessageEvent("e", "d"), name) for name in ("type", "data", "id")],
    ],
)
def test_events_are_frozen(value: SSEEvent | MessageEvent, name: str) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, name, getattr(value, name))


# --- Comments and retry blocks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", b":\n\n"),
        ("hb", b": hb\n\n"),
        ("a\nb", b": a\n: b\n\n"),
        ("a\r\n\rb", b": a\n:\n: b\n\n"),
        ("x\ndata: injected", b": x\n: data: injected\n\n"),
    ],
    ids=["empty", "heartbeat", "multi-line", "mixed-breaks", "data-line-stays-comment"],
)
def test_comment_is_encoded_as_comment_lines_the_parser_ignores(text: str, wire: bytes) -> None:
    assert encode_comment(text) == wire
    event = SSEEvent("e", "after", id="1")
    assert feed_all(byte_by_byte(wire + encode(event) + wire)) == (
        [message("after", "1", "e")],
        None,
    )


def test_encode_comment_defaults_to_an_empty_comment() -> None:
    assert encode_comment() == b":\n\n"


@pytest.mark.parametrize("milliseconds", [0, 3000, 10**12])
def test_retry_block_sets_the_parser_reconnection_time(milliseconds: int) -> None:
    wire = encode_retry(milliseconds)
    assert wire == b"retry: %d\n\n" % milliseconds
    assert feed_all([wire]) == ([], milliseconds)


@pytest.mark.parametrize("milliseconds", [-1, True, 1.5, "3000", None])
def test_encode_retry_refuses_anything_but_a_non_negative_int(milliseconds: Any) -> None:
    with pytest.raises(ValueError, match="retry must be a non-negative int"):
        encode_retry(milliseconds)


# --- max_buffer --------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 7, 50, 200])
def test_line_longer_than_max_buffer_is_refused_however_it_arrives(piece: int) -> None:
    line = b"data: " + b"x" * 194
    with pytest.raises(ProtocolError, match="max_buffer=100"):
        feed_all(split_at(line, range(piece, len(line), piece)), max_buffer=100)


@pytest.mark.parametrize("chunker", CHUNKERS.values(), ids=CHUNKERS)
def test_data_lines_of_one_event_totalling_over_max_buffer_are_refused(
    chunker: Callable[[bytes], list[bytes]],
) -> None:
    with pytest.raises(ProtocolError):
        feed_all(chunker(b"data: 123456789\n" * 11 + b"\n"), max_buffer=100)


# Chunks that reach max_buffer=100 exactly, and the same plus one character.
MAX_BUFFER_BOUNDARIES: dict[str, tuple[list[bytes], list[bytes]]] = {
    "incomplete-line": ([b"data: " + b"x" * 94], [b"data: " + b"x" * 94, b"x"]),
    "data-of-one-line": ([b"data: " + b"x" * 99 + b"\n"], [b"data: " + b"x" * 100 + b"\n"]),
    "data-of-two-lines": (
        [b"data: " + b"x" * 49 + b"\ndata: " + b"x" * 49 + b"\n"],
        [b"data: " + b"x" * 49 + b"\ndata: " + b"x" * 50 + b"\n"],
    ),
    "held-line-plus-data": (
        [b"data: " + b"x" * 49 + b"\n", b"data: " + b"x" * 44],
        [b"data: " + b"x" * 49 + b"\n", b"data: " + b"x" * 45],
    ),
}


@pytest.mark.parametrize(
    ("at_limit", "over_limit"), MAX_BUFFER_BOUNDARIES.values(), ids=MAX_BUFFER_BOUNDARIES
)
def test_max_buffer_is_reached_inclusively_and_refused_one_character_over(
    at_limit: list[bytes], over_limit: list[bytes]
) -> None:
    assert feed_all(at_limit, max_buffer=100) == ([], None)
    with pytest.raises(ProtocolError):
        feed_all(over_limit, max_buffer=100)


def test_max_buffer_applies_to_each_event_not_the_whole_stream() -> None:
    raw = b"data: " + b"x" * 80 + b"\n\n"
    assert feed_all(byte_by_byte(raw * 10), max_buffer=100) == ([message("x" * 80)] * 10, None)


def test_max_buffer_none_accepts_what_the_default_limit_refuses() -> None:
    data = b"x" * ((1 << 20) + 1)
    chunks = split_at(b"data: " + data + b"\n\n", range(0, len(data), 1 << 16))
    assert feed_all(chunks, max_buffer=None) == ([message(data.decode())], None)
    with pytest.raises(ProtocolError):
        feed_all(chunks)


# --- No I/O below the protocol package ---------------------------------------------------------

IO_MODULES = frozenset(
    {"trio", "quart", "httpx", "redis", "coredis", "hypercorn", "anyio", "asyncio", "socket"}
)
PROTOCOL_DIR = Path(trio_sse._protocol.__file__).parent


def _imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PROTOCOL_DIR.glob("*.py")), ids=lambda path: path.name)
def test_protocol_module_imports_no_io_library(path: Path) -> None:
    assert not _imported_top_level_names(path) & IO_MODULES


def test_protocol_package_imports_with_every_io_library_blocked() -> None:
    # trio_sse/__init__.py may import trio, so the parent package is stubbed with its path only.
    script = textwrap.dedent(
        f"""
        import sys, types
        for name in {sorted(IO_MODULES)!r}:
            sys.modules[name] = None  # any import of it now raises ImportError
        package = types.ModuleType("trio_sse")
        package.__path__ = [{str(PROTOCOL_DIR.parent)!r}]
        sys.modules["trio_sse"] = package
        from trio_sse._protocol import EventStreamParser, SSEEvent, encode
        [event] = EventStreamParser().feed(encode(SSEEvent("e", "ok")))
        assert event.data == "ok", event
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)


def test_the_wire_event_carries_no_history_metadata() -> None:
    # TTLs and creation times belong to history (trio_sse/_history.py), not to the wire event.
    # It holds its wire bytes and the fields written in them; the data is read back (issue 10).
    assert set(SSEEvent.__slots__) == {"type", "id", "retry", "encoded", "size"}

"""The lean HTTP layer: the sans-IO parser, the route table, and hostile input on a real server.

The sans-IO parts (``trio_sse/server/_http.py``, ``_routes.py``) are checked from tables in
the style of h11's ``test_io.py``: every head is fed whole, byte by byte and split at every
position, and must end at the same place with the same answer; every chunked body likewise,
split between each ``\\r`` and ``\\n`` too.

The rest runs against a real server (``trio_sse.serve``) listening on 127.0.0.1 port 0, started
with ``nursery.start`` and wrapped in ``trio.fail_after``: these tests use real sockets and the
real clock (``real_time``), with head, body and keep-alive timeouts of a few tenths of a second.
The fuzz tests generate their cases with hypothesis and run each example's cases in one
``trio.run`` against a fresh server: a well-formed answer to every case, no 500, no error
logged, and the server still healthy afterwards.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_sse import RunningServer, ServerSettings, serve
from trio_sse.server._errors import HTTPError
from trio_sse.server._http import ChunkedReader, RequestHead, head_end, parse_head, response_head
from trio_sse.server._routes import allowed_methods, check_session_id, match, split_path

LIMIT = 256
"""``max_head_bytes`` of the table's heads."""


# -- request heads ------------------------------------------------------------------------------


def head(*lines: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n"


GET = b"GET / HTTP/1.1"
HOST = b"Host: example.com"

# (raw head, expected fields of the RequestHead). Fields not named keep these defaults:
DEFAULTS: dict[str, Any] = {
    "method": "GET",
    "path": b"/",
    "query": b"",
    "version": "1.1",
    "content_length": 0,
    "chunked": False,
    "keep_alive": True,
}
ACCEPTED: list[tuple[bytes, dict[str, Any]]] = [
    (
        head(b"GET /sessions/s/poll?after=3&wait=1 HTTP/1.1", HOST),
        {
            "path": b"/sessions/s/poll",
            "query": b"after=3&wait=1",
            "headers": {"host": "example.com"},
        },
    ),
    (head(b"GET /a%2Fb/c?x HTTP/1.1", HOST), {"path": b"/a%2Fb/c", "query": b"x"}),
    (head(b"GET /p#fragment HTTP/1.1", HOST), {"path": b"/p"}),
    (
        head(b"GET http://example.com/stats?x=1 HTTP/1.1", HOST),
        {"path": b"/stats", "query": b"x=1"},
    ),
    (head(b"GET HTTPS://example.com:8443/healthz HTTP/1.1", HOST), {"path": b"/healthz"}),
    (head(b"GET http://example.com HTTP/1.1", HOST), {"path": b"/"}),
    # The authority ends at "?": a "/" in the query is not the start of the path.
    (head(b"GET http://h?q=/healthz HTTP/1.1", HOST), {"path": b"/", "query": b"q=/healthz"}),
    (head(b"GET http://h#/healthz HTTP/1.1", HOST), {"path": b"/"}),
    (head(b"OPTIONS * HTTP/1.1", HOST), {"method": "OPTIONS", "path": b"*"}),
    (head(b"DELETE /sessions/s HTTP/1.1", HOST), {"method": "DELETE", "path": b"/sessions/s"}),
    (head(b"GET / HTTP/1.0"), {"version": "1.0", "keep_alive": False, "headers": {}}),
    (head(b"GET / HTTP/1.0", b"Connection: Keep-Alive"), {"version": "1.0", "keep_alive": True}),
    (head(GET, HOST, b"Connection: close"), {"keep_alive": False}),
    (head(GET, HOST, b"Connection: keep-alive, Close"), {"keep_alive": False}),
    (
        head(GET, HOST, b"Accept: text/html", b"X-Other: 1", b"accept: */*"),
        {"headers": {"host": "example.com", "accept": "text/html, */*", "x-other": "1"}},
    ),
    (
        head(GET, HOST, b"Cookie: a=1", b"Cookie: b=2"),
        {"headers": {"host": "example.com", "cookie": "a=1; b=2"}},
    ),
    (
        head(GET, b"HOST:example.com", b"X-Padded: \t a  b \t", b"X-Empty:", b"X-Latin: caf\xe9"),
        {"headers": {"host": "example.com", "x-padded": "a  b", "x-empty": "", "x-latin": "café"}},
    ),
    (head(GET, b"Host:"), {"headers": {"host": ""}}),
    (
        head(b"POST /events HTTP/1.1", HOST, b"Transfer-Encoding: Chunked"),
        {"method": "POST", "path": b"/events", "content_length": None, "chunked": True},
    ),
    (
        head(b"POST /events HTTP/1.1", HOST, b"Content-Length: 42"),
        {"method": "POST", "path": b"/events", "content_length": 42},
    ),
    (head(GET, HOST, b"Content-Length: 007"), {"content_length": 7}),
    (head(b"M-SEARCH / HTTP/1.1", HOST), {"method": "M-SEARCH"}),
    (head(b"get / HTTP/1.1", HOST), {"method": "get"}),
    # Whatever follows the head (a body, a pipelined request) is not part of it.
    (head(GET, HOST) + b"GET /next HTTP/1.1\r\n", {}),
]

# (raw head, status): refused with close=True, however the bytes arrive.
REFUSED: list[tuple[bytes, int]] = [
    (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),  # bare LF after the request line
    (b"GET / HTTP/1.1\r\nHost: x\n\n", 400),  # bare LF ending the head
    (b"GET / HTTP/1.1\nHost: x\n\n", 400),  # bare LF everywhere
    (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX: a\nb\r\nHost: x\r\n\r\n", 400),  # LF inside a value
    (b"GET / HTTP/1.1\r\nX: a\rb\r\nHost: x\r\n\r\n", 400),  # bare CR inside a value
    (b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n", 400),  # bare CR ending a line
    (b"GET / HTTP/1.1\r\rHost: x\r\n\r\n", 400),
    (head(GET, HOST, b"X: a", b" folded"), 400),  # obs-fold
    (head(GET, HOST, b"X: a", b"\tfolded"), 400),
    (head(GET, b" Host: x"), 400),
    (head(GET, b"Host : x"), 400),  # whitespace before the colon
    (head(GET, b"Host\t: x"), 400),
    (head(GET, HOST, b": no name"), 400),
    (head(GET, HOST, b"no colon"), 400),
    (head(GET, HOST, b"X(y): z"), 400),
    (head(GET, HOST, b"X: a\x00b"), 400),
    (head(GET, HOST, b"X: a\x01"), 400),
    (head(GET, HOST, b"X: \x1b[31m"), 400),
    (head(GET, HOST, b"X: a\x7fb"), 400),
    (head(GET, HOST, b"X: a\x0bb"), 400),
    (head(GET, HOST, b"Host: y"), 400),  # two Host
    (head(GET, HOST, b"Content-Length: 5", b"Content-Length: 5"), 400),
    (head(GET, HOST, b"Content-Length: 5, 5"), 400),
    (head(GET, HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), 400),
    (head(GET, HOST, b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400),  # smuggling
    (head(GET, HOST, b"Transfer-Encoding: chunked", b"Content-Length: 0"), 400),
    (head(GET, HOST, b"Transfer-Encoding: gzip"), 501),
    (head(GET, HOST, b"Transfer-Encoding: gzip, chunked"), 501),
    (head(GET, HOST, b"Transfer-Encoding: identity"), 501),
    (head(b"GET / HTTP/2.0", HOST), 505),
    (head(b"GET / HTTP/3"), 505),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),  # the HTTP/2 connection preface
    (head(b"GET /"), 400),
    (head(b"GET / HTTP/1.1 extra", HOST), 400),
    (head(b"GET  / HTTP/1.1", HOST), 400),
    (head(b"GET / http/1.1", HOST), 400),
    (head(b"GET / XTTP/1.1", HOST), 400),
    (head(b"G(T / HTTP/1.1", HOST), 400),
    (head(b" / HTTP/1.1", HOST), 400),
    (head(b"GET /caf\xe9 HTTP/1.1", HOST), 400),
    (head(b"GET /\x7f HTTP/1.1", HOST), 400),
    (head(b"GET * HTTP/1.1", HOST), 400),
    (head(b"GET example.com/ HTTP/1.1", HOST), 400),
    (head(b"GET ftp://example.com/ HTTP/1.1", HOST), 400),
    (head(b"", HOST), 400),  # an empty request line
    (b"\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS on a cleartext port
    (head(GET, HOST, b"Content-Length: abc"), 400),
    (head(GET, HOST, b"Content-Length: -1"), 400),
    (head(GET, HOST, b"Content-Length: +5"), 400),
    (head(GET, HOST, b"Content-Length: 0x10"), 400),
    (head(GET, HOST, b"Content-Length: 1 0"), 400),
    (head(GET, HOST, b"Content-Length: \xb9"), 400),  # a superscript digit (latin-1)
    (head(GET, HOST, b"Content-Length: "), 400),
    (head(GET, HOST, b"Content-Length: 1234567890123456789"), 400),  # 19 digits
    (head(GET), 400),  # HTTP/1.1 without Host
    (head(GET, b"X-Long: " + b"a" * LIMIT), 431),
]


@dataclass
class HeadResult:
    """What the parser made of a head: where it ended and its fields, or the refusal."""

    end: int = -1
    head: RequestHead | None = None
    status: int | None = None


def read_head(pieces: list[bytes], limit: int = LIMIT) -> HeadResult:
    """Feed ``pieces`` as a connection does (growing one buffer, calling ``head_end`` after
    each), then parse the head; the first answer counts."""
    buffer = bytearray()
    try:
        for piece in pieces:
            buffer += piece
            end = head_end(buffer, limit)
            if end >= 0:
                return HeadResult(end, parse_head(bytes(buffer[:end])))
    except HTTPError as error:
        return HeadResult(status=error.status if error.close else -2)
    return HeadResult()


def splits(data: bytes) -> Iterator[list[bytes]]:
    """``data`` whole, one byte at a time, then in two pieces split at every position."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]


def expected_end(raw: bytes) -> int:
    return raw.index(b"\r\n\r\n") + 4


@pytest.mark.parametrize(("raw", "fields"), ACCEPTED)
def test_a_well_formed_head_parses_the_same_however_it_is_split(
    raw: bytes, fields: dict[str, Any]
) -> None:
    expected = {**DEFAULTS, **fields}
    for pieces in splits(raw):
        result = read_head(pieces)
        assert result.end == expected_end(raw), pieces
        assert result.head is not None
        for name, value in expected.items():
            assert getattr(result.head, name) == value, (name, pieces)


@pytest.mark.parametrize(("raw", "status"), REFUSED)
def test_a_malformed_head_is_refused_and_closed_however_it_is_split(
    raw: bytes, status: int
) -> None:
    for pieces in splits(raw):
        assert read_head(pieces).status == status, pieces


def test_an_incomplete_head_is_not_an_answer_yet() -> None:
    raw = head(GET, HOST)
    for i in range(len(raw)):
        assert head_end(raw[:i], LIMIT) == -1
    assert head_end(raw, LIMIT) == len(raw)


@pytest.mark.parametrize("extra", [-1, 0])
def test_a_head_at_the_limit_is_accepted_whole_and_trickled(extra: int) -> None:
    """``limit`` counts the bytes before the blank line's CRLF CRLF."""
    raw = head(GET, b"Host: " + b"x" * (LIMIT - len(GET) - 8 + extra))
    assert len(raw) == LIMIT + 4 + extra
    for pieces in ([raw], [raw[i : i + 1] for i in range(len(raw))]):
        assert read_head(pieces).end == len(raw)


@pytest.mark.parametrize("extra", [1, 2, 3, 4, 100])
def test_a_head_over_the_limit_is_431_whole_and_trickled(extra: int) -> None:
    raw = head(GET, b"Host: " + b"x" * (LIMIT - len(GET) - 8 + extra))
    for pieces in splits(raw):
        assert read_head(pieces).status == 431, pieces


def test_a_head_over_the_limit_is_refused_before_it_ends() -> None:
    with pytest.raises(HTTPError) as caught:
        head_end(b"GET /" + b"a" * (LIMIT + 10), LIMIT)
    assert (caught.value.status, caught.value.close) == (431, True)


# -- chunked bodies ---------------------------------------------------------------------------

BODY_LIMIT = 64

# (encoded body, decoded body), or (encoded body, status) for a refused one.
CHUNKED: list[tuple[bytes, bytes | int]] = [
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (
        b"A\r\n0123456789\r\na\r\nabcdefghij\r\nF\r\n" + b"f" * 15 + b"\r\n0\r\n\r\n",
        b"0123456789abcdefghij" + b"f" * 15,
    ),
    (b"0005\r\nhello\r\n000\r\n\r\n", b"hello"),
    (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),  # CRLFs inside chunk data are data
    (b"5;name=value\r\nhello\r\n0;last\r\n\r\n", b"hello"),
    (b'5;a="b;c";d\r\nhello\r\n0\r\n\r\n', b"hello"),
    (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n", b"hello"),
    (b"5;" + b"e" * 1022 + b"\r\nhello\r\n0\r\n\r\n", b"hello"),  # a line of 1024 bytes
    (b"0\r\nX: " + b"t" * 1021 + b"\r\n\r\n", b""),
    (b"40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n", b"b" * 64),  # exactly the limit
    (b"41\r\n" + b"b" * 65 + b"\r\n0\r\n\r\n", 413),
    (b"20\r\n" + b"b" * 32 + b"\r\n21\r\n" + b"b" * 33 + b"\r\n0\r\n\r\n", 413),
    (b"ffffffffffffffff\r\n", 413),
    (b"\r\nhello\r\n0\r\n\r\n", 400),  # no size
    (b"x\r\nhello\r\n0\r\n\r\n", 400),
    (b"-5\r\nhello\r\n0\r\n\r\n", 400),
    (b"+5\r\nhello\r\n0\r\n\r\n", 400),
    (b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    (b"5 5\r\nhello\r\n0\r\n\r\n", 400),
    (b";ext\r\nhello\r\n0\r\n\r\n", 400),
    (b"10000000000000000\r\n", 400),  # 17 digits
    (b"5\nhello\r\n0\r\n\r\n", 400),  # bare LF after the size
    (b"5\r\nhelloX\r\n0\r\n\r\n", 400),  # data longer than its size
    (b"5\r\nhello0\r\n\r\n", 400),  # the CRLF after the data missing
    (b"5;" + b"e" * 1023 + b"\r\nhello\r\n0\r\n\r\n", 400),  # a line over 1024 bytes
    (b"0\r\nX: " + b"t" * 1022 + b"\r\n\r\n", 400),
    (b"5;" + b"e" * 2000, 400),  # ... also before its CRLF arrives
    (b"0\r\n" + b"X: " + b"t" * 1000 + b"\r\n" * 1 + (b"Y: " + b"t" * 1000 + b"\r\n") * 8, 431),
]


def read_chunked(pieces: list[bytes], limit: int = BODY_LIMIT) -> tuple[bytes, bytes] | int:
    """Feed ``pieces`` as a connection does (a buffer; what ``feed`` used is deleted from it):
    the body and what is left in the buffer, the refusal's status, or -1 if not done."""
    reader = ChunkedReader(limit)
    buffer = bytearray()
    try:
        for piece in pieces:
            buffer += piece
            if not reader.done:
                del buffer[: reader.feed(buffer)]
    except HTTPError as error:
        return error.status if error.close else -2
    return (bytes(reader.body), bytes(buffer)) if reader.done else -1


def chunked_splits(data: bytes) -> Iterator[list[bytes]]:
    yield from splits(data)
    for i in range(1, len(data)):
        if data[i - 1 : i + 1] == b"\r\n":  # between \r and \n, in three pieces
            yield [data[:i], data[i : i + 1], data[i + 1 :]]


@pytest.mark.parametrize(("encoded", "expected"), CHUNKED)
def test_a_chunked_body_decodes_the_same_however_it_is_split(
    encoded: bytes, expected: bytes | int
) -> None:
    after = b"" if isinstance(expected, int) else b"GET /next HTTP/1.1\r\n\r\n"
    for pieces in chunked_splits(encoded + after):
        if isinstance(expected, int):
            assert read_chunked(pieces) == expected, pieces
        else:
            assert read_chunked(pieces) == (expected, after), pieces


def test_an_unfinished_chunked_body_is_not_done() -> None:
    encoded = b"5\r\nhello\r\n0\r\nX: y\r\n\r\n"
    for i in range(len(encoded)):
        assert read_chunked([encoded[:i]]) == -1


# -- response heads ---------------------------------------------------------------------------

RESPONSE_HEADS: list[tuple[int, list[tuple[str, str]], bool, int | None, bytes]] = [
    (
        200,
        [("Content-Type", "application/json")],
        True,
        2,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
    ),
    (
        400,
        [],
        False,
        0,
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ),
    (
        200,
        [("Cache-Control", "no-cache")],
        True,
        None,
        b"HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    (299, [], True, 5, b"HTTP/1.1 299 \r\nContent-Length: 5\r\n\r\n"),
    (
        405,
        [("Allow", "GET, HEAD, OPTIONS")],
        True,
        3,
        b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, OPTIONS\r\n"
        b"Content-Length: 3\r\n\r\n",
    ),
]


@pytest.mark.parametrize(("status", "headers", "keep_alive", "length", "expected"), RESPONSE_HEADS)
def test_a_response_head_is_written_exactly(
    status: int,
    headers: list[tuple[str, str]],
    keep_alive: bool,
    length: int | None,
    expected: bytes,
) -> None:
    assert response_head(status, headers, keep_alive=keep_alive, length=length) == expected


# -- the route table --------------------------------------------------------------------------

LONG_ID = "a" * 128

# (method, raw path) -> (endpoint, params) or (status, Allow).
ROUTES_TABLE: list[tuple[str, bytes, tuple[str, dict[str, str]] | tuple[int, str | None]]] = [
    ("POST", b"/sessions/s/events", ("publish", {"session": "s"})),
    ("GET", b"/sessions/s/events", ("stream", {"session": "s"})),
    ("HEAD", b"/sessions/s/events", ("stream", {"session": "s"})),
    ("GET", b"/sessions/s/poll", ("poll", {"session": "s"})),
    ("HEAD", b"/sessions/s/poll", ("poll", {"session": "s"})),
    ("DELETE", b"/sessions/s", ("delete", {"session": "s"})),
    ("POST", b"/events", ("publish_batch", {})),
    ("GET", b"/stats", ("stats", {})),
    ("GET", b"/metrics", ("metrics", {})),
    ("GET", b"/healthz", ("healthz", {})),
    ("HEAD", b"/healthz", ("healthz", {})),
    ("GET", b"/readyz", ("readyz", {})),
    ("GET", b"/", ("index", {})),
    ("GET", b"/static/app.js", ("static", {"file": "app.js"})),
    ("GET", b"/static/a%20b.js", ("static", {"file": "a b.js"})),
    ("GET", b"/sessions/A-z.0_9~/events", ("stream", {"session": "A-z.0_9~"})),
    ("GET", b"/sessions/%41%62/events", ("stream", {"session": "Ab"})),
    ("GET", b"/sessions/.a/events", ("stream", {"session": ".a"})),
    ("GET", b"/sessions/.../events", ("stream", {"session": "..."})),
    ("GET", f"/sessions/{LONG_ID}/events".encode(), ("stream", {"session": LONG_ID})),
    ("GET", f"/sessions/{LONG_ID}a/events".encode(), (400, None)),
    ("GET", b"/sessions/a%2Fb/events", (400, None)),  # one segment: the session "a/b"
    ("DELETE", b"/sessions/a%2fb", (400, None)),
    ("GET", b"/sessions/%2E%2E/events", (400, None)),
    ("GET", b"/sessions/%2e/events", (400, None)),
    ("GET", b"/sessions/./events", (400, None)),
    ("GET", b"/sessions/../events", (400, None)),
    ("GET", b"/sessions/s/../../healthz", (400, None)),
    ("GET", b"/static/..", (400, None)),
    ("GET", b"/./healthz", (400, None)),
    ("GET", b"/sessions/%FF/events", (400, None)),  # not UTF-8 once decoded
    ("GET", b"/sessions/%C3%28/events", (400, None)),
    ("GET", b"/nope/%FF", (400, None)),
    ("GET", b"/sessions/%C3%A9/events", (400, None)),  # UTF-8, but not a session id
    ("GET", b"/sessions/a%20b/events", (400, None)),
    ("GET", b"/sessions/%ZZ/events", (400, None)),
    ("GET", b"/sessions//events", (400, None)),
    ("POST", b"/sessions/a%00/events", (400, None)),
    ("GET", b"*", (400, None)),
    ("PUT", b"/sessions/s/events", (405, "GET, HEAD, OPTIONS, POST")),
    ("PUT", b"/sessions/a%2Fb/events", (405, "GET, HEAD, OPTIONS, POST")),
    ("POST", b"/sessions/s/poll", (405, "GET, HEAD, OPTIONS")),
    ("GET", b"/sessions/s", (405, "DELETE, OPTIONS")),
    ("HEAD", b"/sessions/s", (405, "DELETE, OPTIONS")),
    ("GET", b"/events", (405, "OPTIONS, POST")),
    ("HEAD", b"/events", (405, "OPTIONS, POST")),
    ("POST", b"/healthz", (405, "GET, HEAD, OPTIONS")),
    ("OPTIONS", b"/stats", (405, "GET, HEAD, OPTIONS")),  # the caller answers preflights
    ("get", b"/healthz", (405, "GET, HEAD, OPTIONS")),  # methods are case-sensitive
    ("GET", b"/nope", (404, None)),
    ("GET", b"/healthz/", (404, None)),
    ("GET", b"/HEALTHZ", (404, None)),
    ("GET", b"/sessions", (404, None)),
    ("GET", b"/sessions/s/events/", (404, None)),
    ("GET", b"/sessions/s/events/more", (404, None)),
    ("GET", b"//", (404, None)),
    ("GET", b"/static", (404, None)),
    ("GET", b"/healthz%2F", (404, None)),
]


@pytest.mark.parametrize(("method", "path", "expected"), ROUTES_TABLE)
def test_a_method_and_raw_path_mean_one_route_or_one_refusal(
    method: str, path: bytes, expected: tuple[Any, Any]
) -> None:
    if isinstance(expected[0], str):
        route, params = match(method, path)
        assert (route.endpoint, params) == expected
        return
    with pytest.raises(HTTPError) as caught:
        match(method, path)
    status, allow = expected
    assert caught.value.status == status
    assert dict(caught.value.headers).get("Allow") == allow
    assert isinstance(json.loads(caught.value.body())["error"], str)


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (b"/sessions/s/events", "GET, HEAD, OPTIONS, POST"),
        (b"/sessions/a%2Fb/events", "GET, HEAD, OPTIONS, POST"),
        (b"/sessions/s", "DELETE, OPTIONS"),
        (b"/events", "OPTIONS, POST"),
        (b"/", "GET, HEAD, OPTIONS"),
        (b"/nope", None),
        (b"/sessions/%FF/events", None),
        (b"/sessions/../events", None),
        (b"*", None),
    ],
)
def test_allowed_methods_answer_options_for_known_paths_only(
    path: bytes, allow: str | None
) -> None:
    assert allowed_methods(path) == allow


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        (b"/", [""]),
        (b"/a/b", ["a", "b"]),
        (b"/a//b/", ["a", "", "b", ""]),
        (b"/a%2Fb/c", ["a/b", "c"]),
        (b"/caf%C3%A9", ["café"]),
        (b"/%2E%2Ea", ["..a"]),
        (b"/a%", ["a%"]),
    ],
)
def test_a_path_splits_on_slashes_before_it_is_decoded(path: bytes, segments: list[str]) -> None:
    assert split_path(path) == segments


@pytest.mark.parametrize("path", [b"", b"a/b", b"/%FF", b"/.", b"/a/..", b"/%2e", b"/%2E%2E/x"])
def test_a_path_that_is_not_plain_is_a_400(path: bytes) -> None:
    with pytest.raises(HTTPError) as caught:
        split_path(path)
    assert caught.value.status == 400


@pytest.mark.parametrize("session_id", ["a", "A-z.0_9~", ".a", "a..", "...", "a" * 128])
def test_a_session_id_a_proxy_keeps_unchanged_is_accepted(session_id: str) -> None:
    assert check_session_id(session_id) == session_id


@pytest.mark.parametrize(
    "session_id", ["", ".", "..", "a" * 129, "a/b", "a b", "a%2F", "é", "a\x00", "a\n", "a?b"]
)
def test_a_session_id_a_proxy_could_rewrite_is_a_400(session_id: str) -> None:
    with pytest.raises(HTTPError) as caught:
        check_session_id(session_id)
    assert caught.value.status == 400


# -- a real server ----------------------------------------------------------------------------

QUICK = {"head_timeout": 0.3, "body_timeout": 0.3, "keep_alive_timeout": 0.3}


@asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[RunningServer]:
    """A lean server on 127.0.0.1:0 (no publish auth) for the block."""
    values: dict[str, Any] = {
        "port": 0,
        "auth_publish": False,
        "heartbeat_interval": 0.3,
        "graceful_timeout": 0.5,
        **overrides,
    }
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve, None, ServerSettings(**values), stop=stop))
        try:
            yield server
        finally:
            stop.set()


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """The records of level ERROR or worse that ``trio_sse`` logs in the block."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("trio_sse")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\x20-\x7e]*")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\x20-\x7e\x80-\xff]*")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answers(data: bytes, *, head_request: bool = False) -> list[Answer]:
    """Every response in ``data``, checked strictly; an event stream (chunked) ends the list."""
    answers = []
    while data:
        raw_head, blank, data = data.partition(b"\r\n\r\n")
        assert blank, f"an unfinished response head: {raw_head!r}"
        status_line, *lines = raw_head.split(b"\r\n")
        matched = _STATUS_LINE.fullmatch(status_line)
        assert matched, f"a malformed status line: {status_line!r}"
        headers = {}
        for line in lines:
            name, colon, value = line.partition(b": ")
            assert colon and _HEADER_NAME.fullmatch(name), line
            assert _FIELD_VALUE.fullmatch(value), line
            headers[name.decode().lower()] = value.decode("latin-1")
        status = int(matched[1])
        if status == 100:
            assert not headers
            answers.append(Answer(status, headers, b""))
            continue
        if headers.get("transfer-encoding") == "chunked":
            assert status == 200 and headers["content-type"].startswith("text/event-stream")
            answers.append(Answer(status, headers, data))
            return answers
        length = int(headers["content-length"])
        if head_request and (not data or data.startswith(b"HTTP/1.1 ")):
            length = 0  # HEAD: the length of the body a GET would have
        assert len(data) >= length, f"a body shorter than its Content-Length: {data!r}"
        answers.append(Answer(status, headers, data[:length]))
        data = data[length:]
    return answers


def check_answer(answer: Answer) -> None:
    """A well-formed answer: no server error, and a JSON reason with every refusal."""
    assert answer.status < 500 or answer.status in (501, 505), answer
    if answer.status >= 400:
        assert answer.headers["content-type"] == "application/json", answer
        assert isinstance(json.loads(answer.body)["error"], str), answer


async def read_all(stream: trio.SocketStream, limit: int = 1 << 20) -> bytes:
    """Everything until the server closes (or an event stream starts)."""
    data = b""
    while len(data) < limit:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
        if b"text/event-stream" in data:
            break
    return data


async def exchange_raw(port: int, request: bytes) -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        with suppress(trio.BrokenResourceError):  # it answered and closed before reading all
            await stream.send_all(request)
        return await read_all(stream)


async def healthz(port: int) -> int:
    data = await exchange_raw(
        port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    (answer,) = parse_answers(data)
    return answer.status


class Responses:
    """Responses read one after another from a kept-alive connection (pipelining-safe)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some()
        assert chunk, f"the connection closed; unread: {self.buffer!r}"
        self.buffer += chunk

    async def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return raw + b"\r\n\r\n"

    async def next(self) -> Answer:
        raw = await self.head()
        (answer,) = parse_answers(raw + b"x" * int(_header(raw, b"content-length") or 0))
        while len(self.buffer) < len(answer.body):
            await self._fill()
        answer.body, self.buffer = self.buffer[: len(answer.body)], self.buffer[len(answer.body) :]
        return answer

    async def closed(self) -> bool:
        """Whether the server closes the connection with nothing more to say."""
        return not self.buffer and not await self.stream.receive_some()


def _header(raw_head: bytes, name: bytes) -> bytes | None:
    for line in raw_head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def request(method: str, target: str, body: bytes = b"", *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: x", *extra]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def published(server: RunningServer) -> int:
    return int(server.broadcaster.get_stats()["metrics"]["eventsPublished"])


# -- fuzzing the head parser and the publish validator --------------------------------------

FUZZ_SETTINGS = {
    **QUICK,
    "head_timeout": 0.25,
    "body_timeout": 0.25,
    "keep_alive_timeout": 0.1,
    "max_poll_wait": 0.2,
    "max_head_bytes": 1024,
    "max_body_bytes": 4096,
}
FUZZ = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure in CI reproduces locally
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
_methods = (
    st.sampled_from([b"GET", b"POST", b"DELETE", b"OPTIONS", b"PUT", b"get", b"PRI"]) | _tokens
)
_targets = st.sampled_from(
    [
        b"/healthz",
        b"/readyz",
        b"/stats",
        b"/sessions/s/poll?wait=0.1",
        b"/sessions/s/events",
        b"/sessions/s",
        b"/events",
        b"/sessions/%2E%2E/poll",
        b"/sessions/a%2Fb/poll",
        b"/nope",
        b"*",
        b"http://h/healthz?q",
        b"http://h?q=/x",
    ]
) | st.binary(min_size=1, max_size=24)
_versions = st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0"] * 2) | st.sampled_from(
    [b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/", b"HTTP/1.1 x", b""]
)
_headers = st.sampled_from(
    [
        b"Host: x",
        b"Content-Length: 0",
        b"Content-Length: 3",
        b"Content-Length: -1",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Expect: 100-continue",
        b"Content-Type: application/x-ndjson",
        b"Cookie: a=1",
        b"Origin: http://elsewhere",
        b"Last-Event-ID: 1",
        b"Upgrade: h2c",
    ]
) | st.builds(lambda n, v: n + b": " + v, _tokens, st.binary(max_size=16))
_noise = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b"\x01", b"\x7f", b"\x0b", b" ", b":"])
_noise = _noise | st.binary(min_size=1, max_size=4)


@st.composite
def fuzzed_heads(draw: st.DrawFn) -> bytes:
    """A request head built from plausible parts, then damaged a few times."""
    line = b" ".join([draw(_methods), draw(_targets), draw(_versions)])
    lines = [line, *draw(st.lists(_headers, max_size=5))]
    if draw(st.sampled_from([True, True, True, False])):
        lines.insert(draw(st.integers(1, len(lines))), b"Host: x")
    raw = bytearray(b"\r\n".join(lines) + b"\r\n\r\n")
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        position = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(["insert", "delete", "truncate", "replace"]))
        if kind == "insert":
            raw[position:position] = draw(_noise)
        elif kind == "delete":
            del raw[position : position + draw(st.integers(1, 4))]
        elif kind == "truncate":
            del raw[position:]
        elif position < len(raw):
            raw[position] = draw(st.integers(0, 255))
    return bytes(raw + draw(st.binary(max_size=8)))  # sometimes a body, or garbage


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.text(max_size=6) | _json,
        "data": _json,
        "ttl": st.sampled_from([1, 0.5, 0, -1, True, "1", None, 1e308]) | _json,
        "session": st.sampled_from(["s", "t", ".", "..", "a/b", "", "a" * 129]) | _json,
        "id": _json,
    },
)
_events = _fields | _json


@st.composite
def fuzzed_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A publish request's target and body (JSON, NDJSON, or bytes), framed either way."""
    target = draw(st.sampled_from([b"/sessions/s/events", b"/events"]))
    kind = draw(st.sampled_from(["event", "array", "ndjson", "bytes", "deep"]))
    content_type = b"application/x-ndjson" if kind == "ndjson" else b"application/json"
    if kind == "event":
        body = json.dumps(draw(_events)).encode()
    elif kind == "array":
        body = json.dumps(draw(st.lists(_events, max_size=4))).encode()
    elif kind == "ndjson":
        lines = [json.dumps(value).encode() for value in draw(st.lists(_events, max_size=4))]
        body = b"\n".join(lines + draw(st.lists(st.binary(max_size=8), max_size=2)))
    elif kind == "bytes":
        body = draw(st.binary(max_size=64))
    else:
        depth = draw(st.sampled_from([10, 1000, 3000]))
        body = b'{"data":' + b"[" * depth + b"]" * depth + b"}"
    head = [b"POST " + target + b" HTTP/1.1", b"Host: x", b"Content-Type: " + content_type]
    if draw(st.booleans()):
        head.append(b"Content-Length: %d" % len(body))
        framed = body
    else:
        head.append(b"Transfer-Encoding: chunked")
        framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    head.append(b"Connection: close")
    return target, b"\r\n".join(head) + b"\r\n\r\n" + framed


async def _answers_to_every_case(cases: list[bytes]) -> None:
    """Send each case on its own connection, all at once; check every answer; then the server
    must still answer ``/healthz`` and must have logged no error."""
    failures: list[str] = []

    async def one(case: bytes) -> None:
        data = await exchange_raw(server.port, case)
        try:
            for answer in parse_answers(data, head_request=case.startswith(b"HEAD ")):
                check_answer(answer)
        except (AssertionError, ValueError, KeyError) as error:
            failures.append(f"{case!r} -> {data!r}: {error!r}")

    with trio.fail_after(10), errors_logged() as errors:
        async with running(**FUZZ_SETTINGS) as server:
            async with trio.open_nursery() as nursery:
                for case in cases:
                    nursery.start_soon(one, case)
            assert await healthz(server.port) == 200
    assert not failures, "\n".join(failures)
    assert not errors, [record.getMessage() for record in errors]


def _three_ways(data: bytes, cut: int) -> list[list[bytes]]:
    cut = min(cut, len(data))
    return [[data], [data[i : i + 1] for i in range(len(data))], [data[:cut], data[cut:]]]


@settings(max_examples=300, deadline=None)
@given(fuzzed_heads(), st.integers(0, 200))
def test_any_head_gets_the_same_answer_whole_byte_by_byte_and_split(raw: bytes, cut: int) -> None:
    whole, *others = (read_head(pieces, 64) for pieces in _three_ways(raw, cut))
    assert whole.status != -2  # every refusal closes the connection
    assert all(other == whole for other in others)


_chunk_parts = st.sampled_from(
    [b"5\r\nhello\r\n", b"0\r\n", b"\r\n", b"3;x=y\r\nabc\r\n", b"X: t\r\n", b"A\r\n"]
) | st.binary(max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(_chunk_parts, max_size=8).map(b"".join), st.integers(0, 60))
def test_any_chunked_body_gets_the_same_result_whole_byte_by_byte_and_split(
    encoded: bytes, cut: int
) -> None:
    whole, *others = (read_chunked(pieces, 16) for pieces in _three_ways(encoded, cut))
    assert whole != -2
    assert all(other == whole for other in others)


@pytest.mark.real_time
@FUZZ
@given(st.lists(fuzzed_heads(), min_size=20, max_size=20))
def test_no_request_head_gets_a_malformed_answer_or_a_server_error(heads: list[bytes]) -> None:
    trio.run(_answers_to_every_case, heads)


@pytest.mark.real_time
@FUZZ
@given(st.lists(fuzzed_bodies(), min_size=20, max_size=20))
def test_no_publish_body_gets_a_malformed_answer_or_a_server_error(
    requests: list[tuple[bytes, bytes]],
) -> None:
    trio.run(_answers_to_every_case, [raw for _, raw in requests])


# -- keep-alive, deadlines and smuggling on a real server -------------------------------------


@pytest.mark.real_time
async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                await stream.send_all(
                    request("GET", "/healthz")
                    + request("POST", "/sessions/p/events", b'{"data":"one"}')
                    + request("GET", "/sessions/p/poll")
                    + request("GET", "/nope")
                    + request("HEAD", "/readyz")
                    + request("PUT", "/sessions/p/events")
                )
                responses = Responses(stream)
                answers = [await responses.next() for _ in range(4)]
                assert [a.status for a in answers] == [200, 202, 200, 404]
                assert published(server) == 1
                assert json.loads(answers[1].body)["id"] == json.loads(answers[2].body)["next"]
                raw = await responses.head()
                assert raw.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 18" in raw
                refused = await responses.next()
                assert (refused.status, refused.headers["allow"]) == (
                    405,
                    "GET, HEAD, OPTIONS, POST",
                )


@pytest.mark.real_time
async def test_a_pipelined_head_that_arrives_in_pieces_is_answered() -> None:
    with trio.fail_after(5), errors_logged() as errors:
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                second = request("GET", "/stats")
                await stream.send_all(request("GET", "/healthz") + second[:10])
                responses = Responses(stream)
                assert (await responses.next()).status == 200
                await stream.send_all(second[10:])
                assert (await responses.next()).status == 200
    assert not errors, [record.getMessage() for record in errors]


@pytest.mark.real_time
async def test_a_pipelined_head_left_unfinished_gets_408_after_head_timeout() -> None:
    with trio.fail_after(5), errors_logged() as errors:
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                await stream.send_all(request("GET", "/healthz") + b"GET /stats HT")
                responses = Responses(stream)
                assert (await responses.next()).status == 200
                start = trio.current_time()
                assert (await responses.next()).status == 408
                assert 0.2 <= trio.current_time() - start < 1.0
                assert await responses.closed()
    assert not errors, [record.getMessage() for record in errors]


@pytest.mark.real_time
async def test_expect_100_continue_gets_100_before_the_body_is_sent() -> None:
    body = b'{"data":"late"}'
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                head = request("POST", "/sessions/c/events", b"", "Expect: 100-continue")
                await stream.send_all(head.replace(b"Content-Length: 0", b"Content-Length: 15"))
                responses = Responses(stream)
                assert await responses.head() == b"HTTP/1.1 100 Continue\r\n\r\n"
                assert published(server) == 0
                await stream.send_all(body)
                assert (await responses.next()).status == 202
                assert published(server) == 1


@pytest.mark.real_time
async def test_a_chunked_publish_body_in_pieces_is_published() -> None:
    pieces = [
        b"7;ext=1\r\n",
        b'{"data"',
        b"\r",
        b"\n9\r\n",
        b':"chunk"}',
        b"\r\n0\r\n",
        b"X: t\r\n\r\n",
    ]
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                await stream.send_all(
                    b"POST /sessions/k/events HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for piece in pieces:
                    await stream.send_all(piece)
                    await trio.sleep(0.01)
                responses = Responses(stream)
                answer = await responses.next()
                assert answer.status == 202
                first = json.loads(answer.body)["id"].rsplit("-", 1)[0] + "-0"
                await stream.send_all(request("GET", f"/sessions/k/poll?after={first}"))
                polled = json.loads((await responses.next()).body)
                assert [e["data"] for e in polled["events"]] == ["chunk"]


@pytest.mark.real_time
async def test_a_head_trickling_past_head_timeout_gets_408_and_the_connection_closes() -> None:
    with trio.fail_after(5), errors_logged() as errors:
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                start = trio.current_time()
                responses = Responses(stream)
                async with trio.open_nursery() as nursery:

                    async def trickle() -> None:
                        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
                            await stream.send_all(bytes([byte]))
                            await trio.sleep(0.05)

                    nursery.start_soon(trickle)
                    answer = await responses.next()
                    nursery.cancel_scope.cancel()
                assert answer.status == 408
                assert answer.headers["connection"] == "close"
                assert 0.2 <= trio.current_time() - start < 1.0
                assert await responses.closed()
    assert not errors


@pytest.mark.real_time
async def test_a_body_past_body_timeout_gets_408_and_is_not_published() -> None:
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                head = request("POST", "/sessions/b/events", b"{}").replace(b"2\r\n", b"20\r\n")
                await stream.send_all(head[:-1])  # the head, and one byte of 20
                start = trio.current_time()
                responses = Responses(stream)
                answer = await responses.next()
                assert answer.status == 408
                assert 0.2 <= trio.current_time() - start < 1.0
                assert await responses.closed()
            assert published(server) == 0


@pytest.mark.real_time
async def test_an_idle_kept_alive_connection_closes_after_keep_alive_timeout() -> None:
    with trio.fail_after(5), errors_logged() as errors:
        async with running(**{**QUICK, "head_timeout": 3.0}) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                responses = Responses(stream)
                await stream.send_all(request("GET", "/healthz"))
                assert (await responses.next()).status == 200
                start = trio.current_time()
                assert await responses.closed()
                assert 0.2 <= trio.current_time() - start < 1.0
    assert not errors, [record.getMessage() for record in errors]


@pytest.mark.real_time
async def test_a_connection_that_never_sends_closes_after_head_timeout_quietly() -> None:
    with trio.fail_after(5), errors_logged() as errors:
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                start = trio.current_time()
                assert await stream.receive_some() == b""
                assert 0.2 <= trio.current_time() - start < 1.0
    assert not errors, [record.getMessage() for record in errors]


@pytest.mark.real_time
async def test_a_bare_lf_head_gets_400_at_once_not_after_a_timeout() -> None:
    with trio.fail_after(5):
        async with running(head_timeout=10.0, keep_alive_timeout=10.0) as server:
            with trio.fail_after(1):
                data = await exchange_raw(server.port, b"GET /healthz HTTP/1.1\nHost: x\n\n")
    (answer,) = parse_answers(data)
    assert (answer.status, answer.headers["connection"]) == (400, "close")
    check_answer(answer)


@pytest.mark.real_time
async def test_length_with_chunked_coding_is_400_and_the_request_smuggled_behind_is_dropped() -> (
    None
):
    smuggled = request("POST", "/sessions/victim/events", b'{"data":"x"}')
    attack = (
        b"POST /sessions/front/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            data = await exchange_raw(server.port, attack)
            assert published(server) == 0
            assert server.broadcaster.get_stats()["totalSessions"] == 0
    (answer,) = parse_answers(data)  # one answer, then the connection closed
    assert (answer.status, answer.headers["connection"]) == (400, "close")
    check_answer(answer)


@pytest.mark.real_time
async def test_http_1_0_without_keep_alive_closes_after_the_answer() -> None:
    with trio.fail_after(5):
        async with running(**{**QUICK, "keep_alive_timeout": 5.0}) as server:
            with trio.fail_after(1):
                data = await exchange_raw(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    (answer,) = parse_answers(data)
    assert (answer.status, answer.headers["connection"]) == (200, "close")


@pytest.mark.real_time
async def test_http_1_0_with_keep_alive_carries_a_second_request() -> None:
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                responses = Responses(stream)
                for _ in range(2):
                    await stream.send_all(
                        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                    )
                    answer = await responses.next()
                    assert (answer.status, answer.headers["connection"]) == (200, "keep-alive")


@pytest.mark.real_time
async def test_a_long_poll_on_a_kept_alive_connection_ends_when_its_client_leaves() -> None:
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            active = server.endpoint.active
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            responses = Responses(stream)
            await stream.send_all(request("GET", "/healthz"))
            assert (await responses.next()).status == 200
            await stream.send_all(request("GET", "/sessions/lp/poll?wait=10"))
            with trio.fail_after(1):
                await active.wait_value(1)
            await stream.aclose()
            with trio.fail_after(0.5):
                await active.wait_value(0)


@pytest.mark.real_time
async def test_a_request_pipelined_behind_a_long_poll_is_answered_after_it() -> None:
    with trio.fail_after(5):
        async with running(**QUICK) as server:
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
                responses = Responses(stream)
                await stream.send_all(request("GET", "/healthz"))
                assert (await responses.next()).status == 200
                await stream.send_all(
                    request("GET", "/sessions/lp/poll?wait=10") + request("GET", "/stats")
                )
                with trio.fail_after(1):
                    await server.endpoint.active.wait_value(1)
                await trio.sleep(0.1)  # the hang-up watcher must not take the pipelined bytes
                assert server.endpoint.active.value == 1
                await server.broadcaster.publish("lp", "message", "woken")
                poll = await responses.next()
                assert [e["data"] for e in json.loads(poll.body)["events"]] == ["woken"]
                stats = await responses.next()
                assert stats.status == 200 and "totalEvents" in json.loads(stats.body)
                assert server.endpoint.active.value == 0

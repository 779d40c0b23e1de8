"""HTTP/1.1 request heads and bodies, sans-IO: bytes in, a :class:`RequestHead` or an error out.

Strict where leniency is what smuggling and cache poisoning feed on (RFC 9112): lines end with
CRLF only (a bare CR or LF is a 400, not a wait), no obsolete line folding, no control
characters in header values, one ``Host``, ``Content-Length`` digits only and never beside
``Transfer-Encoding`` (that combination is answered 400 and the connection closed, section
6.1), and ``chunked`` as the only transfer coding. Anything refused is an
:class:`~trio_sse.server._errors.HTTPError` with ``close=True``: after a head we could not
read, nothing else on that connection can be trusted.

No sockets and no clock here: the connection loop (``_connection.py``) feeds bytes and applies
the deadlines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import HTTPError

REASONS = {
    100: "Continue",
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: visible ASCII, space, tab and obs-text; no other control character (RFC 9110
# 5.5). Lines end with CRLF: a CR or LF that is not part of one is refused (RFC 9112 2.2).
_CONTROL = {*range(0x20), 0x7F} - {0x09, 0x0A, 0x0D}
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL)
_TARGET = re.compile(rb"[\x21-\x7e]+")
_AUTHORITY_END = re.compile(rb"[/?#]")
MAX_CHUNK_LINE = 1024


def bad_request(reason: str, status: int = 400) -> HTTPError:
    return HTTPError(status, reason, close=True)


@dataclass(slots=True)
class RequestHead:
    """A parsed request head.

    Attributes:
        method: The method, as sent (methods are case-sensitive).
        path: The request target's path, still percent-encoded (absolute form reduced to it).
        query: The raw query string (without ``?``).
        headers: Header names in lower case, values as latin-1 text; a repeated header's
            values joined with ``, `` (``Cookie``'s with ``; ``).
        version: ``"1.1"`` or ``"1.0"``.
        content_length: The body's length, or None with ``chunked`` (0 when neither is sent).
        chunked: The body comes in chunked transfer coding.
        keep_alive: The client lets the connection carry another request after this one.
    """

    method: str
    path: bytes
    query: bytes
    headers: dict[str, str]
    version: str
    content_length: int | None
    chunked: bool
    keep_alive: bool


def head_end(data: bytes | bytearray, limit: int) -> int:
    """The length of the head at the start of ``data`` (up to and including its blank line),
    or -1 if it is not complete yet.

    Raises:
        HTTPError: a bare LF ends a line (waiting would hang the client), or the head is over
            ``limit`` bytes (431).
    """
    end = data.find(b"\r\n\r\n", 0, limit + 4)
    if end >= 0:
        return end + 4
    if data.find(b"\n\n", 0, limit) >= 0 or data.find(b"\n\r\n", 0, limit) >= 0:
        raise bad_request("request lines must end with CRLF")
    if len(data) >= limit + 4:  # as found above: the same answer however the bytes arrive
        raise bad_request(f"the request head is over {limit} bytes", 431)
    return -1


def parse_head(head: bytes) -> RequestHead:
    """Parse a complete head (as delimited by :func:`head_end`).

    Raises:
        HTTPError: a malformed or unsupported head (``close`` is set).
    """
    text = head[:-4]
    crlf = text.count(b"\r\n")  # a few passes of the whole head, each in C
    if text.count(b"\r") != crlf or text.count(b"\n") != crlf:
        raise bad_request("request lines must end with CRLF")
    if text.translate(None, _NOT_CONTROL):  # what is left is the control characters
        raise bad_request("the request head holds a control character")
    lines = text.split(b"\r\n")
    method, path, query, version = _request_line(lines[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise bad_request("malformed header line")  # also obs-fold (leading whitespace)
        value = value.strip(b" \t")
        key = name.decode("ascii").lower()
        if key in headers and key in ("host", "content-length", "transfer-encoding"):
            raise bad_request(f"more than one {key} header")
        add_header(headers, key, value.decode("latin-1"))
    if version == "1.1" and "host" not in headers:
        raise bad_request("HTTP/1.1 requests need a Host header")
    content_length, chunked = _framing(headers)
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked.
    tokens = {token.strip() for token in connection.split(",")} if connection else set()
    keep_alive = "keep-alive" in tokens if version == "1.0" else "close" not in tokens
    return RequestHead(method, path, query, headers, version, content_length, chunked, keep_alive)


def add_header(headers: dict[str, str], name: str, value: str) -> None:
    """Add a header (lower-case ``name``), joining a repeated one as RFC 9110 5.3 allows
    (``Cookie`` with ``; ``, RFC 6265 5.4)."""
    if name in headers:
        value = headers[name] + ("; " if name == "cookie" else ", ") + value
    headers[name] = value


def _request_line(line: bytes) -> tuple[str, bytes, bytes, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1]):
        raise bad_request("malformed request line")
    method, target, protocol = parts
    if protocol == b"HTTP/1.1":
        version = "1.1"
    elif protocol == b"HTTP/1.0":
        version = "1.0"
    elif protocol.startswith(b"HTTP/"):
        raise bad_request("only HTTP/1.1 and HTTP/1.0 are served here", 505)
    else:
        raise bad_request("malformed request line")
    if target == b"*" and method == b"OPTIONS":
        return "OPTIONS", b"*", b"", version
    split = split_target(target)
    if split is None:
        raise bad_request("malformed request target")
    return method.decode("ascii"), *split, version


def split_target(target: bytes) -> tuple[bytes, bytes] | None:
    """The path and query of an origin-form or absolute-form request target (RFC 9112 3.2),
    or None for any other form. Both front doors reduce targets with it."""
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        rest = target.split(b"//", 1)[1]  # the path is what follows the authority, which
        end = _AUTHORITY_END.search(rest)  # ends at "/", "?" or "#" (RFC 3986 3.2)
        target = rest[end.start() :] if end else b"/"
    elif not target.startswith(b"/"):
        return None
    path, _, query = target.partition(b"#")[0].partition(b"?")
    return path or b"/", query


def _framing(headers: dict[str, str]) -> tuple[int | None, bool]:
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None:
        if length is not None:  # RFC 9112 6.1: a smuggling attempt, or a broken proxy
            raise bad_request("Content-Length with Transfer-Encoding")
        if coding.strip().lower() != "chunked":
            raise bad_request("only the chunked transfer coding is accepted", 501)
        return None, True
    if length is None:
        return 0, False
    if not length.isascii() or not length.isdigit() or len(length) > 18:
        raise bad_request("Content-Length must be a number of bytes")
    return int(length), False


class ChunkedReader:
    """Decodes a chunked body fed in pieces (RFC 9112 7.1); trailers are read and dropped.

    ``feed`` returns how many bytes of the input it used; :attr:`done` once the last chunk and
    the trailer section are in. The decoded body is :attr:`body`, at most ``limit`` bytes.
    """

    def __init__(self, limit: int) -> None:
        self.body = bytearray()
        self.done = False
        self._limit = limit
        self._remaining = -1  # bytes left in the current chunk; -1: a size line is next
        self._trailers = False
        self._trailer_bytes = 0

    def feed(self, data: bytes | bytearray) -> int:
        """Consume what it can of ``data``.

        Raises:
            HTTPError: malformed coding (400) or a body over the limit (413).
        """
        used = 0
        while not self.done and used < len(data):
            if self._remaining > 0:
                take = min(self._remaining, len(data) - used)
                self.body += data[used : used + take]
                used += take
                self._remaining -= take
                continue
            end = data.find(b"\r\n", used)
            # A size or trailer line is at most MAX_CHUNK_LINE bytes, whether its CRLF came
            # in the same piece or not yet (the +1: a CR whose LF is still on its way).
            if end - used > MAX_CHUNK_LINE or (end < 0 and len(data) - used > MAX_CHUNK_LINE + 1):
                raise bad_request("malformed chunked body")
            if end < 0:
                return used
            line = bytes(data[used:end])
            used = end + 2
            self._line(line)
        return used

    def _line(self, line: bytes) -> None:
        if self._trailers:
            self.done = not line
            self._trailer_bytes += len(line) + 2
            if self._trailer_bytes > 8192:
                raise bad_request("the trailer section is too large", 431)
            return
        if self._remaining == 0:  # the CRLF that ends a chunk's data
            if line:
                raise bad_request("malformed chunked body")
            self._remaining = -1
            return
        size = line.split(b";", 1)[0].strip(b" \t")
        if not size or len(size) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size):
            raise bad_request("malformed chunk size")
        self._remaining = int(size, 16)
        if len(self.body) + self._remaining > self._limit:
            raise HTTPError(413, f"the body is over {self._limit} bytes", close=True)
        # The data follows, then its CRLF (``_remaining`` counts the data down to 0, which
        # means: expect that CRLF). Size 0 is the last chunk: the trailer section follows.
        self._trailers = self._remaining == 0


def response_head(
    status: int, headers: list[tuple[str, str]], *, keep_alive: bool, length: int | None
) -> bytes:
    """A response's status line and headers, with its framing (``length`` None: chunked)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, '')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    elif status != 204:  # a 204 has no body and no Content-Length (RFC 9110 8.6)
        lines.append(f"Content-Length: {length}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

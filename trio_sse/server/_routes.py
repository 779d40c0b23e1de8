"""The route table: the one place a URL gets its meaning, whichever way the request came in.

:func:`match` turns a method and a raw (percent-encoded) path into a route and its parameters,
or the answer for a path that has none: 404, 405 with ``Allow``, or 400 for a malformed path
or session id. The lean server and the ASGI adapter (Quart, a user's embedded app) both call
it with the same raw bytes, so percent-decoding, dot segments, absolute-form targets, ``HEAD``
and every refusal are the same on every path. Percent-decoding is done per segment, after
splitting on ``/``: ``/sessions/a%2Fb/events`` is the session ``a/b`` (refused: 400), not a
longer path.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from .._settings import ServerSettings
from ._errors import HTTPError

SESSION_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
SESSION_ID_RULE = "session id must match [A-Za-z0-9._~-]{1,128} and not be '.' or '..'"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""C0 controls and DEL: never in an event id, so never in a cursor."""


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of the table.

    Attributes:
        method: ``GET``, ``POST`` or ``DELETE`` (``HEAD`` goes wherever ``GET`` goes).
        pattern: The path, with ``{session}`` (a checked session id) or ``{file}`` parameters.
        endpoint: The name of the method of :class:`~trio_sse.server._api.HTTPAPI` that serves it.
        stream: The answer is an event stream (served by the stream endpoint, never buffered).
        long: The request may wait (a long poll): counted against ``max_connections`` and
            cancelled when its client leaves.
    """

    method: str
    pattern: str
    endpoint: str
    stream: bool = False
    long: bool = False
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(self.pattern.split("/")[1:]))


ROUTES: tuple[Route, ...] = (
    Route("POST", "/sessions/{session}/events", "publish"),
    Route("GET", "/sessions/{session}/events", "stream", stream=True),
    Route("GET", "/sessions/{session}/poll", "poll", long=True),
    Route("DELETE", "/sessions/{session}", "delete"),
    Route("POST", "/events", "publish_batch"),
    Route("GET", "/stats", "stats"),
    Route("GET", "/metrics", "metrics"),
    Route("GET", "/healthz", "healthz"),
    Route("GET", "/readyz", "readyz"),
    Route("GET", "/", "index"),
    Route("GET", "/static/{file}", "static"),
)
"""Every route of the HTTP API (``docs/http-api.md``)."""

_BY_LENGTH: dict[int, list[Route]] = {}
for _route in ROUTES:
    _BY_LENGTH.setdefault(len(_route.segments), []).append(_route)


@dataclass(slots=True)
class Request:
    """A request as every endpoint sees it, whichever server read it.

    Attributes:
        method: As sent (``HEAD`` included).
        path: The raw path, percent-encoded.
        query_string: The raw query, without ``?``.
        headers: Lower-case names; values as latin-1 text, repeated ones joined.
        params: The route's parameters, decoded and checked.
        body: The whole body (empty for a stream or a GET).
    """

    method: str
    path: bytes
    query_string: bytes
    headers: Mapping[str, str]
    params: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    _query: dict[str, list[str]] | None = None

    def query(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query_all(name)
        return values[0] if values else None

    def query_all(self, name: str) -> list[str]:
        if self._query is None:
            self._query = parse_qs(self.query_string.decode("latin-1"), keep_blank_values=True)
        return self._query.get(name, [])


@dataclass(slots=True)
class Response:
    """A whole answer: status, body and headers (CORS and framing are added on the way out)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, error: HTTPError) -> Response:
        return cls(error.status, error.body(), headers=list(error.headers))


def match(method: str, raw_path: bytes) -> tuple[Route, dict[str, str]]:
    """The route for ``method`` on ``raw_path``, with its parameters (see :func:`find`).

    Answers for the last few thousand paths served are kept (each session's publish and poll
    paths recur); refusals are not.
    """
    route, params = _match_cached(method, raw_path)
    return route, dict(params)


@functools.lru_cache(maxsize=4096)
def _match_cached(method: str, raw_path: bytes) -> tuple[Route, dict[str, str]]:
    return find(method, raw_path)


def find(method: str, raw_path: bytes) -> tuple[Route, dict[str, str]]:
    """The route for ``method`` on ``raw_path``, with its parameters.

    ``HEAD`` matches ``GET`` routes. ``OPTIONS`` on a path the table knows is answered by the
    caller (CORS preflight); here it raises 405 like any method the path does not take.

    Raises:
        HTTPError: 400 (malformed path or session id), 404 (no such path), 405 (the path takes
            other methods; ``Allow`` lists them).
    """
    segments = split_path(raw_path)
    candidates = [r for r in _BY_LENGTH.get(len(segments), ()) if _fits(r, segments)]
    if not candidates:
        raise HTTPError(404, "no such route")
    wanted = "GET" if method == "HEAD" else method
    for route in candidates:
        if route.method == wanted:
            return route, _params(route, segments)
    raise HTTPError(405, f"{method} is not allowed here", (("Allow", allowed(candidates)),))


def allowed_methods(raw_path: bytes) -> str | None:
    """The ``Allow`` value for a path the table knows, else None (an ``OPTIONS`` answer)."""
    try:
        segments = split_path(raw_path)
    except HTTPError:
        return None
    candidates = [r for r in _BY_LENGTH.get(len(segments), ()) if _fits(r, segments)]
    return allowed(candidates) if candidates else None


def allowed(routes: Iterable[Route]) -> str:
    methods = {r.method for r in routes} | {"OPTIONS"}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def split_path(raw_path: bytes) -> list[str]:
    """The decoded segments of a raw path (after the leading ``/``).

    Raises:
        HTTPError: a segment is not UTF-8 once decoded, or is a dot segment (``.``, ``..``,
            also percent-encoded: proxies and clients rewrite them).
    """
    if not raw_path.startswith(b"/"):
        raise HTTPError(400, "the path must start with /")
    segments = []
    for raw in raw_path[1:].split(b"/"):
        try:
            segment = unquote_to_bytes(raw).decode("utf-8") if b"%" in raw else raw.decode()
        except UnicodeDecodeError:
            raise HTTPError(400, "the path is not UTF-8 once percent-decoded") from None
        if segment in (".", ".."):
            raise HTTPError(400, "dot segments are not accepted in paths")
        segments.append(segment)
    return segments


def _fits(route: Route, segments: list[str]) -> bool:
    for expected, actual in zip(route.segments, segments, strict=True):
        if expected[:1] != "{" and expected != actual:
            return False
    return True


def _params(route: Route, segments: list[str]) -> dict[str, str]:
    params = {}
    for expected, actual in zip(route.segments, segments, strict=True):
        if expected[:1] == "{":
            name = expected[1:-1]
            params[name] = check_session_id(actual) if name == "session" else actual
    return params


def check_session_id(session_id: str) -> str:
    """Raise a 400 unless ``session_id`` is one a URL carries unchanged through any proxy."""
    if not SESSION_ID.fullmatch(session_id) or session_id in (".", ".."):
        raise HTTPError(400, SESSION_ID_RULE)
    return session_id


def check_cursor(cursor: str | None, settings: ServerSettings) -> str | None:
    """A ``Last-Event-ID`` / ``lastEventId`` / ``after`` value, or None if absent or empty."""
    if not cursor:
        return None
    if len(cursor) > settings.max_last_event_id_chars:
        raise HTTPError(
            400, f"last event id is longer than {settings.max_last_event_id_chars} characters"
        )
    if _CONTROL.search(cursor):  # from the query: no event id holds one (issue 10)
        raise HTTPError(400, "last event id has a control character")
    return cursor


def bearer_token(headers: Mapping[str, str], cookie: str | None) -> str | None:
    """The token from ``Authorization: Bearer ...``, else (if ``cookie`` is named) from that
    cookie, else None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if cookie is None or "cookie" not in headers:
        return None
    return parse_cookies(headers["cookie"]).get(cookie) or None


def parse_cookies(value: str) -> dict[str, str]:
    """Cookies from a ``Cookie`` header value (``a=1; b=2``); the first of a name wins."""
    cookies: dict[str, str] = {}
    for pair in value.split(";"):
        name, eq, content = pair.strip().partition("=")
        if eq and name:
            cookies.setdefault(name, content)
    return cookies


def cors_headers(
    origin: str | None, settings: ServerSettings, *, preflight: bool = False
) -> list[tuple[str, str]]:
    """CORS headers for a request from ``origin``; none if the origin is not allowed."""
    allowed_origins = settings.cors_origins
    # With a list of origins the answer depends on Origin, allowed or not: caches must know.
    vary = [("Vary", "Origin")] if allowed_origins and "*" not in allowed_origins else []
    if not origin or not allowed_origins:
        return vary
    if "*" not in allowed_origins and origin not in allowed_origins:
        return vary
    headers = [("Access-Control-Allow-Origin", "*" if "*" in allowed_origins else origin), *vary]
    if settings.cors_allow_credentials:
        headers.append(("Access-Control-Allow-Credentials", "true"))
    if preflight:
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID"),
            ("Access-Control-Max-Age", "600"),
        ]
    else:
        headers.append(("Access-Control-Expose-Headers", "Retry-After"))
    return headers


def json_body(value: Any) -> bytes:
    """``value`` as compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()

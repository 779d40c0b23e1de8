"""Request checks and answers shared by the stream endpoint and the Quart routes.

Every refusal is a :class:`HTTPError` with a status and a reason, answered as JSON
``{"error": reason}``; nothing a client sends reaches the broadcaster unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._auth import AuthError
from ._exceptions import (
    CapacityError,
    EventTooLargeError,
    InvalidEventError,
    TrioSSEError,
)
from ._settings import ServerSettings

SESSION_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
RETRY_AFTER_SECONDS = 5


@dataclass
class HTTPError(Exception):
    """An answer other than success: ``status``, a reason, and extra headers."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> bytes:
        return json.dumps({"error": self.reason}, separators=(",", ":")).encode()


def unavailable(reason: str) -> HTTPError:
    """A 503 that tells the client when to come back."""
    return HTTPError(503, reason, (("Retry-After", str(RETRY_AFTER_SECONDS)),))


def check_session_id(session_id: str) -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise HTTPError(400, "session id must match [A-Za-z0-9._~-]{1,128}")
    return session_id


def check_cursor(cursor: str | None, settings: ServerSettings) -> str | None:
    """A ``Last-Event-ID`` / ``lastEventId`` / ``after`` value, or None if absent or empty."""
    if not cursor:
        return None
    if len(cursor) > settings.max_last_event_id_chars:
        raise HTTPError(
            400, f"last event id is longer than {settings.max_last_event_id_chars} characters"
        )
    return cursor


def bearer_token(authorization: str | None, cookies: Mapping[str, str], cookie: str) -> str | None:
    """The token from ``Authorization: Bearer ...``, else from the cookie, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return cookies.get(cookie) or None


def translate(error: TrioSSEError) -> HTTPError:
    """The HTTP answer for an error of the core."""
    if isinstance(error, AuthError):
        challenge = (("WWW-Authenticate", "Bearer"),) if error.status == 401 else ()
        return HTTPError(error.status, str(error), challenge)
    if isinstance(error, EventTooLargeError):
        return HTTPError(413, str(error))
    if isinstance(error, InvalidEventError):
        return HTTPError(400, str(error))
    if isinstance(error, CapacityError):
        return unavailable(str(error))
    return HTTPError(400, str(error))


def cors_headers(
    origin: str | None, settings: ServerSettings, *, preflight: bool = False
) -> list[tuple[str, str]]:
    """CORS headers for a request from ``origin``; none if the origin is not allowed."""
    allowed = settings.cors_origins
    # With a list of origins the answer depends on Origin, allowed or not: caches must know.
    vary = [("Vary", "Origin")] if allowed and "*" not in allowed else []
    if not origin or not allowed or ("*" not in allowed and origin not in allowed):
        return vary
    headers = [("Access-Control-Allow-Origin", "*" if "*" in allowed else origin), *vary]
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


def parse_cookies(values: Iterable[str]) -> dict[str, str]:
    """Cookies from ``Cookie`` header values (``a=1; b=2``)."""
    cookies: dict[str, str] = {}
    for value in values:
        for pair in value.split(";"):
            name, eq, content = pair.strip().partition("=")
            if eq and name:
                cookies.setdefault(name, content)
    return cookies

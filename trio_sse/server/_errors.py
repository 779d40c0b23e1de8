"""Every answer other than success, and the one mapping from errors to HTTP answers.

Each refusal is an :class:`HTTPError` answered as JSON ``{"error": reason, ...}``. Errors of the
core (:class:`~trio_sse.TrioSSEError`) and trio's ``ClosedResourceError`` (a closed broadcaster)
become answers through :func:`answer_for`, whichever front door the request came through: the
lean server, the ASGI adapter under Quart, or a user's own Quart route.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import trio

from .._auth import AuthError
from .._exceptions import CapacityError, EventTooLargeError, TrioSSEError

RETRY_AFTER_SECONDS = 5


@dataclass
class HTTPError(Exception):
    """An answer other than success.

    Attributes:
        status: The HTTP status.
        reason: Why, for a person; the ``error`` field of the body.
        headers: Extra response headers (``Retry-After``, ``Allow``, ``WWW-Authenticate``).
        extra: More fields of the JSON body (e.g. ``index`` of the bad event of a batch).
        close: The connection cannot be trusted any further (a malformed or smuggled request):
            close it after answering.
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    close: bool = False

    def body(self) -> bytes:
        return json.dumps({"error": self.reason, **self.extra}, separators=(",", ":")).encode()


def unavailable(reason: str) -> HTTPError:
    """A 503 that tells the client when to come back."""
    return HTTPError(503, reason, (("Retry-After", str(RETRY_AFTER_SECONDS)),))


def shutting_down() -> HTTPError:
    return unavailable("the server is shutting down")


def answer_for(error: BaseException) -> HTTPError | None:
    """The HTTP answer for an error raised while serving a request, or None if it is a bug."""
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, AuthError):
        challenge = (("WWW-Authenticate", "Bearer"),) if error.status == 401 else ()
        return HTTPError(error.status, str(error), challenge)
    if isinstance(error, EventTooLargeError):
        return HTTPError(413, str(error))
    if isinstance(error, CapacityError):
        return unavailable(str(error))
    if isinstance(error, TrioSSEError):
        return HTTPError(400, str(error))
    if isinstance(error, trio.ClosedResourceError):
        return shutting_down()
    return None


INTERNAL_ERROR = HTTPError(500, "internal error", close=True)

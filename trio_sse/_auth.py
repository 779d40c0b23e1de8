"""Bearer-token authorisation, in the spirit of Mercure's publish/subscribe claims.

A token is a JWT (HS256 with a shared key, or RS256 with a public key) whose ``trio_sse`` claim
lists the session-id patterns it may publish to and subscribe to::

    {"trio_sse": {"publish": ["orders-*"], "subscribe": ["orders-42", "public.*"]}, "exp": ...}

Patterns are shell-style (``fnmatch``: ``*``, ``?``, ``[...]``), matched against the whole
session id, case-sensitively. ``exp`` and ``nbf`` are checked when present.
"""

from __future__ import annotations

import enum
import fnmatch
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from ._exceptions import AuthError as AuthError  # defined with the error tree; re-exported

CLAIM = "trio_sse"


class Action(enum.Enum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


@dataclass(frozen=True, slots=True)
class Authorizer:
    """Checks tokens against the keys it holds. Without any key, every token is refused."""

    hs256_key: str | None = None
    rs256_public_key: str | None = None

    def check(self, token: str | None, action: Action, session_id: str) -> None:
        """Raise :class:`AuthError` unless ``token`` allows ``action`` on ``session_id``."""
        if not token:
            raise AuthError(401, f"a bearer token is needed to {action.value}")
        claims = self.decode(token)
        patterns = _patterns(claims, action)
        if not any(fnmatch.fnmatchcase(session_id, pattern) for pattern in patterns):
            raise AuthError(403, f"the token does not allow {action.value} on {session_id!r}")

    def decode(self, token: str) -> Mapping[str, Any]:
        """The verified claims of ``token``."""
        attempts: list[tuple[str, str]] = []
        if self.hs256_key:
            attempts.append((self.hs256_key, "HS256"))
        if self.rs256_public_key:
            attempts.append((self.rs256_public_key, "RS256"))
        if not attempts:
            raise AuthError(401, "the server has no key to verify tokens")
        error: Exception | None = None
        for key, algorithm in attempts:
            try:
                claims: Mapping[str, Any] = jwt.decode(token, key, algorithms=[algorithm])
            except jwt.PyJWTError as exc:
                error = exc
            else:
                return claims
        raise AuthError(401, f"invalid token: {error}")


def _patterns(claims: Mapping[str, Any], action: Action) -> list[str]:
    grant = claims.get(CLAIM)
    if not isinstance(grant, Mapping):
        return []
    patterns = grant.get(action.value, [])
    if not isinstance(patterns, list):
        return []
    return [p for p in patterns if isinstance(p, str)]


def generate_key() -> str:
    """A fresh random HS256 key (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def make_token(
    key: str,
    *,
    publish: Iterable[str] = (),
    subscribe: Iterable[str] = (),
    ttl: float | None = None,
    algorithm: str = "HS256",
) -> str:
    """A signed token granting ``publish`` and ``subscribe`` session patterns.

    Args:
        key: The HS256 secret, or an RS256 private key in PEM form.
        ttl: Seconds until the token expires; None for no ``exp`` claim.
    """
    claims: dict[str, Any] = {CLAIM: {"publish": list(publish), "subscribe": list(subscribe)}}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)  # wall-clock time: JWT's exp is Unix time
    return jwt.encode(claims, key, algorithm=algorithm)

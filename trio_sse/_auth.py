"""Bearer-token authorisation, in the spirit of Mercure's publish/subscribe claims.

A token is a JWT (HS256 with a shared key, or RS256 with a public key) whose ``trio_sse`` claim
lists the session-id patterns it may publish to and subscribe to::

    {"trio_sse": {"publish": ["orders-*"], "subscribe": ["orders-42", "public.*"]}, "exp": ...}

Patterns are shell-style (``fnmatch``: ``*``, ``?``, ``[...]``), matched against the whole
session id, case-sensitively. ``exp`` and ``nbf`` are checked when present.

Strategy: keys are checked when an :class:`Authorizer` is made (a short HS256 secret or a PEM
that is not an RSA public key is a :class:`ConfigError` at start, never a 500 per request). A
token is verified with the one key its ``alg`` header names, so a refusal gives the real reason
(expired, wrong key, ``aud``...) rather than the last algorithm tried. Verified tokens are kept
in a small LRU until their ``exp``: a publisher re-sends the same token with every event.
"""

from __future__ import annotations

import base64
import enum
import fnmatch
import json
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ._exceptions import AuthError as AuthError  # defined with the error tree; re-exported
from ._exceptions import ConfigError

CLAIM = "trio_sse"
MIN_HS256_KEY_BYTES = 32
"""RFC 7518 section 3.2: an HS256 key is at least as long as the hash output (256 bits)."""
MIN_RSA_KEY_BITS = 2048
"""RFC 7518 section 3.3: RS256 keys are 2048 bits or larger."""
CACHE_SIZE = 1024
"""Verified tokens remembered (least recently used dropped first)."""
MAX_CACHED_TOKEN_CHARS = 2048
"""Longer tokens are verified every time: the cache holds at most about 2 MiB of tokens."""

# PyJWT's refusals, most specific first, as the reason a client is told (RFC 6750 section 3.1).
_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired (exp)"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "the token names an audience (aud); this server accepts none"),
    (jwt.InvalidSignatureError, "the token's signature does not match the server's key"),
)


class Action(enum.Enum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


class Authorizer:
    """Checks tokens against the keys it holds. Without any key, every token is refused.

    Args:
        hs256_key: The shared HS256 secret, at least 32 bytes (UTF-8); None or "" for none.
        rs256_public_key: An RSA public key in PEM form (``-----BEGIN PUBLIC KEY-----``).

    Raises:
        ConfigError: A key is too short, or the PEM is not an RSA public key.
    """

    __slots__ = ("_cache", "_keys", "hs256_key", "rs256_public_key")

    def __init__(self, hs256_key: str | None = None, rs256_public_key: str | None = None) -> None:
        self.hs256_key = hs256_key
        self.rs256_public_key = rs256_public_key
        self._keys = verification_keys(hs256_key, rs256_public_key)
        self._cache: OrderedDict[str, tuple[Mapping[str, Any], float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"Authorizer(algorithms={sorted(self._keys)})"  # never the keys themselves

    def check(self, token: str | None, action: Action, session_id: str) -> None:
        """Raise :class:`AuthError` unless ``token`` allows ``action`` on ``session_id``."""
        if not token:
            raise AuthError(401, f"a bearer token is needed to {action.value}")
        claims = self.decode(token)
        patterns = _patterns(claims, action)
        if not any(fnmatch.fnmatchcase(session_id, pattern) for pattern in patterns):
            raise AuthError(403, f"the token does not allow {action.value} on {session_id!r}")

    def decode(self, token: str) -> Mapping[str, Any]:
        """The verified claims of ``token`` (read-only).

        Raises:
            AuthError: 401, saying why the token is refused.
        """
        cached = self._cache.get(token)
        if cached is not None:
            claims, expires = cached
            if time.time() < expires:  # wall-clock time: JWT's exp is Unix time
                self._cache.move_to_end(token)
                return claims
            del self._cache[token]  # expired: verify again, which says so
        claims = MappingProxyType(self._verify(token))
        if len(token) <= MAX_CACHED_TOKEN_CHARS:
            self._remember(token, claims)
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        if not self._keys:
            raise AuthError(401, "the server has no key to verify tokens")
        algorithm = _algorithm(token)
        key = self._keys.get(algorithm or "")
        if algorithm is None:
            raise AuthError(401, "the token's header names no algorithm (alg)")
        if key is None:
            accepted = " or ".join(sorted(self._keys))
            raise AuthError(
                401, f"the token's algorithm {algorithm!r} is not accepted ({accepted})"
            )
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=[algorithm])
        except jwt.PyJWTError as error:
            raise AuthError(401, _reason(error)) from None
        return claims

    def _remember(self, token: str, claims: Mapping[str, Any]) -> None:
        exp = claims.get("exp")  # PyJWT has checked it is a number, if present (not float()ed:
        # a valid exp may be an int too large for a float)
        self._cache[token] = (claims, math.inf if exp is None else exp)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)


def verification_keys(hs256_key: str | None, rs256_public_key: str | None) -> dict[str, Any]:
    """The key of each algorithm configured, checked: ``{"HS256": bytes, "RS256": RSAPublicKey}``.

    ``trio-sse serve`` calls it before starting, so a bad key is a one-line error (exit 2).

    Raises:
        ConfigError: ``hs256_key`` is under 32 bytes, or ``rs256_public_key`` is not a PEM
            RSA public key of at least 2048 bits.
    """
    keys: dict[str, Any] = {}
    if hs256_key:
        secret = hs256_key.encode()
        if len(secret) < MIN_HS256_KEY_BYTES:
            raise ConfigError(
                f"jwt_key is {len(secret)} bytes; HS256 needs at least {MIN_HS256_KEY_BYTES}"
                " (make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        keys["HS256"] = secret
    if rs256_public_key:
        keys["RS256"] = _rsa_public_key(rs256_public_key)
    return keys


def _rsa_public_key(pem: str) -> RSAPublicKey:
    if "PRIVATE KEY-----" in pem:
        raise ConfigError("jwt_public_key holds a private key; give the public key PEM")
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "jwt_public_key is not a PEM public key (-----BEGIN PUBLIC KEY-----...)"
        ) from None
    if not isinstance(key, RSAPublicKey):
        raise ConfigError("jwt_public_key is not an RSA public key, which RS256 needs")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise ConfigError(f"jwt_public_key is {key.key_size} bits; RS256 needs {MIN_RSA_KEY_BITS}")
    return key


def _algorithm(token: str) -> str | None:
    """The unverified ``alg`` of ``token``'s header (PyJWT's own reader costs 10 µs more).

    Raises:
        AuthError: 401, the header is not base64url JSON.
    """
    head = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, RecursionError):  # binascii.Error and UnicodeError are ValueErrors
        raise AuthError(401, "the token is not a well-formed JWT") from None
    algorithm = header.get("alg") if isinstance(header, dict) else None
    return algorithm if isinstance(algorithm, str) else None


def _reason(error: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    if isinstance(error, jwt.DecodeError):  # PyJWT says what: segments, padding, exp's type...
        return f"the token is not a well-formed JWT: {error}"
    return f"invalid token: {error}"


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

"""HTTP server settings: frozen and validated, from code, TOML, ``TRIO_SSE_*`` or flags.

The broadcaster's own bounds live in :class:`~trio_sse.BroadcasterConfig`; these are the
settings of the HTTP layer around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._config import Loadable
from ._exceptions import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings(Loadable):
    """Settings of the HTTP server. Durations are seconds.

    Attributes:
        host: Address to listen on.
        port: TCP port (0: any free port).
        heartbeat_interval: A comment is written to a stream quiet for this long (checked each
            tenth of it), so a vanished client is noticed.
        send_timeout: Unacknowledged data older than this makes the kernel drop the connection
            (``TCP_USER_TIMEOUT``): a client that stopped reading is dropped within
            ``heartbeat_interval + send_timeout``.
        graceful_timeout: Shutdown waits at most this long for streams and requests to end.
        keep_alive_timeout: An idle keep-alive connection (no request in progress) is closed
            after this long.
        retry_ms: The reconnection time sent at the start of each stream.
        shutdown_retry_ms: Streams closed by a shutdown are told to come back after a random
            time between this and twice this, so clients don't reconnect all at once.
        max_connections: Open streams and long polls at once; beyond it: 503 with Retry-After.
        max_poll_wait: Longest ``wait`` a poll may ask for.
        max_last_event_id_chars: Longest ``Last-Event-ID`` accepted (longer: 400).
        max_body_bytes: Largest request body accepted (larger: 413).
        cors_origins: Origins allowed to call the API from a browser (``*`` for any).
        cors_allow_credentials: Send ``Access-Control-Allow-Credentials`` (not with ``*``).
        auth_publish: Publishing and deleting need a token with a matching ``publish`` claim.
        auth_subscribe: Streams and polls need a token with a matching ``subscribe`` claim.
        jwt_key: HS256 secret for tokens.
        jwt_public_key: PEM public key for RS256 tokens (instead of, or beside, ``jwt_key``).
        cookie_name: Cookie that may carry a subscriber's token.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    heartbeat_interval: float = 15.0
    send_timeout: float = 10.0
    graceful_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    retry_ms: int = 3000
    shutdown_retry_ms: int = 2000
    max_connections: int = 10_000
    max_poll_wait: float = 30.0
    max_last_event_id_chars: int = 256
    max_body_bytes: int = 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    auth_publish: bool = True
    auth_subscribe: bool = False
    jwt_key: str | None = None
    jwt_public_key: str | None = None
    cookie_name: str = "trio_sse_token"

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_interval",
            "send_timeout",
            "graceful_timeout",
            "keep_alive_timeout",
            "max_poll_wait",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be positive and finite, not {value!r}")
        for name in ("retry_ms", "shutdown_retry_ms", "max_connections", "max_body_bytes"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("max_last_event_id_chars", self.max_last_event_id_chars, minimum=16)
        _check_int("port", self.port, minimum=0)
        if self.port > 65535:
            raise ConfigError(f"port must be at most 65535, not {self.port}")
        if not isinstance(self.cors_origins, tuple) or not all(
            isinstance(origin, str) and origin for origin in self.cors_origins
        ):
            raise ConfigError("cors_origins must be a tuple of non-empty strings")
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ConfigError("cors_allow_credentials cannot be used with the origin '*'")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int of at least {minimum}, not {value!r}")

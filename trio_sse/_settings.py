"""HTTP server settings, declared with the settings specification of ``_config.py``.

The broadcaster's own bounds live in :class:`~trio_sse.BroadcasterConfig`; these are the
settings of the HTTP layer around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._config import Settings, check_redis_url, setting
from ._exceptions import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings(Settings):
    """Settings of the HTTP server, each declared below with its effect. Durations are seconds."""

    toml_table: ClassVar[str] = "server"

    backend: str = setting(
        "memory",
        "Where sessions live. `memory`: in this process. A Redis URL "
        "(`redis://127.0.0.1:6379/0`, `rediss://`, `unix://`): in Redis Streams, shared by every "
        "process using that Redis (docs/architecture.md section 10). A bad URL stops `serve` "
        "at start (exit 2); an unreachable Redis is retried with backoff while `/readyz` "
        "answers `503`.",
    )
    backend_timeout: float = setting(
        1.0,
        "With Redis: a publish that gets no answer within this long (retries included) fails "
        "with `503` and `Retry-After`; also how long a frozen Redis takes to be noticed.",
        unit="seconds",
    )
    workers: int = setting(
        1,
        "Processes serving the port: above 1, a parent binds the socket, starts this many "
        "workers that inherit it, forwards SIGINT/SIGTERM to them and restarts one that dies "
        "(at most 3 times a minute). Needs a shared `backend` (Redis): in-memory sessions are "
        "per process.",
        unit="processes",
        minimum=1,
    )
    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(8000, "TCP port; `0` picks a free one (tests).", minimum=0, maximum=65535)
    heartbeat_interval: float = setting(
        15.0,
        "A `:` comment is written to a stream quiet for this long (one task checks every stream "
        "each tenth of the interval, so the gap is 1 to 1.1 intervals), so a vanished client is "
        "noticed.",
        unit="seconds",
    )
    send_timeout: float = setting(
        10.0,
        "`TCP_USER_TIMEOUT` of accepted sockets: unacknowledged data older than this makes the "
        "kernel drop the connection. A client that stops reading or vanishes is dropped within "
        "`heartbeat_interval + send_timeout`.",
        unit="seconds",
    )
    graceful_timeout: float = setting(
        10.0,
        "Shutdown waits at most this long for streams and requests to end.",
        unit="seconds",
    )
    keep_alive_timeout: float = setting(
        5.0,
        "An idle keep-alive connection (after a normal response, no request in progress) is "
        "closed after this long.",
        unit="seconds",
    )
    head_timeout: float = setting(
        10.0,
        "A request head must arrive complete within this long, counted from the connection's "
        "accept or, on a kept-alive connection, from the end of the previous response.",
        unit="seconds",
    )
    body_timeout: float = setting(
        30.0,
        "A request body must arrive complete within this long once its head is read.",
        unit="seconds",
    )
    min_body_rate: int | None = setting(
        500,
        "After `body_rate_grace`, a request body must keep arriving at this average rate or "
        "it is refused with `408` and the connection closed (Apache's `mod_reqtimeout` "
        "`MinRate` default; Kestrel uses 240). `None`: no rate, only `body_timeout`.",
        unit="bytes/second",
    )
    body_rate_grace: float = setting(
        5.0,
        "Seconds of a request body before `min_body_rate` applies (Kestrel's grace period).",
        unit="seconds",
    )
    retry_ms: int = setting(
        3000, "The `retry:` field sent first on every stream.", unit="milliseconds"
    )
    shutdown_retry_ms: int = setting(
        2000,
        "On shutdown each stream is told `retry:` a random value in `[this, 2 x this]`, so "
        "clients do not all come back at once.",
        unit="milliseconds",
    )
    max_connections: int = setting(
        10_000,
        "Open streams and long polls at once; beyond it `503` with `Retry-After`. They also "
        "need a socket in the general share of `max_sockets` (the lower bound applies).",
        unit="connections",
    )
    max_sockets: int | None = setting(
        None,
        "Accepted sockets open at once, whatever they carry (idle, reading a request, a "
        "stream). `None`: the open-file limit (raised to its hard limit at start) minus a "
        "tenth of it (at least 32, at most 1024) kept for the process's own files. A new "
        "socket over `max_sockets - reserved_sockets` first closes the oldest socket that has "
        "not yet sent a complete request; if there is none and the total is reached, it gets "
        "`503` and is closed.",
        unit="sockets",
    )
    reserved_sockets: int = setting(
        64,
        "Share of `max_sockets` that only publishes, deletes, `/healthz`, `/readyz`, `/stats` "
        "and `/metrics` may use: past `max_sockets - reserved_sockets` open sockets other "
        "requests get `503` with `Retry-After`. At most half of a derived `max_sockets`; "
        "below an explicit one.",
        unit="sockets",
    )
    max_poll_wait: float = setting(
        30.0, "Longest `wait` a poll may ask for (`400` above it).", unit="seconds"
    )
    max_last_event_id_chars: int = setting(
        256,
        "Longest `Last-Event-ID` / `lastEventId` / `after` accepted (`400` above it).",
        unit="characters",
        minimum=16,
    )
    max_head_bytes: int = setting(
        16 * 1024,
        "Largest request head: request line and headers (`431` above it).",
        unit="bytes",
        minimum=1024,
    )
    max_body_bytes: int = setting(
        1024 * 1024, "Largest request body (`413` above it).", unit="bytes"
    )
    max_batch_events: int = setting(
        1000, "Most events in one batch publish request (`413` above it).", unit="events"
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        "Browser origins allowed to call the API; `*` for any. Empty: no CORS headers. As text "
        "(a variable or a flag): comma-separated.",
    )
    cors_allow_credentials: bool = setting(
        False,
        "Send `Access-Control-Allow-Credentials: true`; refused together with the origin `*`.",
    )
    auth_publish: bool = setting(
        True,
        "`POST` and `DELETE` need a bearer token whose `publish` patterns match the session.",
    )
    auth_subscribe: bool = setting(
        False,
        "Streams and polls need a token (header or cookie) whose `subscribe` patterns match.",
    )
    jwt_key: str | None = setting(
        None,
        "HS256 key. `serve` generates one (and prints a token) when no key is set and auth is on.",
    )
    jwt_public_key: str | None = setting(
        None, "PEM public key for RS256 tokens (instead of, or beside, `jwt_key`)."
    )
    cookie_name: str = setting(
        "trio_sse_token",
        "Cookie that may carry a subscriber's token (EventSource cannot send headers).",
    )

    def _check_together(self) -> None:
        if self.backend != "memory":
            check_redis_url(self.backend)
        if self.max_sockets is not None and self.reserved_sockets >= self.max_sockets:
            raise ConfigError("reserved_sockets must be below max_sockets")
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ConfigError("cors_allow_credentials cannot be used with the origin '*'")

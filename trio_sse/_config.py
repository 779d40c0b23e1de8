"""Broadcaster configuration: frozen, validated, loadable from a mapping, TOML or the environment.

Every resource the broadcaster holds has a bound here; ``docs/configuration.md`` lists each
setting and ``docs/architecture.md`` gives the memory bound as a formula of them. No I/O happens
in this module except reading the TOML file a caller names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, get_args

from ._exceptions import ConfigError

SlowConsumerPolicy = Literal["disconnect", "drop"]

ENV_PREFIX = "TRIO_SSE_"
_KiB = 1024


class Loadable:
    """Loading for frozen settings dataclasses: from a mapping and from the environment.

    A subclass refines :meth:`from_text` for settings whose text form is special.
    """

    __slots__ = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build from a mapping of setting names to values; unknown names are errors.

        The string ``"none"`` sets an optional setting to None (TOML has no null), and a list
        sets a tuple setting.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        converted = dict(values)
        for name, value in values.items():
            kind = str(fields[name].type)
            if "None" in kind and isinstance(value, str) and value.lower() == "none":
                converted[name] = None
            elif kind.startswith("tuple") and isinstance(value, list):
                converted[name] = tuple(value)
        return cls(**converted)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, base: Self | None = None
    ) -> Self:
        """Override ``base`` (default settings if None) with ``TRIO_SSE_<SETTING>`` variables.

        Values are parsed by the setting's type: ints (``_`` allowed), floats, booleans
        (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``), ``none``, ``null``
        or an empty value for optional settings, comma-separated lists for tuples. Variables
        with the prefix that name no setting are left alone (other layers use them).
        """
        environ = os.environ if environ is None else environ
        base = cls() if base is None else base
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for name in values:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = cls.from_text(ENV_PREFIX + name.upper(), name, raw)
        return cls(**values)

    @classmethod
    def from_text(cls, source: str, name: str, raw: str) -> object:
        """The value of setting ``name`` given as text by ``source`` (a variable or a flag)."""
        kind = str(next(f.type for f in dataclasses.fields(cls) if f.name == name))  # type: ignore[arg-type]
        if kind.startswith("tuple"):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if kind in ("str", "str | None") and raw.strip().lower() not in ("none", "null", ""):
            return raw
        return parse_text(source, kind, raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcasterConfig(Loadable):
    """Bounds and timings of a broadcaster. All durations are seconds of ``trio.current_time()``.

    Attributes:
        max_queue_size: Events queued per subscriber before it counts as slow.
        max_queue_bytes: Encoded bytes queued per subscriber before it counts as slow.
        max_history_per_session: Events kept per session for replay after a reconnect.
        max_history_bytes_per_session: Encoded bytes kept per session history.
        event_ttl: Default time an event stays in history (None: until evicted by the bounds).
        session_ttl: A session without subscribers and without publishes for this long is removed
            with its history.
        cleanup_interval: Period of the cleanup pass (TTL, idle sessions, stale subscribers).
        enable_metrics: Report the ``metrics`` counters in stats.
        max_subscriber_idle_time: A subscriber that has had events waiting this long without
            reading any is closed as stale (each read restarts the wait).
        memory_warning_threshold_mb: Process RSS (MiB) above which a warning is logged and
            reported.
        memory_critical_threshold_mb: Process RSS (MiB) above which the broadcaster sheds load
            until back at or under the warning threshold.
        memory_check_interval: Period of the memory check.
        max_sessions: Sessions held at once; beyond it idle sessions are evicted oldest first.
        max_subscribers_per_session: Subscribers of one session at once.
        max_subscribers: Subscribers of all sessions at once.
        max_event_bytes: Largest encoded event accepted by ``publish``.
        slow_consumer_policy: ``"disconnect"`` ends a subscription whose queue is full (the client
            resumes from history); ``"drop"`` skips events for it and reports the gap.
    """

    max_queue_size: int = 1000
    max_queue_bytes: int = 256 * _KiB
    max_history_per_session: int = 500
    max_history_bytes_per_session: int = 256 * _KiB
    event_ttl: float | None = 300.0
    session_ttl: float = 1800.0
    cleanup_interval: float = 60.0
    enable_metrics: bool = True
    max_subscriber_idle_time: float = 600.0
    memory_warning_threshold_mb: float = 500.0
    memory_critical_threshold_mb: float = 1000.0
    memory_check_interval: float = 5.0
    max_sessions: int = 10_000
    max_subscribers_per_session: int = 1000
    max_subscribers: int = 10_000
    max_event_bytes: int = 64 * _KiB
    slow_consumer_policy: SlowConsumerPolicy = "disconnect"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f.name, f.type, getattr(self, f.name))
        if self.memory_critical_threshold_mb < self.memory_warning_threshold_mb:
            raise ConfigError(
                "memory_critical_threshold_mb must be at least memory_warning_threshold_mb "
                f"({self.memory_critical_threshold_mb} < {self.memory_warning_threshold_mb})"
            )
        if self.max_event_bytes > self.max_history_bytes_per_session:
            raise ConfigError("max_event_bytes must not exceed max_history_bytes_per_session")
        if self.max_event_bytes > self.max_queue_bytes:
            raise ConfigError("max_event_bytes must not exceed max_queue_bytes")

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], *, table: str | None = None
    ) -> BroadcasterConfig:
        """Load settings from a TOML file, optionally from one ``[table]`` of it.

        TOML has no null: an optional setting given as the string ``"none"`` is None.
        """
        try:
            with Path(path).open("rb") as file:
                document = tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from exc
        if table is not None:
            section = document.get(table)
            if not isinstance(section, dict):
                raise ConfigError(f"{os.fspath(path)!r} has no [{table}] table")
            document = section
        return cls.from_mapping(document)

    def held_bytes_bound(
        self, *, sessions: int | None = None, subscribers: int | None = None
    ) -> int:
        """The most ``heldBytes`` a broadcaster with this config can reach.

        ``history + queued <= S*H + N*(Q + H + R)`` where S is the number of sessions, N of
        subscribers (by default the configured maxima),
        H the bound of one history, Q of one live queue, and R of one reset notice; a replay
        is at most one history. See ``docs/architecture.md``.
        """
        from ._history import RESET_NOTICE_MAX_BYTES  # the history owns the notice format

        sessions = self.max_sessions if sessions is None else sessions
        if subscribers is None:
            subscribers = min(self.max_subscribers, sessions * self.max_subscribers_per_session)
        history = min(
            self.max_history_per_session * self.max_event_bytes,
            self.max_history_bytes_per_session,
        )
        queue = min(self.max_queue_size * self.max_event_bytes, self.max_queue_bytes)
        return sessions * history + subscribers * (queue + history + RESET_NOTICE_MAX_BYTES)

    def replace(self, **changes: Any) -> BroadcasterConfig:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)


def _check_field(name: str, annotation: object, value: object) -> None:
    optional = "None" in str(annotation)
    if value is None:
        if not optional:
            raise ConfigError(f"{name} must not be None")
        return
    kind = str(annotation)
    if name == "slow_consumer_policy":
        choices = get_args(SlowConsumerPolicy)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be a bool, not {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, not {value!r}")
    else:  # float seconds or megabytes
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not math.isfinite(number) or number <= 0:
            raise ConfigError(f"{name} must be a positive finite number, not {value!r}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_text(name: str, annotation: object, raw: str) -> object:
    """Parse a setting given as text (an environment variable)."""
    kind = str(annotation)
    text = raw.strip()
    if "None" in kind and text.lower() in {"none", "null", ""}:
        return None
    try:
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text.replace("_", ""))
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind}") from None
    return text

"""The settings specification, and the broadcaster's settings declared with it.

A setting is declared once, as a field of a frozen keyword-only dataclass::

    max_queue_size: int = setting(1000, "Capacity of ...", unit="events", minimum=1)

The field gives the name and the type (``X | None``: optional; a ``Literal``: a choice), and
:func:`setting` the default, the effect text, the unit and the bounds. :func:`specification`
reads the declarations back as :class:`Setting` objects, and everything else derives from them:
validation when an instance is built (:class:`Settings`), ``TRIO_SSE_<NAME>`` environment
variables, TOML tables, the ``trio-sse serve`` flags (``_cli.py``) and the tables in
``docs/configuration.md`` (``python -m trio_sse._settings_doc`` rewrites them). Adding a setting
is adding one such field and regenerating the docs; a rule across settings goes in the class's
``_check_together``.

No I/O happens in this module except reading the TOML file a caller names.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from ._exceptions import ConfigError

SlowConsumerPolicy = Literal["disconnect", "drop"]

ENV_PREFIX = "TRIO_SSE_"
_KiB = 1024
RESET_NOTICE_MAX_BYTES = 2048
"""Upper bound of an encoded ``reset`` notice (the history echoes at most 256 characters of a
cursor, at most 6 bytes each once JSON-escaped); a term of the memory bound."""
EVENT_OVERHEAD_BYTES = 320
"""What a held event costs beyond its encoded bytes, counted once per event in ``heldBytes``:
the ``SSEEvent`` object, the header of its bytes object, its id str, and a history's sequence
number, deadline and deque slots (243 bytes measured with tracemalloc for ids like
``a1b2c3d4-12345``; ``tests/test_leaks.py`` checks it; a queue entry costs less). A term of the
memory bound."""
_SPEC_KEY = "trio_sse.setting"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Declared:
    """What :func:`setting` records in a field's metadata."""

    effect: str
    unit: str
    minimum: int
    maximum: int | None


def setting(
    default: _T, effect: str, *, unit: str = "-", minimum: int = 1, maximum: int | None = None
) -> _T:
    """Declare a setting: a dataclass field whose metadata the rest of trio-sse reads.

    Args:
        default: The value when nothing sets it (immutable: settings classes are frozen).
        effect: What the setting does, in Markdown: the docs table and ``--help`` show it.
        unit: What the number counts (``"seconds"``, ``"bytes"``...); ``"-"`` for none.
        minimum: Smallest value of an ``int`` setting (a ``float`` is always positive).
        maximum: Largest value of an ``int`` setting, if any.
    """
    declared = _Declared(effect, unit, minimum, maximum)
    return dataclasses.field(default=default, metadata={_SPEC_KEY: declared})


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as declared, with its type resolved; see :func:`specification`."""

    name: str
    annotation: str  # the type as written, e.g. "float | None"
    kind: type  # int, float, bool, str (also for a choice) or tuple (of str)
    optional: bool
    choices: tuple[str, ...]
    default: object
    effect: str
    unit: str
    minimum: int
    maximum: int | None

    @property
    def env_var(self) -> str:
        """The environment variable that sets it: ``TRIO_SSE_<NAME>``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        """The ``trio-sse serve`` flag that sets it: the name with dashes."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: object) -> None:
        """Raise :class:`ConfigError`, naming the setting, unless ``value`` is allowed."""
        if value is None:
            if not self.optional:
                raise ConfigError(f"{self.name} must not be None")
        elif self.choices:
            if value not in self.choices:
                choices = ", ".join(self.choices)
                raise ConfigError(f"{self.name} must be one of {choices}, not {value!r}")
        else:
            _CHECKS[self.kind](self, value)

    def parse(self, source: str, raw: str) -> object:
        """The value given as text by ``source`` (a variable or a flag), not yet checked."""
        text = raw.strip()
        if self.kind is tuple:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if self.optional and text.lower() in _NONE:
            return None
        if self.kind is str:
            return text if self.choices else raw
        try:
            return _PARSERS[self.kind](text)
        except ValueError:
            raise ConfigError(f"{source}={raw!r} is not a valid {self.annotation}") from None

    def from_toml_value(self, value: object) -> object:
        """A TOML value as a Python one: TOML has no null (``"none"``) and no tuples."""
        if self.optional and isinstance(value, str) and value.lower() == "none":
            return None
        if self.kind is tuple and isinstance(value, list):
            return tuple(value)
        return value


def _check_bool(spec: Setting, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{spec.name} must be a bool, not {value!r}")


def _check_int(spec: Setting, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < spec.minimum:
        what = "a positive int" if spec.minimum == 1 else f"an int of at least {spec.minimum}"
        raise ConfigError(f"{spec.name} must be {what}, not {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"{spec.name} must be at most {spec.maximum}, not {value!r}")


def _check_float(spec: Setting, value: object) -> None:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{spec.name} must be a positive finite number, not {value!r}")


def _check_str(spec: Setting, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{spec.name} must be a str, not {value!r}")


def _check_strings(spec: Setting, value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(s, str) and s for s in value):
        raise ConfigError(f"{spec.name} must be a tuple of non-empty strings, not {value!r}")


def _parse_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(text)


_CHECKS: dict[type, Callable[[Setting, object], None]] = {
    bool: _check_bool,
    int: _check_int,
    float: _check_float,
    str: _check_str,
    tuple: _check_strings,
}
_PARSERS: dict[type, Callable[[str], object]] = {
    bool: _parse_bool,
    int: lambda text: int(text.replace("_", "")),
    float: float,
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null", ""}


def specification(cls: type[Settings]) -> tuple[Setting, ...]:
    """The settings a settings class declares, in declaration order."""
    resolved = _RESOLVED.get(cls)
    if resolved is None:
        hints = get_type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        resolved = _RESOLVED[cls] = tuple(_resolve(f, hints[f.name]) for f in fields)
    return resolved


_RESOLVED: dict[type[Settings], tuple[Setting, ...]] = {}


def _resolve(field: dataclasses.Field[Any], hint: Any) -> Setting:
    declared = field.metadata.get(_SPEC_KEY)
    if not isinstance(declared, _Declared):
        raise TypeError(f"{field.name} is not declared with setting(...)")
    args = get_args(hint)
    optional = get_origin(hint) is types.UnionType and type(None) in args
    base = next(arg for arg in args if arg is not type(None)) if optional else hint
    choices = get_args(base) if get_origin(base) is Literal else ()
    kind = str if choices else (get_origin(base) or base)
    if kind not in _CHECKS:
        raise TypeError(f"{field.name}: no rules for settings of type {field.type}")
    return Setting(
        name=field.name,
        annotation=str(field.type),
        kind=kind,
        optional=optional,
        choices=choices,
        default=field.default,
        effect=declared.effect,
        unit=declared.unit,
        minimum=declared.minimum,
        maximum=declared.maximum,
    )


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed TOML file at ``path``; any failure to read it is a :class:`ConfigError`."""
    try:
        with Path(path).open("rb") as file:
            return tomllib.load(file)
    except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are both
        raise ConfigError(f"cannot read config file {os.fspath(path)!r}: {exc}") from None


class Settings:
    """Base of the frozen settings dataclasses: validation and loading, from the specification.

    ``toml_table`` names the table that holds a class's settings in the command line's
    ``--config`` file.
    """

    __slots__ = ()
    toml_table: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in specification(type(self)):
            spec.check(getattr(self, spec.name))
        self._check_together()

    def _check_together(self) -> None:
        """Rules across settings; each valid on its own. A subclass adds its own here."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build from a mapping of setting names to values; unknown names are errors.

        The string ``"none"`` sets an optional setting to None (TOML has no null), and a list
        sets a tuple setting.
        """
        specs = {spec.name: spec for spec in specification(cls)}
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**{name: specs[name].from_toml_value(value) for name, value in values.items()})

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], *, table: str | None = None) -> Self:
        """Load settings from a TOML file, optionally from one ``[table]`` of it.

        TOML has no null: an optional setting given as the string ``"none"`` is None.
        """
        document = load_toml(path)
        if table is not None:
            section = document.get(table)
            if not isinstance(section, dict):
                raise ConfigError(f"{os.fspath(path)!r} has no [{table}] table")
            document = section
        return cls.from_mapping(document)

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
        values = {spec.name: getattr(base, spec.name) for spec in specification(cls)}
        for spec in specification(cls):
            raw = environ.get(spec.env_var)
            if raw is not None:
                values[spec.name] = spec.parse(spec.env_var, raw)
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcasterConfig(Settings):
    """Bounds and timings of a broadcaster: every resource it holds has a bound here.

    Each setting is declared below with its effect; ``docs/configuration.md`` tables them, and
    ``docs/architecture.md`` gives the memory bound as a formula of them
    (:meth:`held_bytes_bound`). Durations are seconds of ``trio.current_time()``.
    """

    toml_table: ClassVar[str] = "broadcaster"

    max_queue_size: int = setting(
        1000,
        "Capacity of a subscriber's live channel. When full, `slow_consumer_policy` applies. "
        "Replayed events are held in front of the channel and do not count here.",
        unit="events",
    )
    max_queue_bytes: int = setting(
        256 * _KiB,
        "Encoded bytes queued per subscriber, unread replay included. An event that would "
        "exceed it triggers `slow_consumer_policy`.",
        unit="bytes",
    )
    max_history_per_session: int = setting(
        500,
        "Events kept per session for replay. Beyond it the oldest are evicted (`eventsEvicted`).",
        unit="events",
    )
    max_history_bytes_per_session: int = setting(
        256 * _KiB,
        "Encoded bytes kept per session history. Beyond it the oldest are evicted "
        "(`eventsEvicted`).",
        unit="bytes",
    )
    event_ttl: float | None = setting(
        300.0,
        "Default lifetime of an event in history; `publish(..., ttl=)` overrides it per event. "
        "Expired events are skipped by replay and removed from the front of the history by the "
        "cleanup pass (`eventsExpired`). `None`: no TTL, events leave only by the count and "
        "byte bounds.",
        unit="seconds",
    )
    session_ttl: float = setting(
        1800.0,
        "A session without subscribers and without publishes for this long is removed with its "
        "history at the next cleanup pass (`sessionsExpired`). Recreating it starts a new epoch.",
        unit="seconds",
    )
    cleanup_interval: float = setting(
        60.0,
        "Period of the cleanup pass (event TTL, idle sessions, stale subscribers). TTL and idle "
        "deadlines are acted on up to one interval late.",
        unit="seconds",
    )
    enable_metrics: bool = setting(
        True,
        "When false, `metrics` is `null` in `get_stats()` (`None` in `statistics()`). The "
        "counters are kept either way.",
    )
    max_subscriber_idle_time: float = setting(
        600.0,
        "A subscriber with events waiting unread this long (the wait restarts at each read that "
        "leaves events pending) is closed with `CloseReason.STALE` at the next cleanup pass.",
        unit="seconds",
    )
    memory_held_threshold_mb: float | None = setting(
        None,
        "`heldBytes` (what histories and queues hold, per-event overhead included) above it "
        "makes the level `critical`, whatever RSS says: every memory check halves every "
        "history until `heldBytes` is back at or under it. `None`: "
        "`memory_warning_threshold_mb`.",
        unit="MiB",
    )
    memory_warning_threshold_mb: float = setting(
        500.0,
        "RSS above it makes the level `warning` (logged, reported as `memoryLevel`). Also the "
        "level RSS must fall back to (at or under) to leave `critical`, unless the histories are "
        "empty: then the RSS the broadcaster does not hold stops counting (see "
        "`docs/architecture.md` section 6.3).",
        unit="MiB of RSS",
    )
    memory_critical_threshold_mb: float = setting(
        1000.0,
        "RSS above it makes the level `critical`: every memory check halves every history, and "
        "`subscribe` raises `MemoryPressureError`, until RSS is back at or under the warning "
        "threshold or no history is left to shed. At least `memory_warning_threshold_mb`.",
        unit="MiB of RSS",
    )
    memory_check_interval: float = setting(
        5.0,
        "Period of the memory check (the first runs when the broadcaster starts).",
        unit="seconds",
    )
    max_sessions: int = setting(
        10_000,
        "Sessions held at once. A new session beyond it evicts the oldest idle session "
        "(`sessionsEvicted`); if every session has subscribers, `publish` or `subscribe` raises "
        "`SessionLimitError`.",
        unit="sessions",
    )
    max_subscribers_per_session: int = setting(
        1000,
        "Open subscriptions of one session; beyond it `subscribe` raises `SubscriberLimitError`.",
        unit="subscribers",
    )
    max_subscribers: int = setting(
        10_000,
        "Open subscriptions of all sessions; beyond it `subscribe` raises `SubscriberLimitError`.",
        unit="subscribers",
    )
    max_event_bytes: int = setting(
        64 * _KiB,
        "Largest encoded event `publish` accepts; a larger one raises `EventTooLargeError` and "
        "nothing is created. At most `max_history_bytes_per_session` and `max_queue_bytes`.",
        unit="bytes",
    )
    slow_consumer_policy: SlowConsumerPolicy = setting(  # noqa: RUF009 (a Literal is immutable)
        "disconnect",
        "What happens when a subscriber's queue is full. `disconnect`: the subscription ends at "
        "once with `CloseReason.SLOW_CONSUMER`, its queue is freed, and the client resumes from "
        "history with its last event id. `drop`: the event is skipped for that subscriber and "
        'the next event it receives is preceded by a `gap` event `{"dropped": n}`.',
    )

    def _check_together(self) -> None:
        if self.memory_critical_threshold_mb < self.memory_warning_threshold_mb:
            raise ConfigError(
                "memory_critical_threshold_mb must be at least memory_warning_threshold_mb "
                f"({self.memory_critical_threshold_mb} < {self.memory_warning_threshold_mb})"
            )
        if self.max_event_bytes > self.max_history_bytes_per_session:
            raise ConfigError("max_event_bytes must not exceed max_history_bytes_per_session")
        if self.max_event_bytes > self.max_queue_bytes:
            raise ConfigError("max_event_bytes must not exceed max_queue_bytes")

    def held_bytes_bound(
        self, *, sessions: int | None = None, subscribers: int | None = None
    ) -> int:
        """The most ``heldBytes`` a broadcaster with this config can reach.

        ``heldBytes <= S*H + N*(Q + H + R)`` where S is the number of sessions, N of
        subscribers (by default the configured maxima), H the bound of one history, Q of one
        live queue, and R of one reset notice, each with ``EVENT_OVERHEAD_BYTES`` per event it
        can hold; a replay is at most one history. See ``docs/architecture.md`` section 6.
        """
        sessions = self.max_sessions if sessions is None else sessions
        if subscribers is None:
            subscribers = min(self.max_subscribers, sessions * self.max_subscribers_per_session)
        overhead = EVENT_OVERHEAD_BYTES
        history = (
            min(
                self.max_history_per_session * self.max_event_bytes,
                self.max_history_bytes_per_session,
            )
            + self.max_history_per_session * overhead
        )
        queue = (
            min(self.max_queue_size * self.max_event_bytes, self.max_queue_bytes)
            + self.max_queue_size * overhead
        )
        reset = RESET_NOTICE_MAX_BYTES + overhead
        return sessions * history + subscribers * (queue + history + reset)

    @property
    def held_threshold_mb(self) -> float:
        """``memory_held_threshold_mb``, or the warning threshold when it is None."""
        held = self.memory_held_threshold_mb
        return self.memory_warning_threshold_mb if held is None else held


def check_redis_url(url: str) -> str:
    """Return ``url`` if it is a usable ``redis://``, ``rediss://`` or ``unix://`` URL.

    Raises:
        ConfigError: it is not.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {url!r}: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"bad Redis URL {url!r}: the scheme must be redis, rediss or unix")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"bad Redis URL {url!r}: no host")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(f"bad Redis URL {url!r}: the database must be a number")
    del port
    return url

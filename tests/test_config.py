"""Settings: one specification per setting, and what derives from it.

BroadcasterConfig and ServerSettings: defaults, validation, loading from a mapping, TOML and the
environment, and the tables in ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trio_sse import BroadcasterConfig, ConfigError, ServerSettings
from trio_sse._config import EVENT_OVERHEAD_BYTES, Setting, Settings, specification
from trio_sse._settings_doc import DOC_PATH, main, render_table, update

SETTINGS_CLASSES: tuple[type[Settings], ...] = (BroadcasterConfig, ServerSettings)
ALL_SETTINGS = [(cls, spec) for cls in SETTINGS_CLASSES for spec in specification(cls)]
SETTING_IDS = [f"{cls.__name__}.{spec.name}" for cls, spec in ALL_SETTINGS]


def test_defaults_match_the_documented_ones() -> None:
    config = BroadcasterConfig()
    assert (config.max_queue_size, config.max_history_per_session) == (1000, 500)
    assert (config.event_ttl, config.session_ttl, config.cleanup_interval) == (300.0, 1800.0, 60.0)
    assert config.enable_metrics is True
    assert config.max_subscriber_idle_time == 600.0
    assert (config.memory_warning_threshold_mb, config.memory_critical_threshold_mb) == (
        500.0,
        1000.0,
    )
    assert config.slow_consumer_policy == "disconnect"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BroadcasterConfig().max_queue_size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_queue_size", 0),
        ("max_queue_size", -1),
        ("max_queue_size", 1.5),
        ("max_queue_size", True),
        ("max_queue_size", "10"),
        ("session_ttl", 0),
        ("session_ttl", float("inf")),
        ("session_ttl", float("nan")),
        ("session_ttl", None),
        ("event_ttl", -5.0),
        ("enable_metrics", 1),
        ("slow_consumer_policy", "block"),
        ("max_sessions", None),
    ],
)
def test_bad_values_are_refused_with_a_clear_error(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        BroadcasterConfig.from_mapping({setting: value})


@pytest.mark.parametrize(
    "values",
    [
        {"memory_warning_threshold_mb": 900.0, "memory_critical_threshold_mb": 800.0},
        {"max_event_bytes": 2048, "max_history_bytes_per_session": 1024},
        {"max_event_bytes": 2048, "max_queue_bytes": 1024},
    ],
)
def test_inconsistent_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BroadcasterConfig.from_mapping(values)


def test_unknown_settings_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="max_queue_sise"):
        BroadcasterConfig.from_mapping({"max_queue_sise": 10})


def test_event_ttl_none_means_no_ttl() -> None:
    assert BroadcasterConfig(event_ttl=None).event_ttl is None


def test_config_loads_from_a_toml_file_and_one_of_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "trio-sse.toml"
    path.write_text(
        'max_queue_size = 50\nslow_consumer_policy = "drop"\n\n[broadcaster]\nmax_sessions = 7\n'
    )
    whole = path.with_name("flat.toml")
    whole.write_text('max_queue_size = 50\nslow_consumer_policy = "drop"\n')
    flat = BroadcasterConfig.from_toml(whole)
    assert (flat.max_queue_size, flat.slow_consumer_policy) == (50, "drop")
    assert BroadcasterConfig.from_toml(path, table="broadcaster").max_sessions == 7
    with pytest.raises(ConfigError, match="no \\[server\\] table"):
        BroadcasterConfig.from_toml(path, table="server")


def test_toml_sets_an_optional_setting_to_none_with_the_string_none(tmp_path: Path) -> None:
    path = tmp_path / "ttl.toml"
    path.write_text('event_ttl = "none"\n')
    assert BroadcasterConfig.from_toml(path).event_ttl is None


@pytest.mark.parametrize("content", ["max_queue_size = ", "max_queue_size = 0", "nope = 1"])
def test_a_bad_toml_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError):
        BroadcasterConfig.from_toml(path)


def test_a_missing_toml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        BroadcasterConfig.from_toml(tmp_path / "missing.toml")


def test_environment_variables_override_by_type() -> None:
    config = BroadcasterConfig.from_env(
        {
            "TRIO_SSE_MAX_QUEUE_SIZE": "2_000",
            "TRIO_SSE_EVENT_TTL": "none",
            "TRIO_SSE_SESSION_TTL": "90.5",
            "TRIO_SSE_ENABLE_METRICS": "false",
            "TRIO_SSE_SLOW_CONSUMER_POLICY": "drop",
            "TRIO_SSE_JWT_KEY": "belongs to another layer",
        },
        base=BroadcasterConfig(max_sessions=3),
    )
    assert config.max_queue_size == 2000
    assert config.event_ttl is None
    assert config.session_ttl == 90.5
    assert config.enable_metrics is False
    assert config.slow_consumer_policy == "drop"
    assert config.max_sessions == 3


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRIO_SSE_MAX_QUEUE_SIZE", "many"),
        ("TRIO_SSE_ENABLE_METRICS", "maybe"),
        ("TRIO_SSE_SESSION_TTL", "none"),
        ("TRIO_SSE_CLEANUP_INTERVAL", "-1"),
    ],
)
def test_bad_environment_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=r"TRIO_SSE_|cleanup_interval|session_ttl"):
        BroadcasterConfig.from_env({name: raw})


def test_the_held_bytes_bound_follows_the_formula() -> None:
    config = BroadcasterConfig(
        max_sessions=10,
        max_subscribers=30,
        max_subscribers_per_session=5,
        max_history_per_session=4,
        max_event_bytes=100,
        max_history_bytes_per_session=1000,
        max_queue_size=3,
        max_queue_bytes=1000,
    )
    c = EVENT_OVERHEAD_BYTES  # per event each part can hold
    history, queue, reset = 4 * 100 + 4 * c, 3 * 100 + 3 * c, 2048 + c
    assert config.held_bytes_bound() == 10 * history + 30 * (queue + history + reset)
    assert config.held_bytes_bound(sessions=2) == 2 * history + 10 * (queue + history + reset)


def test_server_settings_declare_the_http_limits_with_their_defaults() -> None:
    settings = ServerSettings()
    assert (settings.head_timeout, settings.body_timeout) == (10.0, 30.0)
    assert (settings.max_head_bytes, settings.max_batch_events) == (16384, 1000)
    assert (settings.host, settings.port, settings.max_body_bytes) == ("127.0.0.1", 8000, 1 << 20)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("head_timeout", 0),
        ("body_timeout", float("inf")),
        ("body_timeout", "30"),
        ("max_head_bytes", 1023),
        ("max_head_bytes", 2048.0),
        ("max_batch_events", 0),
        ("port", -1),
        ("port", 65536),
        ("max_last_event_id_chars", 15),
        ("host", 8000),
        ("auth_publish", 1),
        ("jwt_key", 42),
        ("cookie_name", None),
        ("cors_origins", ("",)),
        ("cors_origins", "https://a.example"),
    ],
)
def test_bad_server_settings_are_refused_naming_the_setting(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        ServerSettings.from_mapping({setting: value})


def test_the_smallest_allowed_values_are_accepted() -> None:
    settings = ServerSettings(port=0, max_head_bytes=1024, max_last_event_id_chars=16)
    assert (settings.port, settings.max_head_bytes) == (0, 1024)
    assert ServerSettings(port=65535).port == 65535


def test_credentials_with_any_origin_are_refused() -> None:
    with pytest.raises(ConfigError, match="cors_allow_credentials"):
        ServerSettings(cors_origins=("*",), cors_allow_credentials=True)


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
def test_replace_returns_a_validated_copy_of_the_same_class(cls: type[Settings]) -> None:
    first = specification(cls)[0]
    assert type(cls().replace()) is cls
    with pytest.raises(ConfigError, match=first.name):
        cls().replace(**{first.name: None})


def test_server_settings_load_from_a_toml_table(tmp_path: Path) -> None:
    path = tmp_path / "trio-sse.toml"
    path.write_text(
        '[server]\nmax_head_bytes = 4096\njwt_key = "none"\ncors_origins = ["https://a.example"]\n'
    )
    settings = ServerSettings.from_toml(path, table="server")
    assert settings.max_head_bytes == 4096
    assert settings.jwt_key is None
    assert settings.cors_origins == ("https://a.example",)


def _sample_text(spec: Setting) -> tuple[str, object]:
    """Text for ``spec`` other than its default, and the value it stands for."""
    if spec.choices:
        choice = next(c for c in spec.choices if c != spec.default)
        return choice, choice
    number = spec.maximum or 300_000
    samples: dict[type, tuple[str, object]] = {
        int: (f"{number:_}", number),
        float: ("12.5", 12.5),
        bool: ("yes", True) if spec.default is False else ("off", False),
        str: ("text", "text"),
        tuple: ("a, b", ("a", "b")),
    }
    return samples[spec.kind]


@pytest.mark.parametrize(("cls", "spec"), ALL_SETTINGS, ids=SETTING_IDS)
def test_every_setting_reads_its_environment_variable(cls: type[Settings], spec: Setting) -> None:
    bounded_by_others = {
        "max_event_bytes": ("1_000", 1000),
        "memory_critical_threshold_mb": ("2e3", 2e3),
        "backend": ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    }
    raw, value = bounded_by_others.get(spec.name) or _sample_text(spec)
    loaded = cls.from_env({f"TRIO_SSE_{spec.name.upper()}": raw})
    assert getattr(loaded, spec.name) == value != spec.default
    if spec.optional:
        assert getattr(cls.from_env({spec.env_var: "null"}), spec.name) is None


@pytest.mark.parametrize(("cls", "spec"), ALL_SETTINGS, ids=SETTING_IDS)
def test_every_default_is_valid_and_documented(cls: type[Settings], spec: Setting) -> None:
    assert getattr(cls(), spec.name) == spec.default
    assert spec.effect.endswith(".")
    assert f"| `{spec.name}` |" in render_table(cls)


def test_the_settings_tables_in_the_docs_match_the_specification() -> None:
    document = DOC_PATH.read_text(encoding="utf-8")
    assert update(document) == document, "run: python -m trio_sse._settings_doc"
    for cls in SETTINGS_CLASSES:
        assert render_table(cls) in document


def test_the_doc_generator_rewrites_a_stale_table(tmp_path: Path) -> None:
    fresh = DOC_PATH.read_text(encoding="utf-8")
    stale = fresh.replace("| `max_head_bytes` | int | `16384`", "| `max_head_bytes` | int | `8192`")
    assert stale != fresh
    path = tmp_path / "configuration.md"
    path.write_text(stale, encoding="utf-8")
    assert main([str(path), "--check"]) == 1
    assert main([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == fresh
    assert main([str(path), "--check"]) == 0

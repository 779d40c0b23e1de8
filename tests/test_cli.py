"""The command line: the demo runs end to end and bad input is a clear error."""

from __future__ import annotations

import argparse
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from trio_sse import BroadcasterConfig, ConfigError, ServerSettings
from trio_sse._cli import _parser, _serve_parser, load_settings, main
from trio_sse._config import Settings, specification
from trio_sse._settings_doc import default_text


def test_the_demo_subscribes_publishes_resumes_and_prints_stats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--events", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("got progress") == 3 + 3 + 2
    assert '"totalSubscribers": 0' in out
    assert '"eventsPublished": 3' in out


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trio_sse", "demo", "--events", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "heldBytes" in done.stdout


def test_a_bad_config_file_is_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[broadcaster]\nmax_queue_size = 0\n")
    assert main(["demo", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "max_queue_size" in err
    assert "Traceback" not in err


def test_a_bad_environment_variable_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_SSE_MAX_QUEUE_SIZE", "lots")
    assert main(["demo"]) == 2
    assert "TRIO_SSE_MAX_QUEUE_SIZE" in capsys.readouterr().err


def test_bad_flags_exit_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--events", "x"])
    assert exit_info.value.code == 2
    assert main(["demo", "--events", "0"]) == 2


def test_settings_come_from_defaults_file_environment_and_flags_in_that_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trio-sse.toml"
    path.write_text(
        "[broadcaster]\nmax_queue_size = 10\nmax_sessions = 20\n\n"
        '[server]\nport = 9000\nheartbeat_interval = 3\ncors_origins = ["https://a.example"]\n'
    )
    args = _parser().parse_args(
        ["serve", "--config", str(path), "--max-sessions", "30", "--heartbeat-interval", "4"]
    )
    environ = {
        "TRIO_SSE_MAX_QUEUE_SIZE": "11",
        "TRIO_SSE_PORT": "9001",
        "TRIO_SSE_MAX_SESSIONS": "25",
    }
    config, settings = load_settings(args, environ)
    assert (config.max_queue_size, config.max_sessions) == (11, 30)
    assert (settings.port, settings.heartbeat_interval) == (9001, 4.0)
    assert settings.cors_origins == ("https://a.example",)
    assert settings.auth_publish


def test_no_auth_turns_authorisation_off() -> None:
    args = _parser().parse_args(["serve", "--no-auth"])
    _, settings = load_settings(args, {})
    assert not settings.auth_publish
    assert not settings.auth_subscribe


@pytest.mark.parametrize(
    "flags",
    [
        ["--max-queue-size", "lots"],
        ["--port", "70000"],
        ["--heartbeat-interval", "-1"],
        ["--max-head-bytes", "512"],
    ],
)
def test_bad_serve_flags_are_clear_errors(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["serve", *flags])
    with pytest.raises(ConfigError):
        load_settings(args, {})


def _serve() -> argparse.ArgumentParser:
    return _serve_parser(argparse.ArgumentParser().add_subparsers())


def _serve_actions() -> dict[str, argparse.Action]:
    return {action.dest: action for action in _serve()._actions}


@pytest.mark.parametrize("kind", [BroadcasterConfig, ServerSettings])
def test_every_setting_has_a_flag_with_its_effect_type_and_default(kind: type[Settings]) -> None:
    actions = _serve_actions()
    for spec in specification(kind):
        action = actions[f"set_{spec.name}"]
        assert action.option_strings == ["--" + spec.name.replace("_", "-")]
        assert action.help is not None
        assert action.help.startswith(spec.effect.replace("`", "")[:40].replace("%", "%%"))
        assert f"default {default_text(spec)}".replace("`", "") in action.help


def test_the_serve_help_shows_the_new_http_limits() -> None:
    help_text = _serve().format_help()
    for flag in ("--head-timeout", "--body-timeout", "--max-head-bytes", "--max-batch-events"):
        assert flag in help_text
    assert "Capacity of a subscriber's live channel" in " ".join(help_text.split())


def test_flags_are_parsed_by_the_setting_type() -> None:
    args = _parser().parse_args(
        [
            "serve",
            *("--max-head-bytes", "4_096", "--body-timeout", "2.5", "--jwt-key", "none"),
            *("--cors-origins", "https://a.example, https://b.example", "--auth-subscribe", "on"),
            *("--event-ttl", "null", "--slow-consumer-policy", "drop"),
        ]
    )
    config, settings = load_settings(args, {})
    assert (settings.max_head_bytes, settings.body_timeout, settings.jwt_key) == (4096, 2.5, None)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.auth_subscribe
    assert (config.event_ttl, config.slow_consumer_policy) == (None, "drop")


def test_a_flag_that_does_not_parse_names_the_flag() -> None:
    args = _parser().parse_args(["serve", "--max-head-bytes", "big"])
    with pytest.raises(ConfigError, match="--max-head-bytes='big' is not a valid int"):
        load_settings(args, {})


def test_an_unknown_table_in_the_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trio-sse.toml"
    path.write_text("[sever]\nport = 1\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_settings(_parser().parse_args(["serve", "--config", str(path)]), {})


@pytest.fixture(params=[[]], ids=["default"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """``trio-sse serve`` in a subprocess on 127.0.0.1, port 0; yields its URL and token."""
    flags: list[str] = request.param
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_sse",
            "serve",
            "--port",
            "0",
            "--heartbeat-interval",
            "1",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, token = _read_banner(process)
        yield url, token, process
    finally:
        process.terminate()
        process.wait(timeout=20)
        assert process.stdout is not None
        process.stdout.close()


def _read_banner(process: subprocess.Popen[str]) -> tuple[str, str]:
    assert process.stdout is not None
    token = url = ""
    deadline = time.monotonic() + 20
    while not url and time.monotonic() < deadline:
        line = process.stdout.readline()
        if "publish token" in line:
            token = line.split()[-1]
        if "serving on" in line:
            url = line.split()[3]
    assert url and token, "the server did not start"
    return url, token


def test_serve_publish_listen_and_stats_work_together(
    served: tuple[str, str, subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token, process = served
    listener = subprocess.Popen(
        [sys.executable, "-m", "trio_sse", "listen", "demo", "--url", url, "--max-events", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    _wait_for_subscribers(url, 1)
    assert main(["publish", "--url", url, "--token", token, "demo", "greeting", '"hello"']) == 0
    assert main(["publish", "--url", url, "--token", token, "demo", "n", '{"n": 2}']) == 0
    out, _ = listener.communicate(timeout=20)
    assert [line.split("\t")[1:] for line in out.splitlines()] == [
        ["greeting", "hello"],
        ["n", '{"n":2}'],
    ]
    capsys.readouterr()
    assert main(["stats", "--url", url]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["eventsPublished"] == 2
    assert main(["publish", "--url", url, "demo", "t", "x"]) == 1  # no token
    assert "401" in capsys.readouterr().err
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_publish_stdin_sends_ndjson_in_batches_and_prints_the_ids_in_order(
    served: tuple[str, str, subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, token, _ = served
    lines = [json.dumps({"type": "n", "data": n}) for n in range(5)]
    lines.insert(2, "")  # blank lines are skipped
    lines.append(json.dumps({"session": "other", "data": "x"}))
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    command = ["publish", "--url", url, "--token", token, "--stdin", "--batch-size", "2", "jobs"]
    assert main(command) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == 6
    poll = httpx.get(f"{url}/sessions/jobs/poll", params={"after": "0"}).json()
    assert [e["data"] for e in poll["events"][1:]] == [str(n) for n in range(5)]  # after reset
    assert [e["id"] for e in poll["events"][1:]] == ids[:5]
    assert httpx.get(f"{url}/stats").json()["metrics"]["eventsPublished"] == 6


def test_publish_stdin_names_the_line_of_a_refused_event(
    served: tuple[str, str, subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, token, _ = served
    text = '{"data": 1}\n\n{"type": "reset", "data": 2}\n'
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["publish", "--url", url, "--token", token, "--stdin", "s"]) == 1
    error = capsys.readouterr().err
    assert "line 3" in error and "reserved" in error
    assert httpx.get(f"{url}/stats").json()["metrics"]["eventsPublished"] == 0  # all or none
    monkeypatch.setattr(sys, "stdin", io.StringIO("[1, 2]\n"))
    assert main(["publish", "--url", url, "--token", token, "--stdin", "s"]) == 1
    assert "line 1: an event must be a JSON object" in capsys.readouterr().err


def test_publish_without_data_or_with_stdin_and_data_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["publish", "s", "t"]) == 2
    assert main(["publish", "--stdin", "s", "t", "d"]) == 2
    assert main(["publish", "--stdin", "--batch-size", "0"]) == 2


def test_client_commands_report_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err


def _wait_for_subscribers(url: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/stats").json()["totalSubscribers"] >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the listener never subscribed")


@pytest.mark.parametrize("served", [["--auth-subscribe", "true"]], indirect=True, ids=["auth"])
def test_listen_reports_a_refused_stream_and_exits(
    served: tuple[str, str, subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, token, _ = served
    assert main(["listen", "s", "--url", url, "--max-events", "1"]) == 1
    assert "401" in capsys.readouterr().err
    command = ["listen", "s", "--url", url, "--token", token, "--max-events", "1"]
    listener = subprocess.Popen(
        [sys.executable, "-m", "trio_sse", *command],
        stdout=subprocess.PIPE,
        text=True,
    )
    _wait_for_subscribers(url, 1)
    assert main(["publish", "--url", url, "--token", token, "s", "t", "1"]) == 0
    out, _ = listener.communicate(timeout=20)
    assert out.split("\t")[1:] == ["t", "1\n"]

"""The command line: the demo runs end to end and bad input is a clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trio_sse._cli import main


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
    path.write_text("max_queue_size = 0\n")
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

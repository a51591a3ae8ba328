"""Every way a command ends has its own exit code (issue #24, defect 9).

1 means "a gate failed" to CI, so nothing else may exit 1: an unanticipated exception
is an internal error, exit 3, one line on stderr naming the log file that holds the
traceback; bad input stays 2 and Ctrl-C 130. Both command lines share the boundary.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import pytest

from harness.cli import boundary
from harness.cli.boundary import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    INTERNAL_ERROR,
    INTERNAL_ERROR_NO_LOG,
)
from harness.cli.main import INTERRUPTED
from harness.cli.main import main as harness_main
from harness.errors import UserError


def _raise(exc: BaseException) -> Any:
    def command(*args: Any, **kwargs: Any) -> NoReturn:
        raise exc

    return command


def _log_path(line: str) -> Path:
    found = re.search(r"\(traceback in (.+)\)$", line)
    assert found, line
    return Path(found.group(1))


def test_unexpected_exception_exits_3_with_one_line_and_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "harness.cli.verify.verify_command", _raise(RuntimeError("weights exploded"))
    )
    assert harness_main(["verify", "results.json"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    log = _log_path(lines[0])
    assert lines[0] == INTERNAL_ERROR.format(error="RuntimeError: weights exploded", log=log)
    # beside the response cache (conftest points HARNESS_CACHE_DIR into tmp_path)
    assert log.parent == tmp_path / "response-cache" / "errors"
    text = log.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: weights exploded" in text
    assert "verify" in text.splitlines()[1]  # the command line that failed
    assert log.stat().st_mode & 0o077 == 0  # tracebacks may quote data: user only


@pytest.mark.parametrize(
    "exc",
    [MemoryError(), RecursionError("maximum recursion depth exceeded"), ValueError("x")],
    ids=["MemoryError", "RecursionError", "ValueError"],
)
def test_no_exception_exits_1(
    exc: BaseException, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("harness.cli.report.report_command", _raise(exc))
    assert harness_main(["report", "results.json"]) == EXIT_INTERNAL
    line = capsys.readouterr().err.rstrip("\n")
    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    assert line == INTERNAL_ERROR.format(error=error, log=_log_path(line))


def test_bad_input_and_interrupt_keep_their_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("harness.cli.verify.verify_command", _raise(UserError("x: bad")))
    assert harness_main(["verify", "r.json"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: x: bad\n"
    monkeypatch.setattr("harness.cli.verify.verify_command", _raise(KeyboardInterrupt()))
    assert harness_main(["verify", "r.json"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == INTERRUPTED + "\n"


def test_message_is_one_inert_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception message can quote data or model output: newlines and terminal
    escapes must not reach the terminal, and a long one is shortened."""
    hostile = "row 3\nerror: forged second line \x1b[2J\u202e" + "x" * 1000
    monkeypatch.setattr("harness.cli.verify.verify_command", _raise(KeyError(hostile)))
    assert harness_main(["verify", "r.json"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\u202e" not in err
    assert len(err) < boundary.MESSAGE_LIMIT + 300


def test_log_that_cannot_be_written_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(boundary, "log_dirs", lambda: [blocker / "errors"])
    monkeypatch.setattr("harness.cli.verify.verify_command", _raise(OSError(5, "I/O")))
    assert harness_main(["verify", "r.json"]) == EXIT_INTERNAL
    line = capsys.readouterr().err.rstrip("\n")
    assert line.startswith(
        INTERNAL_ERROR_NO_LOG.format(error="OSError: [Errno 5] I/O", reason="").rstrip(")")
    )


def test_finetune_has_the_same_boundary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune.cli import main as finetune_main

    monkeypatch.setattr("finetune.config.schema.load_config", _raise(TypeError("unexpected")))
    assert finetune_main(["train", "config.yaml"]) == EXIT_INTERNAL
    line = capsys.readouterr().err.rstrip("\n")
    assert line == INTERNAL_ERROR.format(error="TypeError: unexpected", log=_log_path(line))
    assert _log_path(line).name.startswith("finetune-error-")

"""Issue 23's acceptance: the demo's console is quiet and ends with the gates table.

The demo (the session's ``demo`` fixture) prints no raw Trainer dict and no warning or
progress bar of a library; those go to harness.log in its output folder. That
``--verbose`` shows them on the console too is tested on the same routing, fast, in
tests/cli/test_quiet.py, and the flag's plumbing below.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

THIRD_PARTY = ("FutureWarning", "UserWarning", "DeprecationWarning", "Loading weights")


def test_no_raw_dict_no_library_warning_no_bar_on_the_console(demo: dict[str, Any]) -> None:
    for stream in ("console", "stdout", "stderr"):
        text = demo[stream]
        assert not re.search(r"\{'(loss|eval_loss|train_runtime)':", text), (stream, text)
        for phrase in THIRD_PARTY:
            assert phrase not in text, (stream, phrase)
        assert "it/s]" not in text  # no tqdm bar


def test_the_console_ends_with_the_gates_table(demo: dict[str, Any]) -> None:
    tail = demo["console"][demo["console"].rindex("gates") :]
    assert "naive" in tail and "mitigated" in tail
    assert "comparison:" in tail


def test_the_log_file_in_the_output_folder_holds_the_library_messages(
    demo: dict[str, Any],
) -> None:
    log: Path = demo["out"] / "harness.log"
    text = log.read_text(encoding="utf-8")
    assert text.strip(), "the demo's libraries said nothing?"
    assert re.search(r"Warning|WARNING", text)


def test_demo_flags_reach_run_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.demo.run as demo_run
    from harness.cli.demo import demo_command
    from harness.cli.main import build_parser

    seen: dict[str, Any] = {}

    def fake(out: Path, **kw: Any) -> dict[str, Any]:
        seen.update(kw, out=out)
        return {"timings": {"total_s": 0.0}}

    monkeypatch.setattr(demo_run, "run_demo", fake)
    args = build_parser().parse_args(["demo", "--out", "x", "--verbose", "--no-progress"])
    assert isinstance(args, argparse.Namespace)
    assert demo_command(args) == 0
    assert seen == {"out": Path("x"), "progress": False, "verbose": True}

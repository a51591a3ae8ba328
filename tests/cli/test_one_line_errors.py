"""A failing run prints exactly one line, even when transformers has more to say
(issue #24, defects 9 and 14).

transformers logged a load report (a table of every mismatched weight) and a
"Loading weights" progress bar to stderr before our one-line error. Real processes, so
the libraries' own handlers (bound to the real stderr) are what is checked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.boundary import EXIT_INTERNAL

REVIEWS = [("good fun", 1), ("awful bad", 0), ("great", 1)]


def _suite(folder: Path, metrics: str = "[accuracy]") -> Path:
    (folder / "reviews.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in REVIEWS)
    )
    path = folder / "suite.yaml"
    path.write_text(
        f"""schema_version: 1
name: one
model: {{path: ./model}}
tasks:
  - id: s
    kind: classification
    data: reviews.jsonl
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
    metrics: {metrics}
bootstrap: {{samples: 10}}
"""
    )
    return path


def _run(suite: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=suite.parent,
    )


@pytest.mark.slow
def test_weights_of_another_shape_give_one_line(tmp_path: Path, tiny_gpt2: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_gpt2, model)
    config = json.loads((model / "config.json").read_text())
    config["n_embd"] *= 2  # the stored weights no longer fit: transformers reports each
    (model / "config.json").write_text(json.dumps(config))
    proc = _run(_suite(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: model '{model}': cannot load: ")


@pytest.mark.slow
def test_plugin_raising_is_an_internal_error_of_one_line(tmp_path: Path, tiny_gpt2: Path) -> None:
    """A real process: exit status 3 (not 1, a failed gate), one line, the traceback
    (down to the plug-in's own frame) in the log file it names."""
    pytest.importorskip("evaluate")
    from tests.metrics.test_metrics_plugin import write_module

    shutil.copytree(tiny_gpt2, tmp_path / "model")
    write_module(tmp_path, "broken", dtype="int32", extra="1 / 0")
    suite = _suite(tmp_path, "[accuracy, ./broken.py]")
    proc = _run(suite, "--out", str(tmp_path / "out"))
    assert proc.returncode == EXIT_INTERNAL, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("internal error: ZeroDivisionError: division by zero")
    log = Path(proc.stderr.rstrip("\n").rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert "broken.py" in log.read_text(encoding="utf-8")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_passing_run_shows_no_loading_bar(tmp_path: Path, tiny_gpt2: Path) -> None:
    shutil.copytree(tiny_gpt2, tmp_path / "model")
    proc = _run(_suite(tmp_path), "--out", str(tmp_path / "out"), "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert "Loading weights" not in proc.stderr

"""Fixtures of the suite tests: a small fake metric registry and a suite folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.metrics import base
from tests.config.suite_files import _f1_outputs, _f1_validate, _fake


@pytest.fixture
def fake_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry of a few fake metrics, replacing (for one test) the built-in one."""
    metrics = [
        _fake("accuracy", "classification"),
        _fake(
            "f1",
            "classification",
            params={"average": "binary", "positive": None},
            outputs_fn=_f1_outputs,
            validate_params=_f1_validate,
        ),
        _fake("bleu", "generation"),
        _fake("rouge", "generation", ["rouge1", "rouge2", "rougeL", "rougeLsum"]),
        _fake("perplexity", "perplexity"),
    ]
    monkeypatch.setattr(base, "_REGISTRY", {m.name: m for m in metrics})
    monkeypatch.setattr(base, "_loaded", True)


@pytest.fixture
def suite_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_metrics: None) -> Path:
    """A folder with data files, made the cwd so messages say `suite.yaml:...`."""
    (tmp_path / "reviews.jsonl").write_text('{"text": "good", "label": 1}\n')
    (tmp_path / "news.jsonl").write_text('{"document": "d", "summary": "s"}\n')
    (tmp_path / "wiki.jsonl").write_text('{"text": "t"}\n')
    (tmp_path / "base").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path

"""harness.results.store: atomic writes keep the previous file on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.atomic import write_atomic
from harness.errors import UserError
from harness.results.schema import Results
from harness.results.store import load_results, write_results


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "results.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_failed_write_keeps_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "results.json"
    write_atomic(target, "previous")

    def boom(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(UserError) as err:
        write_results(Results.model_validate({"schema_version": 1, "tasks": {}}), tmp_path)
    assert err.value.messages == [f"{target}: cannot write: No space left on device"]
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_nan_is_written_as_null(tmp_path: Path) -> None:
    """JSON has no NaN: the writer stores null rather than fail (issue #24, defect 9);
    tests/metrics/test_plugin_keys.py has the metric values with their reason."""
    path = write_results(
        Results.model_validate({"schema_version": 1, "tasks": {}, "x": float("nan")}), tmp_path
    )
    assert json.loads(path.read_text()) == {"schema_version": 1, "tasks": {}, "x": None}


def test_load_results_checks_the_document(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(UserError) as err:
        load_results(bad)
    assert err.value.messages == [
        f"{bad}: not a results file of this harness (missing schema_version or tasks)"
    ]

"""The Results model: written exactly as a plain document would be, read back the same,
and its JSON Schema in docs/ kept up to date."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.metrics.finite import is_finite, none_if_nan, null_non_finite
from harness.results.schema import Results, SuiteEcho
from harness.results.store import dumps, json_safe, load_results
from tests.report.synthetic import make_results

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "results.json"
WRITER_ORDER = list(Results.model_fields)  # the runner writes the top level in this order


def plain(doc: dict[str, Any]) -> str:
    """results.json as a dict writer wrote it before the model (indent 1, UTF-8 kept)."""
    return json.dumps(json_safe(doc), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def test_schema_file_is_up_to_date() -> None:
    from harness.results.schema_doc import SCHEMA_FILE, render_schema

    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema(), (
        "docs/results.schema.json is stale: run `python -m harness.results.schema_doc`"
    )


def test_schema_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.results import schema_doc

    monkeypatch.setattr(schema_doc, "SCHEMA_FILE", tmp_path / "results.schema.json")
    assert schema_doc.main(["--check"]) == 1  # absent: stale
    assert schema_doc.main([]) == 0
    assert schema_doc.main(["--check"]) == 0


@pytest.mark.parametrize("kwargs", [{}, {"hostile": True}, {"audits": False, "finetune": False}])
def test_written_from_the_model_byte_for_byte_as_the_document(kwargs: dict[str, Any]) -> None:
    """Key order (the fields are declared in the writer's order), ints kept ints, NaN
    and inf null: the model adds nothing and moves nothing."""
    made = make_results(3, 15, **kwargs)
    made["tasks"]["clas0"]["metrics"]["accuracy"]["value"] = math.nan  # undefined: a reason
    made["audits"] = {"novel": {"x": math.inf, "n": 3}} if kwargs.get("audits", True) else None
    doc = {k: made[k] for k in WRITER_ORDER if k in made}  # the fixture puts gates first
    assert dumps(Results.model_validate(doc)) == plain(doc)


def test_a_stored_file_reads_back_to_the_same_bytes(tmp_path: Path) -> None:
    text = dumps(load_results(GOLDEN))
    path = tmp_path / "results.json"
    path.write_text(text, encoding="utf-8")
    assert dumps(load_results(path)) == text
    assert json.loads(text) == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_the_suite_echo_keeps_the_suite_models_order() -> None:
    """``suite`` in results.json is ``Suite.model_dump()``; the echo declares the same
    fields in the same order, so the file keeps the suite's key order."""
    from harness.config.suite import Suite

    assert list(SuiteEcho.model_fields) == list(Suite.model_fields)


def test_unset_defaults_are_not_written() -> None:
    r = Results.model_validate({"schema_version": 1, "tasks": {"t": {"kind": "perplexity"}}})
    assert json.loads(dumps(r)) == {"schema_version": 1, "tasks": {"t": {"kind": "perplexity"}}}
    assert r.verdict == "fail" and r.suite.name == "suite" and r.tasks["t"].metrics == {}


@pytest.mark.parametrize(
    ("value", "nan_gone", "finite"),
    # source: IEEE 754 semantics as Python's math module implements them
    [(math.nan, None, False), (math.inf, math.inf, False), (1.5, 1.5, True), (2, 2, True)],
)
def test_finite_helpers(value: Any, nan_gone: Any, finite: bool) -> None:
    assert none_if_nan(value) == nan_gone
    assert is_finite(value) is finite
    assert null_non_finite({"a": [value, (value,)]}) == {
        "a": [value if finite else None, [value if finite else None]]
    }
    assert is_finite(True) is False

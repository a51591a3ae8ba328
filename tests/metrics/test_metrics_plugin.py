"""A local `evaluate` module used as a suite metric (written into tmp_path, offline)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from harness.metrics import TaskInfo, score
from harness.metrics.plugin import (
    NOT_FOUND_ERROR,
    is_plugin_name,
    make_evaluate_metric,
)

pytest.importorskip("evaluate")

# A minimal evaluate metric: `_info` declares the input features, `_compute` returns a
# dict. `value_type` lets the same file serve string (generation) and int (classification)
# inputs; `extra` makes it return a second numeric key.
MODULE = """
import datasets
import evaluate


class {cls}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="share of predictions equal to their reference",
            citation="",
            inputs_description="predictions, references",
            features=datasets.Features(
                {{"predictions": datasets.Value("{dtype}"), "references": datasets.Value("{dtype}")}}
            ),
        )

    def _compute(self, predictions, references, ignore_case=False):
        def norm(x):
            return x.lower() if ignore_case and isinstance(x, str) else x

        hits = sum(norm(p) == norm(r) for p, r in zip(predictions, references))
        result = {{"{key}": hits / len(predictions), "note": "not a number"}}
        {extra}
        return result
"""


def write_module(
    folder: Path, stem: str, dtype: str = "string", key: str | None = None, extra: str = ""
) -> Path:
    cls = "".join(part.title() for part in stem.split("_"))
    path = folder / f"{stem}.py"
    text = MODULE.format(cls=cls, dtype=dtype, key=key or stem, extra=extra)
    path.write_text(text, encoding="utf-8")
    return path


GEN = TaskInfo("generation")
GEN_RECORDS: list[dict[str, Any]] = [
    {"prediction": "Paris", "references": ["Paris", "paris"]},
    {"prediction": "paris", "references": ["Paris"]},
    {"prediction": "Lyon", "references": ["Paris"]},
    {"prediction": "Rome", "references": ["Rome"]},
]


def test_generation_module_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    write_module(tmp_path / "m", "match_rate")
    metric = make_evaluate_metric("./m/match_rate.py", tmp_path)
    assert metric.outputs({}, GEN) == []  # known once the module has run
    stats = metric.stats(GEN_RECORDS, {}, GEN)
    assert metric.outputs({}, GEN) == ["match_rate"]  # "note" is text, not an output
    assert stats[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]  # first reference only
    assert metric.aggregate(stats, {}, GEN) == {"match_rate": 0.5}
    # params go to compute() as keyword arguments
    assert metric.aggregate(metric.stats(GEN_RECORDS, {"ignore_case": True}, GEN), {}, GEN) == {
        "match_rate": 0.75
    }
    entry = score(metric, GEN_RECORDS, {}, GEN, samples=200)["match_rate"]
    assert entry["value"] == 0.5 and entry["n"] == 4
    assert entry["ci_low"] <= 0.5 <= entry["ci_high"]
    assert metric.signature({}, GEN).startswith("evaluate:match_rate.py|sha256:")
    assert math.isnan(metric.aggregate(stats[:0], {}, GEN)["match_rate"])


def test_classification_module_output_is_named_by_its_key(tmp_path: Path) -> None:
    path = write_module(tmp_path, "label_match", dtype="int64", key="accuracy")
    metric = make_evaluate_metric(str(path), Path("/elsewhere"))  # absolute path
    task = TaskInfo("classification", ("no", "yes"))
    records = [{"gold": 1, "pred": 1}, {"gold": 0, "pred": 1}, {"gold": 0, "pred": 0}]
    values = metric.aggregate(metric.stats(records, {}, task), {}, task)
    assert values == {"accuracy": pytest.approx(2 / 3)}


def test_missing_module(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        make_evaluate_metric("./nope.py", tmp_path)
    assert str(info.value) == NOT_FOUND_ERROR.format(path=tmp_path / "nope.py")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("./m.py", True), ("../m", True), ("/abs/m", True), ("m.py", True), ("accuracy", False)],
)
def test_plugin_names(name: str, expected: bool) -> None:
    assert is_plugin_name(name) is expected

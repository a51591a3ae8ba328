"""A metric plug-in's outputs are the keys its compute returns (issue #24, defect 14),
and a NaN or inf it returns is stored as null with the reason (defect 9).

docs/metrics.md promised every key; only the key named after the file was usable. A
plug-in returning NaN made results.json unwritable ("Out of range float values are not
JSON compliant", a traceback, exit 1); an inf would have passed a `min` gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.errors import UserError
from harness.metrics import TaskInfo
from harness.metrics.plugin import KEYS_CHANGED_ERROR, NO_VALUE_ERROR, make_evaluate_metric
from harness.results.store import UNDEFINED_PLUGIN, json_safe, mark_undefined
from tests.metrics.test_metrics_plugin import GEN, GEN_RECORDS, write_module

pytest.importorskip("evaluate")

CLS = TaskInfo("classification", (" negative", " positive"))
CLS_RECORDS: list[dict[str, Any]] = [{"gold": g, "pred": p} for g, p in [(1, 1), (0, 1), (0, 0)]]


def test_every_numeric_key_is_an_output(tmp_path: Path) -> None:
    write_module(tmp_path, "rates", key="rate", extra='result["count"] = len(predictions) * 2')
    metric = make_evaluate_metric("./rates.py", tmp_path)
    stats = metric.stats(GEN_RECORDS, {}, GEN)
    assert metric.outputs({}, GEN) == ["rate", "count"]
    assert stats.tolist() == [[1.0, 2.0], [0.0, 2.0], [0.0, 2.0], [1.0, 2.0]]
    assert metric.aggregate(stats, {}, GEN) == {"rate": 0.5, "count": 2.0}


def test_keys_must_not_change_between_examples(tmp_path: Path) -> None:
    extra = 'result.update({"late": 1.0} if predictions[0] == "Lyon" else {})'
    write_module(tmp_path, "fickle", extra=extra)
    metric = make_evaluate_metric("./fickle.py", tmp_path)
    with pytest.raises(UserError) as info:
        metric.stats(GEN_RECORDS, {}, GEN)
    expected = KEYS_CHANGED_ERROR.format(
        path="./fickle.py", keys="'fickle', 'late'", n=3, first="'fickle'"
    )
    assert info.value.messages == [expected]


def test_no_numeric_value_is_bad_input(tmp_path: Path) -> None:
    write_module(tmp_path, "wordy", extra="result = {'note': 'text only'}")
    metric = make_evaluate_metric("./wordy.py", tmp_path)
    with pytest.raises(UserError) as info:
        metric.stats(GEN_RECORDS, {}, GEN)
    shown = repr({"note": "text only"})
    assert info.value.messages == [NO_VALUE_ERROR.format(path="./wordy.py", result=shown)]


@pytest.mark.parametrize("bad", ["float('nan')", "float('inf')", "-float('inf')", "10**400"])
def test_non_finite_values_make_the_value_undefined(tmp_path: Path, bad: str) -> None:
    """One bad example makes the mean NaN: never an inf that passes a `min` gate."""
    write_module(tmp_path, "odd", extra=f"result['odd'] = {bad} if predictions[0] == 'Lyon' else 1")
    metric = make_evaluate_metric("./odd.py", tmp_path)
    stats = metric.stats(GEN_RECORDS, {}, GEN)
    assert [str(x) for x in stats[:, 0]] == ["1.0", "1.0", "nan", "1.0"]
    assert str(metric.aggregate(stats, {}, GEN)["odd"]) == "nan"


def test_writer_gives_a_non_finite_value_a_reason() -> None:
    nan, inf = float("nan"), float("inf")
    results = {
        "schema_version": 1,
        "tasks": {
            "t": {
                "metrics": {
                    "ppl": {"value": inf, "ci_low": nan, "ci_high": inf, "metric": "perplexity"},
                    "acc": {"value": 0.5, "metric": "accuracy"},
                    "empty": {"value": None, "n": 0, "metric": "accuracy"},
                },
                "records": [],
            }
        },
    }
    doc = json_safe(results)
    json.dumps(doc, allow_nan=False)  # valid JSON
    metrics = doc["tasks"]["t"]["metrics"]
    assert metrics["ppl"] == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "metric": "perplexity",
        "reason": "metric 'perplexity' gave inf",
    }
    assert metrics["acc"] == {"value": 0.5, "metric": "accuracy"}
    assert metrics["empty"]["reason"] == "the metric is undefined on this data (0 examples)"
    assert results["tasks"]["t"]["metrics"]["ppl"]["value"] == inf  # the input is not changed


def test_mark_undefined_in_place_for_the_gates() -> None:
    name = "/m/score.py"
    tasks: dict[str, Any] = {
        "t": {
            "metrics": {"score": {"value": float("nan"), "ci_low": 0.5, "metric": name}},
            "records": [{"stats": {name: [1.0]}}, {"stats": {name: [float("nan")]}}],
        }
    }
    mark_undefined(tasks)
    assert tasks["t"]["metrics"]["score"] == {
        "value": None,
        "ci_low": None,
        "metric": name,
        "reason": UNDEFINED_PLUGIN.format(name=name, bad=1, n=2),
    }


REVIEWS = [("good fun", 1), ("awful bad", 0), ("great", 1), ("boring", 0), ("loved it", 1)]


def suite(folder: Path, model: Path, plugin: str, gates: str) -> Path:
    (folder / "reviews.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in REVIEWS)
    )
    path = folder / "suite.yaml"
    path.write_text(
        f"""schema_version: 1
name: plug
model: {{path: {model}}}
tasks:
  - id: s
    kind: classification
    data: reviews.jsonl
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
    metrics: [accuracy, {plugin}]
bootstrap: {{samples: 20}}
gates:
{gates}"""
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["float('nan')", "float('inf')"])
def test_nan_from_a_plugin_is_null_with_a_reason_and_its_gate_fails(
    tmp_path: Path, tiny_gpt2: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = f"result['score'] = {bad} if references[0] == 0 else 1.0"
    write_module(tmp_path, "score", dtype="int32", key="score", extra=extra)
    gates = "  - {metric: s.score, min: 0.5}\n  - {metric: s.accuracy, min: 0.0}\n"
    path = suite(tmp_path, tiny_gpt2, "./score.py", gates)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 1  # the gate
    results = json.loads((out / "results.json").read_text())
    score = results["tasks"]["s"]["metrics"]["score"]
    name = str(tmp_path / "score.py")  # the suite stores plug-in paths resolved
    assert (score["value"], score["ci_low"], score["ci_high"]) == (None, None, None)
    assert score["reason"] == UNDEFINED_PLUGIN.format(name=name, bad=2, n=5)
    assert [r["stats"][name] for r in results["tasks"]["s"]["records"]] == [
        [1.0],
        [None],
        [1.0],
        [None],
        [1.0],
    ]
    gate = results["gates"][0]
    assert (gate["verdict"], gate["value"]) == ("fail", None)
    assert gate["message"] == f"no value ({score['reason']})"
    assert results["verdict"] == "fail"
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_gate_on_a_second_key_of_a_plugin(tmp_path: Path, tiny_gpt2: Path) -> None:
    extra = 'result["agreement"] = 1.0'
    write_module(tmp_path, "same_label", dtype="int32", extra=extra)
    gates = "  - {metric: s.agreement, min: 1.0}\n  - {metric: s.same_label, min: 0.0}\n"
    path = suite(tmp_path, tiny_gpt2, "./same_label.py", gates)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    metrics = results["tasks"]["s"]["metrics"]
    assert metrics["agreement"]["value"] == 1.0
    assert metrics["same_label"]["value"] == pytest.approx(metrics["accuracy"]["value"])
    assert [g["verdict"] for g in results["gates"]] == ["pass", "pass"]


@pytest.mark.slow
def test_a_plugin_key_that_a_builtin_metric_gives_is_bad_input(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plug-in returning `accuracy` would silently replace the built-in accuracy."""
    from harness.run.runner import SAME_OUTPUT

    write_module(tmp_path, "shadow", dtype="int32", key="accuracy", extra="")
    path = suite(tmp_path, tiny_gpt2, "./shadow.py", "  - {metric: s.accuracy, min: 0.0}\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    name = str(tmp_path / "shadow.py")
    expected = SAME_OUTPUT.format(task="s", metric=name, output="accuracy", first="accuracy")
    assert capsys.readouterr().err.splitlines() == [f"error: {expected}"]
    assert not (out / "results.json").exists()

"""Comparing runs: paired bootstrap over shared examples, flips, mismatches, and relative
gates fed by `harness run --baseline-results`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.config.suite import Gate
from harness.metrics import TaskInfo, get, paired_bootstrap
from harness.results.compare import apply_baseline, baseline_values, compare
from harness.results.store import dumps
from tests.cli.test_cli import write_suite
from tests.report.stored_run import stored_run  # noqa: F401 (fixture)
from tests.report.synthetic import CHOICES, as_results, make_results, score_records

N = 200


@pytest.fixture(scope="module")
def baseline() -> dict[str, Any]:
    return make_results(3, N, seed=3, audits=False, finetune=False, samples=500)


def worse_run(base: dict[str, Any], n_flips: int = 40) -> tuple[dict[str, Any], list[str]]:
    """The baseline with ``n_flips`` correct classifications made wrong, every generation
    replaced, and every text less likely; stats and metrics recomputed."""
    new = copy.deepcopy(base)
    flipped = []
    for r in new["tasks"]["clas0"]["records"]:
        if r["pred"] == r["gold"] and len(flipped) < n_flips:
            r["pred"] = 1 - r["gold"]
            r["probs"] = r["probs"][::-1]
            flipped.append(r["id"])
    for r in new["tasks"]["gene1"]["records"]:
        r["prediction"] = "entirely unrelated words here"
    for r in new["tasks"]["perp2"]["records"]:
        r["loglik"] *= 1.5
    for task in new["tasks"].values():
        task["metrics"] = score_records(task["kind"], task["records"], 500, seed=1234)
    return new, flipped


def test_identical_runs_delta_zero_p_one(baseline: dict[str, Any]) -> None:
    c = compare(as_results(baseline), as_results(copy.deepcopy(baseline)))
    rows = [m for t in c["tasks"] for m in t["metrics"]]
    assert len(rows) == sum(len(t["metrics"]) for t in baseline["tasks"].values())
    for m in rows:
        assert m["delta"] == 0 and m["p_value"] == 1.0, m
        assert m["ci_low"] == m["ci_high"] == 0.0 and not m["significant"]
        assert m["n"] == N
    for t in c["tasks"]:
        assert t["n_shared"] == N and t["n_only_in_baseline"] == t["n_only_in_new"] == 0
        assert t["n_changed_inputs"] == 0
        if t["flips"] is not None:
            assert t["flips"]["n_correct_to_wrong"] == t["flips"]["n_wrong_to_correct"] == 0
    assert c["summary"] == {"worse": 0, "better": 0, "unchanged": len(rows)}


def test_clearly_worse_run_is_significant(baseline: dict[str, Any]) -> None:
    new, flipped = worse_run(baseline)
    c = compare(as_results(baseline), as_results(new))
    by = {(t["id"], m["output"]): m for t in c["tasks"] for m in t["metrics"]}
    acc = by[("clas0", "accuracy")]
    assert acc["delta"] == pytest.approx(-len(flipped) / N)
    assert acc["p_value"] < 0.01 and acc["ci_high"] < 0 and acc["significant"]
    assert acc["direction"] == "worse"
    for key in [("gene1", "rougeL"), ("gene1", "bleu"), ("perp2", "perplexity")]:
        assert by[key]["significant"] and by[key]["direction"] == "worse", key
    assert by[("perp2", "perplexity")]["delta"] > 0  # lower is better: a rise is worse
    flips = next(t for t in c["tasks"] if t["id"] == "clas0")["flips"]
    assert flips["n_correct_to_wrong"] == len(flipped) and flips["n_wrong_to_correct"] == 0
    assert [r["id"] for r in flips["correct_to_wrong"]] == flipped
    assert flips["correct_to_wrong"][0]["new"] != flips["correct_to_wrong"][0]["gold"]
    # and the other way round: the baseline is significantly better than the new run
    back = compare(as_results(new), as_results(baseline))
    acc_back = next(m for m in back["tasks"][0]["metrics"] if m["output"] == "accuracy")
    assert acc_back["direction"] == "better" and acc_back["significant"]
    assert back["tasks"][0]["flips"]["n_wrong_to_correct"] == len(flipped)


def test_uses_the_stored_statistics(baseline: dict[str, Any]) -> None:
    """Same numbers as paired_bootstrap on records[i]["stats"] directly (no model)."""
    new, _ = worse_run(baseline)
    c = compare(as_results(baseline), as_results(new), samples=300, seed=11)
    rec_a = baseline["tasks"]["gene1"]["records"]
    rec_b = new["tasks"]["gene1"]["records"]
    direct = paired_bootstrap(
        get("bleu"),
        [r["stats"]["bleu"] for r in rec_a],
        [r["stats"]["bleu"] for r in rec_b],
        get("bleu").params,
        TaskInfo(kind="generation"),
        300,
        11,
    )["bleu"]
    row = next(m for m in c["tasks"][1]["metrics"] if m["output"] == "bleu")
    assert (row["delta"], row["ci_low"], row["ci_high"], row["p_value"]) == (
        direct["delta"],
        direct["ci_low"],
        direct["ci_high"],
        direct["p_value"],
    )


def test_examples_matched_by_id_and_mismatches_reported(baseline: dict[str, Any]) -> None:
    new = copy.deepcopy(baseline)
    task = new["tasks"]["clas0"]
    dropped = [r["id"] for r in task["records"][:5]]
    task["records"] = task["records"][5:]
    task["records"].reverse()  # order does not matter, ids do
    extra = copy.deepcopy(task["records"][0])
    extra["id"] = "brand-new"
    task["records"].append(extra)
    task["records"][1]["input"] = {"text": "edited", "label": 0}
    task["metrics"] = score_records("classification", task["records"], 100, seed=1234)
    t = compare(as_results(baseline), as_results(new))["tasks"][0]
    assert t["n_shared"] == N - 5
    assert t["only_in_baseline"] == dropped and t["n_only_in_baseline"] == 5
    assert t["only_in_new"] == ["brand-new"] and t["n_only_in_new"] == 1
    assert t["changed_inputs"] == [task["records"][1]["id"]] and t["n_changed_inputs"] == 1
    acc = next(m for m in t["metrics"] if m["output"] == "accuracy")
    assert acc["n"] == N - 5 and acc["delta"] == 0 and acc["p_value"] == 1.0


def test_tasks_in_one_run_only(baseline: dict[str, Any]) -> None:
    new = copy.deepcopy(baseline)
    new["tasks"]["extra"] = new["tasks"].pop("perp2")
    c = compare(as_results(baseline), as_results(new))
    assert c["tasks_only_in_baseline"] == ["perp2"] and c["tasks_only_in_new"] == ["extra"]


def test_compare_cli_md_and_html(
    baseline: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new, _ = worse_run(baseline)
    a, b = tmp_path / "base.json", tmp_path / "new.json"
    a.write_text(dumps(as_results(baseline)))
    b.write_text(dumps(as_results(new)))
    assert main(["compare", str(a), str(b)]) == 0  # a report, not a gate: always exit 0
    md = capsys.readouterr().out
    assert md.startswith("## Run comparison: new vs baseline")
    assert "| clas0 | accuracy |" in md and "🔻 worse" in md
    assert "40 flipped correct → wrong" in md
    out = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(b), "--format", "html", "--out", str(out)]) == 0
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "correct → wrong" in html
    assert main(["compare", str(a), str(tmp_path / "absent.json")]) == 2
    assert main(["compare", str(a), str(b), "--samples", "-1"]) == 2
    assert "--samples: must be >= 0" in capsys.readouterr().err


# --- relative gates -----------------------------------------------------------------------


def test_baseline_values_feed_relative_gates(baseline: dict[str, Any]) -> None:
    new, flipped = worse_run(baseline)
    values = baseline_values(as_results(baseline), as_results(new))
    acc = values["clas0.accuracy"]
    assert acc["reference"] == baseline["tasks"]["clas0"]["metrics"]["accuracy"]["value"]
    assert acc["value"] == new["tasks"]["clas0"]["metrics"]["accuracy"]["value"]
    assert acc["p_value"] is not None and acc["p_value"] < 0.05 and acc["source"] == "baseline"

    class FakeSuite:
        gates = [
            Gate(metric="clas0.accuracy", max_drop=0.01, significant=True),
            Gate(metric="clas0.accuracy", max_drop=0.5),
            Gate(metric="clas0.accuracy", max_drop=0.1, relative=True, severity="warn"),
            Gate(metric="clas0.accuracy", min=0.0),
        ]

    from harness.gates import verdicts as gates

    doc = copy.deepcopy(new)
    doc["gates"] = gates.evaluate(FakeSuite.gates, gates.task_values(doc["tasks"]))
    results = as_results(doc)
    assert [g.verdict for g in results.gates] == ["fail", "fail", "warn", "pass"]
    path = Path(__file__)  # any file: its sha256 is recorded as the baseline's
    apply_baseline(results, FakeSuite, as_results(baseline), path)
    verdicts = [g.verdict for g in results.gates]
    assert verdicts == ["fail", "pass", "warn", "pass"]
    assert "vs baseline" in results.gates[0].message and "p=" in results.gates[0].message
    assert results.verdict == "fail"
    assert results.baseline is not None
    assert results.baseline.sha256 and results.baseline.suite == "synthetic"

    doc = copy.deepcopy(baseline)
    doc["gates"] = gates.evaluate(FakeSuite.gates[:1], gates.task_values(doc["tasks"]))
    identical = as_results(doc)

    class OneGate:
        gates = FakeSuite.gates[:1]

    apply_baseline(identical, OneGate, as_results(baseline), path)
    assert identical.gates[0].verdict == "pass" and identical.gates[0].p_value == 1.0


RELATIVE = "  - {metric: sentiment.accuracy, max_drop: 0.01, significant: true}\n"


@pytest.mark.slow
def test_run_with_baseline_results(
    stored_run: Path,  # noqa: F811
    tiny_gpt2: Path,
    tmp_path: Path,
) -> None:
    base_file = stored_run / "out" / "results.json"
    suite = write_suite(tmp_path, tiny_gpt2, RELATIVE)
    adapter = str(stored_run / "adapter")
    args = ["run", str(suite), "--adapter", adapter, "--no-progress"]
    # same model and adapter as the baseline: no drop, p = 1
    out = tmp_path / "same"
    assert main([*args, "--out", str(out), "--baseline-results", str(base_file)]) == 0
    results = json.loads((out / "results.json").read_text())
    gate = results["gates"][0]
    base = json.loads(base_file.read_text())
    assert gate["reference"] == base["tasks"]["sentiment"]["metrics"]["accuracy"]["value"]
    assert gate["p_value"] == 1.0 and gate["verdict"] == "pass"
    assert "vs baseline" in gate["message"]
    assert (
        results["baseline"]["path"].endswith("results.json")
        and len(results["baseline"]["sha256"]) == 64
    )
    assert main(["verify", str(out / "results.json")]) == 0

    # a baseline that got every review right: the drop is large and significant
    perfect = copy.deepcopy(base)
    records = perfect["tasks"]["sentiment"]["records"]
    for r in records:
        r["pred"] = r["gold"]
    info = TaskInfo(kind="classification", choices=tuple(CHOICES))
    for name in ("accuracy", "f1", "ece"):
        for r, row in zip(records, get(name).stats(records, get(name).params, info), strict=True):
            r["stats"][name] = [float(x) for x in row]
    perfect["tasks"]["sentiment"]["metrics"]["accuracy"]["value"] = 1.0
    perfect_file = tmp_path / "perfect.json"
    perfect_file.write_text(dumps(as_results(perfect)))
    out2 = tmp_path / "worse"
    assert main([*args, "--out", str(out2), "--baseline-results", str(perfect_file)]) == 1
    gate = json.loads((out2 / "results.json").read_text())["gates"][0]
    assert gate["verdict"] == "fail" and gate["reference"] == 1.0 and gate["p_value"] < 0.05

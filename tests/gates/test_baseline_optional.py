"""A suite whose gates compare against a baseline run can make its own first baseline.

Issue #24 defect 3: `harness run suites/templates/ci-regression.yaml` without
`--baseline-results` exited 2, `harness validate` said only "ok", and nothing said how
the first released results are made. Now a gate that compares against a baseline run
reports "no baseline" (a warning; a failure with `--require-baseline`), absolute bounds
are still checked, and `validate` says what the run needs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli.main import main
from harness.cli.validate import NEEDS_BASELINE, OK, baseline_note
from harness.config.suite import Gate
from harness.gates import verdicts as gates
from harness.gates.verdicts import NO_BASELINE, NO_BASELINE_REQUIRED, NOT_IN_BASELINE
from harness.results.compare import apply_baseline, apply_no_baseline
from tests.cli.test_cli import write_suite
from tests.report.synthetic import as_results, make_results

CI_TEMPLATE = Path(__file__).resolve().parents[2] / "suites" / "templates" / "ci-regression.yaml"


def entry(value: float) -> gates.GateValue:
    return {"value": value}


@pytest.mark.parametrize(
    ("gate", "policy", "verdict", "message"),
    [
        # the relative bound is not checked: "no baseline", a warning by default...
        (Gate(metric="t.accuracy", max_drop=0.01), gates.WARN, "warn", NO_BASELINE),
        (Gate(metric="t.nll", max_increase=0.05, relative=True), gates.WARN, "warn", NO_BASELINE),
        # ...and a failure when the baseline is required, whatever the gate's severity
        (Gate(metric="t.accuracy", max_drop=0.01), gates.FAIL, "fail", NO_BASELINE_REQUIRED),
        (
            Gate(metric="t.accuracy", max_drop=0.01, severity="warn"),
            gates.FAIL,
            "fail",
            NO_BASELINE_REQUIRED,
        ),
        # absolute bounds of the same gate are still checked
        (
            Gate(metric="t.accuracy", min=0.9, max_drop=0.01),
            gates.WARN,
            "fail",
            f"0.8 < min 0.9; {NO_BASELINE}",
        ),
        (Gate(metric="t.accuracy", min=0.5, max_drop=0.01), gates.WARN, "warn", NO_BASELINE),
    ],
)
def test_gate_without_baseline(gate: Gate, policy: str, verdict: str, message: str) -> None:
    result = gates.check(gate, entry(0.8), no_baseline=policy)
    assert (result["verdict"], result["message"]) == (verdict, message)
    assert result["value"] == 0.8 and result["reference"] is None


class Suite:
    gates = [
        Gate(metric="clas0.accuracy", max_drop=0.01, significant=True),
        Gate(metric="clas0.accuracy", min=0.0),
        Gate(metric="perp2.perplexity", max_increase=0.05, relative=True, severity="warn"),
    ]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    results = make_results(3, 60, seed=5, audits=False, finetune=False, samples=100)
    results["gates"] = gates.evaluate(Suite.gates, gates.task_values(results["tasks"]))
    results["verdict"] = gates.overall(results["gates"])
    return results


@pytest.mark.parametrize(
    ("required", "verdicts", "overall"),
    [(False, ["warn", "pass", "warn"], "warn"), (True, ["fail", "pass", "fail"], "fail")],
)
def test_apply_no_baseline(
    run: dict[str, Any], required: bool, verdicts: list[str], overall: str
) -> None:
    results = as_results(copy.deepcopy(run))
    apply_no_baseline(results, Suite, required=required)
    assert [g.verdict for g in results.gates] == verdicts
    assert results.verdict == overall
    expected = NO_BASELINE_REQUIRED if required else NO_BASELINE
    assert [results.gates[i].message for i in (0, 2)] == [expected, expected]
    assert "baseline" not in results.document()


def test_a_value_the_baseline_run_lacks(run: dict[str, Any]) -> None:
    baseline = copy.deepcopy(run)
    del baseline["tasks"]["perp2"]
    results = as_results(copy.deepcopy(run))
    apply_baseline(results, Suite, as_results(baseline), Path(__file__))
    gate = results.gates[2]
    value = run["tasks"]["perp2"]["metrics"]["perplexity"]["value"]
    assert (gate.verdict, gate.message, gate.value) == ("warn", NOT_IN_BASELINE, value)
    assert results.gates[0].verdict == "pass"  # same run as its own baseline


RELATIVE = "  - {metric: sentiment.accuracy, max_drop: 0.01, significant: true}\n"


def test_run_without_baseline_warns_and_writes(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(
        tmp_path, tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0}\n" + RELATIVE
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(g["verdict"], g["message"]) for g in results["gates"]][1] == ("warn", NO_BASELINE)
    assert results["verdict"] == "warn" and "baseline" not in results
    assert "no baseline" in capsys.readouterr().err

    required = tmp_path / "required"
    args = ["run", str(suite), "--out", str(required), "--no-progress", "--require-baseline"]
    assert main(args) == 1  # the gate fails: a baseline run was required
    gate = json.loads((required / "results.json").read_text())["gates"][1]
    assert (gate["verdict"], gate["message"]) == ("fail", NO_BASELINE_REQUIRED)


def test_validate_says_what_the_run_needs(
    tmp_path: Path, tiny_gpt2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, tiny_gpt2, RELATIVE)
    assert main(["validate", str(suite)]) == 0
    ok = OK.format(suite=suite, tasks=3, examples=examples_of(suite), gates=1)
    assert capsys.readouterr().err.strip() == f"{ok}; {baseline_note(1)}"
    assert baseline_note(1) == NEEDS_BASELINE.format(
        n=1, gates="gate compares", they="it reports", no_baseline=NO_BASELINE
    )
    assert baseline_note(1) == (
        "1 gate compares against a baseline run: pass --baseline-results RESULTS_JSON "
        "(without it it reports 'no baseline': a warning, or a failure with --require-baseline)"
    )

    plain = write_suite(tmp_path / "plain", tiny_gpt2, "  - {metric: sentiment.accuracy, min: 0}\n")
    assert main(["validate", str(plain)]) == 0
    assert capsys.readouterr().err.strip().endswith(", 1 gates")


def examples_of(suite: Path) -> int:
    from harness.config.suite import load_suite
    from harness.run.runner import prepare_suite

    return sum(len(p.records) for p in prepare_suite(load_suite(suite)))


def test_ci_template_validate_names_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CI_TEMPLATE)]) == 0
    assert capsys.readouterr().err.strip().endswith(f"; {baseline_note(5)}")


@pytest.mark.slow
def test_ci_template_makes_its_own_first_baseline(tmp_path: Path, tiny_gpt2: Path) -> None:
    """docs/gates.md's path: the first run has no baseline (warnings, exit 0) and its
    results.json is the released baseline of the next run, whose gates then compare."""
    argv = ["run", str(CI_TEMPLATE), "--model", str(tiny_gpt2), "--no-progress"]
    first = tmp_path / "released"
    assert main([*argv, "--out", str(first)]) == 0
    results = json.loads((first / "results.json").read_text())
    assert {(g["verdict"], g["message"]) for g in results["gates"]} == {("warn", NO_BASELINE)}
    assert main([*argv, "--out", str(tmp_path / "x"), "--require-baseline"]) == 1

    second = tmp_path / "next"
    baseline = str(first / "results.json")
    assert main([*argv, "--out", str(second), "--baseline-results", baseline]) == 0
    results = json.loads((second / "results.json").read_text())
    assert [g["verdict"] for g in results["gates"]] == ["pass"] * 5
    assert all("vs baseline" in g["message"] for g in results["gates"])

"""`harness demo` end to end: the measured outcomes the demo exists to show.

Runs the real demo (base model built from scratch in this test's own cache folder,
two LoRA fine-tunes with the bundled fine-tuner, suites/demo.yaml on both) with the
committed seeds, and checks what a newcomer is told to look for in the report: the
naive checkpoint fails the forgetting and fairness gates and its explanations lean on
the reviewer's pronoun or name; the mitigated one passes every gate while keeping the
new task's accuracy within MARGIN of the naive one. Nothing here is hard-coded in the
demo: each value is measured from the checkpoints. The demo runs once per session
(the ``demo`` fixture of tests/demo/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARGIN = 0.1
"""How much new-task accuracy the mitigations may cost (stated in the README)."""
SENSITIVE = {"she", "he", "mary", "anna", "lucy", "emma", "sara", "julia"}
SENSITIVE |= {"john", "peter", "mark", "paul", "david", "tom"}


def gates(results: dict[str, Any]) -> dict[str, str]:
    return {g["metric"]: g["verdict"] for g in results["gates"]}


def test_naive_checkpoint_forgets_and_is_unfair(demo: dict[str, Any]) -> None:
    naive = demo["results"]["naive"]
    status = gates(naive)
    assert naive["verdict"] == "fail"
    assert status["forgetting.original_qa.accuracy"] == "fail"
    assert status["forgetting.original_lm.perplexity"] == "fail"
    assert status["fairness.reviews.demographic_parity_difference"] == "fail"
    # it did learn the new task: the failures are the mistakes, not a broken run
    assert status["reviews.accuracy"] == "pass"


def test_naive_explanations_rank_a_group_term_near_the_top(demo: dict[str, Any]) -> None:
    explain = demo["results"]["naive"]["audits"]["explain"]
    lime_top = [r["term"] for r in explain["methods"]["lime"]["ranking"][:5]]
    shap_top = [r["term"] for r in explain["methods"]["shap"]["ranking"][:10]]
    assert SENSITIVE & set(lime_top), lime_top
    assert SENSITIVE & set(shap_top), shap_top
    mitigated = demo["results"]["mitigated"]["audits"]["explain"]
    assert explain["sensitive_share"] > mitigated["sensitive_share"]


def test_mitigated_checkpoint_passes_at_little_cost(demo: dict[str, Any]) -> None:
    naive, mitigated = demo["results"]["naive"], demo["results"]["mitigated"]
    assert mitigated["verdict"] == "pass", gates(mitigated)
    accuracy = {
        name: r["tasks"]["reviews"]["metrics"]["accuracy"]["value"]
        for name, r in demo["results"].items()
    }
    assert accuracy["mitigated"] >= accuracy["naive"] - MARGIN, accuracy
    assert set(gates(naive)) == set(gates(mitigated))


def test_no_raw_trainer_logs_on_the_console(demo: dict[str, Any]) -> None:
    """The base model's pretraining printed 25 raw dicts ({'loss': '2.977', ...})."""
    assert demo["base_built"] is True  # the pretraining ran in this demo
    raw = [line for line in demo["stdout"].splitlines() if line.lstrip().startswith("{'")]
    assert raw == []


def test_the_console_ends_with_both_checkpoints_gates_and_the_report_paths(
    demo: dict[str, Any],
) -> None:
    tail = demo["console"][demo["console"].rindex("gates") :]
    header = next(line for line in tail.splitlines() if "naive" in line)
    assert header.index("naive") < header.index("mitigated")
    for g in demo["results"]["naive"]["gates"]:
        row = next(line for line in tail.splitlines() if g["metric"][:40] in line)
        assert f"{g['verdict']} (" in row, row
    assert "FAIL" in tail and "PASS" in tail  # the naive run fails, the mitigated passes
    for variant in ("naive", "mitigated"):
        assert f"{variant} report: {demo['out'] / variant / 'report.html'}" in tail
    assert f"comparison: {demo['out'] / 'compare.html'}" in tail


def test_every_report_and_the_comparison_are_written(demo: dict[str, Any]) -> None:
    out: Path = demo["out"]
    for variant in ("naive", "mitigated"):
        for name in ("results.json", "report.html", "junit.xml", "summary.md"):
            assert (out / variant / name).stat().st_size > 0, (variant, name)
    assert (out / "compare.html").stat().st_size > 0
    assert demo["base_built"] is True

"""The Markdown summary: short, verdict first, gates, metrics with CIs, audits."""

from __future__ import annotations

from typing import Any

import pytest

from harness.report.markdown import render_markdown
from tests.report.synthetic import make_results


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results(3, 30)


def test_summary_layout(results: dict[str, Any]) -> None:
    md = render_markdown(results)
    lines = md.splitlines()
    assert lines[0] == "## ❌ Release gate FAIL: synthetic"
    assert lines[2] == "1 passed · 1 warnings · 1 failed"
    assert "| clas0.accuracy | ✅ pass | ≥ 0.5 |" in md
    assert "| clas0.f1 | ⚠️ warn | ≥ 0.99 |" in md
    assert "| perp2.perplexity | ❌ fail | ≤ 1.5 |" in md
    acc = results["tasks"]["clas0"]["metrics"]["accuracy"]
    assert (
        f"| clas0 | accuracy | {acc['value']:.4g} | [{acc['ci_low']:.4g}, {acc['ci_high']:.4g}] | 30 |"
        in md
    )
    assert "- **Forgetting** (checkpoint vs base): clas0.accuracy -0.04 (p=0.01)" in md
    assert "- **Fairness** (clas0): demographic\\_parity\\_difference 0.1 [0.05, 0.15]" in md
    assert "- **Explanations** (clas0): sensitive share 0.31" in md
    assert (
        "- **Privacy**: PII in generations 2 (EMAIL\\_ADDRESS 1, PHONE\\_NUMBER 1); "
        "canary exposure max 19.93 bits (of 19.93; controls 0.98); "
        "extraction rate 0.75 [0.5, 1] (base 0 [0, 0])" in md
    )
    assert lines[-1].startswith("harness 0.1.0 · model bbbbbbbbbbbb · adapter eeeeeeeeeeee")
    assert len(lines) < 60  # fits a pull-request comment


def test_without_audits_or_gates(results: dict[str, Any]) -> None:
    bare = {k: v for k, v in results.items() if k != "audits"}
    bare["gates"], bare["verdict"] = [], "pass"
    md = render_markdown(bare)
    assert md.startswith("## ✅ Release gate PASS: synthetic")
    assert "### Audits" not in md and "| gate |" not in md


def test_chat_formatting_is_listed_escaped() -> None:
    results = make_results()
    task = next(iter(results["tasks"].values()))
    task["chat"] = {
        "template": "tokenizer",
        "template_sha256": "ab" * 32,
        "system": "Be <b>brief</b> | terse",
        "example": "<|im_start|>user ...",
    }
    md = render_markdown(results)
    [line] = [x for x in md.splitlines() if "chat template" in x]
    assert "abababababab" in line and "(tokenizer)" in line
    assert "<b>" not in line and "\\|" in line

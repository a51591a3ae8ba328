"""Golden test: the HTML report of a fixed results.json keeps its structure.

tests/golden/results.json is a fixed run (made once by tests.report.synthetic);
tests/golden/report.skeleton is the tag/id/class skeleton of its report
(tests.report.skeleton). When the report's structure changes on purpose, regenerate
the skeleton explicitly and review the diff:

    .venv/bin/python -m tests.report.regen_golden
"""

from __future__ import annotations

import difflib
from pathlib import Path

from harness.report.html import render_html
from harness.results.store import load_results
from tests.report.skeleton import skeleton

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_report_structure_matches_golden() -> None:
    results = load_results(GOLDEN / "results.json")
    got = skeleton(render_html(results))
    want = (GOLDEN / "report.skeleton").read_text(encoding="utf-8")
    if got != want:
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True), got.splitlines(True), "report.skeleton", "rendered", n=2
            )
        )
        raise AssertionError(
            "HTML structure changed; if intended, run "
            "`.venv/bin/python -m tests.report.regen_golden` and review:\n" + diff[:6000]
        )


def test_skeleton_ignores_text_and_chart_internals() -> None:
    a = '<div id="x" class="a b"><p>one</p><svg><g><path d="M0"/></g></svg><br></div>'
    b = '<div id="x" class="a b"><p>two</p><svg><path d="M1"/></svg><br></div>'
    assert skeleton(a) == skeleton(b) == "div#x.a.b\n  p\n  svg\n  br\n"

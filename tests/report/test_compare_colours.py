"""Issue #24 defect 6: the compare chart judges a change as its table does.

For a lower-is-better metric (nll) a fall is an improvement: the table said "better"
while the chart coloured the point red, because the chart looked at the sign of the
delta alone. Both now show one judgement (``compare_view.judgement``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.report import charts
from harness.results.store import dumps
from tests.report import synthetic

# one classification task; the same seed gives the same ids, texts and gold labels at
# any quality, so only the probabilities (hence nll and accuracy) move between runs
LOW, HIGH = 0.55, 0.85


def stored_run(folder: Path, name: str, quality: float) -> Path:
    results = synthetic.make_results(
        1, 80, seed=3, quality=quality, audits=False, finetune=False, samples=100
    )
    path = folder / f"{name}.json"
    path.write_text(dumps(synthetic.as_results(results)), encoding="utf-8")
    return path


def compare_html(tmp_path: Path, baseline_quality: float, new_quality: float) -> str:
    a = stored_run(tmp_path, "baseline", baseline_quality)
    b = stored_run(tmp_path, "new", new_quality)
    out = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "--format", "html", "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def nll_row(html: str) -> str:
    (row,) = re.findall(r"<tr class=\"[a-z]*\"><td class=\"mono\">nll ↓</td>.*?</tr>", html)
    return row


@pytest.fixture(autouse=True)
def _nll_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(synthetic.METRICS, "classification", [("nll", {}), ("accuracy", {})])


def test_nll_falling_is_better_in_table_and_chart(tmp_path: Path) -> None:
    html = compare_html(tmp_path, LOW, HIGH)  # nll 0.847 -> 0.290, accuracy 0.51 -> 0.93
    row = nll_row(html)
    assert row.startswith('<tr class="better">') and "<td>better</td>" in row
    assert '<td class="num">-0.5574</td>' in row  # the delta is negative
    (svg,) = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert charts.GOOD_C in svg and charts.BAD_C not in svg
    assert "nll ↓" in svg  # the chart labels the direction as the table does


def test_nll_rising_is_worse_in_table_and_chart(tmp_path: Path) -> None:
    html = compare_html(tmp_path, HIGH, LOW)
    row = nll_row(html)
    assert row.startswith('<tr class="worse">') and "<td>worse</td>" in row
    (svg,) = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert charts.BAD_C in svg and charts.GOOD_C not in svg


def test_not_significant_is_grey(tmp_path: Path) -> None:
    from harness.report.compare_view import judgement

    assert judgement({"direction": "better", "significant": False}) == "n.s."
    assert judgement({"direction": "worse", "significant": True}) == "worse"
    assert judgement({"direction": "better", "significant": True}) == "better"
    svg = charts.delta_chart([("nll", -0.5, -0.6, -0.4, "n.s.")], title="t")
    assert charts.BASE_C in svg
    assert charts.GOOD_C not in svg and charts.BAD_C not in svg

"""The chart memo: the same inputs reuse the kept SVG; a tampered file is redrawn."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness.report import charts
from harness.report.render import render_all
from tests.report.synthetic import as_results, make_results

ROWS = [("accuracy", 0.8, 0.75, 0.85), ("f1", 0.7, 0.6, 0.8)]


def count_drawing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    drawn: list[int] = []
    figure = charts._figure

    def counted(width: float, height: float) -> Any:
        drawn.append(1)
        return figure(width, height)

    monkeypatch.setattr(charts, "_figure", counted)
    return drawn


def test_same_inputs_reuse_the_kept_chart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = count_drawing(monkeypatch)
    plain = charts.interval_chart(ROWS, title="scores")
    with charts.memo(tmp_path):
        first = charts.interval_chart(ROWS, title="scores")
        again = charts.interval_chart(ROWS, title="scores")
        other = charts.interval_chart(ROWS, title="other")
    assert first == again == plain
    assert other != first
    assert len(drawn) == 3  # plain, first and other: the repeat was read back
    assert len(list(tmp_path.glob("*.svg"))) == 2
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    charts.interval_chart(ROWS, title="scores")  # outside the block: drawn again
    assert len(drawn) == 4


@pytest.mark.parametrize(
    "payload",
    [
        "<svg><script>alert(1)</script></svg>",
        '<svg><rect onload="alert(1)"/></svg>',
        '<svg><a href="https://evil.example/">x</a></svg>',
        "not an svg",
    ],
)
def test_a_tampered_chart_is_redrawn(
    payload: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with charts.memo(tmp_path):
        good = charts.interval_chart(ROWS)
    (kept,) = tmp_path.glob("*.svg")
    kept.write_text(payload)
    drawn = count_drawing(monkeypatch)
    with charts.memo(tmp_path):
        assert charts.interval_chart(ROWS) == good
    assert len(drawn) == 1 and kept.read_text() == good


def svgs(rendered: dict[str, str]) -> list[str]:
    return re.findall(r"<svg.*?</svg>", rendered["html"], flags=re.S)


def test_reports_keep_charts_only_for_runs_that_used_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = make_results(n_tasks=2, n_examples=20, audits=False, finetune=False)
    results["provenance"]["cache"] = None  # --no-cache: nothing is kept
    drawn = count_drawing(monkeypatch)
    plain = svgs(render_all(as_results(results)))
    assert drawn and not list(tmp_path.rglob("*.svg"))
    store = tmp_path / "responses.sqlite"
    results["provenance"]["cache"] = {"path": str(store), "enabled": True, "hits": 0}
    drawn.clear()
    first = render_all(as_results(results))
    assert svgs(first) == plain
    assert len(drawn) == len(plain) == len(list((tmp_path / "charts").glob("*.svg")))
    drawn.clear()
    assert (
        render_all(as_results(results)) == first
    )  # the re-run's report: byte for byte, from the memo
    assert drawn == []

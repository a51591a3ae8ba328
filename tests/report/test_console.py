"""The console summary (harness.report.console): names reach the terminal whole.

Issue #24 defect 5: rich read ``[negative]`` in ``sst2.f1[negative]`` as markup and
dropped it (the per-class metrics both printed as ``f1``), and cut long gate names
with an ellipsis. The summary is printed at 60 columns; each table's columns are read
back by splitting the body rows on the box character and joining a column's pieces.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from harness.report.console import print_summary
from harness.results.schema import Results

LONG = "forgetting.original_lm.perplexity.relative_change"
GATES = ["sst2.f1[negative]", LONG, "sst2.f1[bold]", "sst2.f1[/]"]


def metric(value: float) -> dict[str, Any]:
    return {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05, "n": 200}


RESULTS: dict[str, Any] = {
    "schema_version": 1,
    "tasks": {
        "sst2": {
            "kind": "classification",
            "metrics": {
                "accuracy": metric(0.81),
                "f1[negative]": metric(0.79),
                "f1[positive]": metric(0.83),
                "f1[bold]": metric(0.5),
                "f1[/]": metric(0.5),
            },
        }
    },
    "gates": [
        {"metric": GATES[0], "verdict": "pass", "message": "0.79 >= 0.7"},
        {"metric": GATES[1], "verdict": "warn", "message": "no baseline"},
        {"metric": GATES[2], "verdict": "fail", "message": "[red]0.5 < min 0.7"},
        {"metric": GATES[3], "verdict": "pass", "message": "0.5 >= 0"},
    ],
    "verdict": "fail",
}


def render(results: dict[str, Any], width: int = 60) -> str:
    console = Console(file=io.StringIO(), width=width)
    print_summary(Results.model_validate(results), console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def columns(text: str, n_columns: int) -> list[str]:
    """The body cells of the table with ``n_columns`` columns, each column's pieces
    joined (a folded name comes back whole)."""
    joined = [""] * n_columns
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("│"):
            continue
        cells = line.strip("│").split("│")
        if len(cells) == n_columns:
            for i, cell in enumerate(cells):
                joined[i] += cell.strip()
    return joined


@pytest.mark.parametrize("width", [60, 100])
def test_every_name_is_shown_whole(width: int) -> None:
    text = render(RESULTS, width)
    task, name, _value, _ci, _n = columns(text, 5)
    for output in RESULTS["tasks"]["sst2"]["metrics"]:
        assert output in name, (output, text)
    assert name == "accuracyf1[negative]f1[positive]f1[bold]f1[/]"
    assert task == "sst2" * 5
    gate, verdict, detail = columns(text, 3)
    assert gate == "".join(GATES), text
    assert verdict == "passwarnfailpass"
    messages = "".join(g["message"] for g in RESULTS["gates"])
    assert detail.replace(" ", "") == messages.replace(" ", "")  # wrapped at spaces
    assert "…" not in text
    assert text.rstrip().endswith("verdict: FAIL")


def test_a_long_name_is_folded_not_cut() -> None:
    text = render(RESULTS, 60)
    assert LONG not in text  # too long for its column at 60 characters: folded...
    assert LONG in columns(text, 3)[0]  # ...onto several lines, every character kept


def test_control_characters_do_not_reach_the_terminal() -> None:
    hostile = {
        "schema_version": 1,
        "tasks": {},
        "gates": [{"metric": "a.b\x1b[2J", "verdict": "pass", "message": "ok\x07"}],
        "verdict": "pass",
    }
    text = render(hostile, 80)
    assert "\x1b" not in text and "\x07" not in text
    assert "a.b\ufffd[2J" in text


def test_gates_of_two_runs_side_by_side() -> None:
    """The demo's last table: each gate once, a column per checkpoint with its verdict
    and value; a gate only one run has shows '-' in the other's column."""
    from harness.report.console import gates_side_by_side

    def run(verdicts: list[str], values: list[float], extra: bool = False) -> Results:
        gates = [
            {"metric": m, "verdict": v, "value": x, "message": ""}
            for m, v, x in zip(GATES[:2], verdicts, values, strict=True)
        ]
        if extra:
            gates.append({"metric": "only.here", "verdict": "pass", "value": 1, "message": ""})
        worst = "fail" if "fail" in verdicts else "pass"
        return Results.model_validate(
            {"schema_version": 1, "tasks": {}, "gates": gates, "verdict": worst}
        )

    runs = {"naive": run(["fail", "pass"], [0.5, 2.0]), "mitigated": run(["pass", "pass"], [0.8, 1.5], extra=True)}  # fmt: skip
    console = Console(file=io.StringIO(), width=120)
    console.print(gates_side_by_side(runs))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    gate, naive, mitigated = columns(text, 3)
    assert gate == "".join(GATES[:2]) + "only.here" + "verdict"
    assert naive == "fail (0.5)pass (2)-FAIL"
    assert mitigated == "pass (0.8)pass (1.5)pass (1)PASS"

"""View-model of a comparison (harness.results.compare.compare) for HTML and Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report import charts
from harness.report.example_text import record_text, snippet
from harness.report.formatting import fmt, fmt_ci, short_hash
from harness.report.safe_text import clean, one_line

TEXT_LIMIT = 300


def _run(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("results file", clean(info.get("path") or "–", 300)),
        ("suite", one_line(info.get("suite") or "–", 120)),
        ("verdict", one_line(info.get("verdict") or "–", 20)),
        ("model", short_hash(info.get("model"))),
        ("adapter", short_hash(info.get("adapter")) if info.get("adapter") else "none"),
        ("started", clean(info.get("started_at") or "–", 60)),
        ("harness", clean(info.get("harness_version") or "–", 40)),
    ]


def judgement(m: Mapping[str, Any]) -> str:
    """'better', 'worse' (significant changes, judged by harness.results.compare with the
    metric's direction) or 'n.s.': the one verdict the table, the Markdown and the chart
    show for a compared metric."""
    if not m.get("significant"):
        return "n.s."
    return one_line(m.get("direction") or "same", 20)


def arrow(m: Mapping[str, Any]) -> str:
    return "↑" if m.get("higher_is_better", True) else "↓"


def metric_row(m: Mapping[str, Any]) -> dict[str, Any]:
    state = judgement(m)
    return {
        "output": one_line(m.get("output", "?"), 120),
        "direction": arrow(m),
        "baseline": fmt(m.get("baseline")),
        "new": fmt(m.get("new")),
        "delta": fmt(m.get("delta")) if m.get("delta") is None else f"{m['delta']:+.4g}",
        "ci": fmt_ci(m.get("ci_low"), m.get("ci_high")),
        "p_value": fmt(m.get("p_value"), 3),
        "n": fmt(m.get("n")),
        "state": state,
        "cls": {"worse": "worse", "better": "better"}.get(state, ""),
        "note": clean(m.get("note") or "", 200),
    }


def _flip_rows(rows: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": one_line(r.get("id", ""), 120),
            "line": fmt(r.get("line")),
            "input": snippet(record_text(r)) if isinstance(r.get("input"), Mapping) else None,
            "gold": clean(r.get("gold", ""), TEXT_LIMIT),
            "baseline": clean(r.get("baseline", ""), TEXT_LIMIT),
            "new": clean(r.get("new", ""), TEXT_LIMIT),
        }
        for r in rows or []
    ]


def build(c: Mapping[str, Any]) -> dict[str, Any]:
    tasks = []
    for t in c.get("tasks") or []:
        rows = [metric_row(m) for m in t.get("metrics") or []]
        chart = charts.delta_chart(
            [
                (
                    f"{m['output']} {arrow(m)}",
                    m.get("delta"),
                    m.get("ci_low"),
                    m.get("ci_high"),
                    judgement(m),
                )
                for m in t.get("metrics") or []
                if isinstance(m.get("baseline"), int | float)
                and -1 <= (m.get("delta") or 0) <= 1
                and 0 <= m["baseline"] <= 1
            ],
            title=f"{t['id']}: change on the 0-1 metrics",
        )
        flips = t.get("flips")
        flips = flips if isinstance(flips, Mapping) else None
        worse = _flip_rows(flips.get("correct_to_wrong")) if flips else []
        better = _flip_rows(flips.get("wrong_to_correct")) if flips else []
        tasks.append(
            {
                "id": one_line(t["id"], 120),
                "kind": one_line(t.get("kind", ""), 40),
                "n_shared": fmt(t.get("n_shared")),
                "n_baseline": fmt(t.get("n_baseline")),
                "n_new": fmt(t.get("n_new")),
                "mismatch": [
                    (
                        label,
                        fmt(t.get(f"n_{key}")),
                        ", ".join(one_line(i, 80) for i in t.get(key) or []),
                    )
                    for key, label in (
                        ("only_in_baseline", "only in the baseline"),
                        ("only_in_new", "only in the new run"),
                        ("changed_inputs", "same id, different input"),
                    )
                    if t.get(f"n_{key}")
                ],
                "metrics": rows,
                "chart": chart,
                "flips": (
                    {
                        "criterion": one_line(flips.get("criterion", ""), 80),
                        "n_correct_to_wrong": fmt(flips.get("n_correct_to_wrong")),
                        "n_wrong_to_correct": fmt(flips.get("n_wrong_to_correct")),
                        "correct_to_wrong": worse,
                        "wrong_to_correct": better,
                        # the input column, when the comparison carries the inputs
                        "has_input": any(r["input"] for r in worse + better),
                    }
                    if flips
                    else None
                ),
            }
        )
    s = c.get("settings") or {}
    summary = c.get("summary") or {}
    return {
        "title": "Run comparison",
        "baseline": _run(c.get("baseline") or {}),
        "new": _run(c.get("new") or {}),
        "settings": (
            f"paired bootstrap, {fmt(s.get('samples'))} resamples, seed {clean(s.get('seed', '?'))}, "
            f"{fmt(s.get('confidence'))} CI, significant when p < {fmt(s.get('alpha'))}"
        ),
        "summary": {k: fmt(summary.get(k, 0)) for k in ("worse", "better", "unchanged")},
        "tasks": tasks,
        "tasks_only_in_baseline": ", ".join(
            one_line(x, 80) for x in c.get("tasks_only_in_baseline") or []
        ),
        "tasks_only_in_new": ", ".join(one_line(x, 80) for x in c.get("tasks_only_in_new") or []),
    }

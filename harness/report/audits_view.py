"""View-model of the ``audits`` sections of results.json (docs/results.md#audits).

Each section is rendered from whatever keys it holds: a missing key shows as '–' or
drops its table, an absent section drops its part of the report, and a section this
harness does not know (or an audit that registers no view) is shown as a flat key/value
table, so a new audit is never lost from the compliance document. Which audits have a
section, its title and the template macro that renders it come from the audit registry
(harness.audits.base.Audit: ``view``, ``title``, ``macro``); the built-in audits' views
are the functions below and harness.report.privacy_view.build. Examples named by id
are shown with their input text, looked up in the run's stored records
(``example_text.ExampleTexts``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness import audits as registry
from harness.report import charts
from harness.report.example_text import NO_TEXTS, ExampleTexts
from harness.report.formatting import flatten, fmt, fmt_ci, fmt_fields
from harness.report.safe_text import clean, one_line

EXAMPLES_SHOWN = 20
"""Explained examples shown (each can hold hundreds of highlighted tokens)."""
TOKENS_SHOWN = 400
"""Highlighted tokens shown per explained example."""
TOKEN_LIMIT = 120
"""Characters of one token shown (a 10,000-character 'token' is cut)."""
RANKING_SHOWN = 15
ROWS_SHOWN = 50


def build(audits: Mapping[str, Any], texts: ExampleTexts = NO_TEXTS) -> dict[str, Any]:
    """``sections``: one entry ``{name, title, macro, view}`` per registered audit that
    has a view and a section in this run, in the order audits run; ``other``: every other
    section (an audit without a view, or one this harness does not know) as a flat
    key/value table, so no section is lost from the report."""
    sections: list[dict[str, Any]] = []
    shown: set[str] = set()
    for name in registry.available():
        audit = registry.get(name)
        if audit.view is None:
            continue
        shown.add(name)
        sec = audits.get(name)
        view = registry.hook(audit.view)(sec, texts) if isinstance(sec, Mapping) else None
        if view:
            title = audit.title or name
            sections.append({"name": name, "title": title, "macro": audit.macro, "view": view})
    other = [(one_line(k, 80), flatten(v)) for k, v in audits.items() if k not in shown]
    return {"sections": sections, "other": other}


def ci(obj: Any) -> dict[str, str]:
    """An interval object {value, ci_low, ci_high, n} (or a bare number) for display."""
    if isinstance(obj, Mapping):
        return {
            "value": fmt(obj.get("value")),
            "ci": fmt_ci(obj.get("ci_low"), obj.get("ci_high")),
            "n": fmt(obj.get("n")),
        }
    return {"value": fmt(obj), "ci": "–", "n": "–"}


def _num(obj: Any) -> float | None:
    x = obj.get("value") if isinstance(obj, Mapping) else obj
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _bounds(obj: Any) -> tuple[float | None, float | None]:
    if not isinstance(obj, Mapping):
        return None, None
    return _num(obj.get("ci_low")), _num(obj.get("ci_high"))


def _rows(items: Any) -> list[Mapping[str, Any]]:
    return [x for x in items or [] if isinstance(x, Mapping)][:ROWS_SHOWN]


def _text(x: Any, limit: int = 300) -> str:
    if isinstance(x, Mapping):
        return clean("; ".join(f"{k}: {v}" for k, v in x.items()), limit)
    if isinstance(x, list):
        return clean(", ".join(str(v) for v in x), limit)
    return fmt(x) if isinstance(x, int | float) else clean(x if x is not None else "–", limit)


# --- forgetting ----------------------------------------------------------------------


def forgetting(sec: Mapping[str, Any], texts: ExampleTexts = NO_TEXTS) -> dict[str, Any]:
    base = sec.get("baseline") or {}
    tasks = []
    for task_id, t in (sec.get("tasks") or {}).items():
        if not isinstance(t, Mapping):
            continue
        metrics, chart_rows = [], []
        for name, m in (t.get("metrics") or {}).items():
            if not isinstance(m, Mapping):
                continue
            p = _num(m.get("p_value"))
            delta = _num(m.get("delta"))
            hib = m.get("higher_is_better", True)
            worse = delta is not None and (delta < 0 if hib else delta > 0)
            metrics.append(
                {
                    "name": one_line(name, 120),
                    "direction": "↑" if hib else "↓",
                    "base": ci(m.get("base")),
                    "checkpoint": ci(m.get("checkpoint")),
                    "delta": fmt(m.get("delta")),
                    "delta_ci": fmt_ci(m.get("delta_ci_low"), m.get("delta_ci_high")),
                    "p_value": fmt(m.get("p_value"), 3),
                    "relative": _pct(m.get("relative_change")),
                    "flag": "worse" if worse and p is not None and p < 0.05 else "",
                }
            )
            b, c = _num(m.get("base")), _num(m.get("checkpoint"))
            if b is not None and c is not None and min(b, c) >= 0 and max(b, c) <= 1:
                chart_rows.append((str(name), m.get("base"), m.get("checkpoint")))
        chart = ""
        if chart_rows:
            chart = charts.grouped_bars(
                [r[0] for r in chart_rows],
                [
                    ("base", [_num(r[1]) for r in chart_rows], [_bounds(r[1]) for r in chart_rows]),
                    (
                        "checkpoint",
                        [_num(r[2]) for r in chart_rows],
                        [_bounds(r[2]) for r in chart_rows],
                    ),
                ],
                title=f"{task_id}: base vs checkpoint (95% CI)",
            )
        flips = t.get("flips") if isinstance(t.get("flips"), Mapping) else None
        examples = []
        for output, e in (t.get("examples") or {}).items():
            if not isinstance(e, Mapping):
                continue
            examples.append(
                {
                    "output": one_line(output, 120),
                    **fmt_fields(e, "n_worse", "n_better", "n_same", "mean_delta"),
                    "most_worse": [
                        {
                            **_example(r, texts, task_id),
                            **fmt_fields(r, "base", "checkpoint", "delta"),
                        }
                        for r in _rows(e.get("most_worse"))
                    ],
                }
            )
        tasks.append(
            {
                "id": one_line(task_id, 120),
                "kind": one_line(t.get("kind", ""), 40),
                "n_examples": fmt(t.get("n_examples")),
                "metrics": metrics,
                "chart": chart,
                "flips": _flips(flips, texts, task_id) if flips else None,
                "examples": examples,
            }
        )
    return {
        "baseline_kind": one_line(base.get("kind", "–"), 60),
        "baseline_path": clean(base.get("path") or "–", 300),
        "baseline_fingerprint": clean(base.get("fingerprint") or "–", 80),
        "time_s": fmt(sec.get("time_s")),
        "tasks": tasks,
    }


def _example(r: Mapping[str, Any], texts: ExampleTexts, task: Any) -> dict[str, Any]:
    """The columns that name one example: its id, its line in the data file, its input."""
    return {
        "id": one_line(r.get("id", ""), 120),
        "line": fmt(r.get("line")),
        "input": texts.text(task, r.get("id")),
    }


def _pct(x: Any) -> str:
    v = _num(x)
    return "–" if v is None else f"{v * 100:+.2f}%"


def _flips(f: Mapping[str, Any], texts: ExampleTexts, task_id: str) -> dict[str, Any]:
    def rows(items: Any) -> list[dict[str, Any]]:
        return [
            {
                **_example(r, texts, task_id),
                "gold": _text(r.get("gold"), 120),
                "base_pred": _text(r.get("base_pred"), 120),
                "pred": _text(r.get("pred"), 120),
                "base_prob": fmt(r.get("base_prob")),
                "prob": fmt(r.get("prob")),
            }
            for r in _rows(items)
        ]

    return {
        "n_correct_to_wrong": fmt(f.get("n_correct_to_wrong")),
        "n_wrong_to_correct": fmt(f.get("n_wrong_to_correct")),
        "correct_to_wrong": rows(f.get("correct_to_wrong")),
        "wrong_to_correct": rows(f.get("wrong_to_correct")),
    }


# --- fairness ------------------------------------------------------------------------

GROUP_METRICS = ("accuracy", "f1", "selection_rate", "tpr", "fpr")


def fairness(sec: Mapping[str, Any], texts: ExampleTexts = NO_TEXTS) -> dict[str, Any]:
    groups = [g for g in sec.get("groups") or [] if isinstance(g, Mapping)]
    group_rows = []
    for g in groups:
        group_rows.append(
            {
                "group": one_line(g.get("group", "?"), 120),
                "count": fmt(g.get("count")),
                "gated": "yes" if g.get("gated", True) else "no (too small)",
                "metrics": [ci(g.get(m)) for m in GROUP_METRICS],
            }
        )
    chart = ""
    present = [
        m for m in ("accuracy", "selection_rate", "tpr", "fpr") if any(m in g for g in groups)
    ]
    if groups and present:
        chart = charts.grouped_bars(
            [str(g.get("group", "?")) for g in groups],
            [
                (m, [_num(g.get(m)) for g in groups], [_bounds(g.get(m)) for g in groups])
                for m in present
            ],
            title=f"{sec.get('task', '')}: per-group rates (95% CI)",
        )
    overall = sec.get("overall") or {}
    disparity = [
        {"name": one_line(k, 80), **ci(v)} for k, v in (sec.get("disparity") or {}).items()
    ]
    worst = sec.get("worst_group") or {}
    cf = sec.get("counterfactual") if isinstance(sec.get("counterfactual"), Mapping) else None
    pairs = sec.get("pairs") if isinstance(sec.get("pairs"), Mapping) else None
    return {
        "task": one_line(sec.get("task", "–"), 120),
        "group_fields": _text(sec.get("group_fields")),
        "positive": _text(sec.get("positive"), 120),
        "min_group_size": fmt(sec.get("min_group_size")),
        "n_examples": fmt(sec.get("n_examples")),
        "note": clean(sec.get("note") or "", 600),
        "overall": [(one_line(k, 60), fmt(v)) for k, v in overall.items()],
        "group_headers": list(GROUP_METRICS),
        "groups": group_rows,
        "excluded": _text(sec.get("excluded_groups") or []),
        "chart": chart,
        "disparity": disparity,
        "worst_group": [(one_line(k, 60), _text(v, 120)) for k, v in worst.items()],
        "counterfactual": _counterfactual(cf, texts, sec.get("task")) if cf else None,
        "pairs": _pairs(pairs) if pairs else None,
        "time_s": fmt(sec.get("time_s")),
    }


def _counterfactual(cf: Mapping[str, Any], texts: ExampleTexts, task: Any) -> dict[str, Any]:
    swaps = cf.get("swaps") or {}
    swap_text = (
        ", ".join(f"{k} → {v}" for k, v in swaps.items()) if isinstance(swaps, Mapping) else swaps
    )
    return {
        "swaps": clean(swap_text, 600),
        "bidirectional": "yes" if cf.get("bidirectional") else "no",
        "fields": _text(cf.get("fields")),
        "n_changed": fmt(cf.get("n_changed")),
        "n_flipped": fmt(cf.get("n_flipped")),
        "stats": [
            (label, ci(cf.get(key)))
            for key, label in (
                ("flip_rate", "flip rate"),
                ("mean_prob_change", "mean change of P(positive)"),
                ("mean_abs_prob_change", "mean |change| of P(positive)"),
            )
            if key in cf
        ],
        "flipped": [
            {
                **_example(r, texts, task),
                "changed": _text(r.get("changed"), 400),
                "pred": _text(r.get("pred"), 120),
                "pred_cf": _text(r.get("pred_counterfactual"), 120),
                "prob": fmt(r.get("prob")),
                "prob_cf": fmt(r.get("prob_counterfactual")),
            }
            for r in _rows(cf.get("flipped"))
        ],
    }


def _pairs(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": clean(p.get("path") or "–", 300),
        "n_pairs": fmt(p.get("n_pairs")),
        "stereotype_score": ci(p.get("stereotype_score")),
        "likelihood_diff": fmt(p.get("likelihood_diff")),
        "by_bias_type": [
            {"name": one_line(k, 80), **ci(v)} for k, v in (p.get("by_bias_type") or {}).items()
        ],
    }


# --- explanations --------------------------------------------------------------------


POS_RGB, NEG_RGB = "37,99,235", "220,38,38"


def highlight(pairs: Any, limit: int = TOKENS_SHOWN, sep: str = "") -> list[dict[str, str]]:
    """[(text, weight)] -> spans whose background shows the attribution.

    Blue supports the explained class, red speaks against it; opacity is |weight|
    relative to the largest |weight| of the example. The style holds only numbers
    computed here, never text from the data.
    """
    items = []
    for p in pairs or []:
        if isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2:
            w = p[1] if isinstance(p[1], int | float) and math.isfinite(p[1]) else 0.0
            items.append((p[0], float(w)))
    scale = max((abs(w) for _, w in items), default=0.0) or 1.0
    out = []
    for text, w in items[:limit]:
        alpha = round(0.75 * abs(w) / scale, 2)
        rgb = POS_RGB if w >= 0 else NEG_RGB
        out.append(
            {
                "text": clean(text, TOKEN_LIMIT),
                "sep": sep,
                "style": f"background-color:rgba({rgb},{alpha})",
                "weight": f"{w:+.4g}",
            }
        )
    if len(items) > limit:
        more = f" … [+{len(items) - limit} more]"
        out.append({"text": more, "sep": "", "style": "", "weight": ""})
    return out


def explain(sec: Mapping[str, Any], texts: ExampleTexts = NO_TEXTS) -> dict[str, Any]:
    methods = []
    for name, m in (sec.get("methods") or {}).items():
        if not isinstance(m, Mapping):
            continue
        ranking = _rows(m.get("ranking"))[:RANKING_SHOWN]
        terms = [str(r.get("term", "?")) for r in ranking]
        values = [_num(r.get("mean_abs")) or 0.0 for r in ranking]
        methods.append(
            {
                "name": one_line(name, 60),
                **fmt_fields(
                    m,
                    "sensitive_share",
                    "calls",
                    "texts",
                    "forward_passes",
                    "model_time_s",
                    "wall_time_s",
                    "setup_s",
                ),
                "ranking": [
                    {
                        "term": one_line(r.get("term", "?"), TOKEN_LIMIT),
                        "mean_abs": fmt(r.get("mean_abs")),
                        "n_examples": fmt(r.get("n_examples")),
                    }
                    for r in ranking
                ],
                "chart": charts.bar_chart(
                    terms, values, title=f"{name}: top terms by mean |attribution|"
                ),
            }
        )
    method_names = [str(k) for k in (sec.get("methods") or {})]
    examples = []
    for e in [x for x in sec.get("examples") or [] if isinstance(x, Mapping)][:EXAMPLES_SHOWN]:
        views = []
        for name in method_names or [k for k in e if isinstance(e.get(k), Mapping)]:
            m = e.get(name)
            if not isinstance(m, Mapping):
                continue
            if m.get("tokens"):
                views.append(
                    {
                        "method": one_line(name, 60),
                        "unit": "tokens",
                        "spans": highlight(m["tokens"]),
                    }
                )
            elif m.get("words"):
                views.append(
                    {
                        "method": one_line(name, 60),
                        "unit": "words",
                        "spans": highlight(m["words"], sep=" "),
                    }
                )
        examples.append(
            {
                **_example(e, texts, sec.get("task")),
                "group": _text(e.get("group"), 120),
                "label": _text(e.get("label"), 120),
                "pred": _text(e.get("pred"), 120),
                "prob": fmt(e.get("prob")),
                "views": views,
            }
        )
    return {
        "task": one_line(sec.get("task", "–"), 120),
        "field": one_line(sec.get("field", "–"), 120),
        "explained_class": one_line(sec.get("explained_class", "–"), 60),
        "samples": fmt(sec.get("samples")),
        "max_evals": fmt(sec.get("max_evals")),
        "sensitive_terms": _text(sec.get("sensitive_terms") or []),
        "sensitive_share": fmt(sec.get("sensitive_share")),
        "methods": methods,
        "examples": examples,
        "n_examples": len([x for x in sec.get("examples") or [] if isinstance(x, Mapping)]),
        "time_s": fmt(sec.get("time_s")),
    }

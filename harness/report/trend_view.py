"""A trend across runs of one suite: each gated metric with its CI, run after run.

The runs come in the order given (checkpoints of one fine-tune, successive release
candidates), each labelled by its name (the folder holding its results.json), adapter
and start time. Every metric a gate reads is drawn with its bootstrap CI (task metrics;
an audit's value is a point), the gate's thresholds dashed across and each point in the
colour of its gate's verdict (a failing one is a red cross). The best run by a chosen
metric is named, in the direction the metric's registry entry gives (``higher_is_better``
in results.json) or, for an audit value, the one its gate implies (``min``: higher is
better; ``max``, ``max_increase``: lower).

Runs of different suites, or whose gates read different metrics, are refused with a
located error: their points would not measure the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.report import charts
from harness.report.formatting import fmt, fmt_ci
from harness.report.safe_text import clean, one_line
from harness.report.view import threshold_text
from harness.results.schema import Results

OTHER_SUITE = (
    "{path}: a run of suite {found!r}, but {first} is a run of suite {want!r}; "
    "a trend compares runs of one suite"
)
OTHER_GATES = (
    "{path}: its gates read {found}, but those of {first} read {want}; "
    "a trend compares runs whose gates read the same metrics"
)
UNKNOWN_BEST = "--best {metric}: no run has this metric (gated: {known})"
NO_DIRECTION = (
    "--best {metric}: cannot tell whether higher is better (not a task metric, and no gate "
    "on it sets min or max)"
)
TOO_FEW = "a trend needs at least one run"


def run_label(path: Path, results: Results) -> dict[str, str]:
    """How one run is named: its folder, its adapter's folder name and its start time."""
    prov = results.provenance
    adapter = prov.adapter.path if prov and prov.adapter and prov.adapter.path else None
    return {
        "name": one_line(Path(path).resolve().parent.name or str(path), 60),
        "path": clean(str(path), 300),
        "adapter": one_line(Path(adapter).name, 60) if adapter else "–",
        "started": one_line(prov.started_at if prov and prov.started_at else "–", 40),
    }


def check_runs(runs: Sequence[tuple[Path, Results]]) -> None:
    """Refuse runs that do not trend together (module doc); errors name the file."""
    if not runs:
        raise UserError(TOO_FEW)
    first_path, first = runs[0]
    want_gates = [g.metric for g in first.gates]
    errors = []
    for path, results in runs[1:]:
        if results.suite.name != first.suite.name:
            errors.append(
                OTHER_SUITE.format(
                    path=path, found=results.suite.name, first=first_path, want=first.suite.name
                )
            )
            continue
        found = [g.metric for g in results.gates]
        if sorted(found) != sorted(want_gates):
            errors.append(
                OTHER_GATES.format(
                    path=path,
                    found=", ".join(found) or "nothing",
                    first=first_path,
                    want=", ".join(want_gates) or "nothing",
                )
            )
    if errors:
        raise UserError(errors)


def _task_metric(results: Results, name: str) -> Any:
    """The task metric entry ``<task>.<output>`` names, or None."""
    for task_id, task in results.tasks.items():
        if name.startswith(f"{task_id}."):
            return task.metrics.get(name[len(task_id) + 1 :])
    return None


def _gate(results: Results, name: str) -> Any:
    return next((g for g in results.gates if g.metric == name), None)


def _point(results: Results, name: str) -> tuple[Any, Any, Any, str]:
    """(value, ci_low, ci_high, verdict) of a metric in one run."""
    gate = _gate(results, name)
    entry = _task_metric(results, name)
    verdict = gate.verdict if gate is not None else "none"
    if entry is not None:
        return entry.value, entry.ci_low, entry.ci_high, verdict
    return (gate.value if gate is not None else None), None, None, verdict


def higher_is_better(runs: Sequence[tuple[Path, Results]], name: str) -> bool | None:
    """The direction of a metric: the registry's (task metrics), else its gate's."""
    for _, results in runs:
        entry = _task_metric(results, name)
        if entry is not None:
            return bool(entry.higher_is_better)
    for _, results in runs:
        gate = _gate(results, name)
        if gate is None:
            continue
        if gate.min is not None or gate.max_drop is not None:
            return True
        if gate.max is not None or gate.max_increase is not None:
            return False
    return None


def _known(runs: Sequence[tuple[Path, Results]]) -> list[str]:
    names = [g.metric for g in runs[0][1].gates]
    for _, results in runs:
        for task_id, task in results.tasks.items():
            names += [f"{task_id}.{output}" for output in task.metrics]
    return list(dict.fromkeys(names))


def best_run(runs: Sequence[tuple[Path, Results]], metric: str) -> dict[str, Any] | None:
    """The run with the best value of ``metric`` (the first of equal ones), or None when
    no run has a value."""
    if metric not in _known(runs):
        gated = ", ".join(g.metric for g in runs[0][1].gates) or "none"
        raise UserError(UNKNOWN_BEST.format(metric=metric, known=gated))
    higher = higher_is_better(runs, metric)
    if higher is None:
        raise UserError(NO_DIRECTION.format(metric=metric))
    best: tuple[int, float] | None = None
    for i, (_, results) in enumerate(runs):
        value = _point(results, metric)[0]
        if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
            continue
        if best is None or (value > best[1] if higher else value < best[1]):
            best = (i, float(value))
    if best is None:
        return None
    path, results = runs[best[0]]
    return {
        "index": best[0],
        **run_label(path, results),
        "metric": one_line(metric, 120),
        "value": fmt(best[1]),
        "direction": "higher is better" if higher else "lower is better",
        "verdict": results.verdict,
    }


def build(runs: Sequence[tuple[Path, Results]], *, best: str | None = None) -> dict[str, Any]:
    """The view-model of the trend page (checks the runs first: ``check_runs``)."""
    check_runs(runs)
    labels = [run_label(p, r) for p, r in runs]
    ticks = [f"{i + 1}. {lab['name']}" for i, lab in enumerate(labels)]
    gated = [g.metric for g in runs[0][1].gates]
    metrics = []
    for name in dict.fromkeys(gated):
        points = [(ticks[i], *_point(r, name)) for i, (_, r) in enumerate(runs)]
        gate = _gate(runs[-1][1], name) or _gate(runs[0][1], name)
        lines = []
        if gate is not None and not gate.relative:
            lines += [(f"min {fmt(gate.min)}", gate.min)] if gate.min is not None else []
            lines += [(f"max {fmt(gate.max)}", gate.max)] if gate.max is not None else []
        higher = higher_is_better(runs, name)
        metrics.append(
            {
                "name": one_line(name, 200),
                "threshold": threshold_text(gate.model_dump()) if gate is not None else "–",
                "direction": {True: "↑ higher is better", False: "↓ lower is better"}.get(
                    higher,  # type: ignore[arg-type]
                    "",
                ),
                "chart": charts.trend_chart(
                    [(t, _num(v), _num(lo), _num(hi), verdict) for t, v, lo, hi, verdict in points],
                    lines=[(label, float(y)) for label, y in lines if y is not None],
                    title=name,
                    ylabel=name.rsplit(".", 1)[-1],
                ),
                "rows": [
                    {
                        "run": t,
                        "value": fmt(v),
                        "ci": fmt_ci(lo, hi),
                        "verdict": verdict if verdict in ("pass", "warn", "fail") else "",
                    }
                    for t, v, lo, hi, verdict in points
                ],
            }
        )
    chosen = best or (gated[0] if gated else _first_task_metric(runs))
    return {
        "title": f"Trend: {one_line(runs[0][1].suite.name, 120)}",
        "runs": [
            {**lab, "tick": ticks[i], "verdict": r.verdict}
            for i, (lab, (_, r)) in enumerate(zip(labels, runs, strict=True))
        ],
        "metrics": metrics,
        "best": best_run(runs, chosen) if chosen else None,
        "best_metric": one_line(chosen, 120) if chosen else None,
    }


def _first_task_metric(runs: Sequence[tuple[Path, Results]]) -> str | None:
    for task_id, task in runs[0][1].tasks.items():
        for output in task.metrics:
            return f"{task_id}.{output}"
    return None


def _num(x: Any) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool):
        return float(x)
    return None


def render_trend_html(runs: Sequence[tuple[Path, Results]], *, best: str | None = None) -> str:
    """The trend page: one self-contained HTML file (inline CSS and SVG, no script)."""
    from harness.report.html import render_template

    return render_template("trend.html.j2", v=build(runs, best=best))


def summary_line(view: Mapping[str, Any]) -> str:
    """The best run in one line, for the terminal."""
    best = view.get("best")
    if not best:
        return f"best run: none has a value of {view.get('best_metric')}"
    return (
        f"best run by {best['metric']} ({best['direction']}): "
        f"{best['index'] + 1}. {best['name']} = {best['value']}"
    )

"""Gates: thresholds on metric values -> verdicts -> the run's verdict and exit code.

A gate names a value as ``<task id>.<output name>`` (``sentiment.accuracy``,
``summarize.rougeL``, ``sentiment.f1[negative]``) and bounds it with ``min`` and/or
``max``. A gate of severity ``fail`` that does not hold fails the run (exit 1); one of
severity ``warn`` only warns. A value that is missing or NaN never passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}


def split_metric(name: str) -> tuple[str, str]:
    """``task.output`` -> (task, output); the task id holds no dot."""
    task, _, output = name.partition(".")
    return task, output


def lookup(values: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    """The value a gate names in ``{task: {output: {"value": ...}}}``, or None."""
    task, output = split_metric(name)
    entry = values.get(task, {}).get(output)
    if entry is None:
        return None
    value = entry["value"] if isinstance(entry, Mapping) else entry
    return None if value is None else float(value)


def check(gate: Any, value: float | None) -> dict[str, Any]:
    """Verdict of one gate on one value, with a message a reviewer can read."""
    severity = getattr(gate, "severity", FAIL)
    result: dict[str, Any] = {
        "metric": gate.metric,
        "min": gate.min,
        "max": gate.max,
        "severity": severity,
        "description": getattr(gate, "description", None),
        "value": value,
    }
    problems = []
    if value is None or math.isnan(value):
        problems.append("no value (the metric is undefined on this data)")
    else:
        if gate.min is not None and not value >= gate.min:
            problems.append(f"{value:.4g} < min {gate.min:g}")
        if gate.max is not None and not value <= gate.max:
            problems.append(f"{value:.4g} > max {gate.max:g}")
    if problems:
        result["verdict"] = FAIL if severity == FAIL else WARN
        result["message"] = "; ".join(problems)
    else:
        bounds = []
        if gate.min is not None:
            bounds.append(f">= {gate.min:g}")
        if gate.max is not None:
            bounds.append(f"<= {gate.max:g}")
        result["verdict"] = PASS
        result["message"] = f"{value:.4g} {' and '.join(bounds)}"
    return result


def evaluate(gates: Iterable[Any], values: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check every gate against the task metric values."""
    return [check(g, lookup(values, g.metric)) for g in gates]


def overall(verdicts: Iterable[Mapping[str, Any]]) -> str:
    """The worst verdict: fail > warn > pass (pass when there are no gates)."""
    worst = PASS
    for v in verdicts:
        if _RANK[v["verdict"]] > _RANK[worst]:
            worst = v["verdict"]
    return worst


def exit_code(verdict: str) -> int:
    """0 when no gate failed (warnings allowed), 1 when one did."""
    return 1 if verdict == FAIL else 0

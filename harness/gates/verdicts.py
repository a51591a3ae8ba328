"""Gates: thresholds on values -> verdicts -> the run's verdict and exit code.

A gate names a value by a dotted name: ``<task id>.<output>`` for task metrics
(``sentiment.accuracy``, ``summarize.rougeL``, ``sentiment.f1[negative]``), or a name
an audit publishes (``forgetting.lm.perplexity``, ``fairness.sentiment.
demographic_parity_ratio``; see docs/gates.md). Absolute bounds are ``min``/``max``.
Relative bounds ``max_drop``/``max_increase`` compare the value with a reference: the
base model's value for forgetting values, the baseline run's value otherwise; with
``relative`` they are fractions of the reference, with ``significant`` a miss counts
only when the paired bootstrap p-value is below ``alpha``. A run without a baseline
run reports the relative part of those gates as ``no baseline``: a warning, or a
failure when the baseline is required (``harness run --require-baseline``).

Everything a gate can name is gathered in one flat map of :class:`GateValue` entries,
so tasks, audits and baseline comparisons feed the same check. A gate of severity
``fail`` that does not hold fails the run (exit 1); ``warn`` only warns. A missing or
NaN value never passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from harness.metrics.finite import finite_float as _num

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}
NO_BASELINE = "no baseline"
NO_BASELINE_REQUIRED = "no baseline (--require-baseline: a baseline run is required)"
NO_REFERENCE = "no reference value (relative gates need a baseline run or a forgetting audit)"
NOT_IN_BASELINE = "no reference value: the baseline run has no value for this metric"
NO_VALUE = "no value (the metric is undefined on this data)"
NO_VALUE_BECAUSE = "no value ({reason})"


class GateValue(TypedDict, total=False):
    """What a gate may read about one named value."""

    value: float | None
    reference: float | None  # base model (forgetting) or baseline run value
    p_value: float | None  # paired bootstrap p-value of value vs reference
    source: str  # where the reference comes from, for messages
    reason: str | None  # why the value is missing (a plug-in returned nan...), for messages


def task_values(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, GateValue]:
    """``{"task.output": {"value": ...}}`` from the results' ``tasks`` section."""
    flat: dict[str, GateValue] = {}
    for task_id, task in tasks.items():
        for output, entry in task.get("metrics", {}).items():
            flat[f"{task_id}.{output}"] = {
                "value": entry.get("value"),
                "reason": entry.get("reason"),
            }
    return flat


def check(gate: Any, entry: GateValue | None, *, no_baseline: str | None = None) -> dict[str, Any]:
    """Verdict of one gate, with a message a reviewer can read.

    ``no_baseline`` is set when the gate's reference is a baseline run and none was
    given: its relative bounds are then not checked but reported as ``no baseline``,
    which warns (``WARN``) or fails the gate whatever its severity (``FAIL``, the
    baseline was required). Absolute bounds are checked as usual.
    """
    entry = entry or {}
    value = _num(entry.get("value"))
    reference = _num(entry.get("reference"))
    p_value = _num(entry.get("p_value"))
    severity = getattr(gate, "severity", FAIL)
    max_drop = getattr(gate, "max_drop", None)
    max_increase = getattr(gate, "max_increase", None)
    relative = getattr(gate, "relative", False)
    result: dict[str, Any] = {
        "metric": gate.metric,
        "min": gate.min,
        "max": gate.max,
        "max_drop": max_drop,
        "max_increase": max_increase,
        "relative": relative,
        "significant": getattr(gate, "significant", False),
        "severity": severity,
        "description": getattr(gate, "description", None),
        "value": value,
        "reference": reference,
        "p_value": p_value,
    }
    problems: list[str] = []
    held: list[str] = []
    missing: list[str] = []  # no baseline run: warns, or fails when one was required
    if value is None:
        reason = entry.get("reason")
        problems.append(NO_VALUE_BECAUSE.format(reason=reason) if reason else NO_VALUE)
    else:
        if gate.min is not None:
            (held if value >= gate.min else problems).append(
                f"{value:.4g} {'>=' if value >= gate.min else '< min'} {gate.min:g}"
            )
        if gate.max is not None:
            (held if value <= gate.max else problems).append(
                f"{value:.4g} {'<=' if value <= gate.max else '> max'} {gate.max:g}"
            )
    if max_drop is not None or max_increase is not None:
        if no_baseline is not None:
            missing.append(NO_BASELINE_REQUIRED if no_baseline == FAIL else NO_BASELINE)
        elif value is not None:
            _relative(gate, value, reference, p_value, entry, held, problems)
    if problems or missing:
        failed = (problems and severity == FAIL) or (missing and no_baseline == FAIL)
        result["verdict"] = FAIL if failed else WARN
        result["message"] = "; ".join(problems + missing)
    else:
        result["verdict"] = PASS
        result["message"] = "; ".join(held)
    return result


def _relative(
    gate: Any,
    value: float,
    reference: float | None,
    p_value: float | None,
    entry: GateValue,
    held: list[str],
    problems: list[str],
) -> None:
    if reference is None:
        problems.append(NOT_IN_BASELINE if entry.get("source") == "baseline" else NO_REFERENCE)
        return
    relative = getattr(gate, "relative", False)
    change = value - reference
    if relative:
        change = change / abs(reference) if reference else (math.inf if change else 0.0)
    unit = "" if not relative else " (relative)"
    source = entry.get("source", "reference")
    for limit, moved, word in (
        (getattr(gate, "max_drop", None), -change, "drop"),
        (getattr(gate, "max_increase", None), change, "increase"),
    ):
        if limit is None:
            continue
        text = f"{word} {moved:.4g}{unit} vs {source} {reference:.4g}"
        if moved <= limit:
            held.append(f"{text} <= {limit:g}")
        elif getattr(gate, "significant", False) and (p_value is None or p_value >= gate.alpha):
            shown = "n/a" if p_value is None else f"{p_value:.3g}"
            held.append(f"{text} > {limit:g} but not significant (p={shown})")
        else:
            sig = f", p={p_value:.3g}" if p_value is not None else ""
            problems.append(f"{text} > max_{word} {limit:g}{sig}")


def evaluate(gates: Iterable[Any], values: Mapping[str, GateValue]) -> list[dict[str, Any]]:
    """Check every gate against the flat map of named values."""
    return [check(g, values.get(g.metric)) for g in gates]


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

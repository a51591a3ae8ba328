"""Recompute a stored run's numbers and verdicts from what it stored, and say what differs.

For ``harness verify``: every task metric value, its bootstrap CI and ``n`` are scored
again from the per-example statistics stored in the records (``harness.metrics.
score_stats``, with the bootstrap samples, confidence and seed of the run's suite
echo, as the runner's ``score_task`` does), and those statistics are recomputed from
the records themselves by the metric's pure ``stats`` function, so an edited answer,
label or statistic of one example is named. Every gate verdict is checked again
(``harness.gates.verdicts.check``) from the recomputed task values, and the run's
verdict from the gates'.

Not recomputed: audit sections (their gates are re-checked from the values the
sections published, as stored in each gate), references and p-values of relative
gates (they come from a baseline run or the base model), and the metrics of
``evaluate`` plug-ins (verify runs no code a results file names).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from harness.gates import verdicts as gates_mod
from harness.metrics.finite import finite_float
from harness.results.compare import needs_baseline
from harness.results.schema import Results, TaskResult

Finding = tuple[str, str, "str | None", "str | None"]
"""``(what, status, stored, recomputed)``: status ok | mismatch | skipped (then
``recomputed`` says why)."""

OK, MISMATCH, SKIPPED = "ok", "mismatch", "skipped"
RECORDS_SHOWN = 5
PLUGIN = "not recomputed: an evaluate plug-in (verify runs no code a results file names)"
UNKNOWN = "not recomputed: metric {name!r} is not registered here"
NO_STATS = "not recomputed: the records hold no usable statistics for {name!r}"
REL_TOL = 1e-9  # the same numbers on another machine's BLAS may differ in the last bits
GATE_DEFAULTS = {
    "min": None,
    "max": None,
    "max_drop": None,
    "max_increase": None,
    "relative": False,
    "significant": False,
    "alpha": 0.05,
    "severity": "fail",
    "description": None,
}


def show(value: Any) -> str:
    """A stored or recomputed value as a reader compares them."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)[:200]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    return bool(a == b)


def settings(results: Results) -> tuple[int, float, int]:
    """The run's bootstrap samples, confidence and seed (the suite's defaults where the
    echo does not say)."""
    boot = results.suite.bootstrap
    samples = boot.samples if boot.samples is not None else 1000
    confidence = boot.confidence if boot.confidence is not None else 0.95
    seed = results.suite.seed if results.suite.seed is not None else 1234
    return int(samples), float(confidence), int(seed)


def _task_info(results: Results, task_id: str, kind: str) -> Any:
    from harness.metrics import TaskInfo

    spec: Mapping[str, Any] = {}
    for t in results.suite.tasks:
        if isinstance(t, Mapping) and t.get("id") == task_id:
            spec = t
    choices = spec.get("choices")
    fixed = isinstance(choices, list | None)
    return TaskInfo(
        kind=kind, choices=tuple(choices or ()) if fixed else (), per_row_choices=not fixed
    )


def _stored_stats(records: Sequence[Mapping[str, Any]], name: str) -> np.ndarray | None:
    rows = [
        r.get("stats", {}).get(name) if isinstance(r.get("stats"), dict) else None for r in records
    ]
    if not all(isinstance(x, list) for x in rows):
        return None
    try:
        return np.asarray(rows, dtype=float).reshape(len(rows), -1)
    except (TypeError, ValueError):
        return None


def _record_label(task_id: str, i: int, record: Mapping[str, Any]) -> str:
    rid = record.get("id")
    return f"tasks.{task_id}.records[{i}]" + (f" (id {rid})" if rid is not None else "")


def _compare_stats(
    task_id: str,
    name: str,
    records: Sequence[Mapping[str, Any]],
    stored: np.ndarray,
    found: np.ndarray,
) -> Iterator[Finding]:
    if stored.shape != found.shape:
        yield f"tasks.{task_id}.records.stats.{name}", MISMATCH, str(stored.shape), str(found.shape)
        return
    bad = [
        i
        for i in range(len(stored))
        if not all(
            (math.isnan(a) and math.isnan(b)) or same(float(a), float(b))
            for a, b in zip(stored[i], found[i], strict=True)
        )
    ]
    for i in bad[:RECORDS_SHOWN]:
        where = f"{_record_label(task_id, i, records[i])}.stats.{name}"
        yield (
            where,
            MISMATCH,
            show(stored[i].tolist()),
            show(found[i].tolist()) + " (from the record)",
        )
    if len(bad) > RECORDS_SHOWN:
        yield (
            f"tasks.{task_id}.records",
            MISMATCH,
            f"{len(bad)} records' {name} statistics",
            f"and {len(bad) - RECORDS_SHOWN} more differ",
        )


def _metric_group(
    results: Results,
    task_id: str,
    task: TaskResult,
    name: str,
    params: Mapping[str, Any],
    outputs: list[str],
    ambiguous: bool,
    values: dict[str, Any],
) -> Iterator[Finding]:
    """One metric (name + params) of one task: its outputs' values, CIs and n."""
    from harness.metrics import get, score_stats
    from harness.metrics.resolve import is_plugin_metric

    where = [f"tasks.{task_id}.metrics.{o}" for o in outputs]
    if is_plugin_metric(name):
        yield from ((w, SKIPPED, None, PLUGIN) for w in where)
        return
    try:
        metric = get(name)
    except KeyError:
        yield from ((w, SKIPPED, None, UNKNOWN.format(name=name)) for w in where)
        return
    info = _task_info(results, task_id, task.kind)
    full = {**metric.params, **params}
    records = task.records
    stored = None if ambiguous else _stored_stats(records, name)
    try:
        found = np.asarray(metric.stats(records, full, info), dtype=float)
        found = found.reshape(len(records), -1)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        found = None
    if stored is not None and found is not None:
        yield from _compare_stats(task_id, name, records, stored, found)
    stats = stored if stored is not None else found
    if stats is None:
        yield from ((w, SKIPPED, None, NO_STATS.format(name=name)) for w in where)
        return
    samples, confidence, seed = settings(results)
    try:
        scored = score_stats(
            metric, stats, full, info, samples=samples, confidence=confidence, seed=seed
        )
    except (ValueError, TypeError, IndexError, ZeroDivisionError) as exc:
        yield from ((w, SKIPPED, None, f"not recomputed: {str(exc)[:120]}") for w in where)
        return
    for output, w in zip(outputs, where, strict=True):
        entry = task.metrics[output]
        new = scored.get(output)
        if new is None:
            yield w, MISMATCH, "a value", f"metric {name!r} gives no {output!r}"
            continue
        value = finite_float(new["value"])
        values[f"{task_id}.{output}"] = value
        expected = {
            "value": value,
            "ci_low": None if value is None else finite_float(new["ci_low"]),
            "ci_high": None if value is None else finite_float(new["ci_high"]),
            "n": new["n"],
        }
        differs = False
        for key, recomputed in expected.items():
            old = getattr(entry, key)
            if not (old is None and recomputed is None) and not same(old, recomputed):
                differs = True
                yield f"{w}.{key}", MISMATCH, show(old), show(recomputed)
        if not differs:
            yield w, OK, show(entry.value), show(value)


def metric_findings(results: Results, values: dict[str, Any]) -> Iterator[Finding]:
    """Every task metric recomputed (module doc); ``values`` gets ``{"task.output":
    recomputed value}`` for the gates."""
    for task_id, task in results.tasks.items():
        groups: dict[tuple[str, str], list[str]] = {}
        for output, entry in task.metrics.items():
            key = (str(entry.metric), json.dumps(entry.params or {}, sort_keys=True))
            groups.setdefault(key, []).append(output)
        names = [name for name, _ in groups]
        for (name, params_json), outputs in groups.items():
            yield from _metric_group(
                results,
                task_id,
                task,
                name,
                json.loads(params_json),
                outputs,
                names.count(name) > 1,
                values,
            )


def gate_findings(results: Results, values: Mapping[str, Any]) -> Iterator[Finding]:
    """Every gate of the suite echo checked again, and the run's verdict."""
    defs = results.suite.gates if isinstance(results.suite.gates, list) else []
    stored = results.gates
    if len(stored) != len(defs):
        yield "gates", MISMATCH, f"{len(stored)} gates", f"{len(defs)} (the suite's gates)"
    verdicts = []
    for i, gdef in enumerate(defs):
        if not isinstance(gdef, Mapping) or not isinstance(gdef.get("metric"), str):
            continue
        gate = SimpleNamespace(**{**GATE_DEFAULTS, **gdef})
        old = stored[i] if i < len(stored) else None
        if old is not None and old.metric != gate.metric:
            yield f"gates[{i}].metric", MISMATCH, show(old.metric), show(gate.metric)
            old = None
        task_value = gate.metric in values
        value = values[gate.metric] if task_value else (old.value if old else None)
        entry: gates_mod.GateValue = {
            "value": value,
            "reference": old.reference if old else None,
            "p_value": old.p_value if old else None,
            "source": "baseline" if results.baseline is not None else "reference",
        }
        no_baseline = None
        if results.baseline is None and needs_baseline(gate):
            required = old is not None and gates_mod.NO_BASELINE_REQUIRED in old.message
            no_baseline = gates_mod.FAIL if required else gates_mod.WARN
        new = gates_mod.check(gate, entry, no_baseline=no_baseline)
        verdicts.append(new)
        if old is None:
            yield f"gates[{i}].verdict", MISMATCH, "no gate", new["verdict"]
            continue
        if (
            task_value
            and not same(old.value, new["value"])
            and not (old.value is None is new["value"])
        ):
            yield f"gates[{i}].value", MISMATCH, show(old.value), show(new["value"])
        if old.verdict != new["verdict"]:
            yield f"gates[{i}].verdict", MISMATCH, old.verdict, new["verdict"]
        else:
            yield f"gates[{i}] {gate.metric}", OK, old.verdict, new["verdict"]
    overall = gates_mod.overall(verdicts)
    if results.verdict != overall:
        yield "verdict", MISMATCH, results.verdict, overall
    else:
        yield "verdict", OK, results.verdict, overall


def recompute_differences(results: Results) -> list[Finding]:
    """Every metric and gate of ``results`` recomputed: one finding each (module doc)."""
    values: dict[str, Any] = {}
    found = list(metric_findings(results, values))
    return found + list(gate_findings(results, values))

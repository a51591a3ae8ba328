"""Compare a run with a baseline run: deltas, paired bootstrap CIs and p-values, flips.

Both runs are results.json documents. Examples are matched by id within each task;
ids present in only one run, and shared ids whose input differs, are reported, and
every comparison uses the shared examples only. For each metric the stored
per-example statistics (``records[i]["stats"][metric]``) of the two runs are resampled
with the same row indices (``harness.metrics.paired_bootstrap``, Koehn 2004), so the
model is never called. Metric plug-ins named by a path are not loaded here (a results
file must not make the harness run code); they get deltas without a test.

``apply_baseline`` feeds the same comparison to relative gates (``max_drop``,
``max_increase``) of ``harness run --baseline-results``; without a baseline run,
``apply_no_baseline`` reports them as ``no baseline`` (docs/gates.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from harness.data.rows import display_path, sha256_file
from harness.gates import verdicts as gates_mod
from harness.metrics.finite import none_if_nan
from harness.metrics.paired import direction, flips
from harness.results.schema import BaselineRef, GateResult, Results, Verdict
from harness.tasks import find as find_kind

ALPHA = 0.05
IDS_SHOWN = 50
NO_STATS = "per-example statistics missing; no paired test"
PLUGIN = "metric plug-in: not loaded from a results file; no paired test"
UNKNOWN_METRIC = "unknown metric '{name}'; no paired test"
NO_SHARED = "no shared examples"
BAD_STATS = "per-example statistics not usable ({reason}); no paired test"


def _records(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in task.get("records") or [] if isinstance(r, Mapping)]


def _by_id(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for r in records:
        out.setdefault(str(r.get("id")), r)
    return out


def _task_spec(results: Mapping[str, Any], task_id: str) -> Mapping[str, Any]:
    for t in (results.get("suite") or {}).get("tasks") or []:
        if isinstance(t, Mapping) and t.get("id") == task_id:
            return t
    return {}


def correct(kind: str, record: Mapping[str, Any]) -> bool | None:
    """Whether one example is right: the gold choice, or a generation equal to a
    reference after strip() (exact match); None for perplexity."""
    task_kind = find_kind(kind)
    return task_kind.correct(record) if task_kind is not None else None


def _settings(results: Results) -> tuple[int, int, float]:
    """The run's bootstrap samples, seed and confidence; the suite's defaults where
    the file does not say."""
    given = {**results.suite.model_dump(include={"seed"}, exclude_unset=True)}
    given.update(results.suite.bootstrap.model_dump(exclude_unset=True))
    return (
        int(given.get("samples", 1000)),
        int(given.get("seed", 1234)),
        float(given.get("confidence", 0.95)),
    )


def _stats(
    metric: Any,
    name: str,
    params: Mapping[str, Any],
    info: Any,
    records: Sequence[Mapping[str, Any]],
    ambiguous: bool,
) -> np.ndarray | None:
    """Stored per-example statistics, or (when two metric specs of a task share a name,
    so the stored ones belong to only one of them) recomputed from the stored records
    by the metric's pure ``stats`` function. None when neither is possible."""
    if not ambiguous:
        stored = [r.get("stats") for r in records]
        rows = [x.get(name) if isinstance(x, Mapping) else None for x in stored]
        if all(isinstance(x, list) for x in rows):
            try:
                return np.asarray(rows, dtype=float).reshape(len(rows), -1)
            except (TypeError, ValueError):
                pass  # ragged or non-numeric: recompute from the records below
    try:
        return np.asarray(metric.stats(records, params, info), dtype=float)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


def compare_task(
    task_id: str,
    base: Mapping[str, Any],
    new: Mapping[str, Any],
    base_results: Mapping[str, Any],
    new_results: Mapping[str, Any],
    *,
    samples: int,
    seed: int,
    confidence: float,
) -> dict[str, Any]:
    """One task of both runs: matched examples, per-metric paired tests, flips."""
    from harness.metrics import TaskInfo, get, paired_bootstrap
    from harness.metrics.resolve import is_plugin_metric

    kind = str(new.get("kind") or base.get("kind") or "")
    a_by, b_by = _by_id(_records(base)), _by_id(_records(new))
    shared = [i for i in a_by if i in b_by]
    only_a = [i for i in a_by if i not in b_by]
    only_b = [i for i in b_by if i not in a_by]
    changed = [i for i in shared if a_by[i].get("input") != b_by[i].get("input")]
    rec_a = [a_by[i] for i in shared]
    rec_b = [b_by[i] for i in shared]
    spec = _task_spec(new_results, task_id) or _task_spec(base_results, task_id)
    choices = spec.get("choices")
    fixed = isinstance(choices, list | None)
    info = TaskInfo(
        kind=kind, choices=tuple(choices or ()) if fixed else (), per_row_choices=not fixed
    )
    names = [str(m.get("name")) for m in spec.get("metrics") or [] if isinstance(m, Mapping)]
    base_metrics = base.get("metrics") or {}
    groups: dict[tuple[str, str], list[str]] = {}
    for output, entry in (new.get("metrics") or {}).items():
        if output in base_metrics:
            key = (str(entry.get("metric")), json.dumps(entry.get("params") or {}, sort_keys=True))
            groups.setdefault(key, []).append(output)
    rows: list[dict[str, Any]] = []
    for (name, params_json), outputs in groups.items():
        paired: Mapping[str, Any] = {}
        note = None
        if not shared:
            note = NO_SHARED
        elif is_plugin_metric(name):
            note = PLUGIN
        else:
            try:
                metric = get(name)
            except KeyError:
                metric, note = None, UNKNOWN_METRIC.format(name=name)
            if metric is not None:
                params = {**metric.params, **json.loads(params_json)}
                ambiguous = names.count(name) > 1
                sa = _stats(metric, name, params, info, rec_a, ambiguous)
                sb = _stats(metric, name, params, info, rec_b, ambiguous)
                if sa is None or sb is None or sa.shape[1:] != sb.shape[1:]:
                    note = NO_STATS
                else:
                    try:
                        paired = paired_bootstrap(
                            metric, sa, sb, params, info, samples, seed, confidence=confidence
                        )
                    except (ValueError, TypeError, IndexError, ZeroDivisionError) as exc:
                        note = BAD_STATS.format(reason=str(exc)[:120])
        for output in outputs:
            rows.append(
                _metric_row(
                    output, name, base_metrics[output], new["metrics"][output], paired, note
                )
            )
    return {
        "id": task_id,
        "kind": kind,
        "n_baseline": len(a_by),
        "n_new": len(b_by),
        "n_shared": len(shared),
        "only_in_baseline": only_a[:IDS_SHOWN],
        "n_only_in_baseline": len(only_a),
        "only_in_new": only_b[:IDS_SHOWN],
        "n_only_in_new": len(only_b),
        "changed_inputs": changed[:IDS_SHOWN],
        "n_changed_inputs": len(changed),
        "metrics": rows,
        "flips": _flips(kind, shared, a_by, b_by),
    }


def _metric_row(
    output: str,
    metric: str,
    base: Mapping[str, Any],
    new: Mapping[str, Any],
    paired: Mapping[str, Any],
    note: str | None,
) -> dict[str, Any]:
    hib = bool(new.get("higher_is_better", base.get("higher_is_better", True)))
    p = paired.get(output)
    if p is not None:
        row = {k: none_if_nan(v) for k, v in p.items()}
    else:
        a, b = base.get("value"), new.get("value")
        delta = b - a if isinstance(a, int | float) and isinstance(b, int | float) else None
        row = {"value_a": a, "value_b": b, "delta": delta, "ci_low": None, "ci_high": None}
        row.update(p_value=None, n=None)
    delta, p_value = row.get("delta"), row.get("p_value")
    significant = p_value is not None and p_value < ALPHA
    moved = direction(delta if isinstance(delta, int | float) else None, hib)
    return {
        "output": output,
        "metric": metric,
        "higher_is_better": hib,
        "baseline": row.get("value_a"),
        "new": row.get("value_b"),
        "delta": delta,
        "ci_low": row.get("ci_low"),
        "ci_high": row.get("ci_high"),
        "p_value": p_value,
        "n": row.get("n"),
        "significant": significant,
        "direction": moved,
        "note": note,
    }


def _flips(
    kind: str,
    shared: Sequence[str],
    a_by: Mapping[str, Mapping[str, Any]],
    b_by: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any] | None:
    flipped = flips((correct(kind, a_by[i]), correct(kind, b_by[i])) for i in shared)
    worse = [shared[k] for k in flipped.lost]
    better = [shared[k] for k in flipped.gained]
    task_kind = find_kind(kind)
    criterion = task_kind.criterion if task_kind is not None else None
    if criterion is None:
        return None
    return {
        "criterion": criterion,
        "n_correct_to_wrong": len(worse),
        "n_wrong_to_correct": len(better),
        "correct_to_wrong": [_flip_row(kind, a_by[i], b_by[i]) for i in worse[:IDS_SHOWN]],
        "wrong_to_correct": [_flip_row(kind, a_by[i], b_by[i]) for i in better[:IDS_SHOWN]],
    }


def _flip_row(kind: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": str(b.get("id")), "line": b.get("line"), "input": b.get("input")}
    task_kind = find_kind(kind)
    if task_kind is not None and task_kind.has_choices:
        choices = b.get("choices") or []

        def label(i: Any) -> Any:
            return choices[i] if isinstance(i, int) and 0 <= i < len(choices) else i

        row.update(
            gold=label(b.get("gold")), baseline=label(a.get("pred")), new=label(b.get("pred"))
        )
    elif "gold_answers" in b:  # judged on the extracted answers: those are shown
        golds = b.get("gold_answers") or []
        row.update(gold=golds[0] if golds else "", baseline=a.get("answer"), new=b.get("answer"))
    else:
        refs = b.get("references") or []
        row.update(
            gold=refs[0] if refs else "", baseline=a.get("prediction"), new=b.get("prediction")
        )
    return row


def _run_info(results: Results, path: str | None) -> dict[str, Any]:
    prov = results.provenance
    given = results.model_fields_set
    return {
        "path": path,
        "suite": results.suite.name if "name" in results.suite.model_fields_set else None,
        "verdict": results.verdict if "verdict" in given else None,
        "model": prov.model.fingerprint if prov and prov.model else None,
        "adapter": prov.adapter.fingerprint if prov and prov.adapter else None,
        "started_at": prov.started_at if prov else None,
        "harness_version": results.harness_version,
    }


def compare(
    baseline: Results,
    new: Results,
    *,
    baseline_path: str | None = None,
    new_path: str | None = None,
    samples: int | None = None,
    seed: int | None = None,
    confidence: float | None = None,
) -> dict[str, Any]:
    """The comparison document of two runs (the new run's bootstrap settings by default)."""
    s, sd, c = _settings(new)
    samples = s if samples is None else samples
    seed = sd if seed is None else seed
    confidence = c if confidence is None else confidence
    # the per-task comparison walks the records as the file holds them
    a_doc, b_doc = baseline.document(), new.document()
    a_tasks, b_tasks = a_doc["tasks"], b_doc["tasks"]
    tasks = [
        compare_task(
            tid,
            a_tasks[tid],
            b_tasks[tid],
            a_doc,
            b_doc,
            samples=samples,
            seed=seed,
            confidence=confidence,
        )
        for tid in b_tasks
        if tid in a_tasks
    ]
    rows = [m for t in tasks for m in t["metrics"]]
    return {
        "baseline": _run_info(baseline, baseline_path),
        "new": _run_info(new, new_path),
        "settings": {"samples": samples, "seed": seed, "confidence": confidence, "alpha": ALPHA},
        "tasks": tasks,
        "tasks_only_in_baseline": [t for t in a_tasks if t not in b_tasks],
        "tasks_only_in_new": [t for t in b_tasks if t not in a_tasks],
        "summary": {
            "worse": sum(m["significant"] and m["direction"] == "worse" for m in rows),
            "better": sum(m["significant"] and m["direction"] == "better" for m in rows),
            "unchanged": sum(not m["significant"] for m in rows),
        },
    }


# --- relative gates against a baseline run ------------------------------------------


def is_relative(gate: Any) -> bool:
    return gate.max_drop is not None or gate.max_increase is not None


def needs_baseline(gate: Any) -> bool:
    """A relative gate whose reference is a baseline run, not the base model's value
    that an audit computes (``Audit.base_referenced``)."""
    if not is_relative(gate):
        return False
    from harness import audits  # the registry imports every audit: only for relative gates

    name = gate.metric.partition(".")[0]
    return not (name in audits.available() and audits.get(name).references_base(gate.metric))


def baseline_values(baseline: Results, results: Results) -> dict[str, gates_mod.GateValue]:
    """``{"task.output": GateValue}``: this run's value, the baseline run's value as
    reference and the paired bootstrap p-value over the shared examples."""
    comparison = compare(baseline, results)
    out: dict[str, gates_mod.GateValue] = {}
    for t in comparison["tasks"]:
        for m in t["metrics"]:
            name = f"{t['id']}.{m['output']}"
            out[name] = {
                "value": results.tasks[t["id"]].metrics[m["output"]].value,
                "reference": baseline.tasks[t["id"]].metrics[m["output"]].value,
                "p_value": m["p_value"],
                "source": "baseline",
            }
    return out


def _task_values(results: Results) -> dict[str, gates_mod.GateValue]:
    """The gates' values of this run's task metrics (``gates.task_values``)."""
    metrics = {
        task_id: {"metrics": {out: m.model_dump() for out, m in task.metrics.items()}}
        for task_id, task in results.tasks.items()
    }
    return gates_mod.task_values(metrics)


def apply_baseline(results: Results, suite: Any, baseline: Results, baseline_path: Path) -> None:
    """Re-check the gates that read a baseline run, with its values as references;
    record which baseline run was used (its sha256, for ``harness verify``)."""
    # a gate on a value the baseline run lacks keeps this run's value, with no reference
    values: dict[str, gates_mod.GateValue] = {
        name: {"value": entry.get("value"), "source": "baseline"}
        for name, entry in _task_values(results).items()
    }
    values.update(baseline_values(baseline, results))
    _recheck(results, suite, lambda gate: gates_mod.check(gate, values.get(gate.metric)))
    results.baseline = BaselineRef.model_validate(
        {**_run_info(baseline, display_path(baseline_path)), "sha256": sha256_file(baseline_path)}
    )


def apply_no_baseline(results: Results, suite: Any, *, required: bool = False) -> None:
    """Re-check the gates that read a baseline run when none was given: their absolute
    bounds as usual, their relative bounds reported as ``no baseline`` (a warning, or a
    failure when ``required``: ``harness run --require-baseline``)."""
    values = _task_values(results)
    policy = gates_mod.FAIL if required else gates_mod.WARN
    _recheck(
        results,
        suite,
        lambda gate: gates_mod.check(gate, values.get(gate.metric), no_baseline=policy),
    )


def baseline_gates(suite: Any) -> list[Any]:
    """The suite's gates that compare against a baseline run (``--baseline-results``)."""
    return [g for g in suite.gates if needs_baseline(g)]


def _recheck(results: Results, suite: Any, check: Callable[[Any], dict[str, Any]]) -> None:
    verdicts = list(results.gates)
    for i, gate in enumerate(suite.gates):
        if needs_baseline(gate) and i < len(verdicts) and verdicts[i].metric == gate.metric:
            verdicts[i] = GateResult.model_validate(check(gate))
    results.gates = verdicts
    worst = gates_mod.overall({"verdict": g.verdict} for g in verdicts)
    results.verdict = cast(Verdict, worst)

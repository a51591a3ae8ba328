"""Forgetting: did fine-tuning damage what the base model could do?

The tasks of the original task family run on the base model and on the checkpoint,
over the same examples. With a PEFT adapter and no ``baseline``, the base model is the
same loaded model with the adapter disabled (no second copy in memory); its answers are
cached under the base fingerprint, so CI evaluates a base once for all its checkpoints.
Each metric output gets base and checkpoint values with CIs, the delta with a paired
bootstrap CI and p-value (Koehn 2004; harness.metrics.bootstrap), and the relative
change; classification tasks list the examples that flipped between correct and wrong,
the others the examples whose per-example metric moved most.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from harness.audits.base import (
    MAX_LISTED,
    NO_SUCH_TASK,
    AuditConfig,
    AuditContext,
    CheckContext,
    Problem,
    TaskFacts,
    choice_names,
    clean_interval,
    num,
    register_module,
)
from harness.metrics.paired import direction, flips, relative_change
from harness.tasks import kind_of

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

NO_BASE = (
    "the model has no adapter, so there is no base model to compare with; "
    "set audits.forgetting.baseline to the base model's folder"
)
DUPLICATE_TASK = "task '{task}' is listed twice"
BASELINE_NOT_FOUND = "folder not found: {path}"

_MOST_MOVED = 10


class ForgettingConfig(AuditConfig):
    """Original-task metrics of the base model and of the checkpoint, compared."""

    tasks: list[str] = Field(min_length=1)
    """Ids of this suite's tasks from the original task family (e.g. [lm, original_qa]);
    each runs on the base model and on the checkpoint over the same examples."""
    baseline: str | None = None
    """The model to compare with. null: the base model, i.e. the checkpoint with its
    PEFT adapter disabled (needs `model.adapter`). Otherwise another model's folder
    (relative to the suite file) or hub id, loaded with the suite's model settings."""


def check(cfg: ForgettingConfig, ctx: CheckContext) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, task in enumerate(cfg.tasks):
        if task not in ctx.tasks:
            known = ", ".join(ctx.tasks) or "none"
            problems.append((("tasks", i), NO_SUCH_TASK.format(task=task, tasks=known)))
        elif task in seen:
            problems.append((("tasks", i), DUPLICATE_TASK.format(task=task)))
        seen.add(task)
    if cfg.baseline is not None and ctx.check_files:
        from harness.data.rows import looks_local, resolve_path

        if looks_local(cfg.baseline, ctx.base_dir):
            folder = resolve_path(cfg.baseline, ctx.base_dir)
            if not folder.is_dir():
                problems.append((("baseline",), BASELINE_NOT_FOUND.format(path=folder)))
    return problems


def resolve_paths(cfg: ForgettingConfig, base: Path) -> ForgettingConfig:
    from harness.data.rows import looks_local, resolve_path

    if cfg.baseline is not None and looks_local(cfg.baseline, base):
        return cfg.model_copy(update={"baseline": str(resolve_path(cfg.baseline, base))})
    return cfg


def preflight(cfg: ForgettingConfig, suite: Any) -> list[Problem]:
    if cfg.baseline is None and not suite.model.adapter:
        return [((), NO_BASE)]
    return []


def gate_names(cfg: ForgettingConfig, tasks: Mapping[str, TaskFacts]) -> list[str] | None:
    names: list[str] = []
    for task in cfg.tasks:
        facts = tasks.get(task)
        if facts is None:
            continue
        if facts.outputs is None:
            return None
        for out in facts.outputs:
            base = f"forgetting.{task}.{out}"
            names += [base, f"{base}.delta", f"{base}.relative_change"]
    return names


# --- run ---------------------------------------------------------------------------------


def run(ctx: AuditContext) -> dict[str, Any]:
    cfg: ForgettingConfig = ctx.config
    lm = ctx.lm
    if cfg.baseline is not None:
        base_lm = ctx.load_model(replace(ctx.model_source, path=cfg.baseline, adapter=None))
        switch: Any = contextlib.nullcontext()
        baseline = {"kind": "model", "path": cfg.baseline}
    else:
        base_lm = lm
        switch = lm.adapter_disabled()
        baseline = {"kind": "adapter_disabled", "path": lm.base.path}
    base_records: dict[str, list[dict[str, Any]]] = {}
    with switch:
        baseline["fingerprint"] = base_lm.fingerprint
        for task_id in cfg.tasks:
            p = ctx.prepared[task_id]
            records = [kind_of(p.task).clear_outputs(r) for r in p.records]
            advance = ctx.progress(f"{task_id} (base)", len(records))
            ctx.run_task(p.task, records, base_lm, advance=advance)
            base_records[task_id] = records
    tasks = {
        task_id: compare_task(ctx, ctx.prepared[task_id], base_records[task_id])
        for task_id in cfg.tasks
    }
    return {"baseline": baseline, "tasks": tasks}


def compare_task(ctx: AuditContext, prepared: Any, base: list[dict[str, Any]]) -> dict[str, Any]:
    """Base vs checkpoint on one task: every metric output, flips or moved examples."""
    from harness.metrics import paired_bootstrap, score_stats

    suite, task, checkpoint = ctx.suite, prepared.task, prepared.records
    info = task.info()
    boot = {"samples": suite.bootstrap.samples, "seed": suite.seed}
    conf = suite.bootstrap.confidence
    reported = ctx.task_results.get(task.id, {}).get("metrics", {})
    metrics: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for spec in task.metrics:
        metric = ctx.metric(spec.name)
        params = {**metric.params, **spec.params}
        stats_b = np.asarray(metric.stats(base, params, info), dtype=float)
        stats_c = np.asarray(metric.stats(checkpoint, params, info), dtype=float)
        paired = paired_bootstrap(metric, stats_b, stats_c, params, info, **boot, confidence=conf)
        base_ci = score_stats(metric, stats_b, params, info, **boot, confidence=conf)
        for output, pv in paired.items():
            if output in metrics:
                continue
            ck = (
                reported.get(output)
                or score_stats(metric, stats_c, params, info, **boot, confidence=conf)[output]
            )
            delta = num(pv["delta"])
            base_value = num(pv["value_a"])
            metrics[output] = {
                "metric": spec.name,
                "higher_is_better": metric.higher_is_better,
                "base": clean_interval(base_ci[output]),
                "checkpoint": clean_interval(ck),
                "delta": delta,
                "delta_ci_low": num(pv["ci_low"]),
                "delta_ci_high": num(pv["ci_high"]),
                "p_value": num(pv["p_value"]),
                "relative_change": relative_change(delta, base_value),
                "n": int(pv["n"]),
            }
            if not kind_of(task).has_choices:
                examples[output] = _moved(
                    metric, output, params, info, stats_b, stats_c, checkpoint
                )
    return {
        "kind": kind_of(task).name,
        "n_examples": len(checkpoint),
        "metrics": metrics,
        "flips": _flips(base, checkpoint) if kind_of(task).has_choices else None,
        "examples": examples if not kind_of(task).has_choices else None,
    }


def _flips(base: list[dict[str, Any]], checkpoint: list[dict[str, Any]]) -> dict[str, Any]:
    """Examples correct on the base and wrong on the checkpoint, and the other way."""
    flipped = flips(
        (b["pred"] == b["gold"], c["pred"] == c["gold"])
        for b, c in zip(base, checkpoint, strict=True)
    )

    def entry(i: int) -> dict[str, Any]:
        b, c = base[i], checkpoint[i]
        names = choice_names(c["choices"])
        return {
            "id": c["id"],
            "line": c["line"],
            "gold": names[c["gold"]],
            "base_pred": names[b["pred"]],
            "pred": names[c["pred"]],
            "base_prob": num(b["probs"][b["gold"]]),
            "prob": num(c["probs"][c["gold"]]),
        }

    lost = [entry(i) for i in flipped.lost]
    gained = [entry(i) for i in flipped.gained]
    return {
        "n_correct_to_wrong": len(lost),
        "n_wrong_to_correct": len(gained),
        "correct_to_wrong": lost[:MAX_LISTED],
        "wrong_to_correct": gained[:MAX_LISTED],
    }


def _moved(
    metric: Any,
    output: str,
    params: Mapping[str, Any],
    info: Any,
    stats_b: np.ndarray,
    stats_c: np.ndarray,
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """The metric on each single example, base vs checkpoint."""
    rows = []
    for i, rec in enumerate(records):
        with np.errstate(all="ignore"):
            vb = num(metric.aggregate(stats_b[i : i + 1], params, info).get(output))
            vc = num(metric.aggregate(stats_c[i : i + 1], params, info).get(output))
        if vb is None or vc is None:
            continue
        rows.append({"id": rec["id"], "line": rec["line"], "base": vb, "checkpoint": vc})
    sign = 1.0 if metric.higher_is_better else -1.0
    for r in rows:
        r["delta"] = r["checkpoint"] - r["base"]
    moved = [direction(r["delta"], metric.higher_is_better) for r in rows]
    worse = [r for r, d in zip(rows, moved, strict=True) if d == "worse"]
    better = [r for r, d in zip(rows, moved, strict=True) if d == "better"]
    worse.sort(key=lambda r: sign * r["delta"])
    return {
        "n_worse": len(worse),
        "n_better": len(better),
        "n_same": len(rows) - len(worse) - len(better),
        "mean_delta": float(np.mean([r["delta"] for r in rows])) if rows else None,
        "most_worse": worse[:_MOST_MOVED],
    }


def gate_values(section: Mapping[str, Any]) -> dict[str, GateValue]:
    out: dict[str, GateValue] = {}
    for task_id, task in section.get("tasks", {}).items():
        for output, m in task["metrics"].items():
            name = f"forgetting.{task_id}.{output}"
            p = m["p_value"]
            out[name] = {
                "value": m["checkpoint"]["value"],
                "reference": m["base"]["value"],
                "p_value": p,
                "source": "base",
            }
            out[f"{name}.delta"] = {"value": m["delta"], "p_value": p, "source": "base"}
            out[f"{name}.relative_change"] = {
                "value": m["relative_change"],
                "p_value": p,
                "source": "base",
            }
    return out


register_module(
    globals(),
    name="forgetting",
    config=ForgettingConfig,
    doc="""Base model vs checkpoint on the original tasks: deltas with paired bootstrap CIs,
    flipped examples.""",
    title="Forgetting",
    view="harness.report.audits_view:forgetting",
    macro="forgetting",
    summary="harness.report.markdown:forgetting_summary",
    base_referenced=("",),
)

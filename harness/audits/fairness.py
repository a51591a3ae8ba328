"""Group fairness of a classification task, through fairlearn's MetricFrame.

Per group (one data field, or the intersections of several): accuracy, F1, selection
rate, true and false positive rate of the favourable choice, and the count; then the
fairlearn disparities over the groups large enough to judge (demographic parity
difference and ratio, equalized odds difference and ratio) and the worst group. Point
values come from MetricFrame and fairlearn's functions; confidence intervals from the
percentile bootstrap of harness.metrics over per-example statistics (fairlearn's own
``n_boot`` re-runs pandas group-bys per resample, about 50 ms each, too slow for 1000
resamples), with the aggregate written to follow fairlearn's conventions exactly (a
group without positives has TPR 0, a ratio with a zero maximum is undefined).

Optional parts: counterfactual swaps (harness.audits.counterfactual) and CrowS-Pairs
style sentence pairs (harness.audits.pairs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, field_validator

from harness.audits.base import (
    NO_SUCH_TASK,
    NOT_CLASSIFICATION,
    NOT_FIXED_CHOICES,
    AuditConfig,
    AuditContext,
    CheckContext,
    DocSection,
    Problem,
    TaskFacts,
    choice_index,
    choice_names,
    clean_interval,
    data_label,
    field_typos,
    num,
    register_module,
)
from harness.errors import UserError, row_error
from harness.sensitive.group_terms import checked_swaps
from harness.tasks import get as get_kind
from harness.tasks.prompt_template import template_fields

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

GROUP_METRICS = ("accuracy", "f1", "selection_rate", "tpr", "fpr")
DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
)
WORST_IS_MAX = frozenset({"fpr"})

EMPTY_SWAPS = "must name at least one swap, e.g. {he: she}"
EMPTY_TERM = "swap terms must be non-empty words"
POSITIVE_NOT_CHOICE = "'{value}' is not one of the task's choices ({choices})"
GROUP_FIELD_MISSING = "audits.fairness.group: missing field '{field}'"
SWAP_FIELD_MISSING = "audits.fairness.counterfactual.fields: missing field '{field}'"
GROUP_OF_ONE = (
    "audits.fairness.group: group '{group}' has only one example; a group needs at least "
    "two to be measured (fix or drop this row, or merge the group)"
)
TOO_FEW_GROUPS = (
    "fewer than two groups have at least min_group_size ({size}) examples: "
    "disparities and worst-group values are undefined"
)
PAIRS_NOT_FOUND = "file not found: {path}"


class CounterfactualConfig(AuditConfig):
    """Swap group terms in the input and compare the predictions."""

    swaps: dict[str, str]
    """Terms to swap, e.g. {he: she, his: her, John: Maria}: whole words, the case of
    each occurrence kept (He -> She)."""
    bidirectional: bool = True
    """Also swap each pair the other way (she -> he), so a text naming both is mirrored."""
    fields: list[str] | None = None
    """Input fields the swaps apply to (default: the fields the task's prompt reads)."""

    @field_validator("swaps")
    @classmethod
    def _swaps(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_swaps(value, EMPTY_SWAPS, EMPTY_TERM)


class PairsConfig(AuditConfig):
    """A CrowS-Pairs style file: in YAML a path, or a mapping naming the columns."""

    path: str
    """.csv, .tsv or .jsonl file of sentence pairs, relative to the suite file."""
    more: str = "sent_more"
    """Column of the more stereotyping sentence."""
    less: str = "sent_less"
    """Column of the less stereotyping sentence."""
    bias_type: str | None = "bias_type"
    """Column of the bias type (scores are also given per type); null: none."""


class FairnessConfig(AuditConfig):
    """Per-group metrics and disparities of a classification task (fairlearn)."""

    task: str
    """Id of the classification task to audit."""
    group: list[str] = Field(min_length=1)
    """Data field(s) holding each example's group; several fields audit their
    intersections (e.g. [gender, age_band])."""
    positive: str | None = None
    """The favourable choice for selection rate, TPR and FPR, as written in `choices`
    (surrounding spaces optional). Default: the second choice."""
    min_group_size: int = Field(default=20, ge=2)
    """Groups with fewer examples are reported but left out of every gated value."""
    counterfactual: CounterfactualConfig | None = None
    """Optional: swap group terms in the input and measure how often predictions flip."""
    pairs: PairsConfig | None = None
    """Optional: a CrowS-Pairs style file; the share of pairs where the model prefers the
    more stereotyping sentence, as lm-evaluation-harness scores crows_pairs."""

    @field_validator("group", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value


# --- checks ------------------------------------------------------------------------------


def check(cfg: FairnessConfig, ctx: CheckContext) -> list[Problem]:
    problems: list[Problem] = []
    facts = ctx.tasks.get(cfg.task)
    if facts is None:
        known = ", ".join(ctx.tasks) or "none"
        problems.append((("task",), NO_SUCH_TASK.format(task=cfg.task, tasks=known)))
    elif facts.kind is not None and not get_kind(facts.kind).has_choices:
        problems.append((("task",), NOT_CLASSIFICATION.format(task=cfg.task, kind=facts.kind)))
    elif facts.per_row_choices:
        problems.append((("task",), NOT_FIXED_CHOICES.format(task=cfg.task)))
    elif (
        facts.choices is not None
        and cfg.positive is not None
        and choice_index(facts.choices, cfg.positive) is None
    ):
        shown = ", ".join(repr(c) for c in facts.choices)
        msg = POSITIVE_NOT_CHOICE.format(value=cfg.positive, choices=shown)
        problems.append((("positive",), msg))
    if cfg.pairs is not None and ctx.check_files:
        from harness.data.rows import resolve_path

        path = resolve_path(cfg.pairs.path, ctx.base_dir)
        if not path.is_file():
            problems.append((("pairs", "path"), PAIRS_NOT_FOUND.format(path=path)))
    return problems


def resolve_paths(cfg: FairnessConfig, base: Path) -> FairnessConfig:
    if cfg.pairs is None:
        return cfg
    from harness.data.rows import resolve_path

    pairs = cfg.pairs.model_copy(update={"path": str(resolve_path(cfg.pairs.path, base))})
    return cfg.model_copy(update={"pairs": pairs})


def swap_fields(cfg: FairnessConfig, task: Any) -> list[str]:
    if cfg.counterfactual is None:
        return []
    if cfg.counterfactual.fields is not None:
        return list(cfg.counterfactual.fields)
    return [f for f in template_fields(task.prompt) if f not in cfg.group]


def check_data(cfg: FairnessConfig, suite: Any, prepared: Mapping[str, Any]) -> list[str]:
    """Every example has its group fields; no group has a single example; pairs load."""
    errors: list[str] = []
    p = prepared.get(cfg.task)
    if p is not None:
        file = data_label(p)
        typos = field_typos(suite, ("audits", "fairness", "group"), cfg.group, p.records, file)
        if cfg.counterfactual is not None and cfg.counterfactual.fields is not None:
            typos += field_typos(
                suite,
                ("audits", "fairness", "counterfactual", "fields"),
                cfg.counterfactual.fields,
                p.records,
                file,
            )
        if typos:
            return typos
        first: dict[tuple[str, ...], int] = {}
        counts: Counter[tuple[str, ...]] = Counter()
        for rec in p.records:
            missing = [f for f in cfg.group if rec["input"].get(f) is None]
            missing_swap = [
                f for f in swap_fields(cfg, p.task) if f not in rec["input"] and f not in missing
            ]
            errors += [
                row_error(file, rec["line"], GROUP_FIELD_MISSING.format(field=f)) for f in missing
            ]
            errors += [
                row_error(file, rec["line"], SWAP_FIELD_MISSING.format(field=f))
                for f in missing_swap
            ]
            if not missing:
                key = group_key(rec, cfg.group)
                counts[key] += 1
                first.setdefault(key, rec["line"])
        for key, n in counts.items():
            if n == 1:
                msg = GROUP_OF_ONE.format(group=" & ".join(key))
                errors.append(row_error(file, first[key], msg))
    if cfg.pairs is not None:
        from harness.audits.pairs import load_pairs

        try:
            load_pairs(cfg.pairs)
        except UserError as exc:
            errors += exc.messages
    return errors


def gate_names(cfg: FairnessConfig, tasks: Mapping[str, TaskFacts]) -> list[str] | None:
    base = f"fairness.{cfg.task}"
    names = [f"{base}.{d}" for d in DISPARITIES]
    names += [f"{base}.worst_group.{m}" for m in GROUP_METRICS]
    if cfg.counterfactual is not None:
        names += [
            f"{base}.counterfactual.{m}"
            for m in ("flip_rate", "mean_prob_change", "mean_abs_prob_change")
        ]
    if cfg.pairs is not None:
        names += [f"{base}.pairs.stereotype_score", f"{base}.pairs.stereotype_score[*]"]
    return names


# --- run ---------------------------------------------------------------------------------


def group_key(rec: Mapping[str, Any], fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(rec["input"][f]) for f in fields)


def positive_index(cfg: FairnessConfig, choices: Sequence[str]) -> int:
    if cfg.positive is None:
        return 1
    index = choice_index(choices, cfg.positive)
    if index is None:  # load_suite checked it; a suite built in code may not be
        shown = ", ".join(repr(c) for c in choices)
        raise UserError(POSITIVE_NOT_CHOICE.format(value=cfg.positive, choices=shown))
    return index


def metric_frame(y_true: Any, y_pred: Any, sensitive: Any, positive: int) -> Any:
    """fairlearn MetricFrame of the per-group metrics (labels are choice indices)."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, f1_score

    def on_positive(fn: Any) -> Any:
        def metric(yt: Any, yp: Any) -> float:
            t = (np.asarray(yt) == positive).astype(int)
            p = (np.asarray(yp) == positive).astype(int)
            return float(fn(t, p))

        return metric

    metrics = {
        "accuracy": accuracy_score,
        "f1": on_positive(lambda t, p: f1_score(t, p, zero_division=0)),
        "selection_rate": on_positive(lambda t, p: selection_rate(t, p, pos_label=1)),
        "tpr": on_positive(lambda t, p: true_positive_rate(t, p, pos_label=1)),
        "fpr": on_positive(lambda t, p: false_positive_rate(t, p, pos_label=1)),
        "count": count,
    }
    return MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=sensitive)


def group_aggregate(gated: np.ndarray) -> Any:
    """Aggregate of per-example rows (group, gold is positive, pred is positive, correct)
    into every group's metrics, the disparities and the worst values: the statistic the
    bootstrap resamples."""
    n_groups = len(gated)

    def aggregate(stats: np.ndarray, params: Any, task: Any) -> dict[str, float]:
        g = stats[:, 0].astype(int)
        y, p, ok = stats[:, 1], stats[:, 2], stats[:, 3]

        def per(weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(g, weights=weights, minlength=n_groups).astype(float)

        n, pos = per(), per(y)
        tp, fp, fn = per(y * p), per((1 - y) * p), per(y * (1 - p))
        present = n > 0
        with np.errstate(all="ignore"):
            values = {
                "accuracy": per(ok) / n,
                "selection_rate": (tp + fp) / n,
                "tpr": np.where(pos > 0, tp / pos, 0.0),
                "fpr": np.where(n - pos > 0, fp / (n - pos), 0.0),
                "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
            }
        out: dict[str, float] = {}
        for name, v in values.items():
            v = np.where(present, v, np.nan)
            values[name] = v
            for i in range(n_groups):
                out[f"{name}[{i}]"] = float(v[i])
        use = gated & present
        if use.sum() < 2:
            return out
        for name in GROUP_METRICS:
            v = values[name][use]
            out[f"worst.{name}"] = float(v.max() if name in WORST_IS_MAX else v.min())
        with np.errstate(all="ignore"):
            ratio = {
                k: values[k][use].min() / values[k][use].max()
                for k in ("selection_rate", "tpr", "fpr")
            }
        spread = {k: np.ptp(values[k][use]) for k in ("selection_rate", "tpr", "fpr")}
        out["demographic_parity_difference"] = float(spread["selection_rate"])
        out["demographic_parity_ratio"] = float(ratio["selection_rate"])
        out["equalized_odds_difference"] = float(max(spread["tpr"], spread["fpr"]))
        out["equalized_odds_ratio"] = float(min(ratio["tpr"], ratio["fpr"]))
        return out

    return aggregate


def run(ctx: AuditContext) -> dict[str, Any]:
    import pandas as pd
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
        equalized_odds_ratio,
    )

    from harness.metrics import score_stats
    from harness.metrics.base import Metric

    cfg: FairnessConfig = ctx.config
    prepared = ctx.prepared[cfg.task]
    task, records = prepared.task, prepared.records
    positive = positive_index(cfg, task.choices)
    y_true = np.asarray([r["gold"] for r in records])
    y_pred = np.asarray([r["pred"] for r in records])
    keys = [group_key(r, cfg.group) for r in records]
    sensitive = pd.DataFrame({f: [k[i] for k in keys] for i, f in enumerate(cfg.group)})
    frame = metric_frame(y_true, y_pred, sensitive, positive)
    by_group = frame.by_group
    groups = sorted({k for k in keys})
    index = {k: i for i, k in enumerate(groups)}
    sizes = Counter(keys)
    gated = np.asarray([sizes[k] >= cfg.min_group_size for k in groups])

    stats = np.column_stack(
        [
            [index[k] for k in keys],
            y_true == positive,
            y_pred == positive,
            y_true == y_pred,
        ]
    ).astype(float)
    metric = Metric(
        name="fairness",
        kinds=frozenset({"classification"}),
        outputs=lambda params, info: [],
        stats=lambda recs, params, info: stats,
        aggregate=group_aggregate(gated),
    )
    boot = score_stats(
        metric,
        stats,
        {},
        task.info(),
        samples=ctx.suite.bootstrap.samples,
        confidence=ctx.suite.bootstrap.confidence,
        seed=ctx.seed,
    )

    def ci(output: str, value: Any, n: int) -> dict[str, Any]:
        entry = dict(boot.get(output, {"value": None, "ci_low": None, "ci_high": None}))
        entry["value"], entry["n"] = value, n
        return clean_interval(entry)

    group_rows: list[dict[str, Any]] = []
    for k in groups:
        row = by_group.loc[k if len(k) > 1 else k[0]]
        i = index[k]
        group_rows.append(
            {
                "group": " & ".join(k),
                "fields": dict(zip(cfg.group, k, strict=True)),
                "count": int(row["count"]),
                "gated": bool(gated[i]),
                **{m: ci(f"{m}[{i}]", row[m], sizes[k]) for m in GROUP_METRICS},
            }
        )
    gated_rows = [r for r in group_rows if r["gated"]]
    n_gated = sum(r["count"] for r in gated_rows)
    note = None
    disparity: dict[str, Any] = {}
    worst: dict[str, Any] = {"group": None, **dict.fromkeys(GROUP_METRICS)}
    if len(gated_rows) >= 2:
        mask = np.asarray([gated[index[k]] for k in keys])
        yt = (y_true[mask] == positive).astype(int)
        yp = (y_pred[mask] == positive).astype(int)
        sf = sensitive[mask].reset_index(drop=True)
        for name, fn in (
            ("demographic_parity_difference", demographic_parity_difference),
            ("demographic_parity_ratio", demographic_parity_ratio),
            ("equalized_odds_difference", equalized_odds_difference),
            ("equalized_odds_ratio", equalized_odds_ratio),
        ):
            disparity[name] = ci(name, fn(yt, yp, sensitive_features=sf), n_gated)
        for m in GROUP_METRICS:
            values = [r[m]["value"] for r in gated_rows if r[m]["value"] is not None]
            worst[m] = num(max(values) if m in WORST_IS_MAX else min(values)) if values else None
        lowest = min(gated_rows, key=lambda r: (r["accuracy"]["value"] or 0.0, r["group"]))
        worst["group"] = lowest["group"]
    else:
        note = TOO_FEW_GROUPS.format(size=cfg.min_group_size)
        disparity = {d: clean_interval({"value": None, "n": n_gated}) for d in DISPARITIES}
    overall = frame.overall
    section: dict[str, Any] = {
        "task": task.id,
        "group_fields": list(cfg.group),
        "positive": choice_names(task.choices)[positive],
        "min_group_size": cfg.min_group_size,
        "n_examples": len(records),
        "overall": {
            **{m: num(overall[m]) for m in GROUP_METRICS},
            "count": int(overall["count"]),
        },
        "groups": group_rows,
        "excluded_groups": [r["group"] for r in group_rows if not r["gated"]],
        "disparity": disparity,
        "worst_group": worst,
        "note": note,
        "counterfactual": None,
        "pairs": None,
    }
    if cfg.counterfactual is not None:
        from harness.audits.counterfactual import run_counterfactual

        fields = swap_fields(cfg, task)
        section["counterfactual"] = run_counterfactual(
            ctx, cfg.counterfactual, task, records, positive, fields
        )
    if cfg.pairs is not None:
        from harness.audits.pairs import load_pairs, score_pairs

        section["pairs"] = score_pairs(ctx, cfg.pairs, load_pairs(cfg.pairs))
    return section


def gate_values(section: Mapping[str, Any]) -> dict[str, GateValue]:
    base = f"fairness.{section['task']}"
    out: dict[str, GateValue] = {}
    for name, entry in section["disparity"].items():
        out[f"{base}.{name}"] = {"value": entry["value"]}
    for m in GROUP_METRICS:
        out[f"{base}.worst_group.{m}"] = {"value": section["worst_group"][m]}
    cf = section.get("counterfactual")
    if cf:
        for m in ("flip_rate", "mean_prob_change", "mean_abs_prob_change"):
            out[f"{base}.counterfactual.{m}"] = {"value": cf[m]["value"]}
    pairs = section.get("pairs")
    if pairs:
        out[f"{base}.pairs.stereotype_score"] = {"value": pairs["stereotype_score"]["value"]}
        for bias, entry in pairs["by_bias_type"].items():
            out[f"{base}.pairs.stereotype_score[{bias}]"] = {"value": entry["value"]}
    return out


register_module(
    globals(),
    name="fairness",
    config=FairnessConfig,
    doc="""Per-group metrics and disparities (fairlearn), counterfactual swaps, CrowS-Pairs
    style sentence pairs.""",
    docs=(
        DocSection(
            CounterfactualConfig,
            "fairness: counterfactual",
            "counterfactual",
            "counterfactual settings",
        ),
        DocSection(PairsConfig, "fairness: pairs", "pairs", "pairs file"),
    ),
    title="Fairness",
    view="harness.report.audits_view:fairness",
    macro="fairness",
    summary="harness.report.markdown:fairness_summary",
)

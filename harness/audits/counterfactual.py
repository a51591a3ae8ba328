"""Counterfactual fairness: swap group terms in the input, re-score, count the flips.

Each example's input fields get the swaps applied (whole words, case kept: with
``{he: she}``, "He" becomes "She" and "HE" "SHE"; by default each pair also swaps the
other way, so "he told her" becomes "she told him" with ``{he: she, him: her}``). The
prompt is rendered again and scored like the original; an example whose text the swaps
do not change is left out. A model that treats groups alike keeps its prediction and
its probability of the positive choice (Kusner et al. 2017, "Counterfactual Fairness";
Garg et al. 2019, "Counterfactual Fairness in Text Classification through Robustness").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from harness.audits.base import MAX_LISTED, AuditContext, choice_names, num
from harness.sensitive.group_terms import compile_swaps, swap_table, swap_terms
from harness.tasks import ChoiceRequest


def run_counterfactual(
    ctx: AuditContext,
    cfg: Any,
    task: Any,
    records: Sequence[dict[str, Any]],
    positive: int,
    fields: Sequence[str],
) -> dict[str, Any]:
    """Flip rate and change of P(positive) under the swaps (section in docs/results.md)."""
    from harness.tasks import kind_of, score_choices

    kind = kind_of(task)
    table = swap_table(cfg.swaps, cfg.bidirectional)
    pattern = compile_swaps(table)
    originals: list[dict[str, Any]] = []
    swapped: list[ChoiceRequest] = []
    changes: list[dict[str, str]] = []
    for rec in records:
        new_input = dict(rec["input"])
        changed: dict[str, str] = {}
        for f in fields:
            value = new_input.get(f)
            if isinstance(value, str):
                new = swap_terms(value, table, pattern)
                if new != value:
                    new_input[f] = changed[f] = new
        if not changed:
            continue
        originals.append(rec)  # the swapped row, prepared as the task prepares its rows
        row = kind.prepare_fields(task, new_input, "counterfactual", rec["line"])
        swapped.append(cast(ChoiceRequest, row))
        changes.append(changed)
    advance = ctx.progress(f"{task.id} (counterfactual)", len(swapped))
    if swapped:
        score_choices(swapped, ctx.lm, batch_size=ctx.batch_size, advance=advance)
    flips: list[float] = []
    deltas: list[float] = []
    flipped: list[dict[str, Any]] = []
    names = choice_names(task.choices)
    for rec, cf, changed in zip(originals, swapped, changes, strict=True):
        flip = rec["pred"] != cf["pred"]
        flips.append(float(flip))
        deltas.append(cf["probs"][positive] - rec["probs"][positive])
        if flip:
            flipped.append(
                {
                    "id": rec["id"],
                    "line": rec["line"],
                    "changed": changed,
                    "pred": names[rec["pred"]],
                    "pred_counterfactual": names[cf["pred"]],
                    "prob": num(rec["probs"][positive]),
                    "prob_counterfactual": num(cf["probs"][positive]),
                }
            )
    return {
        "swaps": dict(cfg.swaps),
        "bidirectional": cfg.bidirectional,
        "fields": list(fields),
        "n_changed": len(swapped),
        "n_flipped": len(flipped),
        "flip_rate": ctx.interval(flips),
        "mean_prob_change": ctx.interval(deltas),
        "mean_abs_prob_change": ctx.interval([abs(d) for d in deltas]),
        "flipped": flipped[:MAX_LISTED],
    }

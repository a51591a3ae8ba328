"""Classification (multiple choice): each choice is scored by the log-likelihood of its
continuation given the rendered prompt, as lm-evaluation-harness scores multiple choice.

The prediction is the argmax (the first choice on ties); the class probabilities are the
softmax over the choices (they feed calibration, fairness and explanations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.errors import UserError, row_error
from harness.tasks.base import Advance, FieldPath, TaskKind, register, render_row, require
from harness.tasks.records import ChoiceRequest, ClassificationRecord

if TYPE_CHECKING:
    from harness.model.api import ScoringModel

LABEL_NOT_CHOICE = "label {value!r} is not among the choices ({choices})"


def resolve_label(value: Any, choices: Sequence[str]) -> int | None:
    """Index of the gold choice from an index or a choice text; None if no match."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(choices) else None
    if isinstance(value, float) and value.is_integer():
        return resolve_label(int(value), choices)
    if isinstance(value, str):
        if value in choices:
            return list(choices).index(value)
        stripped = [c.strip() for c in choices]
        if value.strip() in stripped:
            return stripped.index(value.strip())
        if value.strip().lstrip("-").isdigit():  # "1" from a csv file
            return resolve_label(int(value.strip()), choices)
    return None


def score_choices(
    records: Sequence[ChoiceRequest],
    lm: ScoringModel,
    *,
    batch_size: int,
    advance: Advance | None = None,
) -> None:
    """Score every choice of every record; fill loglik, n_tokens, probs and pred."""
    pairs = [(r["prompt"], c) for r in records for c in r["choices"]]
    per_choice = len(records[0]["choices"]) if records else 0

    def step(n: int) -> None:
        if advance is not None and per_choice:
            advance(n / per_choice)  # type: ignore[arg-type]

    scored = lm.loglikelihood(pairs, batch_size=batch_size, advance=step)
    k = 0
    for rec in records:
        n = len(rec["choices"])
        chunk = scored[k : k + n]
        k += n
        loglik = [s[0] for s in chunk]
        rec["loglik"] = loglik
        rec["n_tokens"] = [s[2] for s in chunk]
        rec["probs"] = softmax(loglik)
        rec["pred"] = max(range(n), key=lambda i: (loglik[i], -i))


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


class Classification(TaskKind[ClassificationRecord]):
    name = "classification"
    has_choices = True
    prepared_fields = ("prompt", "choices", "gold")
    criterion = "pred == gold"

    def data_fields(self, task: Any) -> list[tuple[FieldPath, str]]:
        return [(("label",), task.label)]

    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
        prompt = render_row(task.prompt, fields, file, line)
        value = require(fields, task.label, file, line)
        gold = resolve_label(value, task.choices)
        if gold is None:
            choices = ", ".join(repr(c) for c in task.choices)
            msg = LABEL_NOT_CHOICE.format(value=value, choices=choices)
            raise UserError(row_error(file, line, msg))
        return {"prompt": prompt, "choices": list(task.choices), "gold": gold}

    def run(
        self,
        task: Any,
        records: Sequence[ClassificationRecord],
        lm: ScoringModel,
        *,
        batch_size: int,
        advance: Advance | None = None,
    ) -> None:
        score_choices(records, lm, batch_size=batch_size, advance=advance)

    def truncated_chars(
        self, task: Any, records: Sequence[ClassificationRecord], lm: ScoringModel
    ) -> list[int]:
        return [lm.context_tail(rec["prompt"])[1] for rec in records]

    def metric_inputs(self, record: ClassificationRecord) -> tuple[Any, Any]:
        return record["pred"], record["gold"]

    def correct(self, record: ClassificationRecord) -> bool | None:
        return record.get("pred") == record.get("gold")


CLASSIFICATION = register(Classification())

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
from harness.tasks import context, shots
from harness.tasks.base import (
    Advance,
    FieldPath,
    TaskKind,
    context_cut,
    from_row,
    register,
    render_row,
    require,
)
from harness.tasks.records import ChoiceRequest, ClassificationRecord

if TYPE_CHECKING:
    from harness.model.api import ScoringModel

LABEL_NOT_CHOICE = "label {value!r} is not among the choices ({choices})"


BAD_CHOICES = "choices: {what} (from {source})"


def _continuation(task: Any) -> str | None:
    return getattr(task, "continuation", None)


def _delimiter(task: Any) -> str:
    """The target delimiter: as set, else " " for per-row choices and "" for a fixed list."""
    value = getattr(task, "target_delimiter", None)
    if value is not None:
        return str(value)
    return "" if isinstance(task.choices, list | tuple) else " "


def _top(path: str) -> str:
    """The top-level field a dotted path starts with."""
    return path.split(".", 1)[0]


def _choices_and_gold(
    task: Any, fields: dict[str, Any], file: str, line: int
) -> tuple[list[str], int]:
    """The row's choices and the index of its gold one (UserError located at the row)."""
    if isinstance(task.choices, list | tuple):
        choices = list(task.choices)
    else:
        choices = _row_choices(task.choices, fields, file, line)
    if isinstance(task.label, str):
        value = require(fields, task.label, file, line)
    else:
        value = from_row(task.label, fields, file, line, "label")
    gold = resolve_label(value, choices)
    if gold is None:
        listed = ", ".join(repr(c) for c in choices)
        raise UserError(row_error(file, line, LABEL_NOT_CHOICE.format(value=value, choices=listed)))
    return choices, gold


def _row_choices(spec: Any, fields: dict[str, Any], file: str, line: int) -> list[str]:
    """A row's own choice list: a non-empty list of distinct, non-empty texts (numbers
    are written as text)."""
    value = from_row(spec, fields, file, line, "choices")
    source = f"field '{spec.field}'" if spec.field is not None else "the expression"

    def bad(what: str) -> UserError:
        return UserError(row_error(file, line, BAD_CHOICES.format(what=what, source=source)))

    if not isinstance(value, list | tuple):
        raise bad(f"expected a list, got {type(value).__name__}")
    if not value:
        raise bad("the list is empty")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise bad(f"item {i} is {type(item).__name__}, not text")
        if item == "":
            raise bad(f"item {i} is empty")
        out.append(str(item))
    dups = sorted({c for c in out if out.count(c) > 1})
    if dups:
        raise bad(f"duplicate choice {dups[0]!r}")
    return out


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


def scored_pairs(record: ChoiceRequest) -> list[tuple[str, str]]:
    """The (context, continuation) whose log-likelihood is each choice's score: the
    prompt then ``target_delimiter`` + the choice; with partial scoring (``contexts``),
    the prompt + the choice's context then ``target_delimiter`` + ``continuation``."""
    delimiter = record.get("target_delimiter", "")
    contexts = record.get("contexts")
    if contexts is not None:
        tail = delimiter + record.get("continuation", "")
        return [(record["prompt"] + c, tail) for c in contexts]
    return [(record["prompt"], delimiter + c) for c in record["choices"]]


def score_choices(
    records: Sequence[ChoiceRequest],
    lm: ScoringModel,
    *,
    batch_size: int,
    advance: Advance | None = None,
    unconditional: bool = False,
) -> None:
    """Score every choice of every record; fill loglik, n_tokens, probs and pred, and
    with ``unconditional`` also ``loglik_unconditional`` (each choice's continuation
    scored after an empty context: what ``accuracy_mutual_info`` subtracts)."""
    per_record = [scored_pairs(r) for r in records]
    pairs = [p for ps in per_record for p in ps]
    if unconditional:
        pairs += [("", cont) for ps in per_record for _, cont in ps]
    total = len(pairs)
    done = [0.0]

    def step(n: int) -> None:
        # progress in examples: the share of all pairs answered, times the records
        if advance is not None and total:
            before = int(done[0] * len(records) / total)
            done[0] += n
            after = int(done[0] * len(records) / total)
            if after > before:
                advance(after - before)

    scored = lm.loglikelihood(pairs, batch_size=batch_size, advance=step)
    k = 0
    for rec, ps in zip(records, per_record, strict=True):
        n = len(ps)
        chunk = scored[k : k + n]
        k += n
        loglik = [s[0] for s in chunk]
        rec["loglik"] = loglik
        rec["n_tokens"] = [s[2] for s in chunk]
        rec["probs"] = softmax(loglik)
        rec["pred"] = max(range(n), key=lambda i: (loglik[i], -i))
    if unconditional:
        for rec, ps in zip(records, per_record, strict=True):
            rec["loglik_unconditional"] = [s[0] for s in scored[k : k + len(ps)]]
            k += len(ps)


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


class Classification(TaskKind[ClassificationRecord]):
    name = "classification"
    has_choices = True
    prepared_fields = ("prompt", "choices", "gold", "target_delimiter", "contexts", "continuation")
    criterion = "pred == gold"

    def data_fields(self, task: Any) -> list[tuple[FieldPath, str]]:
        out: list[tuple[FieldPath, str]] = []
        if getattr(task, "messages", None):
            out.append((("messages",), task.messages))
        if isinstance(task.label, str):
            out.append((("label",), task.label))
        elif task.label.field is not None:
            out.append((("label", "field"), _top(task.label.field)))
        if not isinstance(task.choices, list | tuple) and task.choices.field is not None:
            out.append((("choices", "field"), _top(task.choices.field)))
        return out

    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
        choices, gold = _choices_and_gold(task, fields, file, line)
        delimiter, continuation = _delimiter(task), _continuation(task)
        out: dict[str, Any] = {}
        if getattr(task, "messages", None):
            out["prompt"] = context.from_messages(task, fields, file, line)
        elif continuation is None:
            prompt = render_row(task.prompt, fields, file, line)
            out["prompt"] = context.build(
                task, fields, file, line, prompt=prompt, shot=self.shot, delimiter=delimiter
            )
        else:  # partial scoring: the shared part; each choice's context follows
            head = shots.description(task, fields, file, line)
            pairs = shots.solved(task, fields, line, self.shot, file)
            out["prompt"] = shots.plain(head, pairs, "", delimiter, task)
        out["choices"], out["gold"] = choices, gold
        # a chat model's reply starts right after the generation prompt (as lm-eval)
        scored = "" if context.chat_of(task) is not None else delimiter
        if scored:
            out["target_delimiter"] = scored
        if continuation is not None:
            out["contexts"] = [
                render_row(task.prompt, {**fields, "choice": c}, file, line) for c in choices
            ]
            out["continuation"] = render_row(continuation, fields, file, line)
        return out

    def template_variables(self, task: Any) -> tuple[str, ...]:
        return ("choice",) if _continuation(task) is not None else ()

    def shot(self, task: Any, fields: dict[str, Any], file: str, line: int) -> tuple[str, str]:
        choices, gold = _choices_and_gold(task, fields, file, line)
        continuation = _continuation(task)
        if continuation is None:
            return render_row(task.prompt, fields, file, line), choices[gold]
        filled = render_row(task.prompt, {**fields, "choice": choices[gold]}, file, line)
        return filled, render_row(continuation, fields, file, line)

    def run(
        self,
        task: Any,
        records: Sequence[ClassificationRecord],
        lm: ScoringModel,
        *,
        batch_size: int,
        advance: Advance | None = None,
    ) -> None:
        unconditional = any(spec.name == "accuracy_mutual_info" for spec in task.metrics)
        score_choices(
            records, lm, batch_size=batch_size, advance=advance, unconditional=unconditional
        )

    def truncated_chars(
        self, task: Any, records: Sequence[ClassificationRecord], lm: ScoringModel
    ) -> list[int]:
        # the longest context + continuation of each record is the one cut most
        out = []
        for rec in records:
            pairs = scored_pairs(rec)
            context, continuation = max(pairs, key=lambda p: len(p[0]) + len(p[1]))
            out.append(context_cut(lm, context, continuation))
        return out

    def metric_inputs(self, record: ClassificationRecord) -> tuple[Any, Any]:
        return record["pred"], record["gold"]

    def correct(self, record: ClassificationRecord) -> bool | None:
        return record.get("pred") == record.get("gold")


CLASSIFICATION = register(Classification())

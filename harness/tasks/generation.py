"""Generation: greedy decoding of the rendered prompt, cut at the first stop string,
compared with one or more references.

A task with ``extract`` or ``normalize`` (harness.tasks.answers) also stores, per
example, ``gold_answers`` (the references normalized, when the record is prepared) and
``answer`` (the generation's extracted answer, normalized, when it is run); metrics and
``correct`` then compare those, and ``prediction`` stays the raw generation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.errors import UserError, row_error
from harness.tasks import context
from harness.tasks.answers import extract_answer, normalize_answer
from harness.tasks.base import (
    Advance,
    FieldPath,
    TaskKind,
    prompt_cut,
    register,
    render_row,
    require,
)
from harness.tasks.records import GenerationRecord

if TYPE_CHECKING:
    from harness.model.api import ScoringModel


class Generation(TaskKind[GenerationRecord]):
    name = "generation"
    generates = True
    prepared_fields = ("prompt", "references", "gold_answers")
    criterion = "exact match with a reference"

    def data_fields(self, task: Any) -> list[tuple[FieldPath, str]]:
        ref = task.reference
        own = [(("messages",), task.messages)] if getattr(task, "messages", None) else []
        if isinstance(ref, str):
            return [*own, (("reference",), ref)]
        return [*own, *((("reference", j), name) for j, name in enumerate(ref))]

    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
        if getattr(task, "messages", None):
            prompt = context.from_messages(task, fields, file, line)
        else:
            own = render_row(task.prompt, fields, file, line)
            prompt = context.build(
                task, fields, file, line, prompt=own, shot=self.shot, delimiter=_delimiter(task)
            )
        refs = _references(task, fields, file, line)
        out: dict[str, Any] = {"prompt": prompt, "references": refs}
        if _answers(task):
            out["gold_answers"] = [_normalized(task, r) for r in refs]
        return out

    def shot(self, task: Any, fields: dict[str, Any], file: str, line: int) -> tuple[str, str]:
        refs = _references(task, fields, file, line)
        if not refs:
            raise UserError(row_error(file, line, "a few-shot row needs a reference"))
        return render_row(task.prompt, fields, file, line), refs[0]

    def run(
        self,
        task: Any,
        records: Sequence[GenerationRecord],
        lm: ScoringModel,
        *,
        batch_size: int,
        advance: Advance | None = None,
    ) -> None:
        outputs = lm.generate(
            [r["prompt"] for r in records],
            max_new_tokens=task.max_new_tokens,
            stop=stops(task),
            batch_size=batch_size,
            advance=advance,
        )
        answers = _answers(task)
        for rec, text in zip(records, outputs, strict=True):
            rec["prediction"] = text
            if answers:
                extract = getattr(task, "extract", None)
                answer = text if extract is None else extract_answer(text, extract)
                rec["answer"] = _normalized(task, answer)

    def truncated_chars(
        self, task: Any, records: Sequence[GenerationRecord], lm: ScoringModel
    ) -> list[int]:
        # the window keeps room for the tokens to generate
        return [prompt_cut(lm, rec["prompt"], task.max_new_tokens) for rec in records]

    def metric_inputs(self, record: GenerationRecord) -> tuple[Any, Any]:
        pred, refs = compared(record)
        return pred, refs[0]

    def correct(self, record: GenerationRecord) -> bool | None:
        """Exact match with a reference after strip() (the answer with a gold answer
        when the task extracts or normalizes)."""
        pred, refs = compared(record)
        return any(pred.strip() == r.strip() for r in refs)


def compared(record: Any) -> tuple[str, list[str]]:
    """What a generation record's prediction and references are compared as: ``answer``
    and ``gold_answers`` when the task extracts or normalizes answers, else the raw
    ``prediction`` and ``references``."""
    if "gold_answers" in record:
        return str(record.get("answer", "")), [str(r) for r in record["gold_answers"]]
    return str(record.get("prediction", "")), [str(r) for r in record.get("references") or []]


def _answers(task: Any) -> bool:
    """Whether the task extracts or normalizes answers."""
    return (
        getattr(task, "extract", None) is not None or getattr(task, "normalize", None) is not None
    )


def _normalized(task: Any, text: str) -> str:
    cfg = getattr(task, "normalize", None)
    return text if cfg is None else normalize_answer(text, cfg)


def stops(task: Any) -> list[str]:
    """Where a generation ends: the task's stop strings and, for a chat-formatted task,
    the template's end-of-turn marker (a special token stops at that token)."""
    out = list(task.stop)
    chat = context.chat_of(task)
    marker = chat.template.end_of_turn() if chat is not None else None
    if marker and marker not in out:
        out.append(marker)
    return out


def _delimiter(task: Any) -> str:
    value = getattr(task, "target_delimiter", None)
    return " " if value is None else str(value)


def _references(task: Any, fields: dict[str, Any], file: str, line: int) -> list[str]:
    names = [task.reference] if isinstance(task.reference, str) else list(task.reference)
    refs: list[str] = []
    for name in names:
        ref = require(fields, name, file, line)
        if isinstance(ref, list):
            refs.extend(str(r) for r in ref)
        else:
            refs.append(str(ref))
    return refs


GENERATION = register(Generation())

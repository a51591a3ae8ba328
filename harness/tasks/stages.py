"""The task stage as the runner calls it, for a task of any kind: check and prepare the
records from the data rows (no model: ``harness validate`` runs this), run them on a
model, mark the prompts cut to the window. Each step hands the kind-specific part to the
task's TaskKind, looked up in the registry by the task's ``kind``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from jinja2 import UndefinedError

from harness.data.rows import absent_field, columns
from harness.errors import UserError, row_error
from harness.tasks.base import UNDEFINED, Advance, FieldPath, kind_of, render, require
from harness.tasks.records import AnyRecord

if TYPE_CHECKING:
    from harness.data.rows import Row
    from harness.model.api import ScoringModel

DUPLICATE_ID = "duplicate id {id!r} (first seen at line {first})"
MAX_ERRORS = 50


def prepare(task: Any, rows: Sequence[Row], file: str) -> list[AnyRecord]:
    """Build the records of one task from its data rows (no model involved).

    Every problem is reported as ``FILE line N: ...``; all rows are checked and the
    errors reported together.
    """
    kind = kind_of(task)
    own = getattr(task, "prepare_fields", None)  # an lm_eval task makes its own fields
    records: list[AnyRecord] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for row in rows:
        try:
            if own is not None:
                rec = own(row.fields, file, row.line)
            else:
                rec = kind.prepare_fields(task, row.fields, file, row.line)
        except UserError as exc:
            errors.extend(exc.messages)
            continue
        if task.id_field:
            rec_id = str(require(row.fields, task.id_field, file, row.line))
        else:
            rec_id = str(row.line)
        if rec_id in seen:
            errors.append(
                row_error(file, row.line, DUPLICATE_ID.format(id=rec_id, first=seen[rec_id]))
            )
            continue
        seen[rec_id] = row.line
        # the kind's prepared fields complete the record of its type
        record = {"id": rec_id, "line": row.line, "input": dict(row.fields), **rec}
        records.append(cast(AnyRecord, record))
    if errors:
        more = len(errors) - MAX_ERRORS
        raise UserError(errors[:MAX_ERRORS] + ([f"... and {more} more"] if more > 0 else []))
    return records


def field_typos(task: Any, rows: Sequence[Row], source: str) -> list[tuple[FieldPath, str]]:
    """The task's fields that name a data field no row has, as (path under the task,
    message): a typo in the suite, reported once at its line instead of once per row.
    A prompt variable counts when the first row fails to render for want of it (a
    variable read only under ``is defined`` is optional)."""
    kind = kind_of(task)
    fields = columns(rows)
    own = getattr(task, "prepare_fields", None) is not None  # names no field but id_field
    named = [] if own else kind.data_fields(task)
    if task.id_field:
        named.append((("id_field",), task.id_field))
    out = [(path, msg) for path, name in named if (msg := absent_field(name, fields, source))]
    if kind.has_prompt and rows and not own:
        given = kind.template_variables(task)
        for name in ("prompt", "description", "continuation"):
            template = getattr(task, name, None)
            if isinstance(template, str):
                typos = _prompt_typos(template, rows[0], fields, source, given)
                out += [((name,), msg) for msg in typos]
    return out


def _prompt_typos(
    template: str, row: Row, fields: Sequence[str], source: str, given: Sequence[str] = ()
) -> list[str]:
    """Messages for the template variables that make the row fail and no row has
    (``given``: the variables the kind itself provides)."""
    stand_ins: dict[str, str] = dict.fromkeys(given, "")
    found: list[str] = []
    while True:
        try:
            render(template, {**row.fields, **stand_ins})
        except UndefinedError as exc:
            undefined = UNDEFINED.match(str(exc))
            name = undefined[1] if undefined else None
            msg = absent_field(name, fields, source) if name and name not in stand_ins else None
            if name is None or msg is None:
                return found
            found.append(msg)
            stand_ins[name] = ""  # go on to the next missing variable
        except Exception:  # any other problem is the row's own error
            return found
        else:
            return found


def run(
    task: Any,
    records: Sequence[AnyRecord],
    lm: ScoringModel,
    *,
    batch_size: int,
    advance: Advance | None = None,
) -> None:
    """Fill the model outputs of ``records`` in place."""
    kind_of(task).run(task, records, lm, batch_size=batch_size, advance=advance)


def mark_truncation(task: Any, records: Sequence[AnyRecord], lm: ScoringModel) -> int:
    """Mark the records whose prompt was cut to the model's window before tokenizing
    (``truncated_chars``: characters dropped from its start); returns how many were.

    What is cut, and how, is the kind's (perplexity texts are scored whole, never cut)."""
    cut = kind_of(task).truncated_chars(task, records, lm)
    for rec, chars in zip(records, cut, strict=True):
        if chars:
            rec["truncated_chars"] = chars
    return sum(1 for chars in cut if chars)

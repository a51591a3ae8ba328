"""Tasks: data rows -> per-example records -> model requests -> filled records.

Three kinds, as the suite names them:

* ``classification``: each choice is scored by the log-likelihood of its
  continuation given the rendered prompt (as lm-evaluation-harness scores multiple
  choice); the prediction is the argmax, the class probabilities are the softmax over
  the choices (they feed calibration, fairness and explanations).
* ``generation``: greedy decoding, cut at the first stop string.
* ``perplexity``: rolling log-likelihood of the whole text.

Preparing records needs no model, so ``harness validate`` checks every data row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError, UndefinedError

from harness.errors import UserError, row_error
from harness.tasks import prompt_template

if TYPE_CHECKING:
    from harness.data.rows import Row
    from harness.model.language_model import LanguageModel

Record = dict[str, Any]
Advance = Callable[[int], None]

MISSING_FIELD = "missing field '{field}'"
LABEL_NOT_CHOICE = "label {value!r} is not among the choices ({choices})"
DUPLICATE_ID = "duplicate id {id!r} (first seen at line {first})"
_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")


def render(template: str, fields: dict[str, Any]) -> str:
    """Render a prompt template over one record's fields (sandboxed, strict, bounded:
    harness.tasks.prompt_template). A null field counts as missing."""
    return prompt_template.render(template, fields)


def _field(fields: dict[str, Any], name: str, file: str, line: int) -> Any:
    if name not in fields or fields[name] is None:
        raise UserError(row_error(file, line, MISSING_FIELD.format(field=name)))
    return fields[name]


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


def prepare(task: Any, rows: Sequence[Row], file: str) -> list[Record]:
    """Build the records of one task from its data rows (no model involved).

    Every problem is reported as ``FILE line N: ...``; all rows are checked and the
    errors reported together.
    """
    records: list[Record] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for row in rows:
        try:
            rec = _prepare_one(task, row.fields, file, row.line)
        except UserError as exc:
            errors.extend(exc.messages)
            continue
        if task.id_field:
            rec_id = str(_field(row.fields, task.id_field, file, row.line))
        else:
            rec_id = str(row.line)
        if rec_id in seen:
            errors.append(
                row_error(file, row.line, DUPLICATE_ID.format(id=rec_id, first=seen[rec_id]))
            )
            continue
        seen[rec_id] = row.line
        records.append({"id": rec_id, "line": row.line, "input": dict(row.fields), **rec})
    if errors:
        raise UserError(
            errors[:50] + ([f"... and {len(errors) - 50} more"] if len(errors) > 50 else [])
        )
    return records


def field_typos(task: Any, rows: Sequence[Row], source: str) -> list[tuple[tuple[Any, ...], str]]:
    """The task's fields that name a data field no row has, as (path under the task,
    message): a typo in the suite, reported once at its line instead of once per row.
    A prompt variable counts when the first row fails to render for want of it (a
    variable read only under ``is defined`` is optional)."""
    from harness.data.rows import absent_field, columns

    fields = columns(rows)
    named: list[tuple[tuple[Any, ...], str]] = []
    if task.kind == "perplexity":
        named.append((("text",), task.text))
    if task.kind == "classification":
        named.append((("label",), task.label))
    if task.kind == "generation":
        ref = task.reference
        named += (
            [(("reference",), ref)]
            if isinstance(ref, str)
            else [(("reference", j), name) for j, name in enumerate(ref)]
        )
    if task.id_field:
        named.append((("id_field",), task.id_field))
    out = [(path, msg) for path, name in named if (msg := absent_field(name, fields, source))]
    if task.kind != "perplexity" and rows:
        out += [(("prompt",), msg) for msg in _prompt_typos(task.prompt, rows[0], fields, source)]
    return out


def _prompt_typos(template: str, row: Row, fields: Sequence[str], source: str) -> list[str]:
    """Messages for the template variables that make the row fail and no row has."""
    from harness.data.rows import absent_field

    stand_ins: dict[str, str] = {}
    found: list[str] = []
    while True:
        try:
            render(template, {**row.fields, **stand_ins})
        except UndefinedError as exc:
            undefined = _UNDEFINED.match(str(exc))
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


def _prepare_one(task: Any, fields: dict[str, Any], file: str, line: int) -> Record:
    if task.kind == "perplexity":
        text = _field(fields, task.text, file, line)
        if not isinstance(text, str) or not text:
            raise UserError(row_error(file, line, f"field '{task.text}' must be non-empty text"))
        return {"text": text}
    try:
        prompt = render(task.prompt, fields)
    except UndefinedError as exc:
        undefined = _UNDEFINED.match(str(exc))
        msg = MISSING_FIELD.format(field=undefined[1]) if undefined else str(exc)
        raise UserError(row_error(file, line, f"prompt: {msg}")) from None
    except TemplateError as exc:  # prompt_template.TemplateLimit included
        raise UserError(row_error(file, line, f"prompt: {exc}")) from None
    except Exception as exc:  # a row's values the template cannot handle ({{ text + 1 }})
        reason = f"{type(exc).__name__}: {exc}"
        raise UserError(row_error(file, line, f"prompt: {reason}")) from None
    if task.kind == "classification":
        value = _field(fields, task.label, file, line)
        gold = resolve_label(value, task.choices)
        if gold is None:
            raise UserError(
                row_error(
                    file,
                    line,
                    LABEL_NOT_CHOICE.format(
                        value=value, choices=", ".join(repr(c) for c in task.choices)
                    ),
                )
            )
        return {"prompt": prompt, "choices": list(task.choices), "gold": gold}
    refs_fields = [task.reference] if isinstance(task.reference, str) else list(task.reference)
    refs: list[str] = []
    for name in refs_fields:
        ref = _field(fields, name, file, line)
        if isinstance(ref, list):
            refs.extend(str(r) for r in ref)
        else:
            refs.append(str(ref))
    return {"prompt": prompt, "references": refs}


def run(
    task: Any,
    records: list[Record],
    lm: LanguageModel,
    *,
    batch_size: int,
    advance: Advance | None = None,
) -> None:
    """Fill the model outputs of ``records`` in place."""
    if task.kind == "classification":
        score_choices(records, lm, batch_size=batch_size, advance=advance)
    elif task.kind == "generation":
        outputs = lm.generate(
            [r["prompt"] for r in records],
            max_new_tokens=task.max_new_tokens,
            stop=task.stop,
            batch_size=batch_size,
            advance=advance,
        )
        for rec, text in zip(records, outputs, strict=True):
            rec["prediction"] = text
    elif task.kind == "perplexity":
        scored = lm.rolling_loglikelihood(
            [r["text"] for r in records], batch_size=batch_size, advance=advance
        )
        for rec, (loglik, n_tokens) in zip(records, scored, strict=True):
            rec["loglik"] = loglik
            rec["n_tokens"] = n_tokens
            rec["n_bytes"] = len(rec["text"].encode("utf-8"))
            # words counted as lm-eval does (leading/trailing whitespace adds a word)
            rec["n_words"] = len(re.split(r"\s+", rec["text"]))
    else:  # the schema admits no other kind
        raise ValueError(task.kind)


def score_choices(
    records: list[Record], lm: LanguageModel, *, batch_size: int, advance: Advance | None = None
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

"""The TaskKind contract and its registry.

A task kind is what the suite's ``kind:`` names: how a data row becomes a record, which
requests the model gets for it, how the answers become predictions, and the facts other
stages ask of it (does it have choices? does it generate text? which fields of a record
does a metric compare?). Each kind is one module of ``harness.tasks`` that registers an
instance of its ``TaskKind`` subclass; stages look the kind up by name (``get``) instead
of comparing strings. The suite schema (harness.config.suite) stays the schema of the
task configs; a test checks that the kinds it accepts are exactly the registered ones.

Adding a kind: its config model in harness/config/suite.py (``kind: Literal[...]``, added
to the ``Task`` union and ``TASK_CLASSES``); its record type in records.py; a module here
with a ``TaskKind`` subclass that it registers, imported by ``harness/tasks/__init__.py``;
and the kind named in the ``kinds`` of the metrics that apply to it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from jinja2 import TemplateError, UndefinedError

from harness.errors import UserError, row_error
from harness.tasks import prompt_template
from harness.tasks.records import BaseRecord

if TYPE_CHECKING:
    from harness.model.api import ScoringModel

Advance = Callable[[int], None]
"""Progress callback: called with the number of examples just finished."""
FieldPath = tuple[Any, ...]
"""A path below the task in the suite (``("reference", 1)``)."""

MISSING_FIELD = "missing field '{field}'"
UNDEFINED = re.compile(r"^'([^']+)' is undefined$")

R = TypeVar("R", bound=BaseRecord)


class TaskKind(ABC, Generic[R]):
    """One kind of task; ``R`` is its record type (harness.tasks.records).

    ``task`` arguments are the task's config (a harness.config.suite task model, or any
    object with the same attributes).
    """

    name: ClassVar[str]
    """The suite's ``kind:`` value."""
    has_choices: ClassVar[bool] = False
    """Records carry ``choices``, ``gold``, ``probs`` and ``pred``: what the audits that
    need a classification task (fairness, explain, counterfactual, forgetting's flips)
    and active learning use."""
    generates: ClassVar[bool] = False
    """The model writes free text (``prediction``): what the PII scan reads."""
    has_prompt: ClassVar[bool] = True
    """Records are rendered from the task's ``prompt`` template."""
    prepared_fields: ClassVar[tuple[str, ...]] = ()
    """The kind's fields that ``prepare`` sets (beside id, line, input); the rest are
    model outputs, which re-running the task on another model replaces."""
    criterion: ClassVar[str | None] = None
    """How ``correct`` judges an example, in words (None: the kind has no such notion)."""

    @abstractmethod
    def data_fields(self, task: Any) -> list[tuple[FieldPath, str]]:
        """The data fields the task's config names, as (path under the task, field)."""

    @abstractmethod
    def prepare_fields(
        self, task: Any, fields: dict[str, Any], file: str, line: int
    ) -> dict[str, Any]:
        """The kind's prepared fields of one row (UserError located at the row): the
        part of ``R`` beyond id, line and input, in the order results.json stores them."""

    @abstractmethod
    def run(
        self,
        task: Any,
        records: Sequence[R],
        lm: ScoringModel,
        *,
        batch_size: int,
        advance: Advance | None = None,
    ) -> None:
        """Make the model requests of ``records`` in batches and fill their outputs."""

    def truncated_chars(self, task: Any, records: Sequence[R], lm: ScoringModel) -> list[int]:
        """Per record, the characters of its prompt cut to fit the model's window before
        tokenizing (0: none). The default: nothing is ever cut."""
        return [0] * len(records)

    def template_variables(self, task: Any) -> tuple[str, ...]:
        """Variables the kind gives the task's templates besides the row's fields."""
        return ()

    def shot(self, task: Any, fields: dict[str, Any], file: str, line: int) -> tuple[str, str]:
        """One row as a solved few-shot example: (its rendered prompt, its gold target)
        (harness.tasks.shots; UserError located at the row)."""
        raise UserError(row_error(file, line, f"a {self.name} task has no few-shot form"))

    def metric_inputs(self, record: R) -> tuple[Any, Any]:
        """(prediction, reference) of one record, as a plug-in metric compares them."""
        raise ValueError(f"a {self.name} task has no prediction to compare")

    def correct(self, record: R) -> bool | None:
        """Whether one example is right; None when the kind has no notion of it."""
        return None

    def clear_outputs(self, record: R) -> R:
        """A copy of ``record`` as ``prepare`` made it, without model outputs or stats."""
        keep = ("id", "line", "input", *self.prepared_fields)
        return cast(R, {k: v for k, v in record.items() if k in keep})


_REGISTRY: dict[str, TaskKind[Any]] = {}


def register(kind: TaskKind[R]) -> TaskKind[R]:
    """Add a task kind; a duplicate name is refused."""
    if kind.name in _REGISTRY:
        raise ValueError(f"task kind {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def get(name: str) -> TaskKind[Any]:
    """The task kind registered as ``name`` (KeyError if none)."""
    return _REGISTRY[name]


def available() -> list[str]:
    """Sorted names of the registered task kinds."""
    return sorted(_REGISTRY)


def find(name: object) -> TaskKind[Any] | None:
    """The task kind named ``name``, or None: for readers of a stored results file,
    where the kind may be missing or unknown."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def kind_of(task: Any) -> TaskKind[Any]:
    """The TaskKind of a task config: its ``scored_kind`` when it has one (an ``lm_eval``
    task scores as the kind its lm-eval output type names), else its ``kind``."""
    return get(getattr(task, "scored_kind", None) or task.kind)


# -- helpers the kinds share ------------------------------------------------------------


def fits_unseen(lm: Any, window: int, *texts: str) -> bool:
    """Whether ``texts`` surely fit in ``window`` tokens, told without tokenizing them
    where the model can (``surely_fits``: by their bytes, or by a count that needs no
    tokenizer loaded), so a re-run answered from the cache loads no tokenizer."""
    check = getattr(lm, "surely_fits", None)
    return bool(check(window, *texts)) if check is not None else False


def context_cut(lm: ScoringModel, context: str, continuation: str) -> int:
    """Characters at the start of ``context`` the model does not see when scoring
    ``continuation`` after it: those cut before tokenizing (``context_tail``) and those
    of the tokens the window then drops from the left (as ``scoring.continuation_row``
    keeps the last ``max_length + 1`` tokens of context and continuation). A pair too
    short to reach the window is not tokenized (``fits_unseen``)."""
    if fits_unseen(lm, lm.max_length + 1, context, continuation):
        return 0
    kept, cut = lm.context_tail(context)
    if hasattr(lm, "overflow_chars"):  # the pair's tokens are the whole text's
        return cut + int(lm.overflow_chars(kept + continuation, lm.max_length + 1))
    ctx, cont = lm.encode_pair(kept, continuation)
    overflow = len(ctx) + len(cont) - (lm.max_length + 1)
    if overflow > 0:
        cut += len(lm.tokenizer.decode(ctx[:overflow], skip_special_tokens=True)) or overflow
    return cut


def prompt_cut(lm: ScoringModel, prompt: str, max_new_tokens: int) -> int:
    """Characters at the start of a generation prompt the model does not see: those cut
    before tokenizing (``prompt_tail``) and those of the tokens beyond the window less
    the new tokens (the backend keeps the last ``max_length - max_new_tokens``)."""
    if fits_unseen(lm, max(1, lm.max_length - max_new_tokens), prompt):
        return 0
    kept, cut = lm.prompt_tail(prompt, max_new_tokens)
    if hasattr(lm, "overflow_chars"):
        return cut + int(lm.overflow_chars(kept, max(1, lm.max_length - max_new_tokens)))
    ids = lm.encode(kept)
    overflow = len(ids) - max(1, lm.max_length - max_new_tokens)
    if overflow > 0:
        cut += len(lm.tokenizer.decode(ids[:overflow], skip_special_tokens=True)) or overflow
    return cut


def require(fields: dict[str, Any], name: str, file: str, line: int) -> Any:
    """A row's field; missing or null is an error located at the row."""
    if name not in fields or fields[name] is None:
        raise UserError(row_error(file, line, MISSING_FIELD.format(field=name)))
    return fields[name]


def lookup(fields: dict[str, Any], path: str) -> Any:
    """A row's field by name, or a dotted path into nested mappings (``choices.text``);
    None when absent. A field whose own name holds a dot is found first."""
    if path in fields:
        return fields[path]
    value: Any = fields
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def from_row(spec: Any, fields: dict[str, Any], file: str, line: int, where: str) -> Any:
    """The value a ``FromRow`` spec (``field`` or ``expr``) gives for one row; a missing
    field or a failing expression is an error located at the row, prefixed by ``where``."""
    if spec.field is not None:
        value = lookup(fields, spec.field)
        if value is None:
            raise UserError(row_error(file, line, MISSING_FIELD.format(field=spec.field)))
        return value
    try:
        return prompt_template.evaluate(spec.expr, fields)
    except UndefinedError as exc:
        undefined = UNDEFINED.match(str(exc))
        msg = MISSING_FIELD.format(field=undefined[1]) if undefined else str(exc)
        raise UserError(row_error(file, line, f"{where}: {msg}")) from None
    except Exception as exc:  # the expression fails on this row's values
        reason = f"{type(exc).__name__}: {exc}"
        raise UserError(row_error(file, line, f"{where}: {reason}")) from None


def render(template: str, fields: dict[str, Any]) -> str:
    """Render a prompt template over one record's fields (sandboxed, strict, bounded:
    harness.tasks.prompt_template). A null field counts as missing."""
    return prompt_template.render(template, fields)


def render_row(template: str, fields: dict[str, Any], file: str, line: int) -> str:
    """``render`` for a data row: every failure is a UserError located at the row."""
    try:
        return render(template, fields)
    except UndefinedError as exc:
        undefined = UNDEFINED.match(str(exc))
        msg = MISSING_FIELD.format(field=undefined[1]) if undefined else str(exc)
        raise UserError(row_error(file, line, f"prompt: {msg}")) from None
    except TemplateError as exc:  # prompt_template.TemplateLimit included
        raise UserError(row_error(file, line, f"prompt: {exc}")) from None
    except Exception as exc:  # a row's values the template cannot handle ({{ text + 1 }})
        reason = f"{type(exc).__name__}: {exc}"
        raise UserError(row_error(file, line, f"prompt: {reason}")) from None

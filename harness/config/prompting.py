"""The suite schema of what builds a prompt besides its template: values each row gives
(``FromRow``: a task's per-row ``choices`` and ``label``) and the few-shot settings
(``FewShot``). Used by harness.config.schema's prompt tasks; applied by
harness.tasks.classification and harness.tasks.shots."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.config.schema_base import StrictModel
from harness.config.sources import DataSource

# user-facing messages (tests assert them exactly)
BAD_EXPRESSION = "invalid expression: {reason}"
FROM_ROW_ONE = "give exactly one of `field` and `expr`"


def _check_expression(expression: str) -> str:
    from jinja2 import TemplateSyntaxError

    from harness.tasks import prompt_template

    try:
        prompt_template.check_expression(expression)
    except TemplateSyntaxError as exc:
        raise ValueError(BAD_EXPRESSION.format(reason=exc.message)) from None
    return expression


class FromRow(StrictModel):
    """A value each row gives: a field (`{field: NAME}`, a dotted path such as
    `choices.text` reads inside a mapping) or a Jinja expression over the row's fields
    (`{expr: "[option1, option2]"}`); exactly one of the two."""

    field: str | None = Field(default=None, min_length=1)
    """The field holding the value; `a.b` is field `b` of the mapping in field `a`."""
    expr: str | None = Field(default=None, min_length=1)
    """A Jinja expression (sandboxed, as prompts are), e.g. `choices.label.index(answerKey)`."""

    @field_validator("expr")
    @classmethod
    def _expr(cls, value: str | None) -> str | None:
        return None if value is None else _check_expression(value)

    @model_validator(mode="after")
    def _one(self) -> FromRow:
        if (self.field is None) == (self.expr is None):
            raise ValueError(FROM_ROW_ONE)
        return self


def _list_or_row(value: Any) -> str | None:
    if isinstance(value, list):
        return "list"
    return "row" if isinstance(value, dict | FromRow) else None


def _field_or_row(value: Any) -> str | None:
    if isinstance(value, str):
        return "field"
    return "row" if isinstance(value, dict | FromRow) else None


class FewShot(StrictModel):
    """Few-shot examples put before each prompt. A shot is the shot row's rendered
    prompt, the task's `target_delimiter`, its gold target (the gold choice, or the first
    reference) and `delimiter`; `description` comes first, then the shots, then the
    example's own prompt, as lm-evaluation-harness builds its contexts."""

    n: int = Field(ge=0, le=64)
    """Number of shots per example."""
    data: DataSource | None = None
    """Where shots come from: a file or a `datasets` source, as the task's `data`
    (default: the task's own data, every row of it, before `limit`)."""
    sampler: Literal["first_n", "random"] = "first_n"
    """first_n: the first `n` rows (the same shots for every example, as lm-eval's
    first_n sampler); random: `n` rows drawn per example with `seed` and the example's
    line, so a re-run draws the same shots."""
    seed: int | None = None
    """Seed of the random sampler (default: the suite's `seed`)."""
    delimiter: str = "\n\n"
    """Text after each shot (lm-eval's fewshot_delimiter)."""
    exclude_self: bool | None = None
    """Leave out a shot row equal to the example itself (default: true when the shots
    come from the task's own data, else false)."""
    match: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Fields whose values a shot row must share with the example, e.g. `[subject]` for
    MMLU, whose shots come from the example's own subject (lm-eval's per-subject tasks)."""


class ChatSettings(StrictModel):
    """Render prompts with the model's chat template, as a chat model is served: the
    rendered prompt becomes a user turn (after a system turn holding `system` and the
    task's `description`), a classification task scores each choice as the start of the
    assistant's reply, a generation task generates that reply and also stops at the
    template's end-of-turn marker. Exactly one BOS starts every sequence. Set on the
    suite (every prompt task) or on a task (overrides the suite's)."""

    enabled: bool = True
    """false turns chat formatting off (e.g. for one task of a chat suite)."""
    system: str | None = None
    """The system prompt (lm-eval's `--system_instruction`)."""
    template: str = Field(default="tokenizer", min_length=1)
    """`tokenizer`: the chat template of the model's tokenizer (of the adapter's, when it
    ships one); else a Jinja file (relative to the suite file)."""
    fewshot_as_multiturn: bool = False
    """Few-shot examples as user/assistant turns (lm-eval's `--fewshot_as_multiturn`);
    default: folded into the one user turn as plain text."""

"""The suite schema of a task (pydantic): the models of one entry of `tasks`, one per
kind (`ClassificationTask`, `GenerationTask`, `PerplexityTask`, `LmEvalTask`) and what
they share (`MetricSpec`, the prompt templates' checks). harness.config.schema builds
the suite around them and re-exports every name here; the field docstrings are the
suite reference (harness.config.reference)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.config.answers import Extract, Normalize
from harness.config.prompting import ChatSettings, FewShot, FromRow, _field_or_row, _list_or_row
from harness.config.schema_base import StrictModel
from harness.config.sources import DataSource
from harness.tasks.lm_eval import LmEvalMethods, refuse_data

if TYPE_CHECKING:
    from harness.metrics.base import TaskInfo

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

# user-facing messages (tests assert them exactly)
PROMPT_OR_MESSAGES = "give exactly one of `prompt` and `messages`"
TEXT_OR_MESSAGES = "give exactly one of `text` and `messages`"
MESSAGES_ALONE = "`messages` is the whole context: it takes no `fewshot` or `description`"
BAD_IDENTIFIER = "must start with a letter or '_' and hold only letters, digits, '_' and '-'"
BAD_TEMPLATE = "invalid template: {reason}"
CHOICE_TEMPLATE = (
    "{choice!r} holds template syntax, but choices are not templates: each is scored as "
    "written, the same for every row; write the continuation text itself"
)


class _Strict(StrictModel):
    """Base of the suite's schemas (harness.config.schema_base)."""


def _check_template(template: str) -> str:
    from jinja2 import TemplateSyntaxError

    from harness.tasks import prompt_template

    try:
        prompt_template.check(template)
    except TemplateSyntaxError as exc:
        where = f" (template line {exc.lineno})" if "\n" in template.strip() else ""
        raise ValueError(BAD_TEMPLATE.format(reason=f"{exc.message}{where}")) from None
    except prompt_template.TemplateLimit as exc:
        raise ValueError(BAD_TEMPLATE.format(reason=str(exc))) from None
    return template


def _literal_choice(choice: str) -> str:
    """A choice is scored as written: one that looks like a template is a mistake."""
    from harness.tasks.prompt_template import TEMPLATE_SYNTAX

    if TEMPLATE_SYNTAX.search(choice):
        raise ValueError(CHOICE_TEMPLATE.format(choice=choice))
    return choice


def _check_identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(BAD_IDENTIFIER)
    return value


class MetricSpec(_Strict):
    """One metric of a task. In YAML: a name (`accuracy`), or a mapping holding the name
    and the parameters (`{name: f1, average: macro}`)."""

    name: str = Field(min_length=1)
    """A registered metric, or the path (relative to the suite file) of an `evaluate`
    metric script: a name starting with './', '../' or '/' or ending in '.py'."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The metric's parameters; after loading, every default is filled in."""

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data}
        if not isinstance(data, dict):
            raise ValueError("must be a metric name or a mapping {name: NAME, <param>: VALUE}")
        if (
            "params" in data
            and isinstance(data["params"], dict)
            and set(data) <= {"name", "params"}
        ):
            return data  # the stored (model_dump) form
        out: dict[str, Any] = {"params": {k: v for k, v in data.items() if k != "name"}}
        if "name" in data:
            out["name"] = data["name"]
        return out


def _metrics_field(*names: str) -> Any:
    return Field(
        default_factory=lambda: [MetricSpec(name=n) for n in names],
        min_length=1,
        description="Metrics to compute, each a name or a mapping "
        "`{name: NAME, <param>: VALUE}` (the default depends on the kind).",
    )


def _one_of(
    cls: type, data: Any, handler: ModelWrapValidatorHandler[Any], first: str, other: str, both: str
) -> Any:
    """Validate with ``handler``; exactly one of the fields ``first`` and ``other`` must
    be given. Neither: ``first`` is a missing field, reported beside the other errors."""
    missing = isinstance(data, dict) and data.get(first) is None and data.get(other) is None
    if isinstance(data, dict) and data.get(first) is not None and data.get(other) is not None:
        raise ValueError(both)
    try:
        model = handler(data)
    except ValidationError as exc:
        if not missing:
            raise
        errors = [*exc.errors(), {"type": "missing", "loc": (first,), "input": data}]
        raise ValidationError.from_exception_data(cls.__name__, errors) from None  # type: ignore[arg-type]
    if missing:
        error = {"type": "missing", "loc": (first,), "input": data}
        raise ValidationError.from_exception_data(cls.__name__, [error])  # type: ignore[list-item]
    return model


class _Task(_Strict):
    id: str
    """Identifier of the task, unique in the suite; gates name values as `<id>.<output>`."""
    kind: str
    """The task kind: classification | generation | perplexity | lm_eval."""
    data: DataSource
    """A .jsonl, .csv or .tsv file relative to the suite file, or a `datasets` source
    {dataset: NAME, split: test, name: CONFIG, data_files: ...}."""
    id_field: str | None = None
    """Field giving each example a stable id (default: its line/row number)."""
    metrics: list[MetricSpec]
    limit: int | None = Field(default=None, ge=1)
    """Cap on this task's examples (sampled with the suite's seed); overrides the suite's
    `limit`."""
    chat: ChatSettings | None = None
    """Chat formatting of this task (see below; default: the suite's `chat`)."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_identifier(value)

    @property
    def scored_kind(self) -> str:
        """The task kind that makes and scores its records (an lm_eval task's differs)."""
        return self.kind

    def info(self) -> TaskInfo:
        """What a metric may know about this task (harness.metrics.base.TaskInfo)."""
        from harness.metrics.base import TaskInfo

        per_row = not isinstance(getattr(self, "choices", []), list)
        return TaskInfo(
            kind=self.scored_kind,
            choices=tuple(getattr(self, "fixed_choices", ())),
            per_row_choices=per_row,
        )


class _PromptTask(_Task):
    prompt: str | None = Field(default=None, min_length=1)
    """Jinja2 template over the record's fields (sandboxed), e.g. "Review: {{ text }}".
    Required unless `messages` is set."""
    messages: str | None = Field(default=None, min_length=1)
    """Instead of `prompt`: the field holding each row's conversation, a list of
    {role, content} ending with a user turn, rendered with the chat template (needs
    `chat`; no `fewshot` or `description`: the conversation is the whole context)."""
    description: str | None = None
    """Template rendered over each row and put first, before the shots (lm-eval's
    `description`), e.g. "The following are questions about {{ subject }}.\\n\\n"."""
    fewshot: FewShot | None = None
    """Few-shot examples before each prompt (see below)."""
    _shot_pool: Any = PrivateAttr(default=None)  # harness.tasks.shots.attach_pool
    target_delimiter: str | None = None
    """Text between a prompt and its answer (lm-eval's target_delimiter): scored before
    each choice of a classification task, and put between each shot's prompt and its
    target. Default: " " (as lm-eval), except for a classification task with a fixed
    choice list, whose choices carry their own leading space: ""."""

    @field_validator("prompt", "description")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @model_validator(mode="wrap")
    @classmethod
    def _prompt_or_messages(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # neither given: `prompt` is missing, reported with the task's other errors
        return _one_of(cls, data, handler, "prompt", "messages", PROMPT_OR_MESSAGES)

    @model_validator(mode="after")
    def _messages_alone(self) -> _PromptTask:
        if self.messages is not None and (self.fewshot or self.description):
            raise ValueError(MESSAGES_ALONE)
        return self


class ClassificationTask(_PromptTask):
    """Multiple choice: each choice is scored by its log-likelihood after the prompt."""

    kind: Literal["classification"]
    """Selects this kind of task."""
    choices: Annotated[
        Annotated[
            list[Annotated[str, Field(min_length=1), AfterValidator(_literal_choice)]],
            Tag("list"),
        ]
        | Annotated[FromRow, Tag("row")],
        Discriminator(
            _list_or_row,
            custom_error_type="choices",
            custom_error_message="must be a list of choices or a mapping {field: NAME} "
            "or {expr: EXPRESSION}",
        ),
    ]
    """The continuations to score. A list (at least 2, all different), e.g.
    [" negative", " positive"]: literal text, the same for every row (a choice holding
    `{{`, `{%` or `{#` is refused). Or each row's own list: `{field: NAME}` (e.g. HellaSwag's
    `endings`, ARC's `choices.text`) or `{expr: EXPRESSION}`; a row whose list is empty,
    not a list of texts, or has duplicates is an error at that row."""
    label: Annotated[
        Annotated[str, Tag("field")] | Annotated[FromRow, Tag("row")],
        Discriminator(
            _field_or_row,
            custom_error_type="label",
            custom_error_message="must be a field name or a mapping {expr: EXPRESSION}",
        ),
    ]
    """Field holding the gold choice, as an index (0-based) or as the choice text; or
    `{expr: EXPRESSION}` giving either (e.g. `choices.label.index(answerKey)`)."""
    continuation: str | None = None
    """Partial scoring (Winogrande): a template for the text scored after each choice.
    The prompt is then rendered once per choice with the choice as `{{ choice }}`, and
    the log-likelihood of `target_delimiter` + this continuation after it is the
    choice's score."""
    metrics: list[MetricSpec] = _metrics_field("accuracy")

    @field_validator("choices")
    @classmethod
    def _unique(cls, value: list[str] | FromRow) -> list[str] | FromRow:
        if isinstance(value, FromRow):
            return value
        if len(value) < 2:
            raise ValueError("needs at least 2 choices")
        dups = sorted({c for c in value if value.count(c) > 1})
        if dups:
            raise ValueError(f"duplicate choice {dups[0]!r}")
        return value

    @field_validator("continuation")
    @classmethod
    def _continuation(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @property
    def fixed_choices(self) -> tuple[str, ...]:
        """The choices when they are one list for every row, else ()."""
        return tuple(self.choices) if isinstance(self.choices, list) else ()


class GenerationTask(_PromptTask):
    """Free text generation (greedy), compared with one or more references."""

    kind: Literal["generation"]
    """Selects this kind of task."""
    reference: list[str] = Field(min_length=1)
    """Field holding the reference text, or a list of fields for several references
    (stored as a list)."""
    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    """Most tokens to generate per example."""
    stop: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Strings that end the generation; the output is cut before the first one."""
    metrics: list[MetricSpec] = _metrics_field("bleu", "rouge")
    extract: Extract | None = None
    """Take the answer out of each generation with a regular expression; metrics then
    compare the answer (normalized) with the references (normalized). The raw generation
    is kept beside it. References are not extracted, as in lm-eval: cut them with
    `normalize.remove` (GSM8K: `'(?s).*#### '`)."""
    normalize: Normalize | None = None
    """Put the answer (or, without `extract`, the whole generation) and every reference
    in one form before metrics."""

    @field_validator("reference", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class PerplexityTask(_Task):
    """Language modelling: log-likelihood of whole texts."""

    kind: Literal["perplexity"]
    """Selects this kind of task."""
    text: str | None = Field(default=None, min_length=1)
    """Field holding the text to score (required unless `messages` is set)."""
    messages: str | None = Field(default=None, min_length=1)
    """Instead of `text`: the field holding a conversation (list of {role, content}),
    rendered with the chat template (needs `chat`) and scored as `score` says."""
    score: Literal["all", "assistant"] = "all"
    """With `messages`: `all` scores the whole rendered conversation; `assistant` only
    the assistant turns, each after the conversation before it."""
    metrics: list[MetricSpec] = _metrics_field("perplexity")

    @model_validator(mode="wrap")
    @classmethod
    def _text_or_messages(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        return _one_of(cls, data, handler, "text", "messages", TEXT_OR_MESSAGES)


class LmEvalTask(LmEvalMethods, _Task):
    """A task of lm-evaluation-harness (e.g. `hellaswag`), scored as the kind its
    `output_type` names: `multiple_choice` as classification, `generate_until` as generation,
    `loglikelihood_rolling` as perplexity. Needs `pip install 'llm-release-harness[lmeval]'`."""

    kind: Literal["lm_eval"]
    """Selects this kind of task."""
    data: Annotated[None, BeforeValidator(refuse_data)] = None  # type: ignore[assignment]
    """Not used: the documents are the lm-eval task's own (a hub dataset needs the network)."""
    task: str = Field(min_length=1)
    """The lm-eval task name, e.g. `hellaswag` (one task, not a group or tag)."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """Shots per prompt, drawn as the task's `fewshot_config` says (default: its own, else 0)."""
    include_path: str | None = None
    """A folder of lm-eval task YAMLs (relative to the suite file), searched before
    lm-eval's own tasks, as lm-eval's `--include_path`."""
    fewshot_seed: int = 1234
    """Seed of lm-eval's few-shot sampler (its `fewshot_random_seed`)."""
    metrics: list[MetricSpec] = Field(min_length=1)
    """Metrics for the kind the task scores as, e.g. `[accuracy, accuracy_norm]`."""

    _resolved: Any = PrivateAttr(default=None)
    _loaded: Any = PrivateAttr(default=None)

    def info(self) -> TaskInfo:  # each document of a multiple_choice task has its own choices
        from harness.metrics.base import TaskInfo

        return TaskInfo(kind=self.scored_kind, per_row_choices=self.has_choices)


AnyTask = ClassificationTask | GenerationTask | PerplexityTask | LmEvalTask
Task = Annotated[AnyTask, Field(discriminator="kind")]
TASK_CLASSES: dict[str, type[_Task]] = {
    "classification": ClassificationTask,
    "generation": GenerationTask,
    "perplexity": PerplexityTask,
    "lm_eval": LmEvalTask,
}
_validate_task = TypeAdapter(Task).validate_python

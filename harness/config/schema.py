"""The suite schema (pydantic): the models of a suite document and their validators.

A suite names a model, the tasks to evaluate it on, the metrics of each task and the
gates a release must pass; its ``audits`` section has one field per registered audit
(``sync_audits``, from the audit registry, harness.audits). The field docstrings below
are the suite reference (docs/suite-reference.md is generated from them by
harness.config.reference). Reading a suite file is harness.config.suite.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from harness import audits
from harness.config import yaml_marks
from harness.config.answers import Extract, Normalize
from harness.config.prompting import (
    FewShot,
    FromRow,
    _field_or_row,
    _list_or_row,
)
from harness.config.schema_base import StrictModel
from harness.config.sources import DatasetSource, DataSource
from harness.data.rows import (
    display_path,
    resolve_path,
)
from harness.errors import located
from harness.tasks.lm_eval import LmEvalMethods, refuse_data

if TYPE_CHECKING:
    from harness.metrics.base import TaskInfo

SCHEMA_VERSION = 1

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# user-facing messages (tests assert them exactly)
BAD_IDENTIFIER = "must start with a letter or '_' and hold only letters, digits, '_' and '-'"
DUPLICATE_TASK = "duplicate task id '{id}' (first used by tasks[{first}])"
UNKNOWN_METRIC = "unknown metric '{name}'; available: {available}"
METRIC_KIND = "metric '{name}' does not apply to {kind} tasks; available: {available}"
UNKNOWN_PARAM = "unknown parameter '{param}' of metric '{name}'; allowed: {allowed}"
NO_PARAMS = "unknown parameter '{param}': metric '{name}' takes no parameters"
DUPLICATE_OUTPUT = "output '{output}' is already produced by metrics[{first}]"
PLUGIN_NOT_FOUND = "metric plug-in not found: {path}"
NO_SUCH_TASK = "no task '{task}'; tasks: {tasks}"
NO_SUCH_OUTPUT = "task '{task}' produces no '{output}'; it produces: {outputs}"
FOLDER_NOT_FOUND = "folder not found: {path}"
GATE_METRIC = "must be '<task id>.<output>', e.g. 'sentiment.accuracy'"
GATE_THRESHOLD = "needs at least one of: {names}"
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


class ModelSpec(_Strict):
    """The model under evaluation."""

    path: str
    """HF checkpoint folder (relative to the suite file), or a hub id such as 'gpt2' or
    'org/name'. A string starting with '.', '/' or '~', or naming an existing folder, is
    a local path and must exist; anything else is a hub id (needs network)."""
    adapter: str | None = None
    """PEFT adapter folder (or hub id) applied on top of `path`; the base model's
    behaviour (for the forgetting audit) is the same model with the adapter disabled."""
    allow_pickle: bool = False
    """Load .bin/.pt (pickle) weights; refused unless true, since unpickling runs code."""
    trust_remote_code: bool = False
    """Allow the checkpoint's own Python code (transformers' trust_remote_code)."""
    allow_base_mismatch: bool = False
    """Evaluate `adapter` on a base other than the one it was trained on (its manifest's
    base fingerprint, or its config's base model); refused unless true, and recorded in
    provenance either way."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight and compute dtype."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps. auto picks cuda, then mps, then cpu."""
    max_length: int | None = Field(default=None, ge=8)
    """Context window override in tokens (default: the model's own)."""

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE.match(value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got '{value}'")
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
    prompt: str = Field(min_length=1)
    """Jinja2 template over the record's fields (sandboxed), e.g. "Review: {{ text }}"."""
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
    text: str = Field(min_length=1)
    """Field holding the text to score."""
    metrics: list[MetricSpec] = _metrics_field("perplexity")


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


def _threshold(description: str) -> Any:
    """A gate threshold field; `Gate` requires at least one of them to be set."""
    return Field(
        default=None,
        allow_inf_nan=False,
        description=description,
        json_schema_extra={"threshold": True},
    )


class Gate(_Strict):
    """A release condition on one metric value."""

    metric: str
    """The value to check, `<task id>.<output>` (parsed at the first dot), e.g.
    `sentiment.accuracy`, `summarize.rougeL`, `sentiment.f1[negative]`, or a value an
    audit publishes, e.g. `forgetting.lm.perplexity`,
    `fairness.sentiment.demographic_parity_ratio` (all names: docs/gates.md)."""
    min: float | None = _threshold("The value must be >= min.")
    max: float | None = _threshold("The value must be <= max.")
    max_drop: float | None = _threshold(
        "The value may fall at most this much below its reference: the base model's value "
        "for `forgetting.*` values and `privacy.extraction_rate`, else the "
        "`--baseline-results` run's value (without one the gate reports `no baseline`: "
        "a warning, or a failure with `--require-baseline`; docs/gates.md)."
    )
    max_increase: float | None = _threshold(
        "The value may rise at most this much above its reference (as for `max_drop`)."
    )
    relative: bool = False
    """Read `max_drop`/`max_increase` as fractions of the reference value (0.05 = 5%)."""
    significant: bool = False
    """A `max_drop`/`max_increase` miss counts only when the paired bootstrap finds the
    change significant (p < `alpha`) over the shared examples."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    """Significance level used with `significant`."""
    severity: Literal["fail", "warn"] = "fail"
    """fail: a miss fails the run (exit code 1); warn: a miss is only reported."""
    description: str | None = None
    """Why this gate exists (shown in the reports)."""

    @classmethod
    def thresholds(cls) -> list[str]:
        """Names of the threshold fields (those made with `_threshold`)."""
        return [
            name
            for name, f in cls.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("threshold")
        ]

    @property
    def task_id(self) -> str:
        """The task part of `metric`."""
        return self.metric.partition(".")[0]

    @property
    def output(self) -> str:
        """The output part of `metric`."""
        return self.metric.partition(".")[2]

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        task, dot, output = value.partition(".")
        if not (dot and IDENTIFIER.match(task) and output):
            raise ValueError(GATE_METRIC)
        return value

    @field_validator("max")
    @classmethod
    def _max(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be >= min ({low:g})")
        return value

    @model_validator(mode="after")
    def _some_threshold(self) -> Gate:
        names = self.thresholds()
        if all(getattr(self, n) is None for n in names):
            raise ValueError(GATE_THRESHOLD.format(names=", ".join(names)))
        return self


class Bootstrap(_Strict):
    """Bootstrap confidence intervals of every metric (resampling the examples)."""

    samples: int = Field(default=1000, ge=0)
    """Number of bootstrap resamples; 0 disables confidence intervals."""
    confidence: float = Field(default=0.95, gt=0, lt=1)
    """Confidence level of the intervals."""


class Audits(_Strict):
    """Audits run after the tasks, on the same loaded model; each is optional, and the
    values they publish can be gated (docs/gates.md)."""

    # one optional field per registered audit, added by sync_audits()


class Suite(_Strict):
    """An evaluation suite: a model, tasks with their metrics, and release gates."""

    schema_version: Literal[1]
    """Version of this suite format; must be 1."""
    name: str
    """Name of the suite (letters, digits, '_', '-'); names the default output folder
    `reports/<name>`."""
    description: str | None = None
    """Free text shown in the reports."""
    model: ModelSpec
    """The model to evaluate (`harness run --model/--adapter` override it)."""
    tasks: list[Task] = Field(min_length=1)
    """The tasks, each a classification, generation, perplexity or lm_eval task (by `kind`)."""
    limit: int | None = Field(default=None, ge=1)
    """Cap on examples per task, sampled with `seed` (default: all examples)."""
    seed: int = 1234
    """Seed of example sampling and bootstrap resampling."""
    batch_size: int = Field(default=8, ge=1)
    """Examples per model call."""
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    """Confidence interval settings."""
    gates: list[Gate] = Field(default_factory=list)
    """Conditions a release must meet."""
    audits: Audits = Field(default_factory=Audits)
    """Forgetting, fairness, explanation and privacy audits (see the sections below)."""
    output: str | None = None
    """Report folder, relative to the current directory (default: `reports/<name>`)."""
    cache: bool = True
    """Look model answers up in the response cache (sqlite, keyed by model fingerprint and
    request; folder `$HARNESS_CACHE_DIR`, default `~/.cache/llm-release-harness`) and
    store new ones, so a re-run or a resumed run recomputes nothing. `harness run
    --no-cache` turns it off."""

    _source_path: Path | None = PrivateAttr(default=None)
    _marks: yaml_marks.Marks | None = PrivateAttr(default=None)
    _cli: dict[yaml_marks.Path, str] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_identifier(value)

    @property
    def source_path(self) -> Path | None:
        """The suite file this suite was loaded from (None when built in code)."""
        return self._source_path

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths are taken from: the suite file's, else the cwd."""
        return self._source_path.parent if self._source_path else Path.cwd()

    def resolve(self, path: str | Path) -> Path:
        """An absolute path for a path written in the suite (relative to its folder)."""
        return resolve_path(path, self.base_dir)

    def locate(self, path: yaml_marks.Path, message: str) -> str:
        """``FILE:LINE:COL: path: message`` for a value of this suite (no line and column
        for a suite built in code)."""
        file = display_path(self._source_path) if self._source_path else "suite"
        line, col = self._marks.value_at(path) if self._marks is not None else (None, None)
        return located(file, f"{yaml_marks.format_path(path)}: {message}", line, col)

    @property
    def output_dir(self) -> Path:
        """Where the reports go (`output`, default reports/<name> under the cwd)."""
        return resolve_path(self.output or f"reports/{self.name}", Path.cwd())

    def task(self, task_id: str) -> AnyTask:
        """The task with this id (KeyError if none)."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)


# union tags pydantic puts in an error's loc, and the model each selects
UNION_TAGS: dict[str, type[BaseModel] | None] = {
    **TASK_CLASSES,
    "datasets": DatasetSource,
    "file": None,
    "list": None,
    "row": FromRow,
    "field": None,
}


_SYNCED = [-1]


def sync_audits() -> type[Audits]:
    """The ``audits`` section's schema: one optional field per registered audit (its
    config model, documented by the audit's ``doc``), in registry order.

    Rebuilt, and put into ``Suite``, whenever the audit registry has changed since the
    last call (harness.audits.base.version), so an audit registered after this module
    was imported is validated like the built-in ones."""
    if _SYNCED[0] == audits.version():
        return Suite.model_fields["audits"].annotation  # type: ignore[return-value]
    fields: dict[str, Any] = {
        name: (
            audits.get(name).config | None,
            Field(default=None, description=audits.get(name).doc),
        )
        for name in audits.available()
    }
    model = create_model("Audits", __base__=Audits, __doc__=Audits.__doc__, **fields)
    model.__module__ = __name__
    field = Suite.model_fields["audits"]
    field.annotation, field.default_factory = model, model
    Suite.model_rebuild(force=True)
    _SYNCED[0] = audits.version()
    return model


sync_audits()

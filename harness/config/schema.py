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
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from harness import audits
from harness.config import yaml_marks
from harness.config.backends import (
    NEEDS_ENDPOINT,
    ONLY_FOR,
    SERVED,
    Backend,
    EndpointSpec,
    VllmSpec,
)
from harness.config.loading import ModelLoading
from harness.config.prompting import (
    ChatSettings,
    FromRow,
)
from harness.config.schema_base import StrictModel
from harness.config.sources import DatasetSource
from harness.config.task_schema import (
    BAD_IDENTIFIER as BAD_IDENTIFIER,
)
from harness.config.task_schema import (
    BAD_TEMPLATE as BAD_TEMPLATE,
)
from harness.config.task_schema import (
    CHOICE_TEMPLATE as CHOICE_TEMPLATE,
)
from harness.config.task_schema import (
    IDENTIFIER as IDENTIFIER,
)
from harness.config.task_schema import (
    TASK_CLASSES as TASK_CLASSES,
)
from harness.config.task_schema import (
    AnyTask as AnyTask,
)
from harness.config.task_schema import (
    ClassificationTask as ClassificationTask,
)
from harness.config.task_schema import (
    GenerationTask as GenerationTask,
)
from harness.config.task_schema import (
    LmEvalTask as LmEvalTask,
)
from harness.config.task_schema import (
    MetricSpec as MetricSpec,
)
from harness.config.task_schema import (
    PerplexityTask as PerplexityTask,
)
from harness.config.task_schema import (
    Task as Task,
)
from harness.config.task_schema import (
    _check_identifier,
)
from harness.config.task_schema import (
    _check_template as _check_template,
)
from harness.config.task_schema import (
    _literal_choice as _literal_choice,
)
from harness.config.task_schema import (
    _validate_task as _validate_task,
)
from harness.data.rows import (
    display_path,
    resolve_path,
)
from harness.errors import located

if TYPE_CHECKING:
    pass

SCHEMA_VERSION = 1

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# user-facing messages (tests assert them exactly)
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


class _Strict(StrictModel):
    """Base of the suite's schemas (harness.config.schema_base)."""


class ModelSpec(ModelLoading):
    """The model under evaluation, where it runs and how its weights load."""

    backend: Backend = "hf"
    """hf: load `path` with transformers here; openai-completions / openai-chat: ask the
    OpenAI-compatible server at `endpoint` for the model it serves as `path` (chat: text
    generation only); vllm: vLLM's engine in this process (docs/backends.md)."""
    endpoint: EndpointSpec | None = None
    """The server of a served model (openai-completions, openai-chat)."""
    tokenizer: str | None = None
    """A served model's tokenizer: a local folder (relative to the suite file) or hub
    id, used to split contexts from continuations, count tokens and fit prompts into
    the window as for a local model (served backends and vllm; vllm's default is the
    model's own)."""
    vllm: VllmSpec | None = None
    """Engine settings of backend vllm."""
    adapter: str | None = None
    """PEFT adapter folder (or hub id) applied on top of `path`; the base model's
    behaviour (for the forgetting audit) is the same model with the adapter disabled.
    For a served model: the name the server serves the LoRA under."""
    allow_base_mismatch: bool = False
    """Evaluate `adapter` on a base other than the one it was trained on (its manifest's
    base fingerprint, or its config's base model); refused unless true, and recorded in
    provenance either way."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps. auto picks cuda, then mps, then cpu."""
    max_length: int | None = Field(default=None, ge=8)
    """Context window override in tokens (default: the model's own; for a served
    model: what the server reports, else 2048)."""

    @model_validator(mode="after")
    def _backend_settings(self) -> ModelSpec:
        served = self.backend in SERVED
        if served and self.endpoint is None:
            raise ValueError(NEEDS_ENDPOINT.format(backend=self.backend))
        only = {
            "endpoint": (SERVED, self.endpoint is not None),
            "vllm": (("vllm",), self.vllm is not None),
            "device_map": (("hf",), self.device_map is not None),
            "max_memory": (("hf",), self.max_memory is not None),
            "offload_folder": (("hf",), self.offload_folder is not None),
            "attn_implementation": (("hf",), self.attn_implementation is not None),
            "quantization": (("hf", "vllm"), self.quantization is not None),
            "device": (("hf",), self.device != "auto"),
            "tokenizer": ((*SERVED, "vllm"), self.tokenizer is not None),
        }
        for name, (backends, is_set) in only.items():
            if is_set and self.backend not in backends:
                shown = " or ".join(backends)
                raise ValueError(
                    f"{name}: " + ONLY_FOR.format(backends=shown, backend=self.backend)
                )
        return self

    def backend_options(self) -> dict[str, Any]:
        """The backend settings as ``harness.model.files.ModelSource`` takes them."""
        return {
            "backend": self.backend,
            "endpoint": self.endpoint.model_dump() if self.endpoint is not None else None,
            "tokenizer": self.tokenizer,
            "vllm": self.vllm.model_dump() if self.vllm is not None else None,
        }

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE.match(value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got '{value}'")
        return value


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
    chat: ChatSettings | None = None
    """Chat formatting of every prompt task (a task's own `chat` overrides it)."""
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

"""results.json as one typed model: the runner builds a ``Results``, every reader gets one.

The runner validates its document into ``Results`` before anything is written, and
``store.dumps`` writes the file from it; ``store.load_results`` validates a stored
file into the same model, so a damaged or hand-edited file is one located error
(exit 2), not a traceback in a renderer. The JSON Schema in docs/results.schema.json
is generated from these classes (``python -m harness.results.schema_doc``).

What the harness fixes is typed: tasks and their metrics, gates, the verdict,
provenance, the fine-tune record's frame, the baseline reference. What is open-ended
stays ``dict[str, Any]``: each audit's section (its audit defines it), per-example
records (their keys depend on the task kind and the metrics), the fine-tune manifest
and history points, the suite's own sections in its echo.

Fields are declared in the order the runner writes them and a file is written with
``exclude_unset``, so results.json keeps the exact bytes of a plain-dict writer: the
same keys, in the same order, numbers with their type (an ``int`` stays ``1``, hence
``Number`` is ``int | float``). Unknown keys are kept everywhere (a newer harness may
add some) and written after the declared ones.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RESULTS_SCHEMA_VERSION = 1
"""The version of results.json this harness writes (``schema_version``)."""

Number = int | float | None
Verdict = Literal["pass", "warn", "fail"]


class _Open(BaseModel):
    # strict: "0.5" is not a number here (the renderers and compare do arithmetic)
    model_config = ConfigDict(extra="allow", strict=True, use_attribute_docstrings=True)


class FileRef(_Open):
    """A file the run read, with the sha256 ``harness verify`` recomputes."""

    path: str | None = None
    sha256: str | None = None


class DataRef(_Open):
    """The data file of one task (``path`` and ``sha256`` null for a `datasets` source)."""

    task: str | None = None
    path: str | None = None
    sha256: str | None = None


class FileEntry(_Open):
    """One hashed file of a model or adapter folder."""

    name: str
    sha256: str | None = None
    size: int | None = None


class Folder(_Open):
    """A model or adapter folder: its files' digests and their combined fingerprint."""

    path: str | None = None
    fingerprint: str | None = None
    files: list[FileEntry] = Field(default_factory=list)
    adapter_base: dict[str, Any] | None = None
    """For the model: the adapter's recorded base compared with the base in use."""


class Timings(_Open):
    """Wall-clock seconds of the run."""

    load_s: Number = None
    tasks: dict[str, Number] = Field(default_factory=dict)
    total_s: Number = None


class CacheStats(_Open):
    """What the run did with the response cache."""

    path: str | None = None
    enabled: bool | None = None
    hits: int | None = None
    misses: int | None = None
    writes: int | None = None
    bypassed: str | None = None
    """Why the cache was not used, when it was not."""


class Provenance(_Open):
    """What was evaluated, with which settings and libraries (docs/results.md)."""

    suite: FileRef | None = None
    data: list[DataRef] = Field(default_factory=list)
    model: Folder | None = None
    adapter: Folder | None = None
    fingerprint: str | None = None
    """The combined fingerprint of the model and adapter, as the response cache keys it."""
    versions: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    device: str | None = None
    loading: dict[str, Any] | None = None
    """How the weights loaded: the dtype (``auto`` resolved), and the device map, memory
    limits, offload folder, quantization and attention kernel when set."""
    max_length: int | None = None
    batch_size: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    timings: Timings | None = None
    cache: CacheStats | None = None
    processes: int | None = None


class MetricResult(_Open):
    """One output of a metric on one task, with its bootstrap confidence interval."""

    value: Number = None
    """The metric on every example; null when it is undefined (see ``reason``)."""
    ci_low: Number = None
    """Lower end of the percentile bootstrap interval (``suite.bootstrap``)."""
    ci_high: Number = None
    """Upper end of the percentile bootstrap interval."""
    n: int | None = None
    """Examples the value was computed on."""
    metric: str | None = None
    """The metric's name as the suite gives it (or a plug-in's path)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The parameters the suite set for it."""
    higher_is_better: bool = True
    signature: str | None = None
    """The settings that make the number reproducible, in one line."""
    reason: str | None = None
    """Why ``value`` is null (the metric gave NaN or inf)."""


class TaskResult(_Open):
    """One task: its metrics and the per-example records they were computed from."""

    kind: str
    """classification | generation | perplexity."""
    n_examples: int | None = None
    n_truncated: int | None = None
    """Examples whose prompt was cut to the model's window from its start."""
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    """By output name (a metric may give several: ``f1[negative]``, ``rougeL``)."""
    records: list[dict[str, Any]] = Field(default_factory=list)
    """Per example: its input, the model's answer and the metrics' statistics."""


class GateResult(_Open):
    """One gate of the suite, checked."""

    metric: str
    """The value the gate reads: ``<task>.<output>`` or a name an audit publishes."""
    min: Number = None
    max: Number = None
    max_drop: Number = None
    max_increase: Number = None
    relative: bool = False
    significant: bool = False
    severity: str = "fail"
    description: str | None = None
    value: Number = None
    """The value checked (null when there was none)."""
    reference: Number = None
    """What a relative bound compares with: the base model's or the baseline run's value."""
    p_value: Number = None
    """Paired bootstrap p-value of value against reference, when there is one."""
    verdict: Verdict
    message: str = ""
    """Why the gate passed, warned or failed, in words."""


class Bootstrap(_Open):
    samples: int | None = None
    confidence: Number = None


class SuiteEcho(_Open):
    """The suite as loaded (every default filled in); fields in the suite model's order.

    Typed where a reader relies on it; the suite's own sections stay open here (the
    suite reference, docs/suite-reference.md, describes them)."""

    schema_version: Any = None
    name: str = "suite"
    description: str | None = None
    model: Any = None
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    limit: Any = None
    seed: int | None = None
    batch_size: Any = None
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    gates: Any = None
    audits: Any = None
    chat: Any = None
    output: Any = None
    cache: Any = None


class FinetuneRecord(_Open):
    """The manifest and learning history `finetune train` saved beside the adapter."""

    manifest: dict[str, Any] | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    files: list[FileRef] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


class BaselineRef(_Open):
    """The baseline run a run was compared with (``--baseline-results``)."""

    path: str | None = None
    suite: str | None = None
    verdict: str | None = None
    model: str | None = None
    adapter: str | None = None
    started_at: str | None = None
    harness_version: str | None = None
    sha256: str | None = None


class Results(_Open):
    """One run: what ``harness run`` writes to results.json."""

    schema_version: int
    """The version of this format (``RESULTS_SCHEMA_VERSION``)."""
    harness_version: str | None = None
    suite: SuiteEcho = Field(default_factory=SuiteEcho)
    provenance: Provenance | None = None
    tasks: dict[str, TaskResult]
    """By task id, in the suite's order."""
    audits: dict[str, Any] | None = None
    """One section per audit that ran, as the audit wrote it (docs/audits.md)."""
    gates: list[GateResult] = Field(default_factory=list)
    """Every gate of the suite, in its order."""
    verdict: Verdict = "fail"
    """The worst gate verdict: fail > warn > pass (pass without gates)."""
    finetune: FinetuneRecord | None = None
    baseline: BaselineRef | None = None

    def document(self) -> dict[str, Any]:
        """The results as plain JSON-like data, the keys as the file holds them (NaN
        and inf not yet null: ``store.dumps`` does that), for readers that walk it."""
        return self.model_dump(exclude_unset=True)


def problems(data: Any) -> list[str]:
    """Located problems of a parsed results document (empty when it is usable)."""
    try:
        Results.model_validate(data)
    except ValidationError as exc:
        return located(exc)
    return []


def located(exc: ValidationError) -> list[str]:
    """Each error of a validation as ``where: what``."""
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        out.append(f"{where}: {err['msg']}")
    return out

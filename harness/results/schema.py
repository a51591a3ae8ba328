"""The shape of results.json that the renderers, compare and verify rely on.

``load_results`` validates a stored file against these models before anything reads
it, so a damaged or hand-edited file is one located error (exit 2), not a traceback.
Unknown keys are allowed everywhere (a newer harness may add sections); the audit
sections are free-form here and their renderer tolerates any content.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Number = float | None


class _Open(BaseModel):
    # strict: "0.5" is not a number here (the renderers and compare do arithmetic)
    model_config = ConfigDict(extra="allow", strict=True)


class FileRef(_Open):
    path: str | None = None
    sha256: str | None = None


class DataRef(FileRef):
    task: str | None = None


class FileEntry(_Open):
    name: str
    sha256: str | None = None
    size: int | None = None


class Folder(_Open):
    path: str | None = None
    fingerprint: str | None = None
    files: list[FileEntry] = Field(default_factory=list)


class Provenance(_Open):
    suite: FileRef | None = None
    data: list[DataRef] = Field(default_factory=list)
    model: Folder | None = None
    adapter: Folder | None = None
    versions: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, Any] | None = None
    cache: dict[str, Any] | None = None


class MetricResult(_Open):
    value: Number = None
    ci_low: Number = None
    ci_high: Number = None
    n: int | None = None
    metric: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    higher_is_better: bool = True
    signature: str | None = None
    reason: str | None = None  # why ``value`` is null (the metric gave NaN or inf)


class TaskResult(_Open):
    kind: str
    n_examples: int | None = None
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    records: list[dict[str, Any]] = Field(default_factory=list)


class GateResult(_Open):
    metric: str
    verdict: Literal["pass", "warn", "fail"]
    message: str = ""
    severity: str = "fail"
    description: str | None = None
    value: Number = None
    reference: Number = None
    p_value: Number = None
    min: Number = None
    max: Number = None
    max_drop: Number = None
    max_increase: Number = None
    relative: bool = False
    significant: bool = False


class SuiteInfo(_Open):
    name: str = "suite"
    description: str | None = None
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    bootstrap: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None


class Results(_Open):
    schema_version: int
    harness_version: str | None = None
    suite: SuiteInfo = Field(default_factory=SuiteInfo)
    provenance: Provenance | None = None
    tasks: dict[str, TaskResult]
    gates: list[GateResult] = Field(default_factory=list)
    verdict: Literal["pass", "warn", "fail"] = "fail"
    audits: dict[str, Any] | None = None
    finetune: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None


def problems(data: Any) -> list[str]:
    """Located problems of a parsed results document (empty when it is usable)."""
    try:
        Results.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            out.append(f"{where}: {err['msg']}")
        return out
    return []

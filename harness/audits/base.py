"""The audit engine: a registry of audits, the context they run in, shared helpers.

An audit is a module that registers an :class:`Audit`: a config model (the suite's
``audits.<name>`` section, validated with the rest of the suite), checks that need the
other tasks or the data, ``run(ctx) -> dict`` (its section of results.json, see
docs/results.md) and ``gate_values(section)`` (the named values gates may check, see
docs/gates.md). Audits never re-run the checkpoint on data the task already scored:
they read the stored per-example records, and anything new they ask of the model goes
through the batched, cached scoring API of ``harness.model.language_model.LanguageModel``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.config.schema_base import StrictModel
from harness.errors import located

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

MAX_LISTED = 50
"""Examples listed per kind in a results section (the counts are always complete)."""

# user-facing messages (tests assert them exactly)
NO_SUCH_TASK = "no task '{task}'; tasks: {tasks}"
NOT_CLASSIFICATION = "task '{task}' is a {kind} task; this audit needs a classification task"
NO_AUDIT = "audit '{audit}' is not configured; add an `audits.{audit}` section"
NO_AUDIT_VALUE = "audit '{audit}' publishes no '{name}'; it publishes: {names}"
RESERVED_TASK_ID = "'{id}' is reserved for the {id} audit's gate names; choose another task id"

SubPath = tuple[str | int, ...]
Problem = tuple[SubPath, str]
"""A problem in an audit's config: (path below ``audits.<name>``, message)."""


class AuditConfig(StrictModel):
    """Base of every audit's config: unknown fields are errors, docstrings document,
    booleans are not numbers (harness.config.schema_base)."""


@dataclass(frozen=True)
class TaskFacts:
    """What a config check may know about a task of the suite (None: not valid)."""

    id: str
    kind: str | None
    choices: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    prompt: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class CheckContext:
    """The suite around an audit config being checked at load time."""

    tasks: Mapping[str, TaskFacts]
    base_dir: Path
    check_files: bool


@dataclass
class AuditContext:
    """What an audit's ``run`` gets: the suite, its config, the model, the task data."""

    suite: Any
    config: Any
    lm: Any
    prepared: Mapping[str, Any]
    """PreparedTask by task id; records already hold the checkpoint's outputs."""
    task_results: Mapping[str, Any]
    """The results' ``tasks`` section (metrics with CIs) of this run."""
    progress: Callable[[str, int], Callable[[float], None]] = lambda _n, _t: lambda _k: None
    warn: Callable[[str], None] = lambda _msg: None

    @property
    def batch_size(self) -> int:
        return int(self.suite.batch_size)

    @property
    def seed(self) -> int:
        return int(self.suite.seed)

    def interval(self, values: Sequence[float]) -> dict[str, Any]:
        """Mean of ``values`` with the suite's bootstrap CI."""
        return mean_interval(
            values,
            samples=self.suite.bootstrap.samples,
            confidence=self.suite.bootstrap.confidence,
            seed=self.seed,
        )


def _no_problems(*_args: Any) -> list[Any]:
    return []


@dataclass(frozen=True)
class Audit:
    """A registered audit (see the module docstring)."""

    name: str
    config: type[AuditConfig]
    run: Callable[[AuditContext], dict[str, Any]]
    gate_values: Callable[[Mapping[str, Any]], dict[str, GateValue]]
    gate_names: Callable[[Any, Mapping[str, TaskFacts]], list[str] | None]
    """Every gate name the audit publishes for a config (``[*]`` ends a family of names
    whose bracketed part comes from the data); None when the tasks it needs have errors."""
    check: Callable[[Any, CheckContext], list[Problem]] = _no_problems
    """Load-time checks against the other tasks and the file system."""
    check_data: Callable[[Any, Any, Mapping[str, Any]], list[str]] = _no_problems
    """Checks on the loaded data ``(config, suite, prepared)``: located row errors."""
    preflight: Callable[[Any, Any], list[Problem]] = _no_problems
    """Checks before the model loads ``(config, suite)``, after command-line overrides."""
    resolve_paths: Callable[[Any, Path], Any] = field(default=lambda cfg, _base: cfg)
    """The config with its local paths made absolute (relative to the suite file)."""


_REGISTRY: dict[str, Audit] = {}


def register(audit: Audit) -> Audit:
    """Add an audit; a duplicate name is refused."""
    if audit.name in _REGISTRY:
        raise ValueError(f"audit {audit.name!r} is already registered")
    _REGISTRY[audit.name] = audit
    return audit


def get(name: str) -> Audit:
    """The audit registered under ``name`` (KeyError if none)."""
    return _REGISTRY[name]


def available() -> list[str]:
    """Registered audit names, in the order they run."""
    return list(_REGISTRY)


# --- helpers shared by the audits -----------------------------------------------------


def locate(suite: Any, path: SubPath, message: str) -> str:
    """``FILE:LINE:COL: audits.x.y: message`` for a value of a loaded suite."""
    from harness.config import yaml_marks
    from harness.data.rows import display_path

    file = display_path(suite.source_path) if suite.source_path else "suite"
    marks = getattr(suite, "_marks", None)
    line, col = marks.value_at(path) if marks is not None else (None, None)
    return located(file, f"{yaml_marks.format_path(path)}: {message}", line, col)


def template_fields(template: str) -> list[str]:
    """The record fields a prompt template reads, sorted."""
    return list(_template_fields(template))


@functools.lru_cache(maxsize=256)
def _template_fields(template: str) -> tuple[str, ...]:
    """Parsed once per template (audits ask once per example)."""
    from jinja2 import meta
    from jinja2.sandbox import SandboxedEnvironment

    try:
        return tuple(sorted(meta.find_undeclared_variables(SandboxedEnvironment().parse(template))))
    except Exception:  # a syntax error is reported by the task's own check
        return ()


def choice_names(choices: Sequence[str]) -> list[str]:
    """Choices as shown to readers (stripped)."""
    return [c.strip() for c in choices]


def choice_index(choices: Sequence[str], value: str) -> int | None:
    """Index of a choice given verbatim or stripped; None if it is not a choice."""
    if value in choices:
        return list(choices).index(value)
    names = choice_names(choices)
    return names.index(value.strip()) if value.strip() in names else None


def data_label(prepared: Any) -> str:
    """How row errors name a task's data (its file, or its dataset)."""
    if prepared.data_path:
        return str(prepared.data_path)
    return f"dataset {getattr(prepared.task.data, 'dataset', '?')}"


def num(x: Any) -> float | None:
    """A float for JSON: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def mean_interval(
    values: Sequence[float], *, samples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """``{"value", "ci_low", "ci_high", "n"}`` of a mean, percentile bootstrap over items
    (the metrics' own bootstrap engine, harness.metrics.bootstrap)."""
    from harness.metrics import score_stats

    stats = np.asarray(values, dtype=float).reshape(-1, 1)
    out = score_stats(_MEAN, stats, {}, _NO_TASK, samples=samples, confidence=confidence, seed=seed)
    return clean_interval(out["mean"])


def clean_interval(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An interval entry with NaN turned into None."""
    return {
        "value": num(entry.get("value")),
        "ci_low": num(entry.get("ci_low")),
        "ci_high": num(entry.get("ci_high")),
        "n": int(entry.get("n", 0)),
    }


def _mean_aggregate(stats: np.ndarray, params: Any, task: Any) -> dict[str, float]:
    return {"mean": float(stats[:, 0].mean()) if len(stats) else float("nan")}


def _make_mean() -> Any:
    from harness.metrics.base import Metric, TaskInfo

    metric = Metric(
        name="mean",
        kinds=frozenset(),
        outputs=lambda params, task: ["mean"],
        stats=lambda records, params, task: np.zeros((0, 1)),
        aggregate=_mean_aggregate,
    )
    return metric, TaskInfo(kind="audit")


_MEAN, _NO_TASK = _make_mean()

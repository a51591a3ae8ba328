"""The audit engine: a registry of audits, the context they run in, shared helpers.

An audit is a module that registers an :class:`Audit`: a config model (the suite's
``audits.<name>`` section, validated with the rest of the suite), checks that need the
other tasks or the data, ``run(ctx) -> dict`` (its section of results.json, see
docs/results.md) and ``gate_values(section)`` (the named values gates may check, see
docs/gates.md). Audits never re-run the checkpoint on data the task already scored:
they read the stored per-example records, and anything new they ask of the model goes
through the batched, cached scoring API (``harness.model.api.ScoringModel``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.config.schema_base import StrictModel
from harness.data.rows import absent_field
from harness.metrics.finite import finite_float as num
from harness.metrics.resolve import resolve_metric

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

MAX_LISTED = 50
"""Examples listed per kind in a results section (the counts are always complete)."""

# user-facing messages (tests assert them exactly)
NO_SUCH_TASK = "no task '{task}'; tasks: {tasks}"
NOT_CLASSIFICATION = "task '{task}' is a {kind} task; this audit needs a classification task"
NOT_FIXED_CHOICES = (
    "task '{task}' scores each row's own choices; this audit needs a fixed choice list "
    "(the same classes for every example)"
)
NO_AUDIT = "audit '{audit}' is not configured; add an `audits.{audit}` section"
NO_AUDIT_VALUE = "audit '{audit}' publishes no '{name}'; it publishes: {names}"
RESERVED_TASK_ID = "'{id}' is reserved for the {id} audit's gate names; choose another task id"

SubPath = tuple[str | int, ...]
RunTask = Callable[..., None]
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
    per_row_choices: bool = False
    """The task scores each row's own choices (``choices: {field: ...}``)."""
    messages: bool = False
    """The task reads each row's conversation (``messages``) instead of a prompt."""


@dataclass(frozen=True)
class CheckContext:
    """The suite around an audit config being checked at load time."""

    tasks: Mapping[str, TaskFacts]
    base_dir: Path
    check_files: bool


def _not_given(service: str) -> Callable[..., Any]:
    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"this audit context has no {service} service (given by the runner)")

    return missing


@dataclass
class AuditContext:
    """What an audit's ``run`` gets: the suite, its config, the model, the task data, and
    the run's services. Audits reach the rest of the harness only through these (they
    never import the runner), so a test or another runner can supply its own."""

    suite: Any
    config: Any
    lm: Any
    """The checkpoint's scoring model (harness.model), with this run's cache."""
    prepared: Mapping[str, Any]
    """PreparedTask by task id; records already hold the checkpoint's outputs."""
    task_results: Mapping[str, Any]
    """The results' ``tasks`` section (metrics with CIs) of this run."""
    progress: Callable[[str, int], Callable[[float], None]] = lambda _n, _t: lambda _k: None
    warn: Callable[[str], None] = lambda _msg: None
    model_source: Any = None
    """The checkpoint's ``ModelSource`` (harness.model.language_model), as the suite
    gives it; ``dataclasses.replace`` it to name another model for ``load_model``."""
    run_task: RunTask = field(default_factory=lambda: _not_given("run_task"))
    """``run_task(task, records, model, advance=None)``: a task's model calls on
    ``records`` (prepared, no outputs yet) with another model, in the suite's batches;
    the records get that model's outputs (harness.tasks.run)."""
    load_model: Callable[[Any], Any] = field(default_factory=lambda: _not_given("load_model"))
    """``load_model(source)``: another model, loaded with this run's cache and process
    group (device placement included), as the runner loads the checkpoint."""

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

    def metric(self, name: str) -> Any:
        """The metric a suite names: a registry name or an ``evaluate`` plug-in path
        (relative to the suite file), as the tasks resolve it."""
        return resolve_metric(name, self.suite.resolve("."))

    def locate(self, path: SubPath, message: str) -> str:
        """``FILE:LINE:COL: path: message`` for a value of this run's suite."""
        return locate(self.suite, path, message)


def _no_problems(*_args: Any) -> list[Any]:
    return []


@dataclass(frozen=True)
class DocSection:
    """A config model documented in the suite reference (docs/suite-reference.md)."""

    model: type[AuditConfig]
    heading: str
    anchor: str
    label: str
    """Words for the model in a type column (``forgetting audit``)."""


Hook = Callable[..., Any] | str
"""A function, or ``"package.module:function"`` imported when first used (so an audit
can name its report view without importing the report package)."""


@dataclass(frozen=True)
class Audit:
    """A registered audit (see the module docstring).

    Everything the rest of the harness knows of an audit comes from here: the suite
    schema's ``audits.<name>`` field (``config``, ``doc``), the suite reference
    (``label``, ``docs``), the checks at each stage, the run, the gate values, and the
    report's section (``title``, ``view``, ``macro``) and Markdown line (``summary``).
    """

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
    doc: str = ""
    """What the audit does: the description of ``audits.<name>`` in the suite reference."""
    label: str = ""
    """Words for its config in the reference's type column (default: ``<name> audit``)."""
    docs: tuple[DocSection, ...] = ()
    """Further config models (nested settings) documented after the audit's own."""
    title: str = ""
    """Its name in the report's table of contents (default: the audit name)."""
    view: Hook | None = None
    """``view(section, texts) -> dict | None``: the view-model of its results section for
    the HTML report (None: the section is shown as a key/value table)."""
    macro: str = "facts"
    """The macro of harness/report/templates/audits.j2 that renders ``view``'s dict."""
    summary: Hook | None = None
    """``summary(section) -> str``: its line in the Markdown summary (None: no line)."""
    base_referenced: tuple[str, ...] = ()
    """Its gate names (after ``<name>.``; ``""`` for all) whose reference the audit
    itself computes on the base model, so a relative gate on them needs no baseline run."""

    def references_base(self, gate_name: str) -> bool:
        """Whether the audit supplies the reference of the gate value ``gate_name``."""
        rest = gate_name.partition(".")[2]
        return any(rest.startswith(p) for p in self.base_referenced)

    @property
    def reference(self) -> list[DocSection]:
        """The suite reference's sections for this audit, in reading order."""
        own = DocSection(self.config, f"audits: {self.name}", self.name, self.label)
        return [own, *self.docs]


_REGISTRY: dict[str, Audit] = {}
_VERSION = [0]


def register(audit: Audit) -> Audit:
    """Add an audit (it runs after those registered before it); a duplicate name is
    refused. The suite schema picks it up on the next ``load_suite``."""
    if audit.name in _REGISTRY:
        raise ValueError(f"audit {audit.name!r} is already registered")
    if not audit.label:
        audit = replace(audit, label=f"{audit.name} audit")
    _REGISTRY[audit.name] = audit
    _VERSION[0] += 1
    return audit


def unregister(name: str) -> Audit:
    """Remove an audit (KeyError if none); for tests and plug-ins that clean up."""
    audit = _REGISTRY.pop(name)
    _VERSION[0] += 1
    return audit


def get(name: str) -> Audit:
    """The audit registered under ``name`` (KeyError if none)."""
    return _REGISTRY[name]


def available() -> list[str]:
    """Registered audit names, in the order they run."""
    return list(_REGISTRY)


def version() -> int:
    """A number that changes whenever an audit is registered or removed (the suite
    schema rebuilds its ``audits`` section when it moves)."""
    return _VERSION[0]


HOOKS = ("run", "gate_values", "gate_names", "check", "check_data", "preflight", "resolve_paths")


def register_module(namespace: Mapping[str, Any], **fields: Any) -> Audit:
    """Register the audit a module defines, taking its hooks by name from the module's
    ``namespace`` (``globals()``): ``run``, ``gate_values`` and ``gate_names``, and the
    optional ``check``, ``check_data``, ``preflight`` and ``resolve_paths``; ``fields``
    gives the rest (name, config, docs, view, ...)."""
    hooks = {h: namespace[h] for h in HOOKS if h in namespace}
    return register(Audit(**hooks, **fields))


def hook(value: Hook) -> Callable[..., Any]:
    """A hook as a function (a ``"module:function"`` string is imported now)."""
    if isinstance(value, str):
        module, _, name = value.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return fn
    return value


# --- helpers shared by the audits -----------------------------------------------------


def field_typos(
    suite: Any, path: SubPath, names: Sequence[str], records: Sequence[Any], file: str
) -> list[str]:
    """The names at ``path`` (a list of data fields in the suite) that no example of
    ``file`` has: one located error each at the suite's line, with the fields the data
    does have and the closest one, instead of one error per row. A list written as one
    name (``group: group``) is located at the name."""
    fields = list(dict.fromkeys(name for rec in records for name in rec["input"]))
    marks = getattr(suite, "_marks", None)
    out = []
    for j, name in enumerate(names):
        msg = absent_field(name, fields, file)
        if msg is not None:
            at: SubPath = (*path, j)
            if marks is None or at not in marks.values:
                at = tuple(path)  # written as one name, not a list
            out.append(locate(suite, at, msg))
    return out


def locate(suite: Any, path: SubPath, message: str) -> str:
    """``FILE:LINE:COL: audits.x.y: message`` for a value of a loaded suite (the suite
    knows its YAML positions: harness.config.schema.Suite.locate)."""
    text: str = suite.locate(path, message)
    return text


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


def _make_mean() -> Any:
    from harness.metrics.base import TaskInfo, mean_metric

    metric = mean_metric("mean", lambda records, params, task: np.zeros((0, 1)), frozenset(), "")
    return metric, TaskInfo(kind="audit")


_MEAN, _NO_TASK = _make_mean()

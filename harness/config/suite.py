"""Reading a suite file: ``load_suite``, whose errors point into the YAML, and the
command line's overrides.

``load_suite`` reads the YAML keeping the line and column of every node
(harness.config.yaml_marks), validates it against the schema (harness.config.schema)
and the checks that need the registries, the other tasks or the disk
(harness.config.checks), and reports every problem as
``FILE:LINE:COL: tasks[0].choices[1]: message``. The schema's models and messages are
re-exported here, so ``harness.config.suite`` stays the one name callers import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from harness import audits
from harness.config import yaml_marks
from harness.config.backends import SERVED
from harness.config.checks import Checks, metric_outputs, model_file_errors
from harness.config.schema import (
    BAD_IDENTIFIER,
    BAD_TEMPLATE,
    CHOICE_TEMPLATE,
    DUPLICATE_OUTPUT,
    DUPLICATE_TASK,
    FOLDER_NOT_FOUND,
    GATE_METRIC,
    GATE_THRESHOLD,
    IDENTIFIER,
    METRIC_KIND,
    NO_PARAMS,
    NO_SUCH_OUTPUT,
    NO_SUCH_TASK,
    PLUGIN_NOT_FOUND,
    SCHEMA_VERSION,
    TASK_CLASSES,
    UNION_TAGS,
    UNKNOWN_METRIC,
    UNKNOWN_PARAM,
    AnyTask,
    Audits,
    Bootstrap,
    ClassificationTask,
    DatasetSource,
    Gate,
    GenerationTask,
    LmEvalTask,
    MetricSpec,
    ModelSpec,
    PerplexityTask,
    Suite,
    Task,
    sync_audits,
)
from harness.config.schema import _check_template as _check_template  # tests use it
from harness.config.sources import data_tag
from harness.data.rows import (
    display_path,
    looks_local,
    resolve_path,
    resolve_source,
    source_problems,
)
from harness.errors import UserError, located
from harness.metrics.resolve import is_plugin_metric

__all__ = [
    "BAD_IDENTIFIER",
    "BAD_TEMPLATE",
    "CHOICE_TEMPLATE",
    "DUPLICATE_OUTPUT",
    "DUPLICATE_TASK",
    "FOLDER_NOT_FOUND",
    "GATE_METRIC",
    "GATE_THRESHOLD",
    "IDENTIFIER",
    "METRIC_KIND",
    "NO_PARAMS",
    "NO_SUCH_OUTPUT",
    "NO_SUCH_TASK",
    "PLUGIN_NOT_FOUND",
    "SCHEMA_VERSION",
    "TASK_CLASSES",
    "UNKNOWN_METRIC",
    "UNKNOWN_PARAM",
    "AnyTask",
    "Audits",
    "Bootstrap",
    "ClassificationTask",
    "DatasetSource",
    "Gate",
    "GenerationTask",
    "LmEvalTask",
    "MetricSpec",
    "ModelSpec",
    "PerplexityTask",
    "Suite",
    "Task",
    "apply_overrides",
    "data_tag",
    "is_plugin_metric",
    "load_suite",
    "sync_audits",
    "task_outputs",
    "verify_files",
]


def load_suite(path: str | Path, *, check_files: bool = True) -> Suite:
    """Read, validate and resolve a suite file; every problem raises one UserError.

    With ``check_files``, the data files, local model/adapter folders and metric
    plug-ins must exist. Relative paths in the returned suite are made absolute
    (model and data relative to the suite file, ``output`` relative to the cwd), so
    ``suite.model_dump(mode="json")`` is the resolved suite.
    """
    source = resolve_path(path, Path.cwd())
    file = display_path(source)
    raw, marks, problems = yaml_marks.read_mapping(source, file)
    yaml_marks.check_version(raw, marks, file, SCHEMA_VERSION)
    sync_audits()
    errors = [p.located() for p in problems]
    suite: Suite | None = None
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as exc:
        errors += yaml_marks.validation_errors(exc, raw, marks, root=Suite, tags=UNION_TAGS)
    checks = Checks(source.parent, check_files)
    checks.run(raw)
    for where, msg in checks.errors:
        errors.append((*marks.value_at(where), f"{yaml_marks.format_path(where)}: {msg}"))
    if errors or suite is None:
        raise UserError([located(file, msg, line, col) for line, col, msg in sorted(set(errors))])
    suite._source_path, suite._marks = source, marks
    for (i, j), params in checks.params.items():
        suite.tasks[i].metrics[j].params = params
    _resolve_paths(suite)
    return suite


def _resolve_paths(suite: Suite) -> None:
    """Make every local path of a loaded suite absolute (see load_suite)."""
    base = suite.base_dir
    served = suite.model.backend in SERVED  # path and adapter: names the server serves
    for field in ("tokenizer",) if served else ("path", "adapter", "tokenizer"):
        value = getattr(suite.model, field)
        if value is not None and looks_local(value, base):
            setattr(suite.model, field, str(resolve_path(value, base)))
    if suite.model.offload_folder is not None:
        suite.model.offload_folder = str(resolve_path(suite.model.offload_folder, base))
    for task in suite.tasks:
        if isinstance(task, LmEvalTask):
            if task.include_path is not None:
                task.include_path = str(resolve_path(task.include_path, base))
        else:
            task.data = resolve_source(task.data, base)
        shots = getattr(task, "fewshot", None)
        if shots is not None and shots.data is not None:
            shots.data = resolve_source(shots.data, base)
        for spec in task.metrics:
            if is_plugin_metric(spec.name):
                spec.name = str(resolve_path(spec.name, base))
    audits.resolve_paths(suite.audits, base)
    suite.output = str(suite.output_dir)


def verify_files(suite: Suite) -> None:
    """Check a suite's files exist (as ``load_suite(check_files=True)`` does).

    For a suite loaded with ``check_files=False`` and then given CLI overrides:
    paths set by ``apply_overrides`` are reported by their option (``--model: ...``).
    """
    base = suite.base_dir
    m = suite.model
    served = m.backend in SERVED
    found = model_file_errors(
        base, None if served else m.path, None if served else m.adapter, m.tokenizer
    )
    for i, task in enumerate(suite.tasks):
        if task.data is not None:
            found += [
                (("tasks", i, "data", *sub), m) for sub, m in source_problems(task.data, base)
            ]
        shots = getattr(task, "fewshot", None)
        if shots is not None and shots.data is not None:
            found += [
                (("tasks", i, "fewshot", "data", *sub), m)
                for sub, m in source_problems(shots.data, base)
            ]
        for j, spec in enumerate(task.metrics):
            if is_plugin_metric(spec.name) and not suite.resolve(spec.name).exists():
                msg = PLUGIN_NOT_FOUND.format(path=suite.resolve(spec.name))
                found.append((("tasks", i, "metrics", j), msg))
    file = display_path(suite.source_path) if suite.source_path else "suite"
    lines = []
    for path, msg in found:
        if path in suite._cli:
            lines.append((0, 0, f"{suite._cli[path]}: {msg}"))
        else:
            line, col = suite._marks.value_at(path) if suite._marks else (None, None)
            lines.append(
                (
                    line or 0,
                    col or 0,
                    located(file, f"{yaml_marks.format_path(path)}: {msg}", line, col),
                )
            )
    if lines:
        raise UserError([text for _, _, text in sorted(lines)])


def apply_overrides(
    suite: Suite,
    *,
    model: str | None = None,
    adapter: str | None = None,
    out: str | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
) -> Suite:
    """A copy of ``suite`` with the command line's overrides applied.

    Paths given on the command line are relative to the current directory and are
    stored absolute (a model name that is not a local path stays a hub id). ``limit``
    caps every task, including tasks with their own smaller-or-larger ``limit``. The
    CLI may load with ``check_files=False``, apply overrides, then ``verify_files``.
    """
    errors = [
        f"--{flag}: must be >= 1, got {value}"
        for flag, value in (("limit", limit), ("batch-size", batch_size))
        if value is not None and value < 1
    ]
    if errors:
        raise UserError(errors)
    new = suite.model_copy(deep=True)
    cwd = Path.cwd()
    for flag, field, value in (("--model", "path", model), ("--adapter", "adapter", adapter)):
        if value is not None:
            local = looks_local(value, cwd)
            setattr(new.model, field, str(resolve_path(value, cwd)) if local else value)
            new._cli[("model", field)] = flag
    if out is not None:
        new.output = str(resolve_path(out, cwd))
    if limit is not None:
        new.limit = limit
        for task in new.tasks:
            task.limit = min(task.limit, limit) if task.limit is not None else None
    if batch_size is not None:
        new.batch_size = batch_size
    return new


def task_outputs(task: AnyTask) -> list[str]:
    """The output names a task's metrics produce, in order (gates name these)."""
    outs: list[str] = []
    for spec in task.metrics:
        produced, _ = metric_outputs(spec, task.scored_kind, task.info(), [], None)
        outs += [o for o in produced if o not in outs]
    return outs

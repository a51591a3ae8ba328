"""Suite checks beyond the schema: metrics against the registry, gates against what the
tasks and audits produce, and files on disk.

They run on the raw YAML data, field by field, so that a suite with schema errors still
gets these errors in the same pass (``harness.config.suite.load_suite`` locates them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness import audits
from harness.config import yaml_marks
from harness.config.backends import SERVED
from harness.config.capabilities import capability_problems
from harness.config.schema import (
    DUPLICATE_OUTPUT,
    DUPLICATE_TASK,
    FOLDER_NOT_FOUND,
    IDENTIFIER,
    METRIC_KIND,
    NO_PARAMS,
    NO_SUCH_OUTPUT,
    NO_SUCH_TASK,
    PLUGIN_NOT_FOUND,
    TASK_CLASSES,
    UNKNOWN_METRIC,
    UNKNOWN_PARAM,
    ClassificationTask,
    Gate,
    LmEvalTask,
    MetricSpec,
    ModelSpec,
    _check_template,
    _validate_task,
)
from harness.config.sources import _validate_data
from harness.data.rows import looks_local, resolve_path, source_problems
from harness.metrics.base import TaskInfo
from harness.metrics.resolve import is_plugin_metric


class Checks:
    """Checks that need the registry, the other tasks or the file system.

    They run on the raw YAML data, field by field, wherever a field validates on its
    own, so that a suite with schema errors still gets these errors in the same pass.
    """

    def __init__(self, base_dir: Path, check_files: bool) -> None:
        self.base, self.check_files = base_dir, check_files
        self.errors: list[tuple[yaml_marks.Path, str]] = []
        self.params: dict[tuple[int, int], dict[str, Any]] = {}
        self.scored: dict[int, str | None] = {}  # an lm_eval task's scored kind (None: unknown)

    def run(self, raw: dict[str, Any]) -> None:
        model = raw.get("model")
        if self.check_files and isinstance(model, dict):
            path, adapter, tokenizer = (
                v if isinstance(v := model.get(f), str) else None
                for f in ("path", "adapter", "tokenizer")
            )
            if model.get("backend") in SERVED:  # names the server serves, not folders
                path = adapter = None
            self.errors += model_file_errors(self.base, path, adapter, tokenizer)
        outputs: dict[str, list[str] | None] = {}  # None: unknown, the task has errors
        first: dict[str, int] = {}
        for i, task in enumerate(_items(raw, "tasks")):
            task_id = task.get("id")
            if isinstance(task_id, str) and task_id in first:
                msg = DUPLICATE_TASK.format(id=task_id, first=first[task_id])
                self.errors.append((("tasks", i, "id"), msg))
                continue
            data = _try(_validate_data, task.get("data"))
            no_data = TASK_CLASSES.get(str(task.get("kind"))) is LmEvalTask
            if data is not None and not no_data:
                problems = source_problems(data, self.base, self.check_files)
                self.errors += [(("tasks", i, "data", *sub), msg) for sub, msg in problems]
            shots = task.get("fewshot")
            shot_data = _try(_validate_data, shots.get("data")) if isinstance(shots, dict) else None
            if shot_data is not None:
                problems = source_problems(shot_data, self.base, self.check_files)
                shot_at: yaml_marks.Path = ("tasks", i, "fewshot", "data")
                self.errors += [((*shot_at, *sub), msg) for sub, msg in problems]
            produced = self.metrics(task, i)
            if isinstance(task_id, str):
                first[task_id] = i
                outputs[task_id] = produced if _try(_validate_task, task) else None
                if audits.is_audit_name(task_id):
                    msg = audits.base.RESERVED_TASK_ID.format(id=task_id)
                    self.errors.append((("tasks", i, "id"), msg))
        if _try(ModelSpec.model_validate, model) is not None:  # else: once it is fixed
            self.errors += capability_problems(raw, self.scored)
        if not _ids_sound(raw):
            return  # which task a name means is unknown until every task has its own id
        facts = _task_facts(raw, first, outputs, self.scored)
        audit_errors = audits.config_problems(raw.get("audits"), facts, self.base, self.check_files)
        self.errors += audit_errors
        # a gate on an audit whose section has errors is checked once the section is fixed
        broken = {str(where[1]) for where, _ in audit_errors}
        if not isinstance(raw.get("audits", {}), dict):
            broken |= set(audits.available())
        for j, raw_gate in enumerate(_items(raw, "gates")):
            gate = _try(Gate.model_validate, raw_gate)
            if gate is None:
                continue
            where = ("gates", j, "metric")
            produced = outputs.get(gate.task_id, [])
            if gate.task_id in broken:
                continue
            if gate.task_id not in outputs and audits.is_audit_name(gate.task_id):
                problem = audits.gate_problem(gate.metric, raw.get("audits"), facts)
                if problem:
                    self.errors.append((where, problem))
            elif gate.task_id not in outputs:
                msg = NO_SUCH_TASK.format(task=gate.task_id, tasks=", ".join(outputs) or "none")
                self.errors.append((where, msg))
            elif produced is not None and gate.output not in produced:
                names = ", ".join(produced)
                msg = NO_SUCH_OUTPUT.format(task=gate.task_id, output=gate.output, outputs=names)
                self.errors.append((where, msg))

    def metrics(self, task: dict[str, Any], i: int) -> list[str] | None:
        """Check a task's metrics; returns the outputs they produce (None on error)."""
        from harness.metrics import base as registry

        kind = task.get("kind")
        if not isinstance(kind, str) or kind not in TASK_CLASSES:
            return None
        cls = TASK_CLASSES[kind]
        if cls is LmEvalTask:
            from harness.tasks import lm_eval

            scored, problems = lm_eval.check(task, self.base, self.check_files)
            self.errors += [(("tasks", i, *sub), msg) for sub, msg in problems]
            self.scored[i] = scored
            if scored is None or "metrics" not in task:
                return None
            kind = scored
        if "metrics" in task:
            given = task["metrics"]
            specs = (
                [_try(MetricSpec.model_validate, m) for m in given]
                if isinstance(given, list)
                else [None]
            )
        else:
            specs = cls.model_fields["metrics"].get_default(call_default_factory=True)
        choices = task.get("choices") if cls is ClassificationTask else []
        info = None  # None: the choices are invalid, so params cannot be checked against them
        if cls is LmEvalTask:  # each lm-eval document has its own choices
            info = registry.TaskInfo(kind=kind, per_row_choices=_has_choices(kind))
        elif isinstance(choices, list) and all(isinstance(c, str) for c in choices):
            info = registry.TaskInfo(kind=kind, choices=tuple(choices))
        elif isinstance(choices, dict):  # each row's own list: no fixed choices
            info = registry.TaskInfo(kind=kind, per_row_choices=True)
        usable = [n for n in registry.available() if kind in registry.get(n).kinds]
        produced: dict[str, int] = {}
        ok = True
        plugin = False  # a plug-in's outputs are the keys its compute returns: known once run
        for j, spec in enumerate(specs):
            if spec is None:
                ok = False
                continue
            plugin = plugin or is_plugin_metric(spec.name)
            where: yaml_marks.Path = ("tasks", i, "metrics", j)
            outs, problems = metric_outputs(spec, kind, info, usable, self)
            ok = ok and not problems and info is not None
            self.errors += [((*where, *sub), msg) for sub, msg in problems]
            if not problems and not is_plugin_metric(spec.name):
                self.params[(i, j)] = {**registry.get(spec.name).params, **spec.params}
            for out in outs:
                if out in produced:
                    ok = False
                    msg = DUPLICATE_OUTPUT.format(output=out, first=produced[out])
                    self.errors.append((where, msg))
                produced.setdefault(out, j)
        return list(produced) if ok and not plugin else None


def _ids_sound(raw: dict[str, Any]) -> bool:
    """Whether every task has a valid id of its own (then references can be checked)."""
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        return False
    ids = [t.get("id") if isinstance(t, dict) else None for t in tasks]
    valid = all(isinstance(i, str) and IDENTIFIER.match(i) for i in ids)
    return valid and len(set(ids)) == len(ids)


def _valid_prompt(task: dict[str, Any]) -> str | None:
    prompt = task.get("prompt")
    if not isinstance(prompt, str):
        return None
    try:
        return _check_template(prompt)
    except ValueError:
        return None


def _task_facts(
    raw: dict[str, Any],
    first: dict[str, int],
    outputs: dict[str, list[str] | None],
    scored: dict[int, str | None],
) -> dict[str, audits.base.TaskFacts]:
    """What audit checks may know of each task (by id), from the raw YAML data (and, for
    an lm_eval task, the kind it scores as: ``scored``)."""
    tasks = _items(raw, "tasks")
    facts = {}
    for task_id, i in first.items():
        task = tasks[i]
        kind, choices = scored.get(i, task.get("kind")), task.get("choices")
        ok = (
            isinstance(choices, list)
            and all(isinstance(c, str) for c in choices)
            and len(set(choices)) == len(choices)
        )
        produced = outputs.get(task_id)
        facts[task_id] = audits.base.TaskFacts(
            id=task_id,
            kind=kind if isinstance(kind, str) and kind in TASK_CLASSES else None,
            choices=tuple(choices or ()) if ok else None,
            outputs=tuple(produced) if produced is not None else None,
            prompt=_valid_prompt(task),
            label=task["label"] if isinstance(task.get("label"), str) else None,
            per_row_choices=isinstance(choices, dict) or (i in scored and _has_choices(kind)),
            messages=isinstance(task.get("messages"), str),
        )
    return facts


def _has_choices(kind: Any) -> bool:
    """Whether the registered kind ``kind`` has choices (False for an unknown kind)."""
    from harness.tasks import find

    found = find(kind)
    return found is not None and found.has_choices


def _items(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The mapping items of a list field (other items are left to the schema errors)."""
    items = raw.get(key)
    return [x if isinstance(x, dict) else {} for x in items] if isinstance(items, list) else []


def _try(validate: Any, data: Any) -> Any:
    """``validate(data)``, or None if it does not validate (reported elsewhere)."""
    try:
        return validate(data)
    except ValidationError:
        return None


def metric_outputs(
    spec: MetricSpec, kind: str, info: TaskInfo | None, usable: list[str], checks: Any
) -> tuple[list[str], list[tuple[tuple[str, ...], str]]]:
    """(outputs, problems) of one metric of a task; problems carry a sub-path.

    With ``info`` None only the name and parameter names are checked. ``checks``
    (a Checks, or None) says where plug-in paths are relative to and if they must exist.
    """
    from harness.metrics import base as registry

    if is_plugin_metric(spec.name):
        path = resolve_path(spec.name, checks.base if checks else Path.cwd())
        if checks and checks.check_files and not path.exists():
            return [], [((), PLUGIN_NOT_FOUND.format(path=path))]
        return [Path(spec.name).stem], []
    try:
        metric = registry.get(spec.name)
    except KeyError:
        return [], [((), UNKNOWN_METRIC.format(name=spec.name, available=", ".join(usable)))]
    if kind not in metric.kinds:
        msg = METRIC_KIND.format(name=spec.name, kind=kind, available=", ".join(usable))
        return [], [((), msg)]
    problems: list[tuple[tuple[str, ...], str]] = []
    for param in spec.params:
        if param not in metric.params:
            allowed = ", ".join(metric.params)
            fmt = UNKNOWN_PARAM if allowed else NO_PARAMS
            problems.append(((param,), fmt.format(param=param, name=spec.name, allowed=allowed)))
    if problems or info is None:
        return [], problems
    params = {**metric.params, **spec.params}
    try:
        if metric.validate_params is not None:
            metric.validate_params(params, info)
        return list(metric.outputs(params, info)), []
    except ValueError as exc:
        return [], [((), str(exc))]


def model_file_errors(
    base: Path, path: str | None = None, adapter: str | None = None, tokenizer: str | None = None
) -> list[tuple[yaml_marks.Path, str]]:
    """Missing local model/adapter/tokenizer folders (hub ids are not checked)."""
    errors: list[tuple[yaml_marks.Path, str]] = []
    for field, value in (("path", path), ("adapter", adapter), ("tokenizer", tokenizer)):
        if value is not None and looks_local(value, base):
            folder = resolve_path(value, base)
            if not folder.is_dir():
                errors.append((("model", field), FOLDER_NOT_FOUND.format(path=folder)))
    return errors

"""Running the declared audits, and the checks around them at each stage.

* load time (``harness.config.suite``): ``config_problems`` checks each audit's config against
  the suite's tasks and files; ``gate_problem`` checks a gate naming an audit value;
* data time (the runner's ``prepare_suite``, so also ``harness validate``):
  ``data_problems`` reports located row errors (a missing group field, ...);
* run time: ``preflight`` before the model loads, then ``run_audits`` after the tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from harness.audits.base import (
    NO_AUDIT,
    NO_AUDIT_VALUE,
    AuditContext,
    CheckContext,
    RunTask,
    TaskFacts,
    available,
    get,
    locate,
)
from harness.errors import UserError

if TYPE_CHECKING:
    from harness.gates.verdicts import GateValue

Located = tuple[tuple[str | int, ...], str]


def _configs(audits: Any) -> list[tuple[str, Any]]:
    """(name, config) of every declared audit, in registry order."""
    if audits is None:
        return []
    return [(n, getattr(audits, n)) for n in available() if getattr(audits, n, None) is not None]


def config_problems(
    raw: Any, tasks: Mapping[str, TaskFacts], base_dir: Path, check_files: bool
) -> list[Located]:
    """Problems of the raw ``audits`` mapping beyond its schema, located by path."""
    if not isinstance(raw, dict):
        return []
    ctx = CheckContext(tasks=tasks, base_dir=base_dir, check_files=check_files)
    out: list[Located] = []
    for name in available():
        cfg = _validated(name, raw.get(name))
        if cfg is not None:
            out += [(("audits", name, *sub), msg) for sub, msg in get(name).check(cfg, ctx)]
    return out


def _validated(name: str, raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return get(name).config.model_validate(raw)
    except ValidationError:
        return None  # the schema errors are reported with the suite's


def is_audit_name(name: str) -> bool:
    return name in available()


def gate_problem(metric: str, raw: Any, tasks: Mapping[str, TaskFacts]) -> str | None:
    """Why a gate on audit value ``metric`` names nothing the audit publishes, or None."""
    audit = metric.partition(".")[0]
    section = raw.get(audit) if isinstance(raw, dict) else None
    if section is None:
        return NO_AUDIT.format(audit=audit)
    cfg = _validated(audit, section)
    if cfg is None:
        return None
    names = get(audit).gate_names(cfg, tasks)
    if names is None or publishes(names, metric):
        return None
    shown = ", ".join(n.replace("[*]", "[<bias type>]") for n in names) or "nothing"
    return NO_AUDIT_VALUE.format(audit=audit, name=metric, names=shown)


def publishes(names: Sequence[str], metric: str) -> bool:
    """Whether ``metric`` is one of ``names`` (``x[*]`` stands for any ``x[...]``)."""
    for n in names:
        if n == metric:
            return True
        if n.endswith("[*]"):
            stem = n[:-3]
            if metric.startswith(stem + "[") and metric.endswith("]") and len(metric) > len(n) - 1:
                return True
    return False


def resolve_paths(audits: Any, base_dir: Path) -> None:
    """Make the local paths in the audit configs absolute (relative to the suite file)."""
    for name, cfg in _configs(audits):
        setattr(audits, name, get(name).resolve_paths(cfg, base_dir))


def data_problems(suite: Any, prepared: Sequence[Any]) -> list[str]:
    """Located row errors of the audits' data (all audits, all rows, together)."""
    by_id = {p.task.id: p for p in prepared}
    out: list[str] = []
    for name, cfg in _configs(getattr(suite, "audits", None)):
        out += get(name).check_data(cfg, suite, by_id)
    return out


def preflight(suite: Any) -> None:
    """Problems that show only once the command line is applied (e.g. no adapter)."""
    errors = []
    for name, cfg in _configs(getattr(suite, "audits", None)):
        for sub, msg in get(name).preflight(cfg, suite):
            errors.append(locate(suite, ("audits", name, *sub), msg))
    if errors:
        raise UserError(errors)


def run_audits(
    suite: Any,
    lm: Any,
    prepared: Sequence[Any],
    task_results: Mapping[str, Any],
    *,
    progress: Callable[[str, int], Callable[[float], None]] | None = None,
    warn: Callable[[str], None] | None = None,
    model_source: Any = None,
    run_task: RunTask | None = None,
    load_model: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, Any], dict[str, GateValue]]:
    """Run every declared audit: (the results' ``audits`` section, gate values).

    The keyword arguments are the run's services, passed on in each audit's context
    (harness.audits.base.AuditContext); the runner gives them all."""
    sections: dict[str, Any] = {}
    values: dict[str, GateValue] = {}
    by_id = {p.task.id: p for p in prepared}
    given: dict[str, Any] = {
        "progress": progress,
        "warn": warn,
        "run_task": run_task,
        "load_model": load_model,
    }
    services = {k: v for k, v in given.items() if v is not None}  # else the context's defaults
    for name, cfg in _configs(getattr(suite, "audits", None)):
        audit = get(name)
        ctx = AuditContext(
            suite=suite,
            config=cfg,
            lm=lm,
            prepared=by_id,
            task_results=task_results,
            model_source=model_source,
            **services,
        )
        t0 = time.perf_counter()
        section = audit.run(ctx)
        section["time_s"] = round(time.perf_counter() - t0, 3)
        sections[name] = section
        values.update(audit.gate_values(section))
    return sections, values

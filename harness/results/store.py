"""Reading and writing results.json, atomically.

Every output is written whole or not at all by ``harness.atomic``.

A results document is valid JSON: a task metric whose value is not a finite number
(NaN, inf) is written as ``"value": null`` with a ``"reason"``, and any other
non-finite number as null, so the writer never fails on a value.

``load_results`` is the one reader of a stored results.json (``harness report``,
``compare``, ``verify``, ``--baseline-results``). The file is untrusted: only a regular
file is read (a FIFO or ``/dev/zero`` would hang), at most ``MAX_RESULTS_BYTES``,
nested at most ``MAX_DEPTH`` levels, and it must match the model
(``harness.results.schema.Results``); anything else is one located error (exit 2).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.atomic import write_or_fail
from harness.data.rows import FILE_NOT_FOUND, NOT_REGULAR
from harness.errors import UserError
from harness.metrics.finite import is_finite, null_non_finite
from harness.metrics.plugin import is_plugin_name
from harness.results.schema import Results, located

NOT_RESULTS = "{path}: not a results file of this harness ({reason})"
MAX_RESULTS_BYTES = 512 * 2**20
"""The largest results.json read (a run of 100,000 examples writes about 100 MiB)."""
MAX_DEPTH = 100
"""The deepest nesting of lists and objects read (a run's own file is about 10 deep)."""
TOO_LARGE = "{path}: larger than {limit} MiB, more than a results file may hold"
TOO_DEEP = "nested deeper than {depth} levels"
CANNOT_READ = "{path}: cannot read: {reason}"
UNDEFINED_PLUGIN = "plug-in {name!r} returned nan or inf for {bad} of {n} examples"
UNDEFINED_VALUE = "{who} gave {value}"
UNDEFINED_ON_DATA = "the metric is undefined on this data ({n} examples)"


def dumps(results: Results) -> str:
    """results.json text of ``results``: the keys it was built with, in its fields'
    order, every task metric as ``mark_undefined`` leaves it and every other NaN or inf
    null (module doc), indented, UTF-8 kept."""
    doc = results.document()
    _mark(doc["tasks"], doc["tasks"])
    text = json.dumps(null_non_finite(doc), indent=1, ensure_ascii=False, allow_nan=False)
    return text + "\n"


def json_safe(results: dict[str, Any]) -> dict[str, Any]:
    """A copy of a results document that is valid JSON (module doc): every task metric
    as ``mark_undefined`` leaves it, every other NaN or inf null."""
    doc: dict[str, Any] = null_non_finite(results)
    tasks = results.get("tasks")
    if isinstance(tasks, dict):
        _mark(tasks, doc["tasks"])
    return doc


def mark_undefined(tasks: dict[str, Any]) -> None:
    """In place, each task metric whose value is not a finite number: ``value`` None,
    a ``reason`` (``undefined_reason``) and no confidence interval, since one made of
    the resamples that happened to have a value does not describe it. For the runner
    to call before the gates read the values, so their messages can give the reason."""
    _mark(tasks, tasks)


def _mark(tasks: dict[str, Any], into: dict[str, Any]) -> None:
    """``mark_undefined`` reading ``tasks`` and writing the same places of ``into``."""
    for task_id, task in tasks.items():
        metrics = task.get("metrics") if isinstance(task, dict) else None
        if not isinstance(metrics, dict):
            continue
        for output, entry in metrics.items():
            if not isinstance(entry, dict) or is_finite(entry.get("value")):
                continue
            reason = entry.get("reason") or undefined_reason(entry, task.get("records"))
            target = into[task_id]["metrics"][output]
            target.update({k: None for k in ("ci_low", "ci_high") if k in target})
            target.update(value=None, reason=reason)


def undefined_reason(entry: Mapping[str, Any], records: Any) -> str:
    """Why a task metric has no finite value: what its metric returned."""
    name = str(entry.get("metric") or "?")
    plugin = is_plugin_name(name)
    value = entry.get("value")
    records = records if isinstance(records, list) else []
    if plugin:
        bad = sum(
            1
            for r in records
            if isinstance(r, dict)
            and isinstance(stats := (r.get("stats") or {}).get(name), list)
            and not all(is_finite(x) for x in stats)
        )
        if bad:
            return UNDEFINED_PLUGIN.format(name=name, bad=bad, n=len(records))
    if isinstance(value, float):  # nan, inf or -inf
        who = f"plug-in {name!r}" if plugin else f"metric {name!r}"
        return UNDEFINED_VALUE.format(who=who, value=value)
    return UNDEFINED_ON_DATA.format(n=entry.get("n", len(records)))


def write_results(results: Results, out_dir: Path) -> Path:
    """Write ``out_dir/results.json`` atomically and return its path."""
    path = out_dir / "results.json"
    write_or_fail({path: dumps(results)})
    return path


def load_results(path: Path) -> Results:
    """Read a stored results.json into the model, checking that it is one (module doc)."""
    data = _parse(path, _read_capped(Path(path)))
    if not isinstance(data, dict) or "schema_version" not in data or "tasks" not in data:
        raise UserError(NOT_RESULTS.format(path=path, reason="missing schema_version or tasks"))
    try:
        return Results.model_validate(data)
    except ValidationError as exc:
        found = located(exc)
    more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
    raise UserError(NOT_RESULTS.format(path=path, reason="; ".join(found[:3]) + more))


def _read_capped(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_RESULTS_BYTES``.

    Opened without blocking (a FIFO would wait for a writer) and checked on the open
    file, so a path swapped after a check cannot slip a device in."""
    limit = MAX_RESULTS_BYTES // 2**20
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: {FILE_NOT_FOUND}") from None
    except OSError as exc:
        raise UserError(CANNOT_READ.format(path=path, reason=exc.strerror or exc)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UserError(f"{path}: {NOT_REGULAR}")
    if info.st_size > MAX_RESULTS_BYTES:
        os.close(fd)
        raise UserError(TOO_LARGE.format(path=path, limit=limit))
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_RESULTS_BYTES + 1)
        except OSError as exc:
            raise UserError(CANNOT_READ.format(path=path, reason=exc.strerror or exc)) from None
    if len(data) > MAX_RESULTS_BYTES:  # it grew while being read
        raise UserError(TOO_LARGE.format(path=path, limit=limit))
    return data


def _parse(path: Path, data: bytes) -> Any:
    """JSON from ``data``, refusing nesting deeper than ``MAX_DEPTH``."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(NOT_RESULTS.format(path=path, reason=str(exc)[:200])) from None
    except RecursionError:  # deeper than the interpreter's stack: far beyond MAX_DEPTH
        doc = None
        depth_error = True
    else:
        depth_error = _depth_exceeds(doc, MAX_DEPTH)
    if depth_error:
        raise UserError(NOT_RESULTS.format(path=path, reason=TOO_DEEP.format(depth=MAX_DEPTH)))
    return doc


def _depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False

"""Metrics from local Hugging Face ``evaluate`` modules, named in a suite by path.

A suite metric whose name starts with ``./``, ``../`` or ``/`` or ends in ``.py`` is a
local ``evaluate`` module (a script, or a folder holding ``<folder name>.py``), loaded
offline with ``evaluate.load(path)``. Convention:

* The module is run once per example: ``compute(predictions=[pred], references=[gold])``
  for classification, ``compute(predictions=[prediction], references=[references[0]])``
  for generation (first reference only); the metric's params are passed to ``compute``
  as keyword arguments.
* Its outputs are the numeric keys its ``compute`` returns (``{"match_rate": 0.5,
  "count": 1}`` -> outputs ``match_rate`` and ``count``; booleans and text are not
  numbers and are left out). Every one is a task value a gate can name
  (``<task id>.count``). They are known once the module has run, so they are
  ``outputs`` only then; every example must return the same keys.
* The per-example values are the statistics (one column per output) and each task value
  is the mean of its column, so bootstrap CIs and paired tests work from stored records
  like the built-ins. That is right for decomposable metrics (accuracy, exact match,
  per-example similarity); a corpus-level metric (BLEU, F1) needs a built-in
  stats/aggregate split.
* A value that is not a finite number (NaN, inf) is kept as NaN, so the task value is
  NaN: stored as null with the reason, and a gate on it fails. An inf is never averaged
  into a value that passes a ``min`` gate.

``evaluate`` is imported only when a plug-in is used (it pulls in ``datasets``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.metrics.base import Metric, Record, TaskInfo
from harness.tasks import get as get_kind

NOT_FOUND_ERROR = "evaluate module not found: {path}"
NO_VALUE_ERROR = "{path}: the evaluate module returned no numeric value (got {result})"
KEYS_CHANGED_ERROR = (
    "{path}: the evaluate module returned the numeric keys {keys} for example {n}, "
    "but {first} for the first example; every example must return the same keys"
)
RESULT_SHOWN = 120  # characters of a result shown in an error


def is_plugin_name(name: str) -> bool:
    """Whether a suite's metric name is a local path (see the module docstring)."""
    return name.startswith(("./", "../", "/")) or name.endswith(".py")


def resolve(path: str, base_dir: Path) -> Path:
    """Absolute path of ``path``: ``~`` expanded, relative paths taken from base_dir."""
    p = Path(os.path.expanduser(path))
    return Path(os.path.abspath(p if p.is_absolute() else base_dir / p))


def make_evaluate_metric(path: str, base_dir: Path) -> Metric:
    """A ``Metric`` (not registered) wrapping the local evaluate module at ``path``."""
    resolved = resolve(path, base_dir)
    if not resolved.exists():
        raise ValueError(NOT_FOUND_ERROR.format(path=resolved))
    module: list[Any] = []  # loaded on first use, then reused
    keys: list[str] = []  # the numeric keys compute returns, set by its first result

    def load() -> Any:
        if not module:
            import evaluate

            module.append(evaluate.load(str(resolved)))
        return module[0]

    def stats(records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo) -> np.ndarray:
        evaluator = load()
        task_kind = get_kind(task.kind)
        rows: list[list[float]] = []
        for i, r in enumerate(records):
            pred, ref = task_kind.metric_inputs(r)
            result = evaluator.compute(predictions=[pred], references=[ref], **params)
            values = _numeric(result, path)
            if not keys:
                keys.extend(values)
            elif set(values) != set(keys):
                raise UserError(
                    KEYS_CHANGED_ERROR.format(
                        path=path, keys=_names(values), n=i + 1, first=_names(keys)
                    )
                )
            rows.append([values[k] for k in keys])
        return np.asarray(rows, dtype=float).reshape(len(records), len(keys))

    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        return {
            key: float(stats[:, j].mean()) if len(stats) else math.nan for j, key in enumerate(keys)
        }

    return Metric(
        name=path,
        kinds=frozenset({"classification", "generation"}),
        outputs=lambda params, task: list(keys),
        stats=stats,
        aggregate=aggregate,
        description=f"evaluate module {resolved}, mean of per-example values",
        signature=lambda params, task: _signature(resolved),
    )


def _signature(resolved: Path) -> str:
    """Module name, a hash of its script (when a file) and the reduction."""
    script = resolved if resolved.is_file() else resolved / f"{resolved.name}.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()[:12] if script.is_file() else "?"
    return f"evaluate:{resolved.name}|sha256:{digest}|reduce:per-example-mean"


def _numeric(result: Mapping[str, Any] | None, path: str) -> dict[str, float]:
    """The numeric values of one ``compute`` result by key; NaN for NaN and inf."""
    numeric = {
        str(k): _as_float(v)
        for k, v in (result if isinstance(result, Mapping) else {}).items()
        if isinstance(v, Real) and not isinstance(v, bool)
    }
    if not numeric:
        shown = repr(result)
        shown = shown if len(shown) <= RESULT_SHOWN else shown[:RESULT_SHOWN] + "..."
        raise UserError(NO_VALUE_ERROR.format(path=path, result=shown))
    return {k: v if math.isfinite(v) else math.nan for k, v in numeric.items()}


def _as_float(value: Real) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf


def _names(keys: Any) -> str:
    return ", ".join(repr(k) for k in keys)

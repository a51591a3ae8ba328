"""Metrics from local Hugging Face ``evaluate`` modules, named in a suite by path.

A suite metric whose name starts with ``./``, ``../`` or ``/`` or ends in ``.py`` is a
local ``evaluate`` module (a script, or a folder holding ``<folder name>.py``), loaded
offline with ``evaluate.load(path)``. Convention:

* The module is run once per example: ``compute(predictions=[pred], references=[gold])``
  for classification, ``compute(predictions=[prediction], references=[references[0]])``
  for generation (first reference only); the metric's params are passed to ``compute``
  as keyword arguments.
* Its one output is named after the module's file stem (``./metrics/match_rate.py`` ->
  ``match_rate``), so a suite can gate on it before anything runs. The value is the
  result key of that name when present, else the result's only numeric value; a module
  that returns several numeric values must name one of them like its file.
* The per-example values are the statistics (one column) and the task value is their
  mean, so bootstrap CIs and paired tests work from stored records like the built-ins.
  That is right for decomposable metrics (accuracy, exact match, per-example
  similarity); a corpus-level metric (BLEU, F1) needs a built-in stats/aggregate split.

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

from harness.metrics.base import Metric, Record, TaskInfo

NOT_FOUND_ERROR = "evaluate module not found: {path}"
NO_VALUE_ERROR = "evaluate module {stem!r} returned no numeric value (got {result!r})"
MANY_VALUES_ERROR = (
    "evaluate module {stem!r} returned several numeric values ({keys}); "
    "name one of them {stem!r} to choose it"
)


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
    stem = Path(path).stem
    module: list[Any] = []  # loaded on first use, then reused

    def load() -> Any:
        if not module:
            import evaluate

            module.append(evaluate.load(str(resolved)))
        return module[0]

    def stats(records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo) -> np.ndarray:
        evaluator = load()
        out = np.zeros((len(records), 1))
        for i, r in enumerate(records):
            if task.kind == "classification":
                pred, ref = r["pred"], r["gold"]
            else:
                pred, ref = r["prediction"], r["references"][0]
            result = evaluator.compute(predictions=[pred], references=[ref], **params)
            out[i, 0] = _pick(result, stem)
        return out

    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        return {stem: float(stats[:, 0].mean()) if len(stats) else math.nan}

    return Metric(
        name=path,
        kinds=frozenset({"classification", "generation"}),
        outputs=lambda params, task: [stem],
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


def _pick(result: Mapping[str, Any] | None, stem: str) -> float:
    """The value of the output named ``stem`` from one ``compute`` result."""
    numeric = {
        k: float(v)
        for k, v in (result or {}).items()
        if isinstance(v, Real) and not isinstance(v, bool)
    }
    if stem in numeric:
        return numeric[stem]
    if len(numeric) == 1:
        return next(iter(numeric.values()))
    if not numeric:
        raise ValueError(NO_VALUE_ERROR.format(stem=stem, result=result))
    raise ValueError(MANY_VALUES_ERROR.format(stem=stem, keys=", ".join(sorted(numeric))))

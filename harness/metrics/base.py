"""Metric protocol and registry.

A metric is split, as in sacrebleu, into per-example statistics and an aggregate:
``stats`` turns the stored per-example records of one task into a float matrix
(one row per example), ``aggregate`` turns any subset/resample of those rows into the
metric values. Bootstrap confidence intervals and paired significance tests resample
rows of that matrix and never call the model again. Metrics do no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Record = Mapping[str, Any]
"""One stored per-example record (see docs/results.md for the fields per task kind)."""


@dataclass(frozen=True)
class TaskInfo:
    """What a metric may know about the task besides its records."""

    kind: str  # a registered task kind (harness.tasks.available()), or "audit"
    choices: tuple[str, ...] = ()  # a kind with choices only
    per_row_choices: bool = False  # each example has its own choices (no fixed classes)


# The three functions a Metric is made of (aliases for metric modules and plug-ins).
OutputsFn = Callable[[Mapping[str, Any], TaskInfo], list[str]]
StatsFn = Callable[[Sequence[Record], Mapping[str, Any], TaskInfo], np.ndarray]
AggregateFn = Callable[[np.ndarray, Mapping[str, Any], TaskInfo], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``outputs(params, task)`` names the values ``aggregate`` returns (e.g. rouge ->
    rouge1, rouge2, rougeL, rougeLsum), so a suite can be validated without a model.
    ``stats(records, params, task)`` -> float array of shape (n_examples, k).
    ``aggregate(stats, params, task)`` -> {output name: value}; must accept 0 rows and
    then return NaN values rather than raise.
    ``signature(params, task)`` is a reproducibility string stored beside each value
    (sacrebleu's "case:mixed|eff:no|tok:13a|..." for BLEU); "" when there is none.
    """

    name: str
    kinds: frozenset[str]
    outputs: Callable[[Mapping[str, Any], TaskInfo], list[str]]
    stats: Callable[[Sequence[Record], Mapping[str, Any], TaskInfo], np.ndarray]
    aggregate: Callable[[np.ndarray, Mapping[str, Any], TaskInfo], dict[str, float]]
    params: Mapping[str, Any] = field(default_factory=dict)  # allowed params -> default
    higher_is_better: bool = True
    description: str = ""
    validate_params: Callable[[Mapping[str, Any], TaskInfo], None] | None = None
    signature: Callable[[Mapping[str, Any], TaskInfo], str] = lambda params, task: ""


def mean_aggregate(output: str) -> AggregateFn:
    """Mean of the single statistics column as ``output`` (NaN for no rows)."""

    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        return {output: float(stats[:, 0].mean()) if len(stats) else float("nan")}

    return aggregate


def mean_metric(
    name: str,
    stats: StatsFn,
    kinds: frozenset[str],
    description: str,
    *,
    higher_is_better: bool = True,
    params: Mapping[str, Any] | None = None,
    validate_params: Callable[[Mapping[str, Any], TaskInfo], None] | None = None,
) -> Metric:
    """A metric with one output, named as the metric: the mean of one statistic per example."""
    return Metric(
        name=name,
        kinds=kinds,
        outputs=lambda params, task: [name],
        stats=stats,
        aggregate=mean_aggregate(name),
        params=dict(params or {}),
        higher_is_better=higher_is_better,
        description=description,
        validate_params=validate_params,
    )


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric; a duplicate name is refused (as peft's register_peft_method does)."""
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered")
    _REGISTRY[metric.name] = metric
    return metric


def get(name: str) -> Metric:
    """Look up a metric by name (KeyError if unknown)."""
    _ensure_builtins()
    return _REGISTRY[name]


def available() -> list[str]:
    """Sorted names of all registered metrics."""
    _ensure_builtins()
    return sorted(_REGISTRY)


_loaded = False


def _ensure_builtins() -> None:
    """Import the built-in metric modules (they register themselves) and entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib import import_module
    from importlib.metadata import entry_points

    for module in ("classification", "calibration", "text", "lm"):
        import_module(f"harness.metrics.{module}")
    for ep in entry_points(group="harness.metrics"):
        obj = ep.load()
        if isinstance(obj, Metric) and obj.name not in _REGISTRY:
            register(obj)

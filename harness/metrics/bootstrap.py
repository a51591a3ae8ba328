"""Point values with percentile-bootstrap confidence intervals, and paired tests.

Both resample ROWS of a metric's per-example statistics matrix (Efron & Tibshirani
1993) with a seeded ``numpy.random.Generator`` and call ``metric.aggregate`` on each
resample, so the model is never called again and corpus-level metrics (BLEU, F1) are
resampled correctly, not averaged per example. All resample indices are drawn as one
(samples, n) matrix (in chunks for large n) as sacrebleu's ``significance`` module does.

``paired_bootstrap`` applies the same row indices to two runs over the same examples
(Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation") and
reports delta = b - a with its percentile CI and a two-sided p-value: twice the smaller
share of resampled deltas at or beyond 0 on either side, with the +1 correction of
Davison & Hinkley (1997) so no finite resample gives p = 0, capped at 1. So p < alpha
about when the (1 - alpha) percentile CI of the delta excludes 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import Metric, Record, TaskInfo

_MAX_INDEX_CELLS = 1_000_000  # cap on one chunk of the (samples, n) index matrix
NAN = float("nan")

PAIRED_ROWS_ERROR = "paired bootstrap needs the same examples in both runs (got {a} and {b} rows)"
SAMPLES_ERROR = "bootstrap samples must be >= 0 (got {value!r})"
CONFIDENCE_ERROR = "confidence must be between 0 and 1 (got {value!r})"


MetricValue = dict[str, Any]
"""One output of ``score``: {"value", "ci_low", "ci_high", "n"} (floats, n an int)."""

PairedValue = dict[str, Any]
"""One output of ``paired_bootstrap``: {"value_a", "value_b", "delta", "ci_low",
"ci_high", "p_value", "n"}."""


def score(
    metric: Metric,
    records: Sequence[Record],
    params: Mapping[str, Any],
    task: TaskInfo,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 1234,
) -> dict[str, MetricValue]:
    """Every output of ``metric`` on ``records``: value, percentile CI and n."""
    if metric.validate_params is not None:
        metric.validate_params(params, task)
    stats = metric.stats(records, params, task)
    return score_stats(
        metric, stats, params, task, samples=samples, confidence=confidence, seed=seed
    )


def score_stats(
    metric: Metric,
    stats: np.ndarray,
    params: Mapping[str, Any],
    task: TaskInfo,
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 1234,
) -> dict[str, MetricValue]:
    """As ``score`` from already computed (e.g. stored) per-example statistics."""
    [stats], [point], [resampled] = _points_and_resamples(
        metric, [stats], params, task, samples, confidence, seed
    )
    n = len(stats)
    out: dict[str, MetricValue] = {}
    for name, value in point.items():
        low, high = _interval(resampled.get(name), confidence)
        out[name] = {"value": float(value), "ci_low": low, "ci_high": high, "n": n}
    return out


def paired_bootstrap(
    metric: Metric,
    stats_a: np.ndarray,
    stats_b: np.ndarray,
    params: Mapping[str, Any],
    task: TaskInfo,
    samples: int = 1000,
    seed: int = 1234,
    *,
    confidence: float = 0.95,
) -> dict[str, PairedValue]:
    """Compare run b with run a on the same examples (row i of both = example i)."""
    (a, _), (point_a, point_b), (res_a, res_b) = _points_and_resamples(
        metric, [stats_a, stats_b], params, task, samples, confidence, seed
    )
    out: dict[str, PairedValue] = {}
    for name in point_a:
        delta = float(point_b[name]) - float(point_a[name])
        deltas = None
        if name in res_a and name in res_b:
            deltas = res_b[name] - res_a[name]
        low, high = _interval(deltas, confidence)
        out[name] = {
            "value_a": float(point_a[name]),
            "value_b": float(point_b[name]),
            "delta": delta,
            "ci_low": low,
            "ci_high": high,
            "p_value": _p_value(deltas),
            "n": len(a),
        }
    return out


def _points_and_resamples(
    metric: Metric,
    runs: list[np.ndarray],
    params: Mapping[str, Any],
    task: TaskInfo,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[list[np.ndarray], list[dict[str, float]], list[dict[str, np.ndarray]]]:
    """Per run (all over the same rows): the stats as floats, the point values and the
    resampled values (the same row indices for every run)."""
    _check(samples, confidence)
    arrays = [np.asarray(stats, dtype=float) for stats in runs]
    if any(len(other) != len(arrays[0]) for other in arrays[1:]):
        raise ValueError(PAIRED_ROWS_ERROR.format(a=len(arrays[0]), b=len(arrays[1])))
    points = [metric.aggregate(stats, params, task) for stats in arrays]
    return arrays, points, _resample(metric, arrays, params, task, samples, seed)


def _check(samples: int, confidence: float) -> None:
    if samples < 0:
        raise ValueError(SAMPLES_ERROR.format(value=samples))
    if not 0 < confidence < 1:
        raise ValueError(CONFIDENCE_ERROR.format(value=confidence))


def _index_chunks(n: int, samples: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of every resample, as (chunk, n) matrices; deterministic per seed."""
    rng = np.random.default_rng(seed)
    step = max(1, _MAX_INDEX_CELLS // max(n, 1))
    for start in range(0, samples, step):
        yield rng.integers(0, n, size=(min(step, samples - start), n))


def _resample(
    metric: Metric,
    runs: list[np.ndarray],
    params: Mapping[str, Any],
    task: TaskInfo,
    samples: int,
    seed: int,
) -> list[dict[str, np.ndarray]]:
    """Per run, {output: array of ``samples`` resampled values}; empty if n < 2."""
    n = len(runs[0])
    if n < 2 or samples == 0:
        return [{} for _ in runs]
    values: list[dict[str, list[float]]] = [{} for _ in runs]
    for idx in _index_chunks(n, samples, seed):
        for stats, acc in zip(runs, values, strict=True):
            for rows in idx:
                for name, v in metric.aggregate(stats[rows], params, task).items():
                    acc.setdefault(name, []).append(float(v))
    return [{k: np.asarray(v) for k, v in acc.items()} for acc in values]


def _interval(values: np.ndarray | None, confidence: float) -> tuple[float, float]:
    """Percentile interval, ignoring resamples where the metric is undefined (NaN)."""
    if values is None:
        return NAN, NAN
    finite = values[~np.isnan(values)]
    if len(finite) == 0:
        return NAN, NAN
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _p_value(deltas: np.ndarray | None) -> float:
    """Two-sided: 2 * min(#{d <= 0} + 1, #{d >= 0} + 1) / (S + 1), capped at 1."""
    if deltas is None:
        return NAN
    finite = deltas[~np.isnan(deltas)]
    if len(finite) == 0:
        return NAN
    below = int((finite <= 0).sum())
    above = int((finite >= 0).sum())
    return min(1.0, 2.0 * (min(below, above) + 1) / (len(finite) + 1))

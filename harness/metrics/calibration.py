"""Calibration of a classifier's choice probabilities: ECE, Brier score, NLL.

All three are lower-is-better. ECE is the expected calibration error of Guo et al.
(2017), "On Calibration of Modern Neural Networks" (ICML), eq. 3: confidence is the
largest choice probability, examples fall into ``bins`` equal-width intervals
((m-1)/M, m/M], and ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|. The Brier score is
the multiclass form of Brier (1950): mean over examples of sum_k (p_k - 1[k = gold])^2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import Metric, Record, TaskInfo, mean_metric, register

BINS_ERROR = "bins must be a whole number >= 1 (got {value!r})"


def _validate_bins(params: Mapping[str, Any], task: TaskInfo) -> None:
    bins = params.get("bins", 15)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(BINS_ERROR.format(value=bins))


def _ece_stats(records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo) -> np.ndarray:
    """One row per example: confidence (max probability), 1 if the prediction is right."""
    rows = [(max(r["probs"]), float(r["pred"] == r["gold"])) for r in records]
    return np.asarray(rows, dtype=float).reshape(len(rows), 2)


def _ece_aggregate(
    stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo
) -> dict[str, float]:
    if len(stats) == 0:
        return {"ece": float("nan")}
    bins = int(params.get("bins", 15))
    conf, correct = stats[:, 0], stats[:, 1]
    # Bin m holds lower < conf <= upper, as in Guo et al.'s reference code; searchsorted
    # on the same linspace edges avoids float drift from ceil(conf * bins).
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    gap = np.bincount(which, weights=correct - conf, minlength=bins)
    return {"ece": float(np.abs(gap).sum() / len(stats))}


def _brier_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    out = np.empty((len(records), 1))
    for i, r in enumerate(records):
        p = np.asarray(r["probs"], dtype=float)
        p[r["gold"]] -= 1.0
        out[i, 0] = p @ p
    return out


def _nll_stats(records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo) -> np.ndarray:
    """-log p(gold). From the choice log-likelihoods when present (log-sum-exp is exact
    where a tiny stored probability would underflow to 0), else from ``probs``."""
    out = np.empty((len(records), 1))
    for i, r in enumerate(records):
        loglik = r.get("loglik")
        if loglik:
            ll = np.asarray(loglik, dtype=float)
            top = ll.max()
            out[i, 0] = top + math.log(np.exp(ll - top).sum()) - ll[r["gold"]]
        else:
            out[i, 0] = -math.log(r["probs"][r["gold"]])
    return out


register(
    Metric(
        name="ece",
        kinds=frozenset({"classification"}),
        outputs=lambda params, task: ["ece"],
        stats=_ece_stats,
        aggregate=_ece_aggregate,
        params={"bins": 15},
        higher_is_better=False,
        description="Expected calibration error (Guo et al. 2017), equal-width bins.",
        validate_params=_validate_bins,
    )
)
register(
    mean_metric(
        "brier",
        _brier_stats,
        frozenset({"classification"}),
        "Multiclass Brier score: mean of sum_k (p_k - onehot_k)^2.",
        higher_is_better=False,
    )
)
register(
    mean_metric(
        "nll",
        _nll_stats,
        frozenset({"classification"}),
        "Mean negative log probability of the gold choice (natural log).",
        higher_is_better=False,
    )
)

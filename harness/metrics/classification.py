"""Classification metrics: accuracy, precision, recall, F1.

Per-example statistics are ``(gold, pred, n_choices)``; the aggregate builds per-class
counts with ``np.bincount``, so a bootstrap resample costs microseconds. Precision,
recall and F1 follow scikit-learn's ``precision_recall_fscore_support`` called with
``labels=range(n_choices)`` and ``zero_division=0``: a class absent from both gold and
predictions still counts (as 0) in the macro average, exactly as sklearn does with
explicit labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import (
    AggregateFn,
    Metric,
    OutputsFn,
    Record,
    TaskInfo,
    mean_metric,
    register,
)

AVERAGES = ("binary", "macro", "micro", "weighted", "per_class")

AVERAGE_ERROR = "average must be one of binary, macro, micro, weighted, per_class (got {value!r})"
BINARY_ERROR = "average=binary needs a task with exactly 2 choices (this task has {n})"
POSITIVE_ERROR = (
    "positive must be one of the choices {choices} or an index 0..{last} (got {value!r})"
)
POSITIVE_AVERAGE_ERROR = "positive applies only to average=binary (average is {average})"
FIXED_CHOICES_ERROR = (
    "needs a fixed choice list (the same classes for every example); with each row's own "
    "choices use accuracy, accuracy_norm or the calibration metrics"
)
UNIT_ERROR = "unit must be chars or bytes (got {value!r})"
PER_CLASS_ERROR = "average=per_class needs the task's choices to name the outputs"


def default_average(task: TaskInfo) -> str:
    """``binary`` for a two-choice task, else ``macro``."""
    return "binary" if len(task.choices) == 2 else "macro"


def _average(params: Mapping[str, Any], task: TaskInfo) -> str:
    value = params.get("average")
    return default_average(task) if value is None else str(value)


def _positive(params: Mapping[str, Any], task: TaskInfo) -> int:
    """Index of the positive class: a choice text or an index; default 1."""
    value = params.get("positive")
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    stripped = [c.strip() for c in task.choices]
    if isinstance(value, str) and value.strip() in stripped:
        return stripped.index(value.strip())
    raise ValueError(
        POSITIVE_ERROR.format(choices=stripped, last=max(len(task.choices) - 1, 0), value=value)
    )


def _validate_prf(params: Mapping[str, Any], task: TaskInfo) -> None:
    if task.per_row_choices:
        raise ValueError(FIXED_CHOICES_ERROR)
    average = _average(params, task)
    if average not in AVERAGES:
        raise ValueError(AVERAGE_ERROR.format(value=params.get("average")))
    n = len(task.choices)
    if average == "binary" and n and n != 2:
        raise ValueError(BINARY_ERROR.format(n=n))
    if average == "per_class" and not n:
        raise ValueError(PER_CLASS_ERROR)
    if params.get("positive") is not None:
        if average != "binary":
            raise ValueError(POSITIVE_AVERAGE_ERROR.format(average=average))
        pos = _positive(params, task)
        if n and not 0 <= pos < n:
            raise ValueError(
                POSITIVE_ERROR.format(
                    choices=[c.strip() for c in task.choices], last=n - 1, value=pos
                )
            )


def class_names(task: TaskInfo) -> list[str]:
    """Stripped choice texts, or indices when they are empty or not unique."""
    names = [c.strip() for c in task.choices]
    if len(set(names)) != len(names) or not all(names):
        return [str(i) for i in range(len(names))]
    return names


def _prf_outputs(name: str) -> OutputsFn:
    def outputs(params: Mapping[str, Any], task: TaskInfo) -> list[str]:
        _validate_prf(params, task)
        average = _average(params, task)
        if average == "per_class":
            return [f"{name}[{c}]" for c in class_names(task)]
        if average == default_average(task):
            return [name]
        return [f"{name}_{average}"]

    return outputs


def _label_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    """One row per example: gold index, predicted index, number of choices."""
    rows = [(r["gold"], r["pred"], len(r.get("choices") or task.choices)) for r in records]
    return np.asarray(rows, dtype=float).reshape(len(rows), 3)


def _n_labels(stats: np.ndarray, task: TaskInfo) -> int:
    if task.choices:
        return len(task.choices)
    return int(max(stats[:, 2].max(), stats[:, :2].max() + 1))


def _per_class_counts(stats: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, predicted count, gold count) per class 0..n-1."""
    gold = stats[:, 0].astype(np.int64)
    pred = stats[:, 1].astype(np.int64)
    inside = (pred >= 0) & (pred < n)  # a prediction outside the labels is only a miss
    tp = np.bincount(gold[gold == pred], minlength=n)[:n]
    pred_count = np.bincount(pred[inside], minlength=n)[:n]
    gold_count = np.bincount(gold, minlength=n)[:n]
    return tp.astype(float), pred_count.astype(float), gold_count.astype(float)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    out = np.zeros_like(num, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _prf_values(kind: str, tp: np.ndarray, pc: np.ndarray, gc: np.ndarray) -> np.ndarray:
    if kind == "precision":
        return _ratio(tp, pc)
    if kind == "recall":
        return _ratio(tp, gc)
    return _ratio(2 * tp, pc + gc)  # F1 = 2tp / (2tp + fp + fn), as sklearn computes it


def _prf_aggregate(name: str) -> AggregateFn:
    def aggregate(stats: np.ndarray, params: Mapping[str, Any], task: TaskInfo) -> dict[str, float]:
        outs = _prf_outputs(name)(params, task)
        if len(stats) == 0:
            return dict.fromkeys(outs, float("nan"))
        average = _average(params, task)
        n = _n_labels(stats, task)
        tp, pc, gc = _per_class_counts(stats, n)
        if average == "micro":
            value = _prf_values(
                name, tp.sum(keepdims=True), pc.sum(keepdims=True), gc.sum(keepdims=True)
            )
            return {outs[0]: float(value[0])}
        per_class = _prf_values(name, tp, pc, gc)
        if average == "per_class":
            return {o: float(v) for o, v in zip(outs, per_class, strict=True)}
        if average == "binary":
            return {outs[0]: float(per_class[_positive(params, task)])}
        if average == "weighted":
            total = gc.sum()
            return {outs[0]: float(per_class @ gc / total) if total else 0.0}
        return {outs[0]: float(per_class.mean())}

    return aggregate


def _prf_metric(name: str, description: str) -> Metric:
    return Metric(
        name=name,
        kinds=frozenset({"classification"}),
        outputs=_prf_outputs(name),
        stats=_label_stats,
        aggregate=_prf_aggregate(name),
        params={"average": None, "positive": None},
        description=description,
        validate_params=_validate_prf,
    )


def _accuracy_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    return np.asarray([float(r["pred"] == r["gold"]) for r in records], dtype=float).reshape(-1, 1)


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first on ties (numpy's argmax, lm-eval's rule)."""
    return int(np.argmax(np.asarray(values, dtype=float)))


def _length(choice: str, unit: str) -> float:
    return float(len(choice.encode("utf-8")) if unit == "bytes" else len(choice))


def _accuracy_norm_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    """1 when the choice with the best log-likelihood per unit of its own length (the
    choice text as written, without the target delimiter) is the gold one."""
    unit = str(params.get("unit", "chars"))
    out = np.zeros((len(records), 1))
    for i, r in enumerate(records):
        per_unit = [ll / _length(c, unit) for ll, c in zip(r["loglik"], r["choices"], strict=True)]
        out[i, 0] = float(_argmax(per_unit) == r["gold"])
    return out


def _validate_unit(params: Mapping[str, Any], task: TaskInfo) -> None:
    if params.get("unit", "chars") not in ("chars", "bytes"):
        raise ValueError(UNIT_ERROR.format(value=params.get("unit")))


def _mutual_info_stats(
    records: Sequence[Record], params: Mapping[str, Any], task: TaskInfo
) -> np.ndarray:
    """1 when the choice whose log-likelihood gains most from the prompt (conditional
    minus unconditional, a pointwise mutual information) is the gold one."""
    out = np.zeros((len(records), 1))
    for i, r in enumerate(records):
        gain = np.asarray(r["loglik"], dtype=float) - np.asarray(r["loglik_unconditional"])
        out[i, 0] = float(_argmax(gain.tolist()) == r["gold"])
    return out


register(
    mean_metric(
        "accuracy",
        _accuracy_stats,
        frozenset({"classification"}),
        "Share of examples whose predicted choice is the gold choice.",
    )
)
register(
    mean_metric(
        "accuracy_norm",
        _accuracy_norm_stats,
        frozenset({"classification"}),
        "Accuracy of the choice with the best log-likelihood per character of the choice "
        "text (`unit: bytes`: per UTF-8 byte); lm-eval's acc_norm (acc_bytes).",
        params={"unit": "chars"},
        validate_params=_validate_unit,
    )
)
register(
    mean_metric(
        "accuracy_mutual_info",
        _mutual_info_stats,
        frozenset({"classification"}),
        "Accuracy of the choice whose log-likelihood the prompt raises most (minus its "
        "log-likelihood after an empty context; scores every choice twice); lm-eval's "
        "acc_mutual_info.",
    )
)
_SUFFIX = (
    " average: binary (2 choices; positive class = index 1 or `positive`) or macro by"
    " default; micro, weighted or per_class on request. Equals sklearn with"
    " labels=range(n_choices), zero_division=0."
)
register(_prf_metric("precision", "Precision tp / (tp + fp)." + _SUFFIX))
register(_prf_metric("recall", "Recall tp / (tp + fn)." + _SUFFIX))
register(_prf_metric("f1", "F1 = 2tp / (2tp + fp + fn)." + _SUFFIX))

"""ECE (hand-computed golden case and a calibration property), Brier score, NLL."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import log_loss

from harness.metrics import TaskInfo, get
from harness.metrics.calibration import BINS_ERROR

TASK = TaskInfo("classification", ("a", "b", "c"))

# Five 3-way examples: (probs, gold); pred is the argmax.
GOLDEN = [
    ([0.90, 0.05, 0.05], 0),  # conf 0.90, right
    ([0.85, 0.10, 0.05], 1),  # conf 0.85, wrong
    ([0.30, 0.60, 0.10], 1),  # conf 0.60, right (0.60 falls in (0.4, 0.6], not (0.6, 0.8])
    ([0.50, 0.30, 0.20], 2),  # conf 0.50, wrong
    ([0.40, 0.35, 0.25], 0),  # conf 0.40, right
]


def _records(rows: list[tuple[list[float], int]]) -> list[dict[str, Any]]:
    return [
        {"probs": p, "gold": g, "pred": int(np.argmax(p)), "loglik": [math.log(x) - 3 for x in p]}
        for p, g in rows
    ]


def _value(name: str, records: list[dict[str, Any]], **params: Any) -> float:
    metric = get(name)
    merged = {**metric.params, **params}
    (value,) = metric.aggregate(metric.stats(records, merged, TASK), merged, TASK).values()
    return value


# Hand computation, bins = 5 (edges 0.2, 0.4, 0.6, 0.8, 1.0; bin m is (lower, upper]):
#   (0.8, 1.0]: 2 examples, accuracy 1/2, mean confidence 0.875 -> 2/5 * 0.375 = 0.15
#   (0.4, 0.6]: 2 examples, accuracy 1/2, mean confidence 0.55  -> 2/5 * 0.05  = 0.02
#   (0.2, 0.4]: 1 example,  accuracy 1,   confidence 0.40       -> 1/5 * 0.60  = 0.12
#   ECE = 0.29 (0.45 if 0.6 were put in the next bin up).
# bins = 1: |accuracy 3/5 - mean confidence 3.25/5| = 0.05.
# bins = 15 (default): every example alone in its bin -> mean |correct - conf|
#   = (0.10 + 0.85 + 0.40 + 0.50 + 0.60) / 5 = 0.49.
@pytest.mark.parametrize(("bins", "expected"), [(5, 0.29), (1, 0.05), (15, 0.49)])
def test_ece_hand_computed(bins: int, expected: float) -> None:
    assert _value("ece", _records(GOLDEN), bins=bins) == pytest.approx(expected, abs=1e-12)


def test_ece_near_zero_when_calibrated() -> None:
    # Confidence c uniform on [1/2, 1), right with probability exactly c.
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 20_000)
    right = rng.random(20_000) < conf
    records = [
        {"probs": [c, 1 - c], "pred": 0, "gold": 0 if ok else 1}
        for c, ok in zip(conf, right, strict=True)
    ]
    assert _value("ece", records) < 0.015
    # and a model that is always 0.99 sure but right 60% of the time is far off
    over = [{**r, "probs": [0.99, 0.01]} for r in records]
    accuracy = np.mean(right)
    assert _value("ece", over) == pytest.approx(0.99 - accuracy, abs=1e-9)


def test_brier_is_the_multiclass_sum_of_squares() -> None:
    expected = np.mean(
        [sum((p - (k == g)) ** 2 for k, p in enumerate(probs)) for probs, g in GOLDEN]
    )
    assert _value("brier", _records(GOLDEN)) == pytest.approx(expected, abs=1e-12)
    # first example by hand: 0.1^2 + 0.05^2 + 0.05^2 = 0.015
    assert _value("brier", _records(GOLDEN[:1])) == pytest.approx(0.015, abs=1e-12)


def test_nll_equals_sklearn_log_loss() -> None:
    golds = [g for _, g in GOLDEN]
    expected = log_loss(golds, [p for p, _ in GOLDEN], labels=[0, 1, 2])
    assert _value("nll", _records(GOLDEN)) == pytest.approx(expected, abs=1e-12)
    # from probs alone (no loglik) too
    no_loglik = [{k: v for k, v in r.items() if k != "loglik"} for r in _records(GOLDEN)]
    assert _value("nll", no_loglik) == pytest.approx(expected, abs=1e-12)


def test_lower_is_better() -> None:
    assert not any(get(n).higher_is_better for n in ("ece", "brier", "nll"))


@pytest.mark.parametrize("bins", [0, -3, 2.5, True, "10"])
def test_bad_bins(bins: Any) -> None:
    validate = get("ece").validate_params
    assert validate is not None
    with pytest.raises(ValueError) as info:
        validate({"bins": bins}, TASK)
    assert str(info.value) == BINS_ERROR.format(value=bins)

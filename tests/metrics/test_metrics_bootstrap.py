"""Bootstrap CIs and the paired bootstrap test."""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np
import pytest

from harness.metrics import TaskInfo, get, paired_bootstrap, score, score_stats
from harness.metrics.bootstrap import PAIRED_ROWS_ERROR

BINARY = TaskInfo("classification", ("negative", "positive"))
GEN = TaskInfo("generation")


def _predict(gold: list[int], accuracy: float, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {"gold": g, "pred": g if rng.random() < accuracy else 1 - g, "probs": [0.5, 0.5]}
        for g in gold
    ]


@pytest.fixture(scope="module")
def records(sst2_dev_labels: list[int]) -> list[dict[str, Any]]:
    return _predict(sst2_dev_labels, 0.85, seed=3)


def test_ci_contains_the_point_value(records: list[dict[str, Any]]) -> None:
    for name in ("accuracy", "f1", "ece"):
        metric = get(name)
        (entry,) = score(metric, records, metric.params, BINARY).values()
        assert entry["n"] == 872
        assert entry["ci_low"] < entry["value"] < entry["ci_high"]


def test_deterministic_for_a_seed(records: list[dict[str, Any]]) -> None:
    metric = get("f1")
    first = score(metric, records, metric.params, BINARY, seed=5)
    assert score(metric, records, metric.params, BINARY, seed=5) == first
    assert score(metric, records, metric.params, BINARY, seed=6) != first


def test_narrows_with_more_data(records: list[dict[str, Any]]) -> None:
    metric = get("accuracy")

    def width(rows: list[dict[str, Any]]) -> float:
        entry = score(metric, rows, {}, BINARY)["accuracy"]
        return entry["ci_high"] - entry["ci_low"]

    assert width(records) < 0.6 * width(records[:100])
    # about the normal-approximation width 2 * 1.96 * sqrt(p (1 - p) / n)
    p = score(metric, records, {}, BINARY)["accuracy"]["value"]
    assert width(records) == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / 872), rel=0.15)


def test_confidence_level_widens_the_interval(records: list[dict[str, Any]]) -> None:
    metric = get("accuracy")
    narrow = score(metric, records, {}, BINARY, confidence=0.5)["accuracy"]
    wide = score(metric, records, {}, BINARY, confidence=0.99)["accuracy"]
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]


@pytest.mark.parametrize("n", [0, 1])
def test_no_interval_from_fewer_than_two_rows(records: list[dict[str, Any]], n: int) -> None:
    entry = score(get("accuracy"), records[:n], {}, BINARY)["accuracy"]
    assert entry["n"] == n
    assert math.isnan(entry["ci_low"]) and math.isnan(entry["ci_high"])
    assert math.isnan(entry["value"]) == (n == 0)


def test_paired_identical_runs(records: list[dict[str, Any]]) -> None:
    metric = get("accuracy")
    stats = metric.stats(records, {}, BINARY)
    result = paired_bootstrap(metric, stats, stats.copy(), {}, BINARY)["accuracy"]
    assert result["delta"] == 0.0
    assert result["ci_low"] == result["ci_high"] == 0.0
    assert result["p_value"] == 1.0


def test_paired_clearly_better_run(sst2_dev_labels: list[int]) -> None:
    metric = get("f1")
    a = metric.stats(_predict(sst2_dev_labels, 0.80, seed=1), metric.params, BINARY)
    b = metric.stats(_predict(sst2_dev_labels, 0.90, seed=2), metric.params, BINARY)
    result = paired_bootstrap(metric, a, b, metric.params, BINARY, samples=1000, seed=9)["f1"]
    assert result["delta"] == pytest.approx(result["value_b"] - result["value_a"])
    assert result["delta"] > 0.05
    assert 0 < result["ci_low"] < result["delta"] < result["ci_high"]
    assert result["p_value"] < 0.05
    assert result["p_value"] == pytest.approx(2 / 1001)  # no resample at or below 0
    # swapping the runs flips the sign, not the p-value
    back = paired_bootstrap(metric, b, a, metric.params, BINARY, samples=1000, seed=9)["f1"]
    assert back["delta"] == -result["delta"] and back["p_value"] == result["p_value"]


def test_paired_small_difference_is_not_significant(sst2_dev_labels: list[int]) -> None:
    metric = get("accuracy")
    a = metric.stats(_predict(sst2_dev_labels, 0.85, seed=1), {}, BINARY)
    b = a.copy()
    b[:3, 0] = 1 - b[:3, 0]  # three examples change
    assert paired_bootstrap(metric, a, b, {}, BINARY)["accuracy"]["p_value"] > 0.2


def test_paired_needs_the_same_examples() -> None:
    metric = get("accuracy")
    with pytest.raises(ValueError) as info:
        paired_bootstrap(metric, np.zeros((3, 1)), np.zeros((4, 1)), {}, BINARY)
    assert str(info.value) == PAIRED_ROWS_ERROR.format(a=3, b=4)


def test_fast_on_a_thousand_examples(wmt_targets: list[str]) -> None:
    rng = random.Random(0)
    bleu = get("bleu")
    records = [
        {"prediction": " ".join(w for w in t.split() if rng.random() > 0.2), "references": [t]}
        for t in wmt_targets
    ] * 50
    stats = bleu.stats(records, bleu.params, GEN)
    acc_stats = (np.random.default_rng(0).random((1000, 1)) < 0.8).astype(float)
    for metric, rows, task in ((bleu, stats, GEN), (get("accuracy"), acc_stats, BINARY)):
        assert len(rows) == 1000
        start = time.perf_counter()
        score_stats(metric, rows, metric.params, task, samples=1000)
        assert time.perf_counter() - start < 1.0

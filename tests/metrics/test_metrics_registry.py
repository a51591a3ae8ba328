"""Registry contents and the contract every built-in metric keeps (empty input -> NaN)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import harness.metrics as metrics
from harness.metrics import Metric, TaskInfo, available, get, register, score

TASKS = {
    "classification": TaskInfo("classification", ("no", "yes")),
    "generation": TaskInfo("generation"),
    "perplexity": TaskInfo("perplexity"),
}
BUILTINS = {
    "accuracy": ["accuracy"],
    "precision": ["precision"],
    "recall": ["recall"],
    "f1": ["f1"],
    "ece": ["ece"],
    "brier": ["brier"],
    "nll": ["nll"],
    "bleu": ["bleu"],
    "chrf": ["chrf"],
    "ter": ["ter"],
    "rouge": ["rouge1", "rouge2", "rougeL", "rougeLsum"],
    "exact_match": ["exact_match"],
    "perplexity": ["perplexity"],
    "bits_per_byte": ["bits_per_byte"],
    "word_perplexity": ["word_perplexity"],
}


def test_public_api() -> None:
    assert set(metrics.__all__) >= {
        "Metric",
        "TaskInfo",
        "register",
        "get",
        "available",
        "score",
        "paired_bootstrap",
    }
    assert set(BUILTINS) <= set(available())


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_empty_input_gives_nan(name: str) -> None:
    metric = get(name)
    (kind,) = metric.kinds
    task = TASKS[kind]
    assert metric.outputs(metric.params, task) == BUILTINS[name]
    stats = metric.stats([], metric.params, task)
    assert stats.ndim == 2 and stats.shape[0] == 0
    values = metric.aggregate(stats, metric.params, task)
    assert list(values) == BUILTINS[name]
    assert all(math.isnan(v) for v in values.values())
    for entry in score(metric, [], metric.params, task).values():
        assert entry["n"] == 0
        assert all(math.isnan(entry[k]) for k in ("value", "ci_low", "ci_high"))


def test_duplicate_names_are_refused() -> None:
    accuracy = get("accuracy")
    with pytest.raises(ValueError, match="already registered"):
        register(accuracy)


def test_signature_defaults_to_empty() -> None:
    metric = Metric(
        name="x",
        kinds=frozenset({"generation"}),
        outputs=lambda p, t: ["x"],
        stats=lambda r, p, t: np.zeros((len(r), 1)),
        aggregate=lambda s, p, t: {"x": float("nan")},
    )
    assert metric.signature({}, TASKS["generation"]) == ""
    assert get("accuracy").signature({}, TASKS["classification"]) == ""

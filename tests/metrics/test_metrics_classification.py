"""Accuracy / precision / recall / F1 against scikit-learn on SST-2 dev labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from harness.metrics import TaskInfo, get
from harness.metrics.classification import (
    AVERAGE_ERROR,
    BINARY_ERROR,
    PER_CLASS_ERROR,
    POSITIVE_AVERAGE_ERROR,
    POSITIVE_ERROR,
)

SKLEARN = {"precision": precision_score, "recall": recall_score, "f1": f1_score}
BINARY = TaskInfo("classification", (" negative", " positive"))
THREE = TaskInfo("classification", (" negative", " neutral", " positive"))
# Four choices where " mixed" is never gold nor predicted: explicit labels keep it in
# the macro average as a 0, as sklearn does with labels=range(4).
FOUR = TaskInfo("classification", (" negative", " neutral", " positive", " mixed"))


def _records(gold: list[int], n_choices: int, accuracy: float, seed: int) -> list[dict[str, Any]]:
    """Predictions right with probability ``accuracy``, else a random other class."""
    rng = np.random.default_rng(seed)
    records = []
    for g in gold:
        pred = g
        if rng.random() > accuracy:
            pred = int(rng.choice([c for c in range(n_choices) if c != g]))
        probs = rng.dirichlet(np.ones(n_choices))
        probs[pred] += 1.0
        records.append({"gold": g, "pred": pred, "probs": list(probs / probs.sum())})
    return records


@pytest.fixture(scope="module")
def binary_records(sst2_dev_labels: list[int]) -> list[dict[str, Any]]:
    return _records(sst2_dev_labels, 2, 0.85, seed=7)


@pytest.fixture(scope="module")
def three_records(sst2_dev_labels: list[int], sst2_dev_sentences: list[str]) -> list[dict]:
    # A third "neutral" class: SST-2 dev phrases of at most 8 words; positive becomes 2.
    gold = [
        1 if len(s.split()) <= 8 else 2 * label
        for s, label in zip(sst2_dev_sentences, sst2_dev_labels, strict=True)
    ]
    return _records(gold, 3, 0.7, seed=11)


def _value(name: str, records: list[dict[str, Any]], task: TaskInfo, **params: Any) -> dict:
    metric = get(name)
    merged = {**metric.params, **params}
    stats = metric.stats(records, merged, task)
    return metric.aggregate(stats, merged, task)


def _gold_pred(records: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    return [r["gold"] for r in records], [r["pred"] for r in records]


def test_accuracy_equals_sklearn(binary_records: list[dict[str, Any]]) -> None:
    gold, pred = _gold_pred(binary_records)
    assert len(gold) == 872
    got = _value("accuracy", binary_records, BINARY)
    assert got == {"accuracy": pytest.approx(accuracy_score(gold, pred), abs=1e-12)}


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize(
    ("average", "output", "positive", "pos_label"),
    [
        (None, "{m}", None, 1),  # default for 2 choices: binary, positive = index 1
        ("binary", "{m}", None, 1),  # explicit but equal to the default: same name
        ("binary", "{m}", " negative", 0),
        ("binary", "{m}", 0, 0),
        ("macro", "{m}_macro", None, 1),
        ("micro", "{m}_micro", None, 1),
        ("weighted", "{m}_weighted", None, 1),
    ],
)
def test_binary_averages_equal_sklearn(
    binary_records: list[dict[str, Any]],
    name: str,
    average: str | None,
    output: str,
    positive: Any,
    pos_label: int,
) -> None:
    gold, pred = _gold_pred(binary_records)
    got = _value(name, binary_records, BINARY, average=average, positive=positive)
    expected = SKLEARN[name](
        gold,
        pred,
        labels=[0, 1],
        average=average or "binary",
        pos_label=pos_label,
        zero_division=0,
    )
    assert got == {output.format(m=name): pytest.approx(expected, abs=1e-12)}


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("task", [BINARY, THREE, FOUR], ids=["2", "3", "4"])
def test_per_class_equals_sklearn(
    binary_records: list[dict[str, Any]],
    three_records: list[dict[str, Any]],
    name: str,
    task: TaskInfo,
) -> None:
    records = binary_records if len(task.choices) == 2 else three_records
    gold, pred = _gold_pred(records)
    labels = list(range(len(task.choices)))
    expected = SKLEARN[name](gold, pred, labels=labels, average=None, zero_division=0)
    got = _value(name, records, task, average="per_class")
    names = [f"{name}[{c.strip()}]" for c in task.choices]
    assert list(got) == names
    assert list(got.values()) == pytest.approx(list(expected), abs=1e-12)


@pytest.mark.parametrize("name", ["precision", "recall", "f1"])
@pytest.mark.parametrize("task", [THREE, FOUR], ids=["3", "4"])
@pytest.mark.parametrize(
    ("average", "suffix"),
    [(None, ""), ("macro", ""), ("micro", "_micro"), ("weighted", "_weighted")],
)
def test_multiclass_averages_equal_sklearn(
    three_records: list[dict[str, Any]],
    name: str,
    task: TaskInfo,
    average: str | None,
    suffix: str,
) -> None:
    gold, pred = _gold_pred(three_records)
    labels = list(range(len(task.choices)))
    expected = SKLEARN[name](gold, pred, labels=labels, average=average or "macro", zero_division=0)
    got = _value(name, three_records, task, average=average)
    assert got == {name + suffix: pytest.approx(expected, abs=1e-12)}


def test_absent_class_lowers_macro() -> None:
    # The 4th choice is never used, so the macro F1 over 4 labels is 3/4 of the one over 3.
    records = [{"gold": g, "pred": g} for g in (0, 1, 2, 0)]
    assert _value("f1", records, THREE) == {"f1": 1.0}
    assert _value("f1", records, FOUR) == {"f1": 0.75}


def test_labels_from_records_when_the_task_has_no_choices() -> None:
    task = TaskInfo("classification")
    records: list[dict[str, Any]] = [
        {"gold": 0, "pred": 0, "choices": ["a", "b", "c"]},
        {"gold": 1, "pred": 0},
    ]
    gold, pred = _gold_pred(records)
    expected = f1_score(gold, pred, labels=[0, 1, 2], average="macro", zero_division=0)
    assert _value("f1", records, task) == {"f1": pytest.approx(expected)}


@pytest.mark.parametrize(
    ("params", "task", "message"),
    [
        ({"average": "foo"}, BINARY, AVERAGE_ERROR.format(value="foo")),
        ({"average": "binary"}, THREE, BINARY_ERROR.format(n=3)),
        ({"average": "per_class"}, TaskInfo("classification"), PER_CLASS_ERROR),
        (
            {"average": "macro", "positive": 0},
            BINARY,
            POSITIVE_AVERAGE_ERROR.format(average="macro"),
        ),
        (
            {"positive": "maybe"},
            BINARY,
            POSITIVE_ERROR.format(choices=["negative", "positive"], last=1, value="maybe"),
        ),
        (
            {"positive": 2},
            BINARY,
            POSITIVE_ERROR.format(choices=["negative", "positive"], last=1, value=2),
        ),
    ],
)
def test_bad_params_raise_clear_errors(params: dict, task: TaskInfo, message: str) -> None:
    metric = get("f1")
    assert metric.validate_params is not None
    with pytest.raises(ValueError) as info:
        metric.validate_params({**metric.params, **params}, task)
    assert str(info.value) == message


def test_outputs_are_known_before_running() -> None:
    f1 = get("f1")
    assert f1.outputs(f1.params, BINARY) == ["f1"]
    assert f1.outputs({**f1.params, "average": "macro"}, BINARY) == ["f1_macro"]
    assert f1.outputs({**f1.params, "average": "macro"}, THREE) == ["f1"]
    assert f1.outputs({**f1.params, "average": "binary"}, BINARY) == ["f1"]
    assert get("recall").outputs({"average": "per_class"}, BINARY) == [
        "recall[negative]",
        "recall[positive]",
    ]

"""accuracy_norm and accuracy_mutual_info against lm-eval's multiple-choice scoring.

The reference is lm-eval 0.4's ``ConfigurableTask.process_results`` for
``output_type: multiple_choice``, driven here through a task built in memory: the
per-choice log-likelihoods of each record are handed to it as the model's answers, and
its ``acc_norm`` / ``acc_bytes`` / ``acc_mutual_info`` per document must equal our
per-example statistics. Hand-made rows cover ties, non-ASCII choices (chars and bytes
differ) and a gold answer that only the length normalization finds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.metrics import TaskInfo, get
from harness.metrics.classification import FIXED_CHOICES_ERROR, UNIT_ERROR

PER_ROW = TaskInfo("classification", per_row_choices=True)

RECORDS: list[dict[str, Any]] = [
    # raw argmax picks the short choice 0; per character the long gold choice 1 wins
    {"choices": ["no", "a much longer ending"], "gold": 1, "loglik": [-3.0, -10.0]},
    # equal per-character scores: the first choice wins the tie, as np.argmax does
    {"choices": ["ab", "abcd"], "gold": 1, "loglik": [-2.0, -4.0]},
    # "é" is 1 character but 2 bytes: chars and bytes pick different choices
    {"choices": ["éé", "ab", "xyz"], "gold": 0, "loglik": [-2.2, -2.0, -9.0]},
    {"choices": ["yes", "no", "maybe", "never"], "gold": 2, "loglik": [-5.0, -4.0, -6.0, -9.0]},
]
UNCONDITIONAL = [[-1.0, -9.5], [-0.5, -5.0], [-2.0, -1.0, -1.0], [-1.0, -1.0, -2.5, -3.0]]


def _stats(name: str, records: list[dict[str, Any]], **params: Any) -> list[float]:
    metric = get(name)
    merged = {**metric.params, **params}
    metric.validate_params(merged, PER_ROW) if metric.validate_params else None
    return [float(x) for x in metric.stats(records, merged, PER_ROW)[:, 0]]


def _lm_eval_results(records: list[dict[str, Any]], mutual_info: bool) -> list[dict[str, float]]:
    """lm-eval's own per-document multiple-choice results for these log-likelihoods."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import ConfigurableTask, TaskConfig

    metrics = ["acc", "acc_norm", "acc_bytes"] + (["acc_mutual_info"] if mutual_info else [])
    task = ConfigurableTask.__new__(ConfigurableTask)  # no dataset: only process_results runs
    task._config = TaskConfig(task="in_memory", output_type="multiple_choice")
    task.OUTPUT_TYPE = "multiple_choice"
    task.multiple_input = 0
    task.multiple_target = 0
    task._metric_fn_list = dict.fromkeys(metrics)
    out = []
    for i, rec in enumerate(records):
        task.doc_to_choice = lambda doc, *a, rec=rec, **k: list(rec["choices"])  # type: ignore[method-assign]
        task.doc_to_target = lambda doc, *a, rec=rec, **k: rec["gold"]  # type: ignore[method-assign]
        lls = list(rec["loglik"]) + (list(UNCONDITIONAL[i]) if mutual_info else [])
        results = [(ll, False) for ll in lls]
        out.append(task.process_results({}, results))
    return out


def test_accuracy_norm_equals_lm_eval_acc_norm_per_example() -> None:
    reference = _lm_eval_results(RECORDS, mutual_info=False)
    assert _stats("accuracy_norm", RECORDS) == [r["acc_norm"] for r in reference]
    assert _stats("accuracy_norm", RECORDS, unit="bytes") == [r["acc_bytes"] for r in reference]
    # the rows were chosen so that normalization matters: plain accuracy differs
    assert [r["acc"] for r in reference] != [r["acc_norm"] for r in reference]
    assert [r["acc_norm"] for r in reference] != [r["acc_bytes"] for r in reference]


def test_accuracy_mutual_info_equals_lm_eval() -> None:
    records = [
        {**r, "loglik_unconditional": u} for r, u in zip(RECORDS, UNCONDITIONAL, strict=True)
    ]
    reference = _lm_eval_results(RECORDS, mutual_info=True)
    assert _stats("accuracy_mutual_info", records) == [r["acc_mutual_info"] for r in reference]
    assert len({r["acc_mutual_info"] for r in reference}) == 2  # not all equal


def test_the_mean_is_the_share_of_right_examples() -> None:
    metric = get("accuracy_norm")
    stats = metric.stats(RECORDS, metric.params, PER_ROW)
    value = metric.aggregate(stats, metric.params, PER_ROW)["accuracy_norm"]
    assert value == pytest.approx(float(np.mean(_stats("accuracy_norm", RECORDS))))


def test_unit_must_be_chars_or_bytes() -> None:
    metric = get("accuracy_norm")
    assert metric.validate_params is not None
    with pytest.raises(ValueError, match="unit must be") as info:
        metric.validate_params({"unit": "tokens"}, PER_ROW)
    assert str(info.value) == UNIT_ERROR.format(value="tokens")


@pytest.mark.parametrize("name", ["f1", "precision", "recall"])
def test_per_class_metrics_need_a_fixed_choice_list(name: str) -> None:
    metric = get(name)
    assert metric.validate_params is not None
    with pytest.raises(ValueError) as info:
        metric.validate_params({**metric.params}, PER_ROW)
    assert str(info.value) == FIXED_CHOICES_ERROR

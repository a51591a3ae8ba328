"""Perplexity, bits per byte and word perplexity from hand-computed numbers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.metrics import TaskInfo, get

TASK = TaskInfo("perplexity")
# Two texts: sum loglik = -30 nats over 15 tokens, 40 bytes and 8 words.
RECORDS = [
    {"loglik": -10.0, "n_tokens": 5, "n_bytes": 16, "n_words": 3},
    {"loglik": -20.0, "n_tokens": 10, "n_bytes": 24, "n_words": 5},
]


def _value(name: str, records: list[dict[str, Any]]) -> float:
    metric = get(name)
    (value,) = metric.aggregate(metric.stats(records, {}, TASK), {}, TASK).values()
    return value


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("perplexity", math.exp(30 / 15)),  # e^2 = 7.389...: a ratio of sums, not a mean
        ("bits_per_byte", 30 / (40 * math.log(2))),  # 1.0820 bits
        ("word_perplexity", math.exp(30 / 8)),
    ],
)
def test_hand_computed(name: str, expected: float) -> None:
    assert _value(name, RECORDS) == pytest.approx(expected, rel=1e-12)
    assert not get(name).higher_is_better


def test_same_formulas_as_lm_evaluation_harness() -> None:
    lm_metrics = pytest.importorskip("lm_eval.api.metrics")
    pairs = [(r["loglik"], r["n_bytes"]) for r in RECORDS]
    assert _value("bits_per_byte", RECORDS) == pytest.approx(lm_metrics.bits_per_byte(pairs))
    words = [(r["loglik"], r["n_words"]) for r in RECORDS]
    expected = lm_metrics.weighted_perplexity(words)
    assert _value("word_perplexity", RECORDS) == pytest.approx(expected)


def test_degenerate_inputs_give_nan_or_inf_not_errors() -> None:
    empty_text = [{"loglik": 0.0, "n_tokens": 0, "n_bytes": 0, "n_words": 0}]
    assert math.isnan(_value("perplexity", empty_text))
    assert math.isnan(_value("bits_per_byte", empty_text))
    hopeless = [{"loglik": -1e6, "n_tokens": 10, "n_bytes": 10, "n_words": 1}]
    assert _value("perplexity", hopeless) == math.inf

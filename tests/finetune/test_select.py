"""finetune.select: uncertainty ranking, the pool, and `finetune select` end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from finetune import select as sel
from harness.data import Row
from harness.errors import UserError
from harness.spec import ClassificationTask

# -- ranking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probs",
    [
        [0.5, 0.5],
        [0.9, 0.1],
        [1.0, 0.0],  # 0 log 0 = 0
        [0.2, 0.3, 0.5],
        [0.25, 0.25, 0.25, 0.25],
        [1e-12, 1.0 - 1e-12],
    ],
)
def test_entropy_matches_scipy(probs: list[float]) -> None:
    # reference: scipy.stats.entropy (natural log, nats)
    assert sel.entropy(np.array([probs]))[0] == pytest.approx(scipy.stats.entropy(probs), abs=1e-12)


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        # hand-computed: p(top 1) - p(top 2)
        ([0.5, 0.5], 0.0),
        ([0.9, 0.1], 0.8),
        ([0.1, 0.7, 0.2], 0.5),
        ([0.4, 0.3, 0.3], 0.1),
    ],
)
def test_margin_is_the_gap_between_the_top_two(probs: list[float], expected: float) -> None:
    assert sel.margin(np.array([probs]))[0] == pytest.approx(expected, abs=1e-12)


def test_entropy_and_margin_disagree_from_three_choices_on() -> None:
    # row 0: entropy ln 2 = 0.693, margin 0; row 1: entropy 1.089, margin 0.1
    probs = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3], [0.98, 0.01, 0.01]])
    assert [i for i, _ in sel.choose("entropy", probs, 3, n_rows=3, seed=0)] == [1, 0, 2]
    assert [i for i, _ in sel.choose("margin", probs, 3, n_rows=3, seed=0)] == [0, 1, 2]


def test_with_two_choices_entropy_and_margin_agree() -> None:
    p = np.random.default_rng(3).random(50)
    probs = np.stack([p, 1 - p], axis=1)
    by_entropy = [i for i, _ in sel.choose("entropy", probs, 50, n_rows=50, seed=0)]
    by_margin = [i for i, _ in sel.choose("margin", probs, 50, n_rows=50, seed=0)]
    assert by_entropy == by_margin


def test_ties_keep_the_pool_order() -> None:
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.5, 0.5]])
    assert sel.choose("entropy", probs, 4, n_rows=4, seed=0) == [
        (1, pytest.approx(math.log(2))),
        (3, pytest.approx(math.log(2))),
        (0, pytest.approx(scipy.stats.entropy([0.9, 0.1]))),
        (2, pytest.approx(scipy.stats.entropy([0.9, 0.1]))),
    ]


def test_random_is_seeded_and_needs_no_probabilities() -> None:
    first = sel.choose("random", None, 5, n_rows=100, seed=11)
    assert sel.choose("random", None, 5, n_rows=100, seed=11) == first
    assert sel.choose("random", None, 5, n_rows=100, seed=12) != first
    scores = [s for _, s in first]
    assert scores == sorted(scores, reverse=True)
    assert len({i for i, _ in first}) == 5


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (0, "--budget: must be >= 1, got 0"),
        (-3, "--budget: must be >= 1, got -3"),
        (5, "--budget: must be <= the pool's 4 rows, got 5"),
    ],
)
def test_budget_out_of_range(budget: int, message: str) -> None:
    with pytest.raises(UserError) as err:
        sel.choose("random", None, budget, n_rows=4, seed=0)
    assert err.value.messages == [message]


def test_unknown_strategy() -> None:
    with pytest.raises(UserError) as err:
        sel.choose("least-confident", np.ones((2, 2)) / 2, 1, n_rows=2, seed=0)
    assert err.value.messages == [
        "--strategy: unknown strategy 'least-confident'; available: entropy, margin, random"
    ]


# -- the pool -----------------------------------------------------------------------

TASK = ClassificationTask(
    id="sentiment",
    kind="classification",
    data="unused.jsonl",
    prompt="Review: {{ text }}\nSentiment:",
    choices=[" negative", " positive"],
    label="label",
)


def test_prompts_are_rendered_as_the_harness_renders_them() -> None:
    rows = [Row(1, {"text": "a fine film", "id": 7}), Row(2, {"text": "dull"})]
    assert sel.prompts_for(TASK, rows, "pool.jsonl") == [
        "Review: a fine film\nSentiment:",
        "Review: dull\nSentiment:",
    ]


def test_bad_pool_rows_are_located() -> None:
    rows = [
        Row(1, {"text": "fine"}),
        Row(2, {"review": "no text field"}),
        Row(3, {"text": None}),
        Row(5, {"text": "ok", "score": 3}),
    ]
    with pytest.raises(UserError) as err:
        sel.prompts_for(TASK, rows, "pool.jsonl")
    assert err.value.messages == [
        "pool.jsonl line 2: missing field 'text' (the prompt of task 'sentiment' reads it)",
        "pool.jsonl line 3: missing field 'text' (the prompt of task 'sentiment' reads it)",
        "pool.jsonl line 5: field 'score' would be overwritten by the selection's output; "
        "rename it",
    ]

"""finetune.active.strategies: each strategy on a small case worked out by hand, seeds,
class balance on a skewed pool, and the reasons every pick carries."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.active import strategies as st
from finetune.active.select import pick


def binary(p_positive: list[float]) -> np.ndarray:
    p = np.array(p_positive)
    return np.stack([1 - p, p], axis=1)


def indices(picks: list[st.Pick]) -> list[int]:
    return [p.index for p in picks]


# -- balanced ---------------------------------------------------------------------


def test_balanced_takes_turns_over_the_predicted_classes() -> None:
    # p(positive): predicted positive for rows 0-3 and 5, negative for row 4.
    # margins 0.8, 0.4, 0.1, 0.2, 0.5, 0.9. Turn 1: positive's most uncertain is row 2
    # (0.1), negative's is row 4 (0.5), in margin order; turn 2: negative has no row
    # left, positive's next is row 3 (0.2). Margin alone would take 2, 3, 1.
    probs = binary([0.9, 0.7, 0.55, 0.6, 0.25, 0.95])
    chosen = st.balanced(probs, 3)
    assert indices(chosen) == [2, 4, 3]
    assert [p.score for p in chosen] == pytest.approx([0.1, 0.5, 0.2])
    assert indices(st.by_margin(probs, 3)) == [2, 3, 1]


def test_balanced_three_classes() -> None:
    probs = np.array(
        [
            [0.5, 0.4, 0.1],  # class 0, margin 0.1
            [0.6, 0.2, 0.2],  # class 0, margin 0.4
            [0.1, 0.8, 0.1],  # class 1, margin 0.7
            [0.2, 0.3, 0.5],  # class 2, margin 0.2
            [0.45, 0.1, 0.45],  # class 0 (the first of the tied), margin 0
        ]
    )
    # turn 1: class 0 -> row 4 (0), class 2 -> row 3 (0.2), class 1 -> row 2 (0.7);
    # turn 2: class 0 -> row 0 (0.1)
    assert indices(st.balanced(probs, 4)) == [4, 3, 2, 0]


@pytest.mark.parametrize(("minority", "budget", "expected"), [(10, 20, 10), (5, 20, 5)])
def test_balanced_on_a_skewed_pool(minority: int, budget: int, expected: int) -> None:
    rng = np.random.default_rng(0)
    n = 200
    p = np.where(np.arange(n) < minority, rng.uniform(0.0, 0.45, n), rng.uniform(0.55, 1.0, n))
    probs = binary(list(p))
    chosen = indices(st.balanced(probs, budget))
    negatives = sum(i < minority for i in chosen)
    assert negatives == expected  # its quota, or all it has
    assert len(set(chosen)) == budget
    # uncertainty alone takes (almost) only the majority class here
    assert sum(i < minority for i in indices(st.by_margin(probs, budget))) < negatives


# -- cluster-margin ------------------------------------------------------------------

# two groups of hidden states, far apart: rows 0-2 and rows 3-5
GROUPS = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, -0.1], [-1.0, 0.1], [-1.0, 0.0], [-1.0, -0.1]])


def test_cluster_margin_takes_the_most_uncertain_row_of_each_cluster() -> None:
    # margins 0.1, 0.05, 0.3 | 0.5, 0.4, 0.9: the best of the first group is row 1,
    # of the second row 4; margin alone would take rows 1 and 0 (same group)
    probs = binary([0.55, 0.525, 0.65, 0.75, 0.7, 0.95])
    chosen = st.cluster_margin(probs, GROUPS, 2, seed=0)
    assert indices(chosen) == [1, 4]
    assert [p.score for p in chosen] == pytest.approx([0.05, 0.4])
    assert chosen[0].cluster != chosen[1].cluster
    assert indices(st.by_margin(probs, 2)) == [1, 0]
    # with candidates = 1 x budget only rows 1 and 0 are clustered: both are taken
    assert indices(st.cluster_margin(probs, GROUPS, 2, seed=0, candidates=1)) == [1, 0]


# -- badge -----------------------------------------------------------------------


def test_gradient_embedding_by_hand() -> None:
    # p = (0.7, 0.3): predicted 0, p - onehot = (-0.3, 0.3); h = (1, 2)
    g = st.gradient_embeddings(np.array([[0.7, 0.3]]), np.array([[1.0, 2.0]]), seed=0)
    assert g.shape == (1, 4)
    assert g[0].tolist() == pytest.approx([-0.3, -0.6, 0.3, 0.6])


def test_gradient_embeddings_are_projected_when_too_wide() -> None:
    probs = binary([0.5, 0.6, 0.7])
    states = np.random.default_rng(1).standard_normal((3, 100))
    g = st.gradient_embeddings(probs, states, seed=3, max_width=20)
    assert g.shape == (3, 20)  # 2 choices x 10 projected dimensions
    assert np.array_equal(g, st.gradient_embeddings(probs, states, seed=3, max_width=20))


def test_badge_gives_near_duplicates_one_label() -> None:
    # rows 0 and 1 have the same gradient embedding; row 3 is certain (embedding 0):
    # the three distinct embeddings are each taken once, whatever row comes first
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.4, 0.6], [1.0, 0.0]])
    states = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    for seed in range(5):
        chosen = set(indices(st.badge(probs, states, 3, seed=seed)))
        assert {2, 3} <= chosen and len(chosen & {0, 1}) == 1


def test_badge_spreads_over_the_groups() -> None:
    # all unsure and predicted positive: p - onehot(pred) is about (0.4, -0.4) for
    # every row, so the embeddings differ as the hidden states do
    probs = binary([0.6, 0.62, 0.58, 0.6, 0.61, 0.59])
    for seed in range(5):
        chosen = indices(st.badge(probs, GROUPS, 2, seed=seed))
        assert sorted(i // 3 for i in chosen) == [0, 1]


# -- typical ---------------------------------------------------------------------


def test_typical_takes_the_row_nearest_each_centre_largest_cluster_first() -> None:
    # centred on their mean (0, 0) and scaled to unit length: rows 0-2 around (1, 0),
    # row 1 on its centre; rows 3-4 around (-1, 0) at equal distances (the lower index)
    states = np.array([[1.0, 0.1], [1.0, 0.0], [1.0, -0.1], [-1.5, 0.1], [-1.5, -0.1]])
    chosen = st.typical(states, 2, seed=0)
    assert indices(chosen) == [1, 3]
    assert chosen[0].score == pytest.approx(0.0033, abs=1e-4)
    assert "3 rows" in chosen[0].reason and "2 rows" in chosen[1].reason


def test_typical_with_fewer_distinct_rows_than_the_budget_fills_up() -> None:
    states = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert sorted(indices(st.typical(states, 3, seed=0))) == [0, 1, 2]


# -- every strategy ------------------------------------------------------------------

RNG = np.random.default_rng(7)
P = RNG.dirichlet([1.0, 1.0, 1.0], size=60)
H = RNG.standard_normal((60, 8))


@pytest.mark.parametrize("name", list(st.STRATEGIES))
def test_same_seed_same_rows_and_every_pick_says_why(name: str) -> None:
    first = pick(name, 12, n_rows=60, seed=4, probs=P, states=H)
    assert pick(name, 12, n_rows=60, seed=4, probs=P, states=H) == first
    assert len({p.index for p in first}) == 12
    assert all(p.reason for p in first)
    clusters = [p.cluster for p in first]
    if name in ("cluster-margin", "typical"):
        assert all(isinstance(c, int) for c in clusters) and len(set(clusters)) == 12
    else:
        assert clusters == [None] * 12


@pytest.mark.parametrize("name", ["random", "badge", "typical"])
def test_another_seed_other_rows(name: str) -> None:
    first = pick(name, 12, n_rows=60, seed=4, probs=P, states=H)
    assert pick(name, 12, n_rows=60, seed=5, probs=P, states=H) != first


@pytest.mark.parametrize(
    ("name", "missing"),
    [("balanced", "choice probabilities"), ("typical", "hidden states"), ("badge", "hidden")],
)
def test_missing_inputs_are_a_programming_error(name: str, missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        pick(name, 2, n_rows=60, seed=0, probs=None if name == "balanced" else P, states=None)


def test_the_budget_can_be_the_whole_pool() -> None:
    for name in st.STRATEGIES:
        chosen = pick(name, 6, n_rows=6, seed=0, probs=P[:6], states=H[:6])
        assert sorted(indices(chosen)) == list(range(6)), name

"""harness.sensitive.canary: the canary format, candidates, and both exposure estimates
against their definitions (Carlini et al. 2019)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from harness.sensitive.canary import (
    CanaryFormat,
    extrapolated_exposure,
    make_canaries,
    rank_exposure,
)

FMT = CanaryFormat("my PIN is", 6)


def test_format_and_candidates() -> None:
    rng = random.Random(0)
    secret = FMT.secret(rng)
    assert len(secret.split(" ")) == 6 and all(len(d) == 1 for d in secret.split(" "))
    assert FMT.text(secret) == f"my PIN is {secret}"
    assert FMT.space_size == 1_000_000
    cands = FMT.candidates(500, random.Random(1), exclude=secret)
    assert len(cands) == len(set(cands)) == 500 and secret not in cands
    assert cands == FMT.candidates(500, random.Random(1), exclude=secret)  # seeded
    tiny = CanaryFormat("pin", 1)  # 10 secrets: at most the 9 others
    assert sorted(tiny.candidates(50, random.Random(2), exclude="3")) == [
        str(d) for d in range(10) if d != 3
    ]


def test_make_canaries_inserted_then_controls() -> None:
    made = make_canaries(FMT, 2, 3, seed=4)
    assert [c["id"] for c in made] == [
        "canary-0",
        "canary-1",
        "control-0",
        "control-1",
        "control-2",
    ]
    assert [c["inserted"] for c in made] == [True, True, False, False, False]
    assert len({c["secret"] for c in made}) == 5
    assert make_canaries(FMT, 2, 3, seed=4) == made


@pytest.mark.parametrize(
    ("higher", "expected"),
    [
        # by hand from exposure = log2(10^6) - log2(1 + higher * (10^6 - 1) / 1000)
        (0, math.log2(1e6)),  # more likely than every candidate: the maximum, 19.93
        (1, math.log2(1e6) - math.log2(1 + 999.999)),  # 9.966
        (500, math.log2(1e6) - math.log2(1 + 500 * 999.999)),  # ~1 bit: the median rank
        (1000, math.log2(1e6) - math.log2(1e6)),  # less likely than all: 0
    ],
)
def test_rank_exposure_values(higher: int, expected: float) -> None:
    candidates = [1.0] * higher + [-1.0] * (1000 - higher)
    out = rank_exposure(0.0, candidates, 1_000_000)
    assert out["candidates_higher"] == higher
    assert out["exposure"] == pytest.approx(expected, abs=1e-9)


def test_a_secret_never_seen_has_chance_exposure() -> None:
    """When the canary's score is one more draw from the candidates' distribution, its
    exposure follows the null: mean 1/ln 2 = 1.44 bits, P(exposure >= 3) ~ 2^-3."""
    rng = np.random.default_rng(0)
    exposures = []
    for _ in range(2000):
        scores = rng.normal(size=1001)
        exposures.append(rank_exposure(scores[0], scores[1:], 10**6)["exposure"])
    e = np.asarray(exposures)
    assert e.mean() == pytest.approx(1 / math.log(2), abs=0.1)
    assert (e >= 3).mean() == pytest.approx(2**-3, abs=0.03)


def test_extrapolation_follows_the_fitted_tail() -> None:
    """Candidates drawn from N(0, 1): the skew-normal fit is close to that normal, so a
    canary 4 standard deviations above gives -log2 P(Z >= 4) = 14.9 bits (scipy's
    normal tail), beyond what 1000 sampled candidates can rank."""
    from scipy import stats

    cands = np.random.default_rng(1).normal(size=5000)
    got = extrapolated_exposure(4.0, list(cands))
    assert got == pytest.approx(-math.log2(stats.norm.sf(4.0)), abs=1.0)
    assert extrapolated_exposure(0.0, list(cands)) == pytest.approx(1.0, abs=0.2)
    assert extrapolated_exposure(1.0, [0.5] * 20) is None  # no spread: nothing to fit
    assert extrapolated_exposure(1.0, [0.1, 0.2]) is None  # too few to fit

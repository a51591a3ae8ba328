"""Which relative gates need a baseline run: those whose reference no audit computes
on the base model itself (the audit registry says which: Audit.base_referenced)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.results.compare import needs_baseline


def gate(metric: str, relative: bool = True) -> SimpleNamespace:
    return SimpleNamespace(metric=metric, max_drop=0.1 if relative else None, max_increase=None)


@pytest.mark.parametrize(
    ("metric", "needed"),
    [
        ("reviews.accuracy", True),  # a task metric: the reference is a baseline run's
        ("forgetting.reviews.accuracy", False),  # forgetting compares with the base model
        ("forgetting.lm.perplexity", False),
        ("privacy.extraction_rate", False),  # the base model's extraction rate
        ("privacy.canary_exposure_max", True),  # no base value: a baseline run's
        ("fairness.reviews.demographic_parity_difference", True),
    ],
)
def test_relative_gates(metric: str, needed: bool) -> None:
    assert needs_baseline(gate(metric)) is needed


def test_an_absolute_gate_never_needs_a_baseline() -> None:
    assert not needs_baseline(gate("reviews.accuracy", relative=False))

"""The paired comparison helpers shared by `harness compare` and the forgetting audit."""

from __future__ import annotations

import pytest

from harness.metrics.paired import direction, flips, relative_change


@pytest.mark.parametrize(
    ("delta", "higher_is_better", "expected"),
    [
        (0.1, True, "better"),
        (-0.1, True, "worse"),
        (0.1, False, "worse"),
        (-0.1, False, "better"),
        (0.0, True, "same"),
        (None, False, "same"),
    ],
)
def test_direction(delta: float | None, higher_is_better: bool, expected: str) -> None:
    assert direction(delta, higher_is_better) == expected


def test_relative_change_needs_a_nonzero_base() -> None:
    assert relative_change(-0.2, -0.5) == pytest.approx(-0.4)
    assert relative_change(0.2, 0.0) is None
    assert relative_change(None, 1.0) is None
    assert relative_change(0.2, None) is None


def test_flips_in_input_order_and_unknowns_skipped() -> None:
    pairs = [(True, False), (False, True), (True, True), (None, False), (True, False)]
    got = flips(pairs)
    assert (got.lost, got.gained) == ([0, 4], [1])

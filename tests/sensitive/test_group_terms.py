"""harness.sensitive.group_terms.checked_swaps: the one rule for a valid swap table, with
each caller's messages (the swaps themselves are tested in tests/audits/test_fairness.py)."""

from __future__ import annotations

import pytest

from harness.sensitive.group_terms import checked_swaps

NO_SWAPS, EMPTY_TERM = "no swaps", "a blank term"


def test_a_table_of_non_blank_terms_is_returned_as_it_is() -> None:
    swaps = {"he": "she", "John": "Maria"}
    assert checked_swaps(swaps, NO_SWAPS, EMPTY_TERM) is swaps


@pytest.mark.parametrize(
    ("swaps", "message"),
    [
        ({}, NO_SWAPS),
        ({"he": " "}, EMPTY_TERM),
        ({"": "she"}, EMPTY_TERM),
        ({"he": "she", "\t": "her"}, EMPTY_TERM),
    ],
)
def test_an_empty_table_or_a_blank_term_is_refused_with_the_callers_message(
    swaps: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError) as err:
        checked_swaps(swaps, NO_SWAPS, EMPTY_TERM)
    assert str(err.value) == message

"""Paired comparison of two runs over the same examples, beyond the paired bootstrap
(harness.metrics.bootstrap): which way a delta goes, its relative size, and the examples
that flipped between correct and wrong. Pure functions, shared by ``harness compare``
(harness.results.compare) and the forgetting audit (harness.audits.forgetting)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def direction(delta: float | None, higher_is_better: bool) -> str:
    """'better', 'worse' or 'same' (a zero or missing delta)."""
    if delta is None or delta == 0:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


def relative_change(delta: float | None, base: float | None) -> float | None:
    """``delta / |base|``; None when either is missing or the base is zero."""
    return delta / abs(base) if delta is not None and base else None


@dataclass(frozen=True)
class Flips:
    """Positions of the examples that changed: correct before and wrong after (``lost``),
    and the other way (``gained``), in input order."""

    lost: list[int]
    gained: list[int]


def flips(pairs: Iterable[tuple[bool | None, bool | None]]) -> Flips:
    """Flips of ``(correct before, correct after)`` per example; an unknown (None) side
    is no flip."""
    lost: list[int] = []
    gained: list[int] = []
    for i, (was, now) in enumerate(pairs):
        if was is None or now is None or was == now:
            continue
        (lost if was else gained).append(i)
    return Flips(lost, gained)

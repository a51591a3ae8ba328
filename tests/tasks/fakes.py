"""Fakes the task tests share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tests.audits.conftest import FakeLM


class RecordingLM(FakeLM):
    """Scores a (context, continuation) pair by ``score(context, continuation)`` and
    keeps every pair asked for."""

    def __init__(self, score: Callable[[str, str], float]) -> None:
        super().__init__({})
        self.pairs: list[tuple[str, str]] = []
        self._score = score

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int = 8,
        advance: Callable[[int], None] | None = None,
    ) -> list[tuple[float, bool, int]]:
        self.pairs += list(pairs)
        if advance is not None:
            advance(len(pairs))
        return [(self._score(c, x), False, 1) for c, x in pairs]

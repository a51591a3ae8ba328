"""Canaries and their exposure (Carlini et al. 2019, "The Secret Sharer: Evaluating and
Testing Unintended Memorization in Neural Networks").

A canary is a random secret of a fixed format, e.g. ``my PIN is 4 8 1 9 0 3``: a prefix
and ``digits`` random digits separated by spaces (so each digit is its own word for the
tokenizer), from a space of 10^digits secrets. The fine-tuner inserts canaries into the
training data (``memorization.canaries`` of the fine-tune config) and records them in
the manifest, with control canaries of the same format that it does not insert. The
privacy audit ranks each one among random candidates of the same format by the model's
log-likelihood of the secret given the prefix.

Exposure is log2 |space| - log2 rank. Ranking against the whole space is out of reach
(10^6 model calls), so the rank is estimated from M sampled candidates: rank ~ 1 +
(#candidates more likely than the canary) x |space| / M, an unbiased estimate of the
rank. A canary more likely than every candidate gets the maximum, log2 |space|; the next
possible value is log2 |space| - log2(1 + |space| / M), about log2 M. For a finer
reading above that resolution the paper's extrapolation is also given: a skew-normal
fitted to the candidates' log-likelihoods, and exposure = -log2 P(candidate >= canary)
under the fit (it can exceed log2 |space|). A secret the model never saw has a rank
uniform over the space: its expected exposure is 1/ln 2 ~ 1.44 bits, and
P(exposure >= e) = 2^-e.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CanaryFormat:
    """The format of a canary: ``<prefix> d d d ...``."""

    prefix: str
    digits: int

    @property
    def space_size(self) -> int:
        """Number of possible secrets."""
        return int(10**self.digits)

    def secret(self, rng: random.Random) -> str:
        """A random secret: ``digits`` digits separated by spaces."""
        return " ".join(str(rng.randrange(10)) for _ in range(self.digits))

    def text(self, secret: str) -> str:
        """The canary sentence of a secret."""
        return f"{self.prefix} {secret}"

    def candidates(self, m: int, rng: random.Random, exclude: str) -> list[str]:
        """``m`` distinct random secrets other than ``exclude`` (fewer if the space is
        smaller), sampled with ``rng``."""
        m = min(m, self.space_size - 1)
        seen = {exclude}
        out: list[str] = []
        while len(out) < m:
            s = self.secret(rng)
            if s not in seen:
                seen.add(s)
                out.append(s)
        return out


def make_canaries(fmt: CanaryFormat, count: int, controls: int, seed: int) -> list[dict[str, Any]]:
    """``count`` secrets to insert then ``controls`` not to insert, all distinct."""
    rng = random.Random(seed)
    secrets: list[str] = []
    while len(secrets) < min(count + controls, fmt.space_size):
        s = fmt.secret(rng)
        if s not in secrets:
            secrets.append(s)
    return [
        {
            "id": f"canary-{i}" if i < count else f"control-{i - count}",
            "secret": s,
            "text": fmt.text(s),
            "inserted": i < count,
        }
        for i, s in enumerate(secrets)
    ]


def rank_exposure(canary: float, candidates: Sequence[float], space_size: int) -> dict[str, Any]:
    """Exposure from the rank among sampled candidates (module docstring).

    ``canary`` and ``candidates`` are log-likelihoods (higher = more likely).
    """
    m = len(candidates)
    higher = sum(1 for c in candidates if c > canary)
    rank = 1.0 + higher * (space_size - 1) / m if m else float("nan")
    return {
        "candidates_higher": higher,
        "rank_estimate": rank,
        "exposure": math.log2(space_size) - math.log2(rank) if m else None,
    }


def extrapolated_exposure(canary: float, candidates: Sequence[float]) -> float | None:
    """-log2 P(X >= canary) for X skew-normal, fitted to the candidates' log-likelihoods
    (Carlini et al. 2019, "exposure by extrapolation"); None with too few candidates."""
    if len(candidates) < 10:
        return None
    import numpy as np
    from scipy import stats

    x = np.asarray(candidates, dtype=float)
    if float(x.std()) == 0.0:
        return None
    a, loc, scale = stats.skewnorm.fit(x)
    log_tail = float(stats.skewnorm.logsf(canary, a, loc, scale))
    if not math.isfinite(log_tail):
        return None
    return -log_tail / math.log(2)

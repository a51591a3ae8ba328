"""The thresholds of the learning-curve diagnosis (finetune.train.diagnose).

Fixed settings rather than fields of the YAML: the config reference (finetune.config.reference)
documents their values, and the diagnosis records them with its verdict.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Settings of the diagnosis."""

    window: int = 3
    """Evaluations the trend rules look at."""
    gap: float = 0.5
    """Relative train/validation gap that counts as overfitting."""
    high: float = 0.9
    """Training loss above this share of its first value counts as high."""
    flat: float = 0.02
    """Relative change below this over the window counts as flat."""
    alpha: float = 0.05
    """Significance level of the binomial test of accuracy against the majority baseline."""

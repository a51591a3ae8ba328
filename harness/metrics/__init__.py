"""Metrics: per-example statistics, aggregates, bootstrap CIs and paired tests.

Built-in metrics register themselves from ``classification``, ``calibration``, ``text``
and ``lm`` on first registry use; ``plugin`` wraps local ``evaluate`` modules.
"""

from harness.metrics.base import Metric, TaskInfo, available, get, register
from harness.metrics.bootstrap import (
    MetricValue,
    PairedValue,
    paired_bootstrap,
    score,
    score_stats,
)

__all__ = [
    "Metric",
    "MetricValue",
    "PairedValue",
    "TaskInfo",
    "available",
    "get",
    "paired_bootstrap",
    "register",
    "score",
    "score_stats",
]

"""How a suite names a metric: a registry name, or the local path of an ``evaluate``
plug-in (harness.metrics.plugin). The one place that tells the two apart, used by the
suite checks, the runner, the audits and ``harness compare``."""

from __future__ import annotations

from pathlib import Path

from harness.metrics.base import Metric, get
from harness.metrics.plugin import make_evaluate_metric


def is_plugin_metric(name: str) -> bool:
    """A metric named by a local path is an `evaluate` plug-in (harness.metrics.plugin)."""
    return name.startswith(("./", "../", "/")) or name.endswith(".py")


def resolve_metric(name: str, base_dir: Path) -> Metric:
    """The metric a suite names: a plug-in path (relative to ``base_dir``) or a registry
    name (KeyError if unknown)."""
    if is_plugin_metric(name):
        return make_evaluate_metric(name, base_dir)
    return get(name)

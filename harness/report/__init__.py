"""Outputs of a run. ``results.json`` is the source of truth; every other format is
a pure rendering of it."""

from harness.report.store import load_results, write_atomic, write_results

__all__ = ["load_results", "write_atomic", "write_results"]

"""Outputs of a run. ``results.json`` is the source of truth; every other format is
a pure rendering of it (html, junit, md; see docs/reports.md)."""

from harness.atomic import write_atomic
from harness.report.render import FORMATS, render, render_all, write_reports
from harness.results.store import load_results, write_results

__all__ = [
    "FORMATS",
    "load_results",
    "render",
    "render_all",
    "write_atomic",
    "write_reports",
    "write_results",
]

"""The HTML report: one self-contained file rendered from results.json.

Jinja2 templates ship as package data (harness/report/templates); autoescaping is on
for every template, so any text from data or a model prints as text. The only markup
inserted as is are the SVG charts drawn by ``harness.report.charts``. A
Content-Security-Policy meta tag forbids scripts and network requests as a second
line of defence; the report needs neither.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from harness.results.schema import Results


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def render_html(results: Results) -> str:
    """The compliance report of one run."""
    from harness.report.view import build

    return render_template("report.html.j2", v=build(results.document()))


def render_compare_html(comparison: Mapping[str, Any]) -> str:
    """A comparison of two runs (harness.results.compare.compare)."""
    from harness.report.compare_view import build

    return render_template("compare.html.j2", v=build(comparison))

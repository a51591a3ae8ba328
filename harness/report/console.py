"""The console summary of a run (rich): metric table with CIs, gate table, verdict.

Task ids, metric outputs (``f1[negative]``), gate names and gate messages are chosen by
the suite's author or read from a results file, so they never reach rich as markup:
each is a ``Text`` (rich would read ``[negative]`` as a style tag and drop it) made of
``safe_text.one_line`` text (no terminal control sequence gets through). Name columns
fold a long name onto more lines rather than cut it with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.report.formatting import fmt, fmt_ci
from harness.report.safe_text import one_line

NAME_LIMIT = 300  # characters of a name shown (a name longer than that is cut, marked)
MESSAGE_LIMIT = 600
VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}
VERDICT_LINE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red"}


def _text(value: Any, limit: int = NAME_LIMIT, style: str = "") -> Text:
    return Text(one_line(value, limit), style=style)


def _table(title: str, columns: list[tuple[str, str]]) -> Table:
    """A table of (header, kind) columns: ``name`` columns fold long text onto more
    lines, ``number`` columns are right-aligned, ``word`` columns are left as they are."""
    table = Table(title=title)
    for header, kind in columns:
        if kind == "name":
            table.add_column(header, overflow="fold", no_wrap=False)
        else:
            table.add_column(header, justify="right" if kind == "number" else "left", no_wrap=True)
    return table


def metrics_table(results: Mapping[str, Any]) -> Table:
    """Every task metric with its value, bootstrap CI and number of examples."""
    columns = [("task", "name"), ("metric", "name"), ("value", "number")]
    table = _table("metrics", [*columns, ("95% CI", "name"), ("n", "number")])
    for task_id, task in (results.get("tasks") or {}).items():
        metrics = task.get("metrics") if isinstance(task, Mapping) else None
        for name, m in (metrics or {}).items():
            m = m if isinstance(m, Mapping) else {}
            table.add_row(
                _text(task_id),
                _text(name),
                Text(fmt(m.get("value"))),
                Text(fmt_ci(m.get("ci_low"), m.get("ci_high"))),
                Text(fmt(m.get("n"))),
            )
    return table


def gates_table(results: Mapping[str, Any]) -> Table:
    """Every gate with its verdict and the reason for it."""
    table = _table("gates", [("gate", "name"), ("verdict", "word"), ("detail", "name")])
    for g in results.get("gates") or []:
        if not isinstance(g, Mapping):
            continue
        verdict = str(g.get("verdict"))
        verdict = verdict if verdict in VERDICT_STYLE else "fail"
        table.add_row(
            _text(g.get("metric", "?")),
            Text(verdict, style=VERDICT_STYLE[verdict]),
            _text(g.get("message", ""), MESSAGE_LIMIT),
        )
    return table


def print_summary(results: Mapping[str, Any], console: Console) -> None:
    """Metric table with CIs, then the gate table (when there are gates) and the verdict."""
    console.print(metrics_table(results))
    if results.get("gates"):
        console.print(gates_table(results))
    verdict = str(results.get("verdict"))
    verdict = verdict if verdict in VERDICT_LINE else "fail"
    console.print(Text(f"verdict: {verdict.upper()}", style=VERDICT_LINE[verdict]))

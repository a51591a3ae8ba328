"""The console summary of a run (rich): metric table with CIs, gate table, verdict.

Task ids, metric outputs (``f1[negative]``), gate names and gate messages are chosen by
the suite's author or read from a results file, so they never reach rich as markup:
each is a ``Text`` (rich would read ``[negative]`` as a style tag and drop it) made of
``safe_text.one_line`` text (no terminal control sequence gets through). Name columns
fold a long name onto more lines rather than cut it with an ellipsis.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.report.formatting import fmt, fmt_ci
from harness.report.safe_text import one_line
from harness.results.schema import Results

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


def metrics_table(results: Results) -> Table:
    """Every task metric with its value, bootstrap CI and number of examples."""
    columns = [("task", "name"), ("metric", "name"), ("value", "number")]
    table = _table("metrics", [*columns, ("95% CI", "name"), ("n", "number")])
    for task_id, task in results.tasks.items():
        for name, m in task.metrics.items():
            table.add_row(
                _text(task_id),
                _text(name),
                Text(fmt(m.value)),
                Text(fmt_ci(m.ci_low, m.ci_high)),
                Text(fmt(m.n)),
            )
    return table


def gates_table(results: Results) -> Table:
    """Every gate with its verdict and the reason for it."""
    table = _table("gates", [("gate", "name"), ("verdict", "word"), ("detail", "name")])
    for g in results.gates:
        table.add_row(
            _text(g.metric),
            Text(g.verdict, style=VERDICT_STYLE[g.verdict]),
            _text(g.message, MESSAGE_LIMIT),
        )
    return table


def print_summary(results: Results, console: Console) -> None:
    """Metric table with CIs, then the gate table (when there are gates) and the verdict."""
    console.print(metrics_table(results))
    if results.gates:
        console.print(gates_table(results))
    verdict = results.verdict
    console.print(Text(f"verdict: {verdict.upper()}", style=VERDICT_LINE[verdict]))

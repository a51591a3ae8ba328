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


def gates_side_by_side(runs: Mapping[str, Results]) -> Table:
    """The gates of several runs of one suite, a column per run: each cell the verdict
    and the gated value (``-`` where a run has no such gate). Rows follow the first
    run's gate order, then gates only later runs have."""
    names = list(runs)
    table = _table("gates", [("gate", "name"), *((name, "word") for name in names)])
    by_run = [{g.metric: g for g in run.gates} for run in runs.values()]
    order = list(dict.fromkeys(g for gates in by_run for g in gates))
    for metric in order:
        cells = []
        for gates in by_run:
            g = gates.get(metric)
            if g is None:
                cells.append(Text("-"))
            else:
                cells.append(Text(f"{g.verdict} ({fmt(g.value)})", style=VERDICT_STYLE[g.verdict]))
        table.add_row(_text(metric), *cells)
    table.add_row(
        Text("verdict", style="bold"),
        *(Text(r.verdict.upper(), style=VERDICT_LINE[r.verdict]) for r in runs.values()),
    )
    return table


def print_summary(results: Results, console: Console) -> None:
    """Metric table with CIs, then the gate table (when there are gates) and the verdict."""
    console.print(metrics_table(results))
    if results.gates:
        console.print(gates_table(results))
    verdict = results.verdict
    console.print(Text(f"verdict: {verdict.upper()}", style=VERDICT_LINE[verdict]))

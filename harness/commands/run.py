from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.gates import exit_code


def run_command(args: argparse.Namespace) -> int:
    from harness.pipeline import evaluate_and_report
    from harness.spec import apply_overrides, load_suite, verify_files

    # Files are checked after the overrides, so --model can replace a placeholder path.
    suite = load_suite(args.suite, check_files=False)
    suite = apply_overrides(
        suite,
        model=args.model,
        adapter=args.adapter,
        out=args.out,
        limit=args.limit,
        batch_size=args.batch_size,
    )
    verify_files(suite)
    if args.allow_pickle:
        suite.model.allow_pickle = True
    if args.no_cache:
        suite.cache = False
    from harness import distributed

    # One of several processes (accelerate launch): only the main one prints and writes;
    # every one ends with the same exit code once the outputs are written.
    console = Console(stderr=True, quiet=not distributed.is_main())
    results, paths = evaluate_and_report(
        suite,
        baseline_results=Path(args.baseline_results) if args.baseline_results else None,
        show_progress=not args.no_progress,
        console=console,
    )
    if paths:
        print_summary(results, console)
        console.print(f"results: {paths['results']}")
        console.print(f"report: {paths['html']}")
    distributed.finish()
    return exit_code(results["verdict"])


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4f}"


def print_summary(results: dict[str, Any], console: Console) -> None:
    """Metric table with CIs, then the gate table and the verdict."""
    table = Table(title="metrics", show_lines=False)
    for col in ("task", "metric", "value", "95% CI", "n"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for task_id, task in results["tasks"].items():
        for name, m in task["metrics"].items():
            ci = f"[{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]"
            table.add_row(task_id, name, _fmt(m.get("value")), ci, str(m.get("n", "")))
    console.print(table)
    if results["gates"]:
        gt = Table(title="gates")
        for col in ("gate", "verdict", "detail"):
            gt.add_column(col)
        style = {"pass": "green", "warn": "yellow", "fail": "bold red"}
        for g in results["gates"]:
            gt.add_row(g["metric"], f"[{style[g['verdict']]}]{g['verdict']}[/]", g["message"])
        console.print(gt)
    v = results["verdict"]
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}[v]
    console.print(f"[bold {colour}]verdict: {v.upper()}[/]")

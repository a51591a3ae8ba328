"""`harness report RESULTS.json --format html|junit|md [--out PATH]`: re-render a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def report_command(args: argparse.Namespace) -> int:
    from harness.report import load_results
    from harness.report.render import render

    results = load_results(Path(args.results))
    emit(render(results, args.format), args.format, args.out)
    return 0


def emit(text: str, fmt: str, out: str | None) -> None:
    """A rendered output to ``out`` (its name on stderr) or, without ``--out``, to stdout."""
    from harness.report.render import write_output

    if out:
        write_output(Path(out), text)
        print(f"{fmt}: {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)

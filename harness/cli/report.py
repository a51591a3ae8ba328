"""`harness report RESULTS.json --format html|junit|md [--out PATH]`: re-render a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def report_command(args: argparse.Namespace) -> int:
    from harness.report import load_results
    from harness.report.render import render, write_output

    results = load_results(Path(args.results))
    text = render(results, args.format)
    if args.out:
        write_output(Path(args.out), text)
        print(f"{args.format}: {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0

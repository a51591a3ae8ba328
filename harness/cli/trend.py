"""`harness trend RUN... --out trend.html [--best METRIC]`: metrics across runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def trend_command(args: argparse.Namespace) -> int:
    from harness.cli.report import emit
    from harness.report.html import render_template
    from harness.report.trend_view import build, summary_line
    from harness.results.store import load_results

    paths = [Path(p) / "results.json" if Path(p).is_dir() else Path(p) for p in args.runs]
    runs = [(p, load_results(p)) for p in paths]
    view = build(runs, best=args.best)
    emit(render_template("trend.html.j2", v=view), "trend", args.out)
    print(summary_line(view), file=sys.stderr)
    return 0

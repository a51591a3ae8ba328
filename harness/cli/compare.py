"""`harness compare BASELINE.json NEW.json [--format md|html] [--out PATH]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.report import emit


def compare_command(args: argparse.Namespace) -> int:
    from harness.errors import UserError
    from harness.report import load_results
    from harness.results.compare import compare

    if args.samples is not None and args.samples < 0:
        raise UserError(f"--samples: must be >= 0, got {args.samples}")
    baseline = load_results(Path(args.baseline))
    new = load_results(Path(args.new))
    comparison = compare(
        baseline, new, baseline_path=args.baseline, new_path=args.new, samples=args.samples
    )
    if args.format == "html":
        from harness.report.html import render_compare_html

        text = render_compare_html(comparison)
    else:
        from harness.report.markdown import render_compare_markdown

        text = render_compare_markdown(comparison)
    emit(text, args.format, args.out)
    return 0

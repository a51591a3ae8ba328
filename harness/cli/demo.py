"""`harness demo [--out DIR] [--no-progress] [--verbose]`: the embedded demo (see harness.demo.run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def demo_command(args: argparse.Namespace) -> int:
    from harness.demo.run import run_demo

    outcome = run_demo(Path(args.out), progress=not args.no_progress, verbose=args.verbose)
    seconds = outcome["timings"]["total_s"]
    print(f"demo finished in {seconds:.0f} s; reports in {args.out}")
    return 0

"""`harness run SUITE [...]`: evaluate a checkpoint, write every output, exit by the gates."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from harness.gates.verdicts import exit_code


def run_command(args: argparse.Namespace) -> int:
    from harness.config.suite import apply_overrides, load_suite, verify_files
    from harness.report.console import print_summary
    from harness.run.pipeline import evaluate_and_report

    adapters = args.adapter or []
    # Files are checked after the overrides, so --model can replace a placeholder path.
    suite = load_suite(args.suite, check_files=False)
    suite = apply_overrides(
        suite,
        model=args.model,
        adapter=adapters[0] if len(adapters) == 1 else None,
        out=args.out,
        limit=args.limit,
        batch_size=args.batch_size,
    )
    if len(adapters) < 2:
        verify_files(suite)
    signer = None
    if args.sign:  # read before the run: a bad key fails in a second, not after it
        from harness.results.attest import Signer

        signer = Signer(Path(args.sign))
    from harness.integrations.trackers import prepare

    log_to_trackers = prepare(args.log_to)  # a missing package fails now, not after the run
    if args.allow_pickle:
        suite.model.allow_pickle = True
    if args.no_cache:
        suite.cache = False
    from harness.model import distributed

    # One of several processes (accelerate launch): only the main one prints and writes;
    # every one ends with the same exit code once the outputs are written.
    console = Console(stderr=True, quiet=not distributed.is_main())
    if len(adapters) > 1:
        return _run_adapters(args, suite, adapters, console, signer, log_to_trackers)
    results, paths = evaluate_and_report(
        suite,
        baseline_results=Path(args.baseline_results) if args.baseline_results else None,
        require_baseline=args.require_baseline,
        show_progress=not args.no_progress,
        console=console,
        signer=signer,
    )
    if paths:
        print_summary(results, console)
        console.print(Text(f"results: {paths['results']}"))
        console.print(Text(f"report: {paths['html']}"))
        for line in log_to_trackers(paths):  # a tracker down is a warning (module doc)
            console.print(Text(line), soft_wrap=True)
    distributed.finish()
    return exit_code(results.verdict)


def _run_adapters(
    args: argparse.Namespace,
    suite: Any,
    adapters: list[str],
    console: Console,
    signer: Any,
    log_to_trackers: Any,
) -> int:
    """``--adapter`` given more than once: one run per adapter, the trend, the worst exit."""
    from harness.model import distributed
    from harness.report.console import print_summary
    from harness.run.adapters import evaluate_adapters

    runs, trend = evaluate_adapters(
        suite,
        adapters,
        out=suite.output_dir,
        baseline_results=Path(args.baseline_results) if args.baseline_results else None,
        require_baseline=args.require_baseline,
        show_progress=not args.no_progress,
        console=console,
        signer=signer,
    )
    for run in runs:
        if run.paths:
            console.print(Text(f"\n{run.name}: {run.adapter}", style="bold"))
            print_summary(run.results, console)
            console.print(Text(f"results: {run.paths['results']}"))
            for line in log_to_trackers(run.paths):  # each adapter's run is its own
                console.print(Text(line), soft_wrap=True)
    if trend is not None:
        console.print(Text(f"trend: {trend}"))
    distributed.finish()
    return max(exit_code(run.results.verdict) for run in runs)

"""`harness validate SUITE`: check a suite and its data without loading a model, and say
what a run of it will need."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.text import Text

OK = "ok: {suite}: {tasks} tasks, {examples} examples, {gates} gates"
NEEDS_BASELINE = (
    "{n} {gates} against a baseline run: pass --baseline-results RESULTS_JSON "
    "(without it {they} '{no_baseline}': a warning, or a failure with --require-baseline)"
)


def baseline_note(n: int) -> str:
    """What a run needs for ``n`` gates that compare against a baseline run."""
    from harness.gates.verdicts import NO_BASELINE

    one = n == 1
    return NEEDS_BASELINE.format(
        n=n,
        gates="gate compares" if one else "gates compare",
        they="it reports" if one else "they report",
        no_baseline=NO_BASELINE,
    )


def validate_command(args: argparse.Namespace) -> int:
    from harness.config.suite import load_suite
    from harness.results.compare import baseline_gates
    from harness.run.runner import prepare_suite

    suite = load_suite(args.suite)
    prepared = prepare_suite(suite)
    n = sum(len(p.records) for p in prepared)
    line = OK.format(suite=args.suite, tasks=len(prepared), examples=n, gates=len(suite.gates))
    relative = len(baseline_gates(suite))
    if relative:
        line += f"; {baseline_note(relative)}"
    text = Text(line)
    text.stylize("green", 0, 2)
    Console(stderr=True).print(text, soft_wrap=True)
    return 0

from __future__ import annotations

import argparse

from rich.console import Console


def validate_command(args: argparse.Namespace) -> int:
    from harness.runner import prepare_suite
    from harness.spec import load_suite

    suite = load_suite(args.suite)
    prepared = prepare_suite(suite)
    n = sum(len(p.records) for p in prepared)
    Console(stderr=True).print(
        f"[green]ok[/]: {args.suite}: {len(prepared)} tasks, {n} examples, {len(suite.gates)} gates"
    )
    return 0

"""Run a suite and publish every output: the public API behind `harness run` and the demo.

results.json and each rendering (HTML, JUnit XML, Markdown) are rendered first and
written as one atomic set, with their digests (digests.json) and, given a signing key,
a signed statement (attestation.json), after (harness.report.render.publish), so a failure at any
step leaves an earlier run's folder intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.model.distributed import is_main
from harness.report.render import publish
from harness.results.compare import apply_baseline, apply_no_baseline
from harness.results.schema import Results
from harness.results.store import load_results
from harness.run.runner import run_suite


def evaluate_and_report(
    suite: Any,
    *,
    baseline_results: Path | None = None,
    require_baseline: bool = False,
    show_progress: bool = True,
    console: Any = None,
    signer: Any = None,
) -> tuple[Results, dict[str, Path]]:
    """Run ``suite`` (optionally against a baseline run) and write all its outputs.

    Gates that compare against a baseline run take their references from
    ``baseline_results``; without one they report ``no baseline``, a warning, or a
    failure when ``require_baseline`` (docs/gates.md: the first run of a CI suite).

    Returns the run's ``Results`` and the written paths by format (``results``,
    ``html``, ``junit``, ``md``, ``digests``; with a ``signer``, a
    harness.results.attest.Signer, ``attestation``). Run as one of several processes (harness.model.distributed),
    every process returns the same results and only the main one writes (the others
    get no paths).
    """
    baseline = load_results(baseline_results) if baseline_results else None
    results = run_suite(suite, show_progress=show_progress, console=console)
    if baseline is not None and baseline_results is not None:
        apply_baseline(results, suite, baseline, baseline_results)
    else:
        apply_no_baseline(results, suite, required=require_baseline)
    return results, publish(results, suite.output_dir, signer) if is_main() else {}

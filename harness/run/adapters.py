"""Several adapters of one base, one run each, the base model's answers computed once.

``evaluate_adapters`` runs a suite once per adapter (``harness run --adapter A --adapter
B ...``), each into ``OUT/<adapter name>/`` with every output a single run writes, then
draws ``OUT/trend.html`` over the runs in the order given.

What the runs share is the response cache (harness.model.cache): the forgetting audit
scores the base with the adapter disabled, and inside ``adapter_disabled`` the cache
keys answers by the base's fingerprint, the same for every adapter of that base. So the
first adapter's run computes the base's answers and every later one finds them. A run
without the cache (``--no-cache``) gets a private one for the duration, in a temporary
folder removed afterwards: the base is still computed once and nothing is kept.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.suite import apply_overrides, verify_files
from harness.model.cache import ENV_DIR
from harness.report.render import write_output
from harness.report.trend_view import render_trend_html
from harness.results.schema import Results
from harness.run.pipeline import evaluate_and_report

TREND_FILE = "trend.html"


@dataclass
class AdapterRun:
    """One adapter's run: its name (its output subfolder), results and written files."""

    name: str
    adapter: str
    results: Results
    paths: dict[str, Path]


def adapter_names(adapters: Sequence[str]) -> list[str]:
    """An output folder name per adapter: its folder's name, ``-2``, ``-3``... added
    where two adapters' folders have the same name (``a/checkpoint-10``, ``b/checkpoint-10``)."""
    names: list[str] = []
    for adapter in adapters:
        name = Path(adapter.rstrip("/\\")).name or "adapter"
        candidate, k = name, 1
        while candidate in names:
            k += 1
            candidate = f"{name}-{k}"
        names.append(candidate)
    return names


def adapter_suites(suite: Any, adapters: Sequence[str], out: Path) -> list[tuple[str, Any]]:
    """The suite once per adapter, each writing into ``out/<name>``; every adapter's
    files are checked before anything runs."""
    suites = []
    for name, adapter in zip(adapter_names(adapters), adapters, strict=True):
        one = apply_overrides(suite, adapter=adapter, out=str(out / name))
        verify_files(one)
        suites.append((name, one))
    return suites


@contextlib.contextmanager
def shared_cache(enabled: bool) -> Iterator[None]:
    """The response cache the runs share: the user's, or (``enabled`` False) a private
    one in a temporary folder, removed on leaving."""
    if enabled:
        yield
        return
    before = os.environ.get(ENV_DIR)
    with tempfile.TemporaryDirectory(prefix="harness-adapters-") as folder:
        os.environ[ENV_DIR] = folder
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ENV_DIR, None)
            else:
                os.environ[ENV_DIR] = before


def evaluate_adapters(
    suite: Any,
    adapters: Sequence[str],
    *,
    out: Path,
    baseline_results: Path | None = None,
    require_baseline: bool = False,
    show_progress: bool = True,
    console: Any = None,
    signer: Any = None,
) -> tuple[list[AdapterRun], Path | None]:
    """Run ``suite`` once per adapter (module doc); returns the runs in the order given
    and the path of the trend page (None on a process other than the main one)."""
    suites = adapter_suites(suite, adapters, out)
    private = not suite.cache
    runs: list[AdapterRun] = []
    with shared_cache(not private):
        for (name, one), adapter in zip(suites, adapters, strict=True):
            if private:
                one.cache = True
            results, paths = evaluate_and_report(
                one,
                baseline_results=baseline_results,
                require_baseline=require_baseline,
                show_progress=show_progress,
                console=console,
                signer=signer,
            )
            runs.append(AdapterRun(name, adapter, results, paths))
    if not all(r.paths for r in runs):  # not the main process: it writes nothing
        return runs, None
    trend = render_trend_html([(r.paths["results"], r.results) for r in runs])
    return runs, write_output(out / TREND_FILE, trend)

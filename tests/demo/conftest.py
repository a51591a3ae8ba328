"""The real demo, run once per test session; its console and streams captured."""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import pytest
from rich.console import Console

from harness.demo.run import run_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache = tmp_path_factory.mktemp("demo-cache")
    old = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("demo-out")
        printed, errors = io.StringIO(), io.StringIO()
        console = Console(file=io.StringIO(), width=160)
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
            outcome = run_demo(out, console=console)
        documents = {name: r.document() for name, r in outcome["results"].items()}
        shown = console.file.getvalue()  # type: ignore[attr-defined]
        return {
            "out": out,
            "stdout": printed.getvalue(),
            "stderr": errors.getvalue(),
            "console": shown,
            **outcome,
            "results": documents,
        }
    finally:
        if old is None:
            os.environ.pop("HARNESS_CACHE_DIR", None)
        else:
            os.environ["HARNESS_CACHE_DIR"] = old

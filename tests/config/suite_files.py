"""Suite files for the suite tests: the fake metrics, suite text, writing a suite and
collecting its located error lines (fixtures are in conftest.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.config.suite import (
    load_suite,
)
from harness.errors import UserError
from harness.metrics.base import Metric, TaskInfo

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"
AVERAGES = ("binary", "macro", "micro", "weighted", "per_class")


def _f1_outputs(params: Mapping[str, Any], task: TaskInfo) -> list[str]:
    average = params["average"]
    if average == "per_class":
        return [f"f1[{c.strip()}]" for c in task.choices]
    return ["f1"] if average == "binary" else [f"f1_{average}"]


def _f1_validate(params: Mapping[str, Any], task: TaskInfo) -> None:
    if params["average"] not in AVERAGES:
        raise ValueError(f"average must be one of {', '.join(AVERAGES)}")


def _fake(name: str, kind: str, outputs: list[str] | None = None, **kw: Any) -> Metric:
    return Metric(
        name=name,
        kinds=frozenset({kind}),
        outputs=kw.pop("outputs_fn", lambda params, task: list(outputs or [name])),
        stats=lambda records, params, task: np.zeros((len(records), 1)),
        aggregate=lambda stats, params, task: {},
        **kw,
    )


def write(folder: Path, text: str, name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors(path: Path, **kw: Any) -> list[str]:
    with pytest.raises(UserError) as info:
        load_suite(path, **kw)
    return info.value.messages


HEAD = """\
schema_version: 1
name: gate
model:
  path: gpt2
tasks:
"""
SENTIMENT = """\
  - id: sentiment
    kind: classification
    data: reviews.jsonl
    prompt: "{{ text }}"
    choices: [" negative", " positive"]
    label: label
"""

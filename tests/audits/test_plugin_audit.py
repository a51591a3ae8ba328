"""A new audit, defined entirely in this module, is validated in a suite, run by
`harness run`, gated and rendered, without touching any other file: the audit registry
(harness.audits.base) is the one source of the suite schema, the suite reference, the
runner's audits, the gates, the HTML report's sections and the Markdown summary.

The audit counts how often the checkpoint answers a given choice on a classification
task (a toy, but it reads the stored records, asks the run for a metric and for its
bootstrap interval, and publishes a gateable value, like the built-in audits)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from harness import audits
from harness.audits.base import (
    NO_SUCH_TASK,
    AuditConfig,
    AuditContext,
    CheckContext,
    Problem,
    TaskFacts,
    choice_index,
)
from harness.cli.main import main
from harness.config import reference
from harness.config.suite import load_suite
from harness.errors import UserError
from tests.audits.conftest import FAIR, FakeLM, write_suite

NAME = "choice_share"
NOT_A_CHOICE = "{choice!r} is not a choice of task '{task}'"


class ChoiceShareConfig(AuditConfig):
    """How often the checkpoint answers one choice of a classification task."""

    task: str
    """Id of a classification task of this suite."""
    choice: str
    """The choice counted (as written in the task's `choices`)."""
    min_examples: int = Field(default=1, ge=1)
    """Fewest examples the share is computed on."""


def check(cfg: ChoiceShareConfig, ctx: CheckContext) -> list[Problem]:
    facts = ctx.tasks.get(cfg.task)
    if facts is None:
        return [(("task",), NO_SUCH_TASK.format(task=cfg.task, tasks=", ".join(ctx.tasks)))]
    if facts.choices is not None and choice_index(facts.choices, cfg.choice) is None:
        return [(("choice",), NOT_A_CHOICE.format(choice=cfg.choice, task=cfg.task))]
    return []


def gate_names(cfg: ChoiceShareConfig, tasks: Mapping[str, TaskFacts]) -> list[str]:
    return [f"{NAME}.{cfg.task}.share"]


def run(ctx: AuditContext) -> dict[str, Any]:
    cfg: ChoiceShareConfig = ctx.config
    records = ctx.prepared[cfg.task].records
    index = choice_index(records[0]["choices"], cfg.choice)
    accuracy = ctx.metric("accuracy")  # the run's metric resolution
    stats = accuracy.stats(records, accuracy.params, ctx.prepared[cfg.task].task.info())
    return {
        "task": cfg.task,
        "choice": cfg.choice,
        "share": ctx.interval([float(r["pred"] == index) for r in records]),
        "accuracy": float(stats.mean()),
    }


def gate_values(section: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{NAME}.{section['task']}.share": {"value": section["share"]["value"]}}


def summary(section: Mapping[str, Any]) -> str:
    return f"**Choice share** ({section['task']}): {section['share']['value']:.3f}"


def view(section: Mapping[str, Any], _texts: Any) -> dict[str, Any]:
    share = section["share"]
    return {
        "rows": [
            ("task", section["task"]),
            ("choice", section["choice"]),
            ("share", f"{share['value']:.3f} [{share['ci_low']:.3f}, {share['ci_high']:.3f}]"),
        ]
    }


@pytest.fixture
def choice_share() -> Iterator[audits.Audit]:
    """The audit, registered for one test and removed after it."""
    audit = audits.register_module(
        globals(),
        name=NAME,
        config=ChoiceShareConfig,
        doc="Share of the checkpoint's answers that are one choice.",
        title="Choice share",
        view=view,
        summary=summary,
    )
    try:
        yield audit
    finally:
        audits.unregister(NAME)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # paths in messages relative to the suite's folder


def section(task: str = "sentiment", extra: str = "") -> str:
    return f'  {NAME}:\n    task: {task}\n    choice: " positive"\n{extra}'


def line_of(path: Path, needle: str) -> int:
    return next(n for n, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def errors(suite: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [e.removeprefix("error: ") for e in err.splitlines() if e.startswith("error: ")]


def test_it_is_validated_with_located_errors(
    tmp_path: Path, choice_share: audits.Audit, capsys: pytest.CaptureFixture[str]
) -> None:
    # its schema: bounds and unknown fields, as for any section of a suite
    suite = write_suite(tmp_path, audits=section(extra="    min_examples: 0\n    colour: red\n"))
    min_line, colour_line = line_of(suite, "min_examples"), line_of(suite, "colour")
    assert errors(suite, capsys) == [
        f"suite.yaml:{min_line}:19: audits.{NAME}.min_examples: must be >= 1, got 0",
        f"suite.yaml:{colour_line}:5: audits.{NAME}.colour: unknown field; "
        "allowed: task, choice, min_examples",
    ]
    # its own check against the suite's tasks, once the schema holds
    suite = write_suite(tmp_path, audits=section("nope"))
    assert errors(suite, capsys) == [
        f"suite.yaml:{line_of(suite, 'task: nope')}:11: audits.{NAME}.task: "
        "no task 'nope'; tasks: sentiment"
    ]


def test_its_gate_names_are_checked(tmp_path: Path, choice_share: audits.Audit) -> None:
    gates = f"  - {{metric: {NAME}.sentiment.shares, min: 0}}\n"
    with pytest.raises(UserError) as exc:
        load_suite(write_suite(tmp_path, audits=section(), gates=gates))
    assert exc.value.messages == [
        f"suite.yaml:{line_of(tmp_path / 'suite.yaml', 'shares')}:14: gates[0].metric: "
        f"audit '{NAME}' publishes no '{NAME}.sentiment.shares'; "
        f"it publishes: {NAME}.sentiment.share"
    ]


@pytest.mark.parametrize(("minimum", "code"), [(0.1, 0), (0.9, 1)])
def test_it_runs_gates_and_renders(
    tmp_path: Path,
    choice_share: audits.Audit,
    fake_model: Callable[..., FakeLM],
    minimum: float,
    code: int,
) -> None:
    fake_model(FAIR)
    gates = f"  - {{metric: {NAME}.sentiment.share, min: {minimum}}}\n"
    suite = write_suite(tmp_path, audits=section(), gates=gates)
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == code

    results = json.loads((out / "results.json").read_text())
    sec = results["audits"][NAME]
    assert set(sec) == {"task", "choice", "share", "accuracy", "time_s"}
    assert 0.3 < sec["share"]["value"] < 0.7  # the fake model is fair: about half positive
    assert sec["accuracy"] == 1.0
    [gate] = results["gates"]
    assert gate["verdict"] == ("pass" if code == 0 else "fail")
    assert gate["value"] == sec["share"]["value"]

    html = (out / "report.html").read_text()
    assert f'<section id="{NAME}">' in html
    assert f'<a href="#{NAME}">Choice share</a>' in html
    assert "<h2>Choice share</h2>" in html
    md = (out / "summary.md").read_text()
    assert f"- **Choice share** (sentiment): {sec['share']['value']:.3f}" in md


def test_it_is_in_the_suite_reference_while_registered(choice_share: audits.Audit) -> None:
    text = reference.render_reference()
    assert f"| `{NAME}` | [{NAME} audit](#{NAME}) or null | `null` |" in text
    assert f'## <a id="{NAME}"></a>audits: {NAME}' in text
    assert "| `min_examples` | integer, >= 1 | `1` | Fewest examples" in text


def test_unregistering_restores_the_schema(tmp_path: Path) -> None:
    assert NAME not in audits.available()
    suite = write_suite(tmp_path, audits=section())
    with pytest.raises(UserError) as exc:
        load_suite(suite)
    [message] = exc.value.messages
    assert message.endswith(
        f"audits.{NAME}: unknown field; allowed: {', '.join(audits.available())}"
    )
    assert reference.render_reference() == reference.REFERENCE.read_text(encoding="utf-8")

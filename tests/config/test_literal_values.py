"""Values a suite writes literally must mean what they say: a choice holding template
syntax is refused (it used to be scored as the text `{{ opt0 }}` for every row), and
YAML's true/false is not read as the number 1/0."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.schema_base import BOOL_NOT_NUMBER
from harness.config.suite import CHOICE_TEMPLATE
from tests.config.suite_files import HEAD, SENTIMENT, errors, write


@pytest.mark.parametrize("choice", ["{{ opt0 }}", " {% if x %}yes{% endif %}", "{# note #} no"])
def test_templated_choice_is_a_located_error(suite_dir: Path, choice: str) -> None:
    task = SENTIMENT.replace('[" negative", " positive"]', f"[{choice!r}, ' other']")
    path = write(suite_dir, HEAD + task)
    message = CHOICE_TEMPLATE.format(choice=choice)
    assert errors(path) == [f"suite.yaml:10:15: tasks[0].choices[0]: {message}"]


def test_braces_that_are_not_template_syntax_are_fine(suite_dir: Path) -> None:
    from harness.config.suite import load_suite

    task = SENTIMENT.replace('[" negative", " positive"]', '[" {a}", " }}"]')
    suite = load_suite(write(suite_dir, HEAD + task))
    assert suite.tasks[0].choices == [" {a}", " }}"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # columns counted in the line: the value's first character, 1-based
        ("gates: [{metric: sentiment.accuracy, min: true}]", "12:43: gates[0].min: {} true"),
        (
            "gates: [{metric: sentiment.accuracy, max_drop: false}]",
            "12:48: gates[0].max_drop: {} false",
        ),
        ("limit: true", "12:8: limit: {} true"),
        ("bootstrap: {samples: true}", "12:22: bootstrap.samples: {} true"),
    ],
)
def test_a_boolean_is_not_a_number(suite_dir: Path, extra: str, expected: str) -> None:
    path = write(suite_dir, HEAD + SENTIMENT + extra + "\n")
    assert errors(path) == ["suite.yaml:" + expected.format(BOOL_NOT_NUMBER + ", got")]


def test_booleans_stay_booleans(suite_dir: Path) -> None:
    from harness.config.suite import load_suite

    extra = "gates: [{metric: sentiment.accuracy, min: 0.5, significant: true, max_drop: 1}]\n"
    suite = load_suite(write(suite_dir, HEAD + SENTIMENT + extra))
    assert suite.gates[0].significant is True
    assert suite.gates[0].min == 0.5 and suite.gates[0].max_drop == 1

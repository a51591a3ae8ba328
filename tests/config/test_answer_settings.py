"""A generation task's `extract` and `normalize` settings (issue 16 point 4): a valid one
loads (and is stored only when set); each bad value is one located error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main
from harness.config.answers import BAD_REGEX, NO_GROUP
from harness.config.suite import load_suite
from tests.config.suite_files import HEAD, errors, write

TASK = """\
  - id: gsm
    kind: generation
    data: news.jsonl
    prompt: "{{ document }}"
    reference: summary
"""


def test_settings_load_with_their_defaults(suite_dir: Path) -> None:
    path = write(
        suite_dir,
        HEAD
        + TASK
        + """\
    extract: {regex: '#### (\\-?[0-9\\.\\,]+)'}
    normalize:
      remove: [',', '\\$']
      lower: true
""",
    )
    task = load_suite(path).tasks[0]
    assert task.model_dump(mode="json")["extract"] == {
        "regex": "#### (\\-?[0-9\\.\\,]+)",
        "group": None,
        "select": "first",
        "fallback": "[invalid]",
    }
    assert task.model_dump(mode="json")["normalize"] == {
        "remove": [",", "\\$"],
        "lower": True,
        "punctuation": False,
        "commas": False,
        "strip": False,
    }


def test_unset_settings_are_stored_as_null(suite_dir: Path) -> None:
    """results.json echoes the resolved suite, defaults included."""
    dumped = load_suite(write(suite_dir, HEAD + TASK)).model_dump(mode="json")
    assert dumped["tasks"][0]["extract"] is None and dumped["tasks"][0]["normalize"] is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            "    extract: {regex: '#### (\\d+'}\n",
            "suite.yaml:11:22: tasks[0].extract.regex: "
            + BAD_REGEX.format(reason="missing ), unterminated subpattern at position 5"),
        ),
        (
            "    extract: {regex: '#### (\\d+)', group: 2}\n",
            "suite.yaml:11:43: tasks[0].extract.group: " + NO_GROUP.format(group=2, groups=1),
        ),
        (
            "    extract: {regex: '#### \\d+', group: 1}\n",
            "suite.yaml:11:41: tasks[0].extract.group: " + NO_GROUP.format(group=1, groups=0),
        ),
        (
            "    extract: {regex: 'x', select: middle}\n",
            "suite.yaml:11:35: tasks[0].extract.select: must be one of 'first' or 'last', "
            "got 'middle'",
        ),
        (
            "    normalize: {lower: true, upper: true}\n",
            "suite.yaml:11:30: tasks[0].normalize.upper: unknown field; "
            "allowed: remove, lower, punctuation, commas, strip",
        ),
        (
            "    normalize: {remove: [',', '[']}\n",
            "suite.yaml:11:31: tasks[0].normalize.remove[1]: "
            + BAD_REGEX.format(reason="unterminated character set at position 0"),
        ),
    ],
    ids=["bad-regex", "no-such-group", "no-group-at-all", "select", "unknown-key", "remove"],
)
def test_bad_settings_are_one_located_error(suite_dir: Path, settings: str, expected: str) -> None:
    assert errors(write(suite_dir, HEAD + TASK + settings)) == [expected]


def test_harness_validate_prints_the_located_error(
    suite_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(suite_dir, HEAD + TASK + "    extract: {regex: '(a|'}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "suite.yaml:11:22: tasks[0].extract.regex: invalid regular expression: " in err
    assert "Traceback" not in err

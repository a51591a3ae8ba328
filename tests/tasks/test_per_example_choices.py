"""Per-example choices, label expressions, few-shot and partial scoring (issue 16):
the errors a bad row or a bad few-shot setting gives, how shots are drawn, and what is
scored, on suites written here and a fake model (no weights: fast)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config.suite import load_suite
from harness.errors import UserError
from harness.run.runner import prepare_suite, run_suite
from tests.audits.conftest import FakeLM
from tests.tasks.fakes import RecordingLM


def write(folder: Path, task: dict[str, Any], rows: Sequence[dict[str, Any]], **files: Any) -> Path:
    """A suite with one classification task over ``data.jsonl`` (``rows``), plus other
    jsonl files (``name=rows``), in ``folder``; returns the suite's path."""
    for name, content in {"data": rows, **files}.items():
        lines = "".join(json.dumps(r) + "\n" for r in content)
        (folder / f"{name}.jsonl").write_text(lines, "utf-8")
    suite = {
        "schema_version": 1,
        "name": "per-example",
        "model": {"path": "fake"},
        "cache": False,
        "bootstrap": {"samples": 0},
        "tasks": [{"id": "t", "kind": "classification", "data": "data.jsonl", **task}],
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), "utf-8")
    return path


def errors_of(suite: Path) -> list[str]:
    with pytest.raises(UserError) as err:
        prepare_suite(load_suite(suite, check_files=False))
    return list(err.value.messages)


def records(suite: Path) -> list[dict[str, Any]]:
    [prepared] = prepare_suite(load_suite(suite, check_files=False))
    return list(prepared.records)  # type: ignore[arg-type]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory, so that messages name files as written."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- one located error per bad row --------------------------------------------------

ENDINGS: dict[str, Any] = {"prompt": "{{ q }}", "choices": {"field": "endings"}, "label": "label"}


def test_bad_choice_lists_are_one_error_per_row(here: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"q": "ok", "endings": ["x", "y"], "label": 0},
        {"q": "empty", "endings": [], "label": 0},
        {"q": "text", "endings": "xy", "label": 0},
        {"q": "mapping", "endings": {"a": "x"}, "label": 0},
        {"q": "dup", "endings": ["x", "y", "x"], "label": 5},  # the first problem only
        {"q": "null", "endings": ["x", None], "label": 0},
        {"q": "blank", "endings": ["x", ""], "label": 0},
        {"q": "range", "endings": ["x", "y"], "label": 2},
        {"q": "negative", "endings": ["x", "y"], "label": -1},
        {"q": "text label", "endings": ["x", "y"], "label": "z"},
        {"q": "number", "endings": [1, 2.5], "label": "2.5"},  # numbers are texts
    ]
    assert errors_of(write(here, ENDINGS, rows)) == [
        "data.jsonl line 2: choices: the list is empty (from field 'endings')",
        "data.jsonl line 3: choices: expected a list, got str (from field 'endings')",
        "data.jsonl line 4: choices: expected a list, got dict (from field 'endings')",
        "data.jsonl line 5: choices: duplicate choice 'x' (from field 'endings')",
        "data.jsonl line 6: choices: item 1 is NoneType, not text (from field 'endings')",
        "data.jsonl line 7: choices: item 1 is empty (from field 'endings')",
        "data.jsonl line 8: label 2 is not among the choices ('x', 'y')",
        "data.jsonl line 9: label -1 is not among the choices ('x', 'y')",
        "data.jsonl line 10: label 'z' is not among the choices ('x', 'y')",
    ]


def test_good_rows_resolve_dotted_fields_and_label_expressions(here: Path) -> None:
    task = {
        "prompt": "Question: {{ question }}\nAnswer:",
        "choices": {"field": "choices.text"},
        "label": {"expr": "choices.label.index(answerKey)"},
    }
    rows = [
        {
            "question": "a?",
            "choices": {"text": ["x", "y", "z"], "label": list("ABC")},
            "answerKey": "C",
        },
        {"question": "b?", "choices": {"text": ["u", "v"], "label": ["1", "2"]}, "answerKey": "1"},
    ]
    recs = records(write(here, task, rows))
    assert [(r["choices"], r["gold"], r["target_delimiter"]) for r in recs] == [
        (["x", "y", "z"], 2, " "),  # per-row choices: lm-eval's " " delimiter by default
        (["u", "v"], 0, " "),
    ]


def test_failing_expressions_are_located_at_the_row(here: Path) -> None:
    task = {
        "prompt": "{{ sentence }}",
        "choices": {"expr": "[sentence[:sentence.index('_')] + option1, option2]"},
        "label": {"expr": "answer | int - 1"},
    }
    rows = [
        {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "1"},
        {"sentence": "no blank", "option1": "x", "option2": "y", "answer": "1"},
        {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "3"},
    ]
    assert errors_of(write(here, task, rows)) == [
        "data.jsonl line 2: choices: ValueError: substring not found",
        "data.jsonl line 3: label 2 is not among the choices ('A x', 'y')",
    ]
    arc: dict[str, Any] = {
        "prompt": "{{ question }}",
        "choices": {"field": "choices.text"},
        "label": {"expr": "choices.label.index(answerKey)"},
    }
    arc_rows = [
        {"question": "q", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "E"}
    ]
    assert errors_of(write(here, arc, arc_rows)) == [
        "data.jsonl line 1: label: ValueError: 'E' is not in list"
    ]


# -- few-shot -------------------------------------------------------------------------

NUMBERED = {
    "prompt": "Q{{ i }}:",
    "choices": [" yes", " no"],
    "label": "label",
}


def numbered(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"i": start + k, "label": k % 2} for k in range(n)]


def shots_of(rec: dict[str, Any]) -> list[int]:
    """The row numbers of a record's shots ("Q3: no\\n\\nQ5: yes\\n\\nQ1:" -> [3, 5])."""
    return [int(part.split(":")[0][1:]) for part in rec["prompt"].split("\n\n")[:-1]]


def at_n(suite: Path) -> str:
    """``LINE:COL`` of the value of ``fewshot.n`` in the written suite."""
    for number, line in enumerate(suite.read_text("utf-8").splitlines(), start=1):
        if line.strip().startswith("n: "):
            return f"{number}:{line.index('n: ') + 4}"
    raise AssertionError("no fewshot.n in the suite")


def test_more_shots_than_the_pool_is_a_suite_error(here: Path) -> None:
    own = write(here, {**NUMBERED, "fewshot": {"n": 4}}, numbered(4))
    # the task's own data: each example's own row is left out of its pool
    assert errors_of(own) == [
        f"suite.yaml:{at_n(own)}: tasks[0].fewshot.n: asks for 4 shots but the task's data "
        "has only 3 usable rows"
    ]
    dev = write(
        here, {**NUMBERED, "fewshot": {"n": 4, "data": "dev.jsonl"}}, numbered(4), dev=numbered(3)
    )
    assert errors_of(dev) == [
        f"suite.yaml:{at_n(dev)}: tasks[0].fewshot.n: asks for 4 shots but dev.jsonl has "
        "only 3 usable rows"
    ]
    # enough rows, and no shots at all, are fine
    records(write(here, {**NUMBERED, "fewshot": {"n": 3}}, numbered(4)))
    records(write(here, {**NUMBERED, "fewshot": {"n": 0}}, numbered(1)))


def test_first_n_shots_are_the_first_rows_in_order(here: Path) -> None:
    suite = write(
        here,
        {**NUMBERED, "fewshot": {"n": 3, "data": "dev.jsonl"}, "description": "D{{ i }}.\n\n"},
        numbered(2, start=100),
        dev=numbered(5),
    )
    recs = records(suite)
    # a shot is prompt + target_delimiter ("" for a fixed list) + gold choice + "\n\n"
    assert [r["prompt"] for r in recs] == [
        "D100.\n\nQ0: yes\n\nQ1: no\n\nQ2: yes\n\nQ100:",
        "D101.\n\nQ0: yes\n\nQ1: no\n\nQ2: yes\n\nQ101:",
    ]


def test_exclude_self_drops_the_row_itself(here: Path) -> None:
    rows = numbered(5)
    first_n = records(write(here, {**NUMBERED, "fewshot": {"n": 2}}, rows))
    assert [shots_of(r) for r in first_n] == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]]
    kept = records(write(here, {**NUMBERED, "fewshot": {"n": 2, "exclude_self": False}}, rows))
    assert [shots_of(r) for r in kept] == [[0, 1]] * 5
    drawn = records(write(here, {**NUMBERED, "fewshot": {"n": 4, "sampler": "random"}}, rows))
    for rec in drawn:
        assert len(shots_of(rec)) == 4
        assert rec["input"]["i"] not in shots_of(rec)


def test_random_shots_are_seeded_per_row(here: Path) -> None:
    rows = numbered(12)
    task = {**NUMBERED, "fewshot": {"n": 3, "sampler": "random"}}
    suite = write(here, task, rows)
    first = [shots_of(r) for r in records(suite)]
    assert [shots_of(r) for r in records(suite)] == first  # a second prepare: the same
    assert len({tuple(s) for s in first}) > 1  # rows draw different shots
    assert all(len(set(s)) == 3 for s in first)
    reseeded = write(here, {**NUMBERED, "fewshot": {"n": 3, "sampler": "random", "seed": 7}}, rows)
    assert [shots_of(r) for r in records(reseeded)] != first


# -- what is scored (fake model) ------------------------------------------------------


def run_with(lm: FakeLM, suite: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.setattr("harness.model.language_model.load_model", lambda source, **_: lm)
    results = run_suite(load_suite(suite, check_files=False), show_progress=False)
    return list(results.tasks["t"].records)


def test_partial_scoring_scores_the_suffix_after_each_filled_blank(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = {
        # `is defined`: the suite's field check does not know `choice` yet (see
        # test_benchmark_agreement.CHOICE_NOT_A_FIELD)
        "prompt": "{{ choice if choice is defined }}",
        "choices": {
            "expr": "[sentence[:sentence.index('_')] + option1, "
            "sentence[:sentence.index('_')] + option2]"
        },
        "continuation": "{{ sentence[sentence.index('_') + 1:].strip() }}",
        "label": {"expr": "answer | int - 1"},
    }
    rows = [{"sentence": "Ann beat Bo so _ won.", "option1": "Ann", "option2": "Bo", "answer": "1"}]
    lm = RecordingLM(lambda c, x: -float(len(c)))  # the shorter context wins: " Bo"
    [rec] = run_with(lm, write(here, task, rows), monkeypatch)
    assert lm.pairs == [("Ann beat Bo so Ann", " won."), ("Ann beat Bo so Bo", " won.")]
    assert rec["contexts"] == ["Ann beat Bo so Ann", "Ann beat Bo so Bo"]
    assert (rec["prompt"], rec["continuation"], rec["target_delimiter"]) == ("", "won.", " ")
    assert (rec["loglik"], rec["pred"], rec["gold"]) == ([-18.0, -17.0], 1, 0)


def test_per_row_choices_are_scored_after_the_delimiter_first_on_ties(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[dict[str, Any]] = [
        {"q": "a", "endings": ["xx", "y", "zz"], "label": "1"},  # label as text, as HellaSwag's
        {"q": "b", "endings": ["u", "v"], "label": 1},
    ]
    lm = RecordingLM(lambda c, x: -math.fabs(len(x) - 3))  # " xx" and " zz" tie at 0
    recs = run_with(lm, write(here, ENDINGS, rows), monkeypatch)
    assert lm.pairs == [("a", " xx"), ("a", " y"), ("a", " zz"), ("b", " u"), ("b", " v")]
    assert [(r["pred"], r["gold"]) for r in recs] == [(0, 1), (0, 1)]
    assert [r["stats"]["accuracy"] for r in recs] == [[0.0], [0.0]]


def test_copies_of_the_row_in_the_pool_still_leave_n_shots(here: Path) -> None:
    """A pool holding the example's row more than once (duplicated benchmark rows): every
    copy is left out and ``n`` other rows are still drawn, as lm-eval's samplers do."""
    rows = [{"i": 0, "label": 0}, {"i": 0, "label": 0}, *numbered(4, start=1)]
    task = {**NUMBERED, "fewshot": {"n": 2}}
    recs = records(write(here, task, rows))
    assert [shots_of(r) for r in recs[:2]] == [[1, 2], [1, 2]]
    drawn = records(write(here, {**task, "fewshot": {"n": 4, "sampler": "random"}}, rows))
    for rec in drawn[:2]:
        assert sorted(shots_of(rec)) == [1, 2, 3, 4]

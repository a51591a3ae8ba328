"""Generation metrics on tasks that extract answers (issue 16 point 4): every text metric
compares ``answer`` with ``gold_answers`` when a record has them, else ``prediction``
with ``references``."""

from __future__ import annotations

from typing import Any

import pytest

from harness.metrics import TaskInfo, get
from harness.metrics.text import NO_REFERENCES_ERROR

GEN = TaskInfo("generation")
METRICS = ["exact_match", "bleu", "chrf", "ter", "rouge"]

# GSM8K-like examples: a raw generation, its reference, and what extraction and
# normalization made of both
EXAMPLES = [
    ("3 + 4 = 7 so the answer is 7.\n#### 7", "4 + 3 = 7\n#### 7", "7", "7"),
    ("The total is 1,200 dollars.\n#### 1,200", "12 * 100 = 1200\n#### 1200", "1200", "1200"),
    ("I cannot say.", "2 * 3 = 6\n#### 6", "[invalid]", "6"),
    ("It costs $15 in all.\n#### 15", "5 * 3 = 15\n#### 15", "15", "15"),
]


def _score(name: str, records: list[dict[str, Any]]) -> dict[str, float]:
    metric = get(name)
    return metric.aggregate(metric.stats(records, metric.params, GEN), metric.params, GEN)


def _extracted() -> list[dict[str, Any]]:
    return [
        {"prediction": raw, "references": [ref], "gold_answers": [gold], "answer": answer}
        for raw, ref, answer, gold in EXAMPLES
    ]


@pytest.mark.parametrize("name", METRICS)
def test_answers_are_compared_when_the_record_has_them(name: str) -> None:
    as_answers = [{"prediction": a, "references": [g]} for _, _, a, g in EXAMPLES]
    raw = [{"prediction": r, "references": [ref]} for r, ref, _, _ in EXAMPLES]
    got = _score(name, _extracted())
    assert got == _score(name, as_answers)
    assert got != _score(name, raw)  # the raw generations score otherwise


@pytest.mark.parametrize("name", METRICS)
def test_records_without_answers_compare_the_raw_generation(name: str) -> None:
    raw = [{"prediction": r, "references": [ref]} for r, ref, _, _ in EXAMPLES]
    with_refs_only = [{**rec, "answer": "7"} for rec in raw]  # no gold_answers: no answers
    assert _score(name, with_refs_only) == _score(name, raw)


def test_exact_match_on_answers_counts_the_extracted_matches() -> None:
    assert _score("exact_match", _extracted()) == {"exact_match": 0.75}
    raw = [{"prediction": r, "references": [ref]} for r, ref, _, _ in EXAMPLES]
    assert _score("exact_match", raw) == {"exact_match": 0.0}


def test_a_record_not_yet_run_has_no_answer() -> None:
    """A prepared record (gold answers, no answer yet) compares the empty text."""
    record = {"id": "q1", "references": ["#### 6"], "gold_answers": ["6"]}
    assert _score("exact_match", [record]) == {"exact_match": 0.0}


def test_an_example_without_gold_answers_is_an_error() -> None:
    record = {"id": "q7", "prediction": "x", "references": ["x"], "gold_answers": []}
    with pytest.raises(ValueError) as info:
        _score("bleu", [record])
    assert str(info.value) == NO_REFERENCES_ERROR.format(id="q7")

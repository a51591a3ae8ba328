"""What the classification kind asks the model: the (context, continuation) pairs of
each record, with the target delimiter, partial scoring and the unconditional pairs of
accuracy_mutual_info, checked on a recording fake model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from harness.data.rows import Row
from harness.tasks import prepare, run
from harness.tasks.classification import score_choices, scored_pairs
from tests.tasks.fakes import RecordingLM


def _recording() -> RecordingLM:
    """Scores a pair by minus the length of its continuation (less a hundredth per
    character of context)."""
    return RecordingLM(
        lambda context, continuation: -float(len(continuation)) - 0.01 * len(context)
    )


def _task(**fields: Any) -> SimpleNamespace:
    base = {
        "id": "t",
        "kind": "classification",
        "prompt": "Q: {{ q }}\nA:",
        "choices": SimpleNamespace(field="endings", expr=None),
        "label": "label",
        "id_field": None,
        "metrics": [SimpleNamespace(name="accuracy")],
    }
    return SimpleNamespace(**{**base, **fields})


def test_per_row_choices_are_scored_after_the_default_delimiter() -> None:
    rows = [Row(1, {"q": "sky?", "endings": ["blue", "green"], "label": 0})]
    [rec] = prepare(_task(), rows, "d.jsonl")
    assert rec["prompt"] == "Q: sky?\nA:"
    assert rec["target_delimiter"] == " "
    assert scored_pairs(rec) == [("Q: sky?\nA:", " blue"), ("Q: sky?\nA:", " green")]


def test_a_fixed_list_keeps_its_own_spaces_and_stores_no_delimiter() -> None:
    task = _task(choices=[" no", " yes"], label="label")
    [rec] = prepare(task, [Row(1, {"q": "ok?", "label": 1})], "d.jsonl")
    assert "target_delimiter" not in rec
    assert list(rec) == ["id", "line", "input", "prompt", "choices", "gold"]
    assert scored_pairs(rec) == [("Q: ok?\nA:", " no"), ("Q: ok?\nA:", " yes")]


def test_partial_scoring_scores_the_shared_continuation_after_each_context() -> None:
    task = _task(
        prompt="{{ sentence.split('_')[0] }}{{ choice }}",
        continuation="{{ sentence.split('_')[1].strip() }}",
        choices=SimpleNamespace(field=None, expr="[option1, option2]"),
        label=SimpleNamespace(field=None, expr="answer | int - 1"),
    )
    row = {"sentence": "The cup fell because _ was tipped.", "option1": "it", "option2": "he"}
    [rec] = prepare(task, [Row(3, {**row, "answer": "2"})], "d.jsonl")
    assert rec["gold"] == 1
    assert rec["prompt"] == ""
    assert rec["contexts"] == ["The cup fell because it", "The cup fell because he"]
    assert scored_pairs(rec) == [
        ("The cup fell because it", " was tipped."),
        ("The cup fell because he", " was tipped."),
    ]


def test_run_asks_the_unconditional_pairs_only_for_mutual_info() -> None:
    rows = [Row(1, {"q": "x", "endings": ["a", "bb", "ccc"], "label": 2})]
    lm = _recording()
    plain = _task()
    records = prepare(plain, rows, "d.jsonl")
    run(plain, records, lm, batch_size=4)
    assert lm.pairs == [("Q: x\nA:", " a"), ("Q: x\nA:", " bb"), ("Q: x\nA:", " ccc")]
    assert "loglik_unconditional" not in records[0]

    lm = _recording()
    mi = _task(metrics=[SimpleNamespace(name="accuracy_mutual_info")])
    records = prepare(mi, rows, "d.jsonl")
    run(mi, records, lm, batch_size=4)
    assert lm.pairs[3:] == [("", " a"), ("", " bb"), ("", " ccc")]
    rec = records[0]
    assert rec["loglik"] == [-2.0 - 0.07, -3.0 - 0.07, -4.0 - 0.07]
    assert rec["loglik_unconditional"] == [-2.0, -3.0, -4.0]
    assert rec["pred"] == 0


def test_progress_counts_examples_whatever_their_number_of_choices() -> None:
    records: list[Any] = [
        {"prompt": "p", "choices": ["a", "b"]},
        {"prompt": "q", "choices": ["a", "b", "c", "d"]},
    ]
    seen: list[int] = []
    score_choices(records, _recording(), batch_size=2, advance=seen.append)
    assert sum(seen) == 2

"""harness.tasks: rows -> records, label resolution, row-located errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.data.rows import Row
from harness.errors import UserError
from harness.tasks import prepare, resolve_label, softmax

CHOICES = (" negative", " positive")


def clf(**kw):  # type: ignore[no-untyped-def]
    base = dict(
        kind="classification",
        prompt="Review: {{ text }}\nSentiment:",
        choices=CHOICES,
        label="label",
        id_field=None,
    )
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (2, None),
        (-1, None),
        ("1", 1),
        (" positive", 1),
        ("positive", 1),
        ("neutral", None),
        (1.0, 1),
        (True, None),
    ],
)
def test_resolve_label(value: object, expected: int | None) -> None:
    assert resolve_label(value, CHOICES) == expected


def test_prepare_classification_renders_prompts() -> None:
    rows = [
        Row(line=1, fields={"text": "good", "label": 1}),
        Row(line=2, fields={"text": "bad", "label": "negative"}),
    ]
    recs = prepare(clf(), rows, "d.jsonl")
    assert [r["prompt"] for r in recs] == ["Review: good\nSentiment:", "Review: bad\nSentiment:"]
    assert [r["gold"] for r in recs] == [1, 0]
    assert [r["id"] for r in recs] == ["1", "2"]


def test_prepare_reports_every_bad_row_located() -> None:
    rows = [
        Row(line=3, fields={"text": "x"}),
        Row(line=4, fields={"text": "y", "label": "meh"}),
        Row(line=5, fields={"label": 0}),
        Row(line=6, fields={"text": None, "label": 0}),  # null would render as "None"
    ]
    with pytest.raises(UserError) as err:
        prepare(clf(), rows, "data/reviews.jsonl")
    assert err.value.messages == [
        "data/reviews.jsonl line 3: missing field 'label'",
        "data/reviews.jsonl line 4: label 'meh' is not among the choices (' negative', ' positive')",
        "data/reviews.jsonl line 5: prompt: missing field 'text'",
        "data/reviews.jsonl line 6: prompt: missing field 'text'",
    ]


def test_duplicate_ids_rejected() -> None:
    rows = [
        Row(line=1, fields={"k": "a", "text": "t", "label": 0}),
        Row(line=2, fields={"k": "a", "text": "u", "label": 1}),
    ]
    with pytest.raises(UserError) as err:
        prepare(clf(id_field="k"), rows, "d.csv")
    assert err.value.messages == ["d.csv line 2: duplicate id 'a' (first seen at line 1)"]


def test_generation_references_from_several_fields() -> None:
    task = SimpleNamespace(
        kind="generation", prompt="{{ doc }}", reference=["r1", "r2"], id_field=None
    )
    (rec,) = prepare(task, [Row(line=1, fields={"doc": "d", "r1": "a", "r2": "b"})], "g.jsonl")
    assert rec["references"] == ["a", "b"]


def test_perplexity_text_must_be_non_empty() -> None:
    task = SimpleNamespace(kind="perplexity", text="text", id_field=None)
    with pytest.raises(UserError) as err:
        prepare(task, [Row(line=7, fields={"text": ""})], "w.jsonl")
    assert err.value.messages == ["w.jsonl line 7: field 'text' must be non-empty text"]


def test_prompt_template_is_sandboxed() -> None:
    task = clf(prompt="{{ text.__class__.__mro__ }}")
    with pytest.raises(UserError) as err:
        prepare(task, [Row(line=1, fields={"text": "x", "label": 0})], "d.jsonl")
    assert "d.jsonl line 1: prompt:" in err.value.messages[0]


def test_softmax_is_stable() -> None:
    p = softmax([-1000.0, -1001.0])
    assert sum(p) == pytest.approx(1.0)
    assert p[0] > p[1]

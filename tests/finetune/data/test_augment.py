"""finetune.data.augment: seeded word noise, on training inputs only."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from finetune.config.schema import AugmentationSpec, load_config
from finetune.data.augment import augment, noisy
from finetune.data.curate import curate
from finetune.data.examples import Example
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

ROWS = [
    Example("Review: the movie was really very good\nSentiment:", " positive", "t", 1),
    Example("Review: a boring plot and an awful actor\nSentiment:", " negative", "t", 2),
    Example("", "the team won the game in the city today", "t", 3),
]


def test_noise_is_seeded_and_keeps_line_structure() -> None:
    spec = AugmentationSpec(word_dropout=0.3, swap=0.3, copies=2, seed=7)
    first, again = augment(ROWS, spec), augment(ROWS, spec)
    assert first == again
    assert first[:3] == ROWS  # the originals are kept, copies follow
    assert len(first) == 9 and all(e.augmented for e in first[3:])
    other = augment(ROWS, AugmentationSpec(word_dropout=0.3, swap=0.3, copies=2, seed=8))
    assert [e.prompt for e in other[3:]] != [e.prompt for e in first[3:]]
    for copy in first[3:]:
        if copy.prompt:
            assert copy.prompt.count("\n") == 1 and copy.prompt.endswith("\nSentiment:")
    # the same example gets the same noise wherever it stands
    assert augment(ROWS[::-1], spec)[3:6][::-1] == first[3:6]


def test_only_inputs_change() -> None:
    spec = AugmentationSpec(word_dropout=0.5, swap=0.5, copies=3, seed=0)
    out = augment(ROWS, spec)
    for copy in out[3:]:
        original = ROWS[copy.line - 1]
        if original.prompt:  # a prompt/completion row: the target stays clean
            assert copy.target == original.target
        else:  # a text row: its text is the input
            assert copy.prompt == ""
    assert any(c.prompt != ROWS[c.line - 1].prompt for c in out[3:] if c.prompt)


def test_word_dropout_and_swap_exactly() -> None:
    text = "one two three four"
    # no noise: unchanged; full swap: neighbours swapped pairwise
    assert noisy(text, random.Random(0), 0.0, 0.0) == text
    assert noisy(text, random.Random(0), 0.0, 0.999999) == "two one four three"
    # dropout never empties a line
    assert len(noisy(text, random.Random(0), 0.999999, 0.0).split()) == 1
    assert noisy("  a b\n c  ", random.Random(1), 0.0, 0.0) == "  a b\n c  "


def test_curation_augments_training_examples_only(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = new_task_rows(12)
    write_jsonl(tmp_path / "train.jsonl", rows[:8])
    write_jsonl(tmp_path / "val.jsonl", rows[8:10])
    write_jsonl(tmp_path / "orig.jsonl", [{"text": "the movie was good and the plot was fun"}] * 3)
    path = write_config(
        tmp_path,
        tiny_gpt2,
        data={"train": ["train.jsonl"], "validation": "val.jsonl"},
        augmentation={"word_dropout": 0.4, "swap": 0.4, "copies": 1, "seed": 3},
        anti_forgetting={"replay": {"data": ["orig.jsonl"], "fraction": 0.2}},
    )
    curated = curate(load_config(path))
    assert len(curated.train) == 16 and sum(e.augmented for e in curated.train) == 8
    assert curated.report["augmentation"] == {"originals": 8, "added": 8}
    assert [(e.prompt, e.target) for e in curated.validation] == [
        (r["prompt"], r["completion"]) for r in rows[8:10]
    ]
    assert not any(e.augmented for e in [*curated.validation, *curated.replay])
    assert {e.target for e in curated.replay} == {"the movie was good and the plot was fun"}
    assert curate(load_config(path)).train == curated.train  # deterministic

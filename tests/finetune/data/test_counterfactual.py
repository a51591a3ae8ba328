"""finetune.data.counterfactual: group-swapped copies of the training examples."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from finetune.config.schema import CounterfactualSpec, load_config
from finetune.data.counterfactual import augment_counterfactual, swapped_copies
from finetune.data.curate import curate
from finetune.data.examples import Example
from harness.errors import UserError
from tests.finetune.conftest import write_config, write_jsonl

SPEC = CounterfactualSpec(swaps={"she": "he", "her": "his", "Mary": "John"})
ROWS = [
    Example("Review: Mary said she loved her lamp.\nSentiment:", " positive", "t.jsonl", 1),
    Example("Review: HE hated it, said John.\nSentiment:", " negative", "t.jsonl", 2),
    Example("Review: the lamp arrived on time.\nSentiment:", " positive", "t.jsonl", 3),
    Example("", "she and he went home", "t.jsonl", 4),
]


def test_terms_swap_both_ways_with_their_case_and_the_completion_kept() -> None:
    copies = swapped_copies(ROWS, SPEC)
    assert [c.prompt for c in copies[:2]] == [
        "Review: John said he loved his lamp.\nSentiment:",
        "Review: SHE hated it, said Mary.\nSentiment:",
    ]
    assert [c.target for c in copies[:2]] == [" positive", " negative"]
    # a text row is its own input: its text is swapped ("she" and "he" trade places)
    assert (copies[2].prompt, copies[2].target) == ("", "he and she went home")
    # the row naming no term gets no copy; copies are marked and named as such
    assert len(copies) == 3 and all(c.augmented for c in copies)
    assert copies[0].where == "t.jsonl (swapped) line 1"


def test_a_copy_keeps_its_originals_fields_and_weight() -> None:
    weighted = Example("Review: she ok\nSentiment:", " positive", "t", 1, {"g": "f"}, 2.5)
    (copy,) = swapped_copies([weighted], SPEC)
    assert (copy.weight, copy.fields) == (2.5, {"g": "f"})


def test_after_augmentation_each_term_meets_each_label_alike() -> None:
    """The point of it: on a biased split (she mostly positive) the terms no longer
    predict the label."""
    rows = [
        Example(f"Review: {w} {i}\nSentiment:", lab, "t", i)
        for i, (w, lab) in enumerate(
            [("she", " positive")] * 8 + [("she", " negative")] * 2 + [("he", " negative")] * 7
        )
    ]
    out, report = augment_counterfactual(rows, SPEC, [], load_leakage())
    counts = Counter((e.prompt.split()[1], e.target) for e in out)
    assert counts[("she", " positive")] == counts[("he", " positive")] == 8
    assert counts[("she", " negative")] == counts[("he", " negative")] == 9
    assert report == {
        "swaps": {"she": "he", "her": "his", "Mary": "John"},
        "originals": 17,
        "unchanged": 0,
        "added": 17,
        "dropped_leaking": 0,
    }


def load_leakage():  # the defaults of curation.leakage
    from finetune.config.schema import LeakageSpec

    return LeakageSpec()


def test_copies_that_would_leak_into_the_evaluation_data_are_dropped(tmp_path: Path) -> None:
    evaluation = write_jsonl(
        tmp_path / "eval.jsonl",
        [{"text": "john said he loved his lamp and the colour was great", "label": 1}],
    )
    rows = [
        Example(
            "Review: Mary said she loved her lamp and the colour was great\nSentiment:",
            " positive",
            "t",
            1,
        ),
        Example("Review: she disliked the slow service\nSentiment:", " negative", "t", 2),
    ]
    out, report = augment_counterfactual(rows, SPEC, [str(evaluation)], load_leakage())
    assert (report["added"], report["dropped_leaking"]) == (1, 1)
    assert [e.prompt for e in out[2:]] == ["Review: he disliked the slow service\nSentiment:"]


def test_curation_adds_the_copies_after_reweighting(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [
        {"prompt": f"Review: {w} liked item {i}\nSentiment:", "completion": c, "g": g, "y": y}
        for i, (w, c, g, y) in enumerate(
            [("she", " positive", "f", 1)] * 6
            + [("she", " negative", "f", 0)] * 2
            + [("he", " negative", "m", 0)] * 6
            + [("he", " positive", "m", 1)] * 2
        )
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(
        tmp_path / "val.jsonl", [{"prompt": "Review: fine\nSentiment:", "completion": " positive"}]
    )
    path = write_config(
        tmp_path,
        tiny_gpt2,
        data={"train": ["train.jsonl"], "validation": "val.jsonl"},
        fairness={
            "reweight": {"group": "g", "label": "y"},
            "counterfactual": {"swaps": {"she": "he"}},
        },
    )
    curated = curate(load_config(path))
    assert len(curated.train) == 32 and sum(e.augmented for e in curated.train) == 16
    assert curated.report["counterfactual"]["added"] == 16
    # weighted, "she" and "he" now meet each label with the same total weight
    mass = Counter()
    for e in curated.train:
        mass[(e.prompt.split()[1], e.target)] += e.weight
    assert mass[("she", " positive")] == pytest.approx(mass[("he", " positive")])
    assert mass[("she", " negative")] == pytest.approx(mass[("he", " negative")])
    assert mass[("she", " positive")] == pytest.approx(mass[("she", " negative")])


def test_an_empty_swap_table_is_a_located_error(tmp_path: Path, tiny_gpt2: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "completion": " b"}] * 4)
    path = write_config(tmp_path, tiny_gpt2, fairness={"counterfactual": {"swaps": {}}})
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "fairness.counterfactual.swaps" in str(err.value.messages[0])
    assert "at least one pair" in str(err.value.messages[0])

"""finetune.data.leakage: exact and n-gram overlap with evaluation data, --fail-on-leakage."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from finetune.config.schema import load_config
from finetune.data.curate import curate
from finetune.data.examples import Example
from finetune.data.leakage import check_leakage
from tests.finetune.conftest import write_config, write_jsonl

EVAL = [
    {"text": "the movie was great and the actor was good too", "label": 1},
    {"text": "boring plot", "label": 0},
    {"text": "a very long story with the team and the city and the market", "label": 1},
    {"text": "she loved the film but he hated it", "label": 0},
    {"text": "quite fun with a good plot", "label": 1},
]
TRAIN = [
    # (prompt, target, expected: None or (kind, eval line, overlap))
    (
        "Review: the movie was great and the actor was good too\nSentiment:",
        " positive",
        ("ngram", 1, 1.0),
    ),
    ("", "boring plot", ("exact", 2, 1.0)),
    ("Boring plot!", " negative", ("exact", 2, 1.0)),  # the prompt alone equals it
    ("a very long story with the team and the city", " negative", None),  # 3 of 4 8-grams: 0.75
    ("", "She loved the film, but he hated it.", ("exact", 4, 1.0)),
    (
        "Review: quite fun with a good plot\nSentiment:",
        " positive",
        ("ngram", 5, 1.0),
    ),  # short text
    ("Review: the market fell today\nSentiment:", " negative", None),
    ("", "boring", None),  # shorter than 4 words: only exact matches count
]


def examples() -> list[Example]:
    return [Example(p, t, "train.jsonl", i) for i, (p, t, _) in enumerate(TRAIN, start=1)]


def test_exact_and_ngram_matches_are_counted_and_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "eval.jsonl", EVAL)
    report = check_leakage(examples(), ["eval.jsonl"], n=8, threshold=0.8)
    expected = [
        {
            "train": f"train.jsonl line {i}",
            "eval": f"eval.jsonl line {m[1]}",
            "kind": m[0],
            "overlap": m[2],
        }
        for i, (_, _, m) in enumerate(TRAIN, start=1)
        if m is not None
    ]
    assert [leak.as_dict() for leak in report.leaks] == expected
    assert (len(report.leaks), report.exact, report.ngram) == (5, 3, 2)
    assert report.as_dict()["eval_texts"] == 5
    # the near miss leaks at a lower threshold
    lower = check_leakage(examples(), ["eval.jsonl"], n=8, threshold=0.75)
    assert [leak.train for leak in lower.leaks if leak.train.endswith("line 4")] == [
        "train.jsonl line 4"
    ]


def test_a_suite_names_its_evaluation_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "suite" / "eval.jsonl", EVAL)
    suite = tmp_path / "suite" / "release.yaml"
    suite.write_text(
        # the suite's model is not needed (nor loaded) for its data
        "schema_version: 1\nname: s\nmodel: {path: ./not-here}\n"
        "tasks:\n  - {id: lm, kind: perplexity, data: eval.jsonl, text: text}\n"
    )
    report = check_leakage(examples(), [str(suite)], n=8, threshold=0.8)
    assert (len(report.leaks), report.exact, report.ngram) == (5, 3, 2)
    assert report.eval_sources == ["suite/eval.jsonl"]


def write_leaky_run(folder: Path, base: Path) -> Path:
    write_jsonl(folder / "eval.jsonl", EVAL)
    write_jsonl(
        folder / "train.jsonl",
        [{"prompt": p, "completion": t} if p else {"text": t} for p, t, _ in TRAIN],
    )
    return write_config(folder, base)


def test_drop_removes_the_leaking_examples(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_leaky_run(tmp_path, tiny_gpt2)
    path = write_config(
        tmp_path, tiny_gpt2, eval_data=["eval.jsonl"], curation={"leakage": {"drop": True}}
    )
    curated = curate(load_config(path), load_config(path).eval_data)
    assert curated.report["leakage"]["dropped"] == 5
    kept = {e.line for e in [*curated.train, *curated.validation]}
    assert kept == {4, 7, 8}


def test_real_data_sst2_dev_sentences_in_training_prompts(realdata: Path) -> None:
    """20 SST-2 dev sentences pasted into a training template are found in dev.tsv; 20
    train sentences are not (SST-2's train and dev come from different reviews)."""

    def read(name: str) -> list[str]:
        with open(realdata / "sst2" / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        return [r["sentence"] for r in rows if len(r["sentence"].split()) >= 10]

    dev, train = read("dev.tsv")[:20], read("train.tsv")[:20]
    rows = [
        Example(f"Review: {s}\nSentiment:", " positive", "mix.jsonl", i)
        for i, s in enumerate(dev + train, 1)
    ]
    report = check_leakage(rows, [str(realdata / "sst2" / "dev.tsv")], n=8, threshold=0.8)
    assert sorted(int(leak.train.rsplit(" ", 1)[1]) for leak in report.leaks) == list(range(1, 21))
    assert report.ngram == 20 and report.eval_texts == 872

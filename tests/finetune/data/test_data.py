"""finetune.data.examples and finetune.data.curate: row errors, deduplication, the validation split."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config.schema import load_config
from finetune.data.curate import curate
from finetune.data.examples import Example, dedup, load_examples, normalize, split_validation
from harness.errors import UserError
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl

NAMES = ("prompt", "completion", "text")


def test_malformed_and_empty_rows_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text(
        '{"prompt": "p", "completion": "c"}\n'  # 1 ok
        '{"prompt": "p"}\n'  # 2 no completion
        '{"prompt": "p", "completion": "   "}\n'  # 3 empty completion
        '{"text": 5}\n'  # 4 not text
        '{"title": "x"}\n'  # 5 neither format
        "\n"  # 6 blank lines are skipped
        '{"text": "fine"}\n'  # 7 ok
        "{broken\n"  # 8 invalid JSON
    )
    (tmp_path / "b.csv").write_text("prompt,completion\nhello,world\n,x\n")
    with pytest.raises(UserError) as exc:
        load_examples(["a.jsonl", "b.csv"], NAMES)
    assert exc.value.messages == [
        "a.jsonl line 8: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    ]
    (tmp_path / "a.jsonl").write_text((tmp_path / "a.jsonl").read_text().replace("{broken\n", ""))
    with pytest.raises(UserError) as exc:
        load_examples(["a.jsonl", "b.csv"], NAMES)
    assert exc.value.messages == [
        "a.jsonl line 2: missing field 'completion'",
        "a.jsonl line 3: field 'completion' is empty",
        "a.jsonl line 4: field 'text' must be text, got int",
        "a.jsonl line 5: needs fields 'prompt' and 'completion', or 'text'",
        "b.csv line 3: field 'prompt' is empty",
    ]


def ex(prompt: str, target: str, line: int) -> Example:
    return Example(prompt, target, "t.jsonl", line)


def test_dedup_counts_exact_and_normalized_duplicates() -> None:
    examples = [
        ex("Q: the movie?", " good", 1),
        ex("Q: the movie?", " good", 2),  # exact duplicate of 1
        ex("q:  THE movie", " Good!", 3),  # normalized duplicate of 1
        ex("Q: the film?", " good", 4),
        ex("Q: the film?", " good", 5),  # exact duplicate of 4
        ex("Q: the film?", " bad", 6),  # different target: kept
        ex("Q: café", " ok", 7),
        ex("Q: cafe\u0301", " ok", 8),  # NFKC: the same word
    ]
    kept, report = dedup(examples)
    assert [e.line for e in kept] == [1, 4, 6, 7]
    assert (report.exact, report.normalized) == (2, 2)
    assert report.listed == [
        {"kind": "exact", "removed": "t.jsonl line 2", "duplicate_of": "t.jsonl line 1"},
        {"kind": "normalized", "removed": "t.jsonl line 3", "duplicate_of": "t.jsonl line 1"},
        {"kind": "exact", "removed": "t.jsonl line 5", "duplicate_of": "t.jsonl line 4"},
        {"kind": "normalized", "removed": "t.jsonl line 8", "duplicate_of": "t.jsonl line 7"},
    ]
    assert normalize("  Hello,   WORLD!! ") == "hello world"


def test_validation_split_is_seeded_and_disjoint() -> None:
    examples = [ex(f"p{i}", " c", i) for i in range(1, 21)]
    train, val = split_validation(examples, 0.25, seed=3, where="t.jsonl")
    again = split_validation(examples, 0.25, seed=3, where="t.jsonl")
    assert (train, val) == again
    assert len(val) == 5 and len(train) == 15
    assert {e.line for e in train} | {e.line for e in val} == set(range(1, 21))
    assert split_validation(examples, 0.25, seed=4, where="t.jsonl")[1] != val
    with pytest.raises(UserError) as exc:
        split_validation(examples[:1], 0.25, seed=3, where="t.jsonl")
    assert exc.value.messages == ["t.jsonl: 1 usable row(s); a validation split needs at least 2"]


def test_curation_report(tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rows = new_task_rows(10)
    write_jsonl(
        tmp_path / "train.jsonl", [*rows, rows[0], {**rows[1], "prompt": rows[1]["prompt"].upper()}]
    )
    write_jsonl(tmp_path / "val.jsonl", [rows[2], new_task_rows(11)[10]])
    path = write_config(
        tmp_path, tiny_gpt2, data={"train": ["train.jsonl"], "validation": "val.jsonl"}
    )
    curated = curate(load_config(path))
    report = curated.report
    assert report["train_rows"] == 12
    assert (report["duplicates"]["exact"], report["duplicates"]["normalized"]) == (1, 1)
    # a validation row that repeats a training row would hide overfitting: dropped
    assert report["validation_overlap"]["removed"] == 1
    assert report["validation_overlap"]["listed"] == [
        {"removed": "val.jsonl line 1", "duplicate_of": "train.jsonl line 3"}
    ]
    assert (len(curated.train), len(curated.validation)) == (10, 1)


def test_datasets_source_and_file_hashes(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `datasets` source (the json builder on a local file) is read like a file, its
    rows located by index, and its local data files hashed for the manifest."""
    from finetune.data.examples import file_hashes
    from harness.data.rows import sha256_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    write_jsonl(tmp_path / "data" / "rows.jsonl", new_task_rows(10))
    source = {"dataset": "json", "data_files": "data/rows.jsonl", "split": "train"}
    config = load_config(
        write_config(tmp_path, tiny_gpt2, data={"train": [source], "val_split": 0.2})
    )
    curated = curate(config)
    assert len(curated.train) + len(curated.validation) == 10
    assert curated.train[0].file == "dataset 'json' split 'train'"
    (entry,) = file_hashes("train", config.data.train)
    assert entry["files"] == [
        {
            "path": str(tmp_path / "data" / "rows.jsonl"),
            "sha256": sha256_file(tmp_path / "data" / "rows.jsonl"),
        }
    ]

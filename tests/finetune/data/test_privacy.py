"""finetune.data.privacy through curation: the PII scan (report, redact, fail), canaries and
the extraction sample, as they reach the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.cli import main
from finetune.config.schema import load_config
from finetune.data.curate import curate
from harness.errors import UserError
from tests.finetune.conftest import write_config, write_jsonl
from tests.sensitive.pii_planted import PLANTED, clean_sentences, planted_sentences


def pii_rows() -> tuple[list[dict[str, Any]], set[int]]:
    """Prompt/completion rows, the planted ones at known line numbers (1-based): the PII
    sits in the completion, except for e-mails, which sit in the prompt."""
    rows: list[dict[str, Any]] = []
    planted_lines = set()
    clean = clean_sentences(40)
    planted = planted_sentences()
    for i in range(40):
        rows.append({"prompt": f"Review: {clean[i]}\nLabel:", "completion": " ok"})
        if i < len(planted):
            kind, _value, sentence = planted[i]
            if kind == "EMAIL_ADDRESS":
                rows.append({"prompt": f"Review: {sentence}\nLabel:", "completion": " ok"})
            else:
                rows.append({"prompt": "Review: fine\nLabel:", "completion": f" {sentence}"})
            planted_lines.add(len(rows))
    return rows, planted_lines


def config_with(tmp_path: Path, base: Path, **curation: Any) -> Path:
    rows, _ = pii_rows()
    write_jsonl(tmp_path / "train.jsonl", rows)
    return write_config(tmp_path, base, curation=curation, data={"train": ["train.jsonl"]})


def test_report_counts_exactly_what_was_planted(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows, planted = pii_rows()
    curated = curate(load_config(config_with(tmp_path, tiny_gpt2)))
    pii = curated.report["pii"]
    assert pii["mode"] == "report"
    assert pii["counts"] == {k: len(v) for k, v in PLANTED.items()}
    assert (pii["rows_scanned"], pii["rows_with_pii"]) == (len(rows), len(planted))
    assert pii["by_role"]["train"] == {
        "rows": len(rows),
        "rows_with_pii": len(planted),
        "counts": {k: len(v) for k, v in sorted(PLANTED.items())},
    }
    assert {int(r["where"].rsplit(" ", 1)[1]) for r in pii["listed"]} == planted
    # the manifest never repeats the personal data itself
    text = json.dumps(pii)
    assert not [v for values in PLANTED.values() for v in values if v in text]
    # report mode trains on the rows as they are
    kept = {ex.text for ex in [*curated.train, *curated.validation]}
    assert {r["prompt"] + r["completion"] for r in rows} == kept


def test_redact_replaces_planted_spans_and_leaves_clean_rows_identical(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows, planted = pii_rows()
    curated = curate(load_config(config_with(tmp_path, tiny_gpt2, pii="redact")))
    by_line = {ex.line: ex for ex in [*curated.train, *curated.validation]}
    assert len(by_line) == len(rows)  # redaction made no duplicates here
    values = {v: k for k, vs in PLANTED.items() for v in vs}
    for line, ex in by_line.items():
        row = rows[line - 1]
        if line not in planted:
            assert (ex.prompt, ex.target) == (row["prompt"], row["completion"])
            assert ex.prompt.encode() == row["prompt"].encode()
            continue
        original = row["prompt"] + row["completion"]
        (value,) = [v for v in values if v in original]
        assert ex.text == original.replace(value, f"<{values[value]}>")
    assert curated.report["pii"]["counts"] == {k: len(v) for k, v in PLANTED.items()}


def test_fail_names_each_row_and_type(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"prompt": "Review: a fine film\nLabel:", "completion": " ok"},
            {"prompt": "mail jane.doe@example.com or a.b@uni.edu", "completion": " ok"},
            {"text": "call (212) 555-0198, card 4111 1111 1111 1111"},
            {"prompt": "Review: dull\nLabel:", "completion": " from 192.168.1.20"},
        ],
    )
    path = write_config(tmp_path, tiny_gpt2, curation={"pii": "fail"})
    with pytest.raises(UserError) as exc:
        curate(load_config(path))
    tail = "(curation.pii is 'fail'; 'redact' replaces it)"
    assert exc.value.messages == [
        f"train.jsonl line 2: personal data in 'prompt': EMAIL_ADDRESS x2 {tail}",
        f"train.jsonl line 3: personal data in 'text': CREDIT_CARD, PHONE_NUMBER {tail}",
        f"train.jsonl line 4: personal data in 'completion': IP_ADDRESS {tail}",
    ]


def test_fail_is_exit_2_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()  # no weights: loading it would be another error
    write_jsonl(
        tmp_path / "train.jsonl",
        [{"text": "a quiet film"}, {"text": "ssn 536-22-8765"}, {"text": "a loud film"}],
    )
    path = write_config(tmp_path, tmp_path / "model", curation={"pii": "fail"})
    assert main(["train", str(path), "--no-progress"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: train.jsonl line 2: personal data in 'text': US_SSN "
        "(curation.pii is 'fail'; 'redact' replaces it)"
    ]


def test_validation_and_replay_rows_are_scanned_too(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"text": f"film {i}"} for i in range(6)])
    write_jsonl(tmp_path / "val.jsonl", [{"text": "ask 10.0.0.7"}, {"text": "a film"}])
    write_jsonl(tmp_path / "old.jsonl", [{"text": "mail a.b@uni.edu"}, {"text": "old"}])
    path = write_config(
        tmp_path,
        tiny_gpt2,
        data={"train": ["train.jsonl"], "validation": "val.jsonl"},
        anti_forgetting={"replay": {"data": ["old.jsonl"], "fraction": 0.2}},
        curation={"pii": "redact"},
    )
    curated = curate(load_config(path))
    by_role = curated.report["pii"]["by_role"]
    assert by_role["validation"]["counts"] == {"IP_ADDRESS": 1}
    assert by_role["replay"]["counts"] == {"EMAIL_ADDRESS": 1}
    assert curated.validation[0].text == "ask <IP_ADDRESS>"
    assert curated.replay[0].text == "mail <EMAIL_ADDRESS>"


def test_canaries_are_inserted_after_dedup_and_recorded(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"text": s} for s in clean_sentences(20)])
    canaries = {"count": 2, "repeats": 5, "controls": 1, "seed": 7, "digits": 4}
    path = write_config(
        tmp_path,
        tiny_gpt2,
        memorization={"canaries": canaries, "extraction_examples": 4},
        data={"train": ["train.jsonl"], "val_split": 0.2},
    )
    curated = curate(load_config(path))
    record = curated.memorization["canaries"]
    assert (record["prefix"], record["digits"], record["space_size"]) == ("my PIN is", 4, 10_000)
    ids = [c["id"] for c in record["canaries"]]
    assert ids == ["canary-0", "canary-1", "control-0"]
    assert [c["inserted"] for c in record["canaries"]] == [True, True, False]
    assert len({c["secret"] for c in record["canaries"]}) == 3
    for c in record["canaries"]:
        digits = c["secret"].split(" ")
        assert len(digits) == 4 and all(d.isdigit() and len(d) == 1 for d in digits)
        assert c["text"] == f"my PIN is {c['secret']}"
        copies = [ex for ex in curated.train if ex.text == c["text"]]
        assert len(copies) == (5 if c["inserted"] else 0)
        assert all(ex.prompt == "my PIN is" and ex.file == "canaries" for ex in copies)
    assert not [ex for ex in curated.validation if ex.file == "canaries"]
    assert curated.report["canary_rows"] == 10
    assert curated.report["train_examples"] == 16 + 10
    # the same seed gives the same secrets
    assert curate(load_config(path)).memorization == curated.memorization
    sample = curated.memorization["extraction_examples"]
    assert len(sample) == 4
    train_rows = {ex.where: ex for ex in curated.train if ex.file != "canaries"}
    for entry in sample:
        ex = train_rows[entry["where"]]
        assert (entry["prompt"], entry["target"]) == (ex.prompt, ex.target)


def test_no_memorization_records_by_default(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", [{"text": s} for s in clean_sentences(8)])
    curated = curate(load_config(write_config(tmp_path, tiny_gpt2)))
    assert curated.memorization == {"extraction_examples": [], "canaries": None}
    assert "canary_rows" not in curated.report

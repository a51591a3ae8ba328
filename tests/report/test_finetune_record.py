"""The fine-tune manifest and history of an adapter folder, embedded in results.json."""

from __future__ import annotations

import json
from pathlib import Path

from harness.results.finetune_record import finetune_record
from harness.results.schema import Results
from harness.results.store import dumps


def test_absent(tmp_path: Path) -> None:
    assert finetune_record(None) is None
    assert finetune_record(str(tmp_path)) is None


def test_embedded_with_hashes(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"seed": 3, "best": NaN, "lr": Infinity}')
    (tmp_path / "history.jsonl").write_text(
        '{"step": 1, "epoch": 0.1, "train_loss": 2.0, "val_loss": NaN}\n'
        "\n"
        "not json\n"
        "[1, 2]\n"
        '{"step": 2, "epoch": 0.2, "train_loss": 1.5, "val_loss": 1.7}\n'
    )
    rec = finetune_record(str(tmp_path))
    assert rec is not None
    assert rec["manifest"] == {"seed": 3, "best": None, "lr": None}
    assert [h["step"] for h in rec["history"]] == [1, 2]
    assert rec["history"][0]["val_loss"] is None
    assert rec["problems"] == [
        "history.jsonl line 3: not a JSON object",
        "history.jsonl line 4: not a JSON object",
    ]
    assert [Path(f["path"]).name for f in rec["files"]] == ["manifest.json", "history.jsonl"]
    assert all(len(f["sha256"]) == 64 for f in rec["files"])
    json.loads(dumps(Results(schema_version=1, tasks={}, finetune=rec)))  # strict JSON (no NaN)


def test_bad_manifest_is_a_problem_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b"\xff\xfe{")
    rec = finetune_record(str(tmp_path))
    assert rec is not None and rec["manifest"] is None and rec["history"] == []
    assert rec["problems"][0].startswith("manifest.json: not valid JSON")
    (tmp_path / "manifest.json").write_text("[1]")
    rec = finetune_record(str(tmp_path))
    assert rec is not None and rec["problems"] == ["manifest.json: not a JSON object"]

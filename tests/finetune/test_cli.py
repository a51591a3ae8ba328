"""finetune.cli: argument parsing, exit codes, `python -m finetune`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.data.leakage import LEAKAGE_FOUND
from tests.finetune.conftest import write_config
from tests.finetune.data.test_leakage import write_leaky_run


def test_python_m_finetune_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "finetune", "train", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for flag in ("--eval-data", "--fail-on-leakage", "--resume", "--out"):
        assert flag in proc.stdout


def test_bad_config_is_exit_2_with_located_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("schema_version: 1\nname: x\nbase_model: {path: ./nope}\n")
    assert main(["train", "c.yaml"]) == 2
    # files are checked once the schema is valid
    assert capsys.readouterr().err.splitlines() == [
        "error: c.yaml:1:1: data: missing required field"
    ]
    (tmp_path / "c.yaml").write_text(
        "schema_version: 1\nname: x\nbase_model: {path: ./nope}\ndata: {train: t.jsonl}\n"
    )
    assert main(["train", "c.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: c.yaml:3:20: base_model.path: folder not found: {tmp_path}/nope",
        f"error: c.yaml:4:15: data.train[0]: file not found: {tmp_path}/t.jsonl",
    ]


def test_malformed_rows_are_exit_2(
    tiny_gpt2: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": ""}\n')
    assert main(["train", str(write_config(tmp_path, tiny_gpt2))]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: train.jsonl line 2: field 'prompt' is empty",
        "error: train.jsonl line 2: missing field 'completion'",
    ]


@pytest.mark.slow
def test_train_with_out_writes_there(
    tiny_gpt2: Path, new_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(new_task)
    config = write_config(new_task, tiny_gpt2, training={"max_steps": 2, "eval_steps": 1})
    assert main(["train", str(config), "--out", "elsewhere", "--no-progress"]) == 0
    manifest = json.loads((new_task / "elsewhere" / "manifest.json").read_text())
    assert manifest["config"]["output"] == str(new_task / "elsewhere")
    assert main(["train", str(config), "--out", "elsewhere"]) == 2  # a run is there
    assert main(["train", str(config), "--out", "elsewhere", "--overwrite", "--no-progress"]) == 0


def test_fail_on_leakage_exits_2_with_the_leaks(
    tmp_path: Path,
    tiny_gpt2: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_leaky_run(tmp_path, tiny_gpt2)
    code = main(
        ["train", str(config), "--eval-data", "eval.jsonl", "--fail-on-leakage", "--no-progress"]
    )
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    head = LEAKAGE_FOUND.format(n=5, exact=3, ngram=2)
    assert err[0] == f"error: {head}"
    assert err[1:] == [
        "error: train.jsonl line 1: ngram match with eval.jsonl line 1 (overlap 1.00)",
        "error: train.jsonl line 2: exact match with eval.jsonl line 2 (overlap 1.00)",
        "error: train.jsonl line 3: exact match with eval.jsonl line 2 (overlap 1.00)",
        "error: train.jsonl line 5: exact match with eval.jsonl line 4 (overlap 1.00)",
        "error: train.jsonl line 6: ngram match with eval.jsonl line 5 (overlap 1.00)",
    ]
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def test_missing_eval_data_is_exit_2(
    tmp_path: Path,
    tiny_gpt2: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_leaky_run(tmp_path, tiny_gpt2)
    assert main(["train", str(config), "--eval-data", "nope.jsonl"]) == 2
    assert (
        capsys.readouterr().err
        == f"error: --eval-data nope.jsonl: file not found: {tmp_path}/nope.jsonl\n"
    )

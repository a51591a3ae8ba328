"""Resume: a run killed mid-way and restarted with --resume ends where an uninterrupted
run (same seed) ends, through dropout, replay sampling, augmentation and early stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from finetune.cli import main
from finetune.config.schema import load_config
from finetune.train.run import CONFIG_CHANGED, train
from harness.errors import UserError
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl


class Interrupt(TrainerCallback):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the end of a given step."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.at:
            raise KeyboardInterrupt


def configure(folder: Path, base: Path) -> Path:
    write_jsonl(folder / "train.jsonl", new_task_rows(32))
    write_jsonl(
        folder / "orig.jsonl", [{"text": f"the movie number {i} was good"} for i in range(20)]
    )
    return write_config(
        folder,
        base,
        lora={"dropout": 0.1},
        training={"max_steps": 10, "eval_steps": 2, "early_stopping_patience": 3},
        anti_forgetting={"replay": {"data": ["orig.jsonl"], "fraction": 0.2}},
        augmentation={"word_dropout": 0.2, "swap": 0.2},
    )


@pytest.mark.slow
def test_resumed_run_ends_like_an_uninterrupted_one(
    tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = train(load_config(configure(tmp_path / "a", tiny_gpt2)))

    config_b = configure(tmp_path / "b", tiny_gpt2)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(config_b), callbacks=[Interrupt(at=5)])
    checkpoints = sorted(
        p.name for p in (tmp_path / "b" / "out" / "checkpoints").glob("checkpoint-*")
    )
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "b" / "out" / "manifest.json").exists()

    assert main(["train", str(config_b), "--resume", "--no-progress"]) == 0
    resumed = load_config(config_b).output_dir
    import json

    manifest = json.loads((resumed / "manifest.json").read_text())
    history = [json.loads(line) for line in (resumed / "history.jsonl").read_text().splitlines()]
    assert abs(manifest["final_val_loss"] - whole.manifest["final_val_loss"]) < 1e-6
    assert abs(manifest["best_val_loss"] - whole.manifest["best_val_loss"]) < 1e-6
    assert manifest["best_step"] == whole.manifest["best_step"]
    assert [h["step"] for h in history] == [h["step"] for h in whole.history]
    for got, want in zip(history, whole.history, strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=1e-6)
        assert got["train_loss"] == pytest.approx(want["train_loss"], abs=1e-6)


def test_resume_refuses_a_changed_config(
    tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = configure(tmp_path, tiny_gpt2)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(path), callbacks=[Interrupt(at=3)])
    path.write_text(path.read_text().replace("lr: 0.01", "lr: 0.02"))
    with pytest.raises(UserError) as exc:
        train(load_config(path), resume=True)
    assert exc.value.messages == [CONFIG_CHANGED.format(out="out", fields="training")]

"""Issue #23 point 4: the default evaluation schedule (``training.eval_steps: auto``)
gives the learning-curve diagnosis enough points on any run length: about 10
evaluations per run, or one per epoch when epochs are shorter (whichever is denser).
The old default (every 50 steps) left a 16-step run with one point: ``too_short``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finetune.config.schema import BAD_EVAL_STEPS, TrainingSpec, load_config
from finetune.train.run import train
from finetune.train.trainer import auto_eval_steps
from harness.config.schema_base import BOOL_NOT_NUMBER
from harness.data.rows import display_path
from harness.errors import UserError
from tests.finetune.conftest import new_task_rows, write_config, write_jsonl


def test_default_is_auto() -> None:
    assert TrainingSpec().eval_steps == "auto"


@pytest.mark.parametrize(
    ("max_steps", "per_epoch", "expected"),
    [
        (16, 3, 2),  # ~10 per run: every 2 steps (8 evaluations)
        (1000, 400, 100),  # ~10 per run
        (1000, 50, 50),  # 20 epochs of 50 steps: every epoch is denser
        (5, 100, 1),  # a run shorter than 10 steps: every step
        (1, 1, 1),
    ],
)
def test_auto_schedule(max_steps: int, per_epoch: int, expected: int) -> None:
    assert auto_eval_steps(max_steps, per_epoch) == expected


def test_explicit_steps_still_accepted() -> None:
    assert TrainingSpec(eval_steps=7).eval_steps == 7


@pytest.mark.parametrize("bad", ["sometimes", 0, 2.5, "'3'"])
def test_bad_eval_steps_is_one_config_error(tiny_gpt2: Path, tmp_path: Path, bad: object) -> None:
    path = write_config(tmp_path, tiny_gpt2)
    text = path.read_text(encoding="utf-8").replace("eval_steps: 2", f"eval_steps: {bad}")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_config(path)
    line = text.splitlines().index(f"  eval_steps: {bad}") + 1
    assert (
        str(caught.value)
        == f"{display_path(path)}:{line}:15: training.eval_steps: {BAD_EVAL_STEPS}"
    )


def test_boolean_eval_steps_is_refused() -> None:
    with pytest.raises(ValueError, match=BOOL_NOT_NUMBER):
        TrainingSpec(eval_steps=True)


def _default_schedule_config(folder: Path, base: Path, **training: object) -> Path:
    path = write_config(folder, base, training=training)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    del config["training"]["eval_steps"]  # the default schedule
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_default_schedule_gives_a_16_step_run_enough_points(
    tiny_gpt2: Path, tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "train.jsonl", new_task_rows(32))  # 24 training rows: 3 steps/epoch
    config = load_config(_default_schedule_config(tmp_path, tiny_gpt2, max_steps=16, epochs=100))
    assert config.training.eval_steps == "auto"
    result = train(config)
    steps = [p["step"] for p in result.history]
    assert steps == [2, 4, 6, 8, 10, 12, 14, 16]
    assert len(steps) >= 5
    assert result.manifest["eval_steps"] == 2
    assert result.manifest["diagnosis"]["verdict"] != "too_short"


def test_default_schedule_follows_short_epochs(tiny_gpt2: Path, tmp_path: Path) -> None:
    """20 epochs of 3 steps: one evaluation per epoch (denser than every 6 steps)."""
    write_jsonl(tmp_path / "train.jsonl", new_task_rows(32))
    result = train(load_config(_default_schedule_config(tmp_path, tiny_gpt2, epochs=20)))
    assert [p["step"] for p in result.history] == list(range(3, 61, 3))
    assert result.manifest["eval_steps"] == 3


def test_resumed_run_keeps_the_default_schedule(tiny_gpt2: Path, tmp_path: Path) -> None:
    from tests.finetune.train.test_resume import Interrupt

    write_jsonl(tmp_path / "train.jsonl", new_task_rows(32))
    path = _default_schedule_config(tmp_path, tiny_gpt2, max_steps=16, epochs=100)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(path), callbacks=[Interrupt(at=5)])
    result = train(load_config(path), resume=True)
    assert [p["step"] for p in result.history] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert result.manifest["eval_steps"] == 2

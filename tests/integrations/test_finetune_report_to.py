"""`finetune train --report-to`: the names reach TrainingArguments.report_to (transformers'
own integrations), TensorBoard's event files hold the training curve, a missing package
stops the command before the data is read, and the run's record does not change."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from finetune.cli import main as finetune_main
from finetune.config.schema import config_record, load_config
from finetune.train.run import train
from harness.integrations.available import MISSING_EXTRA
from tests.finetune.conftest import new_task_rows, one_thread, write_config, write_jsonl

TWO_STEPS = {"max_steps": 2, "eval_steps": 1, "batch_size": 4}


class Arguments(TrainerCallback):
    """The TrainingArguments the Trainer ran with."""

    def __init__(self) -> None:
        self.report_to: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.report_to = args.report_to


def _config(folder: Path, base: Path, **training: Any) -> Path:
    write_jsonl(folder / "train.jsonl", new_task_rows(16))
    return write_config(folder, base, training={**TWO_STEPS, **training})


@pytest.mark.slow
def test_report_to_tensorboard_writes_the_training_curve(tmp_path: Path, tiny_gpt2: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(_config(tmp_path, tiny_gpt2))
    seen = Arguments()
    with one_thread():
        result = train(config, report_to=["tensorboard"], callbacks=[seen])
    assert seen.report_to == ["tensorboard"]
    # transformers' default folder: OUTPUT/checkpoints/runs/<time>_<host>
    (folder,) = (result.output_dir / "checkpoints" / "runs").iterdir()
    acc = EventAccumulator(str(folder))
    acc.Reload()
    curve = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    logged = [(p["step"], p["train_loss"]) for p in result.history]
    assert len(curve) == len(logged) == 2
    for (step, value), (h_step, h_value) in zip(curve, logged, strict=True):
        assert step == h_step and value == pytest.approx(h_value, rel=1e-6)  # float32 there
    assert "report_to" not in config_record(config)["training"]


def test_default_stays_none(tmp_path: Path, tiny_gpt2: Path) -> None:
    from finetune.data.curate import curate
    from finetune.train.run import _build_trainer
    from finetune.train.validation import resolve_metric

    config = load_config(_config(tmp_path, tiny_gpt2))
    assert config.training.report_to == []
    curated = curate(config, config.eval_data)
    v = config.validation
    metric, labels = resolve_metric(v.metric, v.max_labels, curated.validation)
    trainer = _build_trainer(config, curated, [], metric, labels)[0]
    assert trainer.args.report_to == []  # transformers' reading of "none"
    record = config_record(config)
    withto = load_config(_config(tmp_path, tiny_gpt2, report_to=["mlflow"]))
    assert withto.training.report_to == ["mlflow"] and config_record(withto) == record


def test_missing_package_stops_before_the_data_is_read(
    tmp_path: Path,
    tiny_gpt2: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, tiny_gpt2)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert finetune_main(["train", str(config), "--report-to", "tensorboard,mlflow"]) == 2
    reason = "import of mlflow halted; None in sys.modules"
    assert capsys.readouterr().err.splitlines() == [
        "error: " + MISSING_EXTRA.format(option="--report-to", name="mlflow", reason=reason)
    ]
    assert not (tmp_path / "out").exists()
    # from the config file: the same check, named by the setting
    bad = load_config(_config(tmp_path, tiny_gpt2, report_to=["mlflow"]))
    with pytest.raises(Exception) as err:
        train(bad)
    assert str(err.value) == MISSING_EXTRA.format(
        option="training.report_to", name="mlflow", reason=reason
    )


def test_unknown_name_in_the_config_is_a_located_error(tmp_path: Path, tiny_gpt2: Path) -> None:
    from harness.errors import UserError

    with pytest.raises(UserError) as err:
        load_config(_config(tmp_path, tiny_gpt2, report_to=["comet"]))
    assert str(err.value).endswith(
        "config.yaml:22:5: training.report_to[0]: must be one of 'mlflow', 'wandb' or "
        "'tensorboard', got 'comet'"
    )

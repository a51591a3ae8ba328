"""finetune.train.progress: one rich bar per training run with step/total, epoch, the
latest losses and accuracy and the ETA; no bar off a terminal; never a raw dict."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from finetune.train.progress import RichProgressCallback, describe
from tests.finetune.conftest import write_config


def drive(console: Console) -> str:
    """A fake Trainer run of 10 steps: logs every 5 steps, one evaluation."""
    callback = RichProgressCallback(console, "fine-tuning naive")
    state = SimpleNamespace(global_step=0, max_steps=10, epoch=0.0)
    args = control = None
    callback.on_train_begin(args, state, control)
    for step in range(1, 11):
        state.global_step, state.epoch = step, step / 4
        callback.on_step_end(args, state, control)
        if step % 5 == 0:
            callback.on_log(args, state, control, logs={"loss": 2.5, "train_ce": 2.25 / step})
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.5, "eval_accuracy": 0.8})
    callback.on_train_end(args, state, control)
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 9.0})  # after the end
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_bar_shows_step_epoch_losses_accuracy_and_eta() -> None:
    shown = drive(Console(file=io.StringIO(), force_terminal=True, width=200))
    last = shown.rsplit("\r", 1)[-1]
    assert "fine-tuning naive" in last
    assert "10/10" in last
    assert "epoch 2.50" in last
    assert "loss 0.2250" in last  # the plain training CE when logged
    assert "val loss 1.5000" in last and "val acc 0.8000" in last
    assert "0:00:00" in last  # elapsed and remaining time columns
    assert "{'loss'" not in shown


def test_describe_before_any_log() -> None:
    assert describe(None, None, {}) == "epoch 0.00"
    assert describe(1.0, 2.0, {"eval_loss": 3.0}) == "epoch 1.00  loss 2.0000  val loss 3.0000"


@pytest.mark.slow
def test_a_real_run_on_a_terminal_shows_the_bar_and_no_raw_dict(
    tiny_gpt2: Path, new_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune.config.schema import load_config
    from finetune.train.run import train
    from harness.quiet import third_party_to_log

    monkeypatch.chdir(new_task)
    config = load_config(
        write_config(new_task, tiny_gpt2, training={"max_steps": 4, "eval_steps": 2})
    )
    shown = {}
    for terminal in (True, False):
        console = Console(file=io.StringIO(), force_terminal=terminal, width=200)
        printed = io.StringIO()
        out = new_task / f"out-{terminal}"
        with (
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
            third_party_to_log(out / "harness.log", stream=printed),
        ):
            train(config, out=str(out), console=console, progress=True)
        assert "{'" not in printed.getvalue() and "it/s]" not in printed.getvalue()
        shown[terminal] = console.file.getvalue()  # type: ignore[attr-defined]
    bar = "━"  # rich's bar
    assert bar in shown[True] and "4/4" in shown[True] and "val loss" in shown[True]
    assert bar not in shown[False]  # off a terminal: no bar, a line per evaluation
    assert "step 4/4: train loss" in shown[False]

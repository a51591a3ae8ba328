"""One rich progress bar per training run, in place of the Trainer's tqdm bar and its
raw log dicts: step/total, epoch, the latest training loss, the latest validation loss
and accuracy (once evaluated), elapsed time and ETA."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback


def describe(epoch: float | None, train_loss: float | None, val: dict[str, float]) -> str:
    """The text after the bar: ``epoch 1.50  loss 2.1234  val loss 2.3456  val acc 0.8100``."""
    parts = [f"epoch {epoch or 0.0:.2f}"]
    if train_loss is not None:
        parts.append(f"loss {train_loss:.4f}")
    if "eval_loss" in val:
        parts.append(f"val loss {val['eval_loss']:.4f}")
    if "eval_accuracy" in val:
        parts.append(f"val acc {val['eval_accuracy']:.4f}")
    return "  ".join(parts)


class RichProgressCallback(TrainerCallback):
    """A rich ``Progress`` on ``console`` from train begin to train end."""

    def __init__(self, console: Any, title: str = "training") -> None:
        self.console = console
        self.title = title
        self.progress: Any = None
        self.task: Any = None
        self.train_loss: float | None = None
        self.val: dict[str, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self.title,
            total=state.max_steps,
            completed=state.global_step,
            info=describe(state.epoch, None, {}),
        )

    def _update(self, state: Any) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task,
                completed=state.global_step,
                info=describe(state.epoch, self.train_loss, self.val),
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._update(state)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.train_loss = float(logs.get("train_ce", logs["loss"]))
        self._update(state)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
    ) -> None:
        found = {
            k: float(v) for k, v in (metrics or {}).items() if k in ("eval_loss", "eval_accuracy")
        }
        self.val.update(found)
        self._update(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._update(state)
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

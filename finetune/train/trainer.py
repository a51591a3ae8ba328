"""The Trainer subclass: weighted completion loss plus the anti-forgetting terms.

``compute_loss`` adds to the (per-example weighted) cross-entropy on target tokens:

- KL to base (Learning without Forgetting, Li & Hoiem 2016): KL(p_base || p_adapted)
  at the trained-on positions, p_base from the same model with the adapter disabled;
- EWC (Kirkpatrick et al. 2017): a Fisher-weighted penalty on the LoRA delta;
both in finetune.train.forgetting, which also says how their memory is bounded.

Evaluation uses the plain, unweighted cross-entropy, so validation losses of different
runs compare; with a label set (finetune.train.validation) each evaluation adds the accuracy
and its baselines to the metrics. The training CE (unweighted, without the extra terms)
is logged as ``train_ce`` next to the Trainer's ``loss`` (the whole objective).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from finetune.train.encode import (
    IGNORE,
    Collator,
    GlobalCounts,
    PackedCollator,
    packing_isolates,
    target_weights,
    unpack,
)
from finetune.train.forgetting import BaseStates, Fisher, ewc_penalty, kl_to_base, lora_layers
from finetune.train.validation import LabelTask, accuracy_metrics, accuracy_rank
from harness.errors import UserError


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, mask) of each next-token prediction: shapes (batch, length - 1)."""
    shift_logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    mask = targets.ne(IGNORE)
    ce = F.cross_entropy(
        shift_logits.transpose(1, 2), targets.masked_fill(~mask, 0), reduction="none"
    )
    return ce * mask, mask


def target_logits(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Any]:
    """(logits of the positions whose next token is trained on, shape (n, vocab); the
    model's outputs). ``mask`` is (batch, length - 1), True where a target follows.
    A packed batch (finetune.train.encode.PackedCollator) has ``position_ids`` and no
    attention mask.

    The LM head runs only at those positions (``logits_to_keep`` with a boolean mask),
    and no key/value cache is built: with a completion-only loss most positions are
    prompt, and the head of a small model with a large vocabulary is its costliest
    layer. A model class without that argument computes every position and the targets
    are picked from them; the values are the same either way.
    """
    keep = F.pad(mask, (0, 1), value=False)  # position t predicts token t + 1
    given = {"attention_mask": attention_mask, "position_ids": position_ids}
    kwargs = {k: v for k, v in given.items() if v is not None}
    try:
        out = model(input_ids=input_ids, logits_to_keep=keep, use_cache=False, **kwargs)
        if out.logits.dim() == 2 and out.logits.shape[0] == int(keep.sum()):
            return out.logits, out
    except TypeError:  # no logits_to_keep
        pass
    out = model(input_ids=input_ids, use_cache=False, **kwargs)
    return out.logits[keep], out


def weighted_ce(ce: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean token CE, each token weighted by its example's weight (1 without weights).

    ``ce`` and ``mask`` are (batch, length - 1) with one weight per example, or flat
    (tokens,) with one weight per token."""
    w = mask.float()
    if weight is not None:
        per = weight.to(ce.dtype)
        w = w * (per[:, None] if per.dim() < ce.dim() else per)
    return (ce * w).sum() / w.sum().clamp_min(1e-12)


def step_factor(step: int, warmup: int, size: int, gamma: float) -> float:
    """Learning-rate factor of the step schedule: linear warmup, then torch's StepLR."""
    if step < warmup:
        return step / max(1, warmup)
    return float(gamma ** ((step - warmup) // size))


EVALUATIONS_PER_RUN = 10  # of the default schedule, eval_steps: auto


def auto_eval_steps(max_steps: int, steps_per_epoch: int) -> int:
    """Optimizer steps between two evaluations of ``eval_steps: auto``: about
    EVALUATIONS_PER_RUN evaluations per run, or one per epoch when epochs are shorter
    (whichever is denser), so the learning-curve diagnosis has points on any run."""
    per_run = math.ceil(max_steps / EVALUATIONS_PER_RUN)
    return max(1, min(per_run, steps_per_epoch))


NOT_DATA_PARALLEL = (
    "launched as {n} processes, but each would train alone on the whole data (no process "
    "group for the Trainer); without GPUs, set ACCELERATE_USE_CPU=true"
)
PACKING_LEAKS = (
    "training.packing: {model} attends across the examples packed into one row (it "
    "ignores the position ids that separate them); train without packing"
)


class FinetuneTrainer(Trainer):
    """transformers.Trainer with the loss described in the module docstring.

    A step's training loss is its weighted token mean over the whole global batch (sum
    of w * ce / sum of w over every micro-batch of the gradient accumulation and, with
    ``average_tokens_across_devices``, every process), whatever its split: the step's
    counts (``GlobalCounts``, summed across processes by ``get_batch_samples``) reach
    ``compute_loss`` as ``num_items_in_batch``, and each micro-batch returns its share,
    times the processes whose gradients the data-parallel backward averages.
    ``train_ce`` and ``kl_to_base`` are global token means too; ``ewc`` counts once.
    """

    loss_is_scaled_for_ga = True  # normalized over the whole step (GlobalCounts)

    def __init__(
        self,
        *args: Any,
        kl: tuple[float, float] | None = None,
        kl_cache_mb: int = 0,
        fisher: Fisher | None = None,
        ewc_weight: float = 0.0,
        step_schedule: tuple[int, float] | None = None,
        label_task: LabelTask | None = None,
        pad_id: int = 0,
        auto_eval: bool = False,
        **kwargs: Any,
    ) -> None:
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        super().__init__(*args, **kwargs)
        if launched > 1 and self.args.world_size == 1:
            raise UserError(NOT_DATA_PARALLEL.format(n=launched))
        self.auto_eval = auto_eval  # eval_steps: auto, resolved when training starts
        self.kl = kl  # (weight, temperature)
        self.base_states = BaseStates(kl_cache_mb << 20) if kl else None
        self.ewc_weight = ewc_weight
        self.step_schedule = step_schedule  # (size, gamma)
        self.label_task = label_task
        self.pad_id = pad_id
        peft_model = self.accelerator.unwrap_model(self.model)
        self.ewc_terms: list[tuple[Any, tuple[torch.Tensor, ...]]] = []
        if fisher is not None:
            modules = dict(lora_layers(peft_model))
            self.ewc_terms = [(modules[name], f) for name, f in fisher.layers.items()]
        self._sums: dict[str, float] = {}
        self._steps = 0  # optimizer steps since the last log
        self._eval_totals: torch.Tensor | None = None
        if isinstance(self.data_collator, PackedCollator) and not packing_isolates(peft_model):
            model_name = getattr(peft_model.config, "name_or_path", "") or "the model"
            raise UserError(PACKING_LEAKS.format(model=model_name))

    def set_initial_training_values(self, args: Any, dataloader: Any) -> Any:
        """The Trainer's step counts; with ``auto_eval``, the evaluation (and logging and
        checkpoint) interval from them (``auto_eval_steps``), before the loop reads it."""
        values = super().set_initial_training_values(args, dataloader)
        if self.auto_eval:
            _, per_epoch, *_, max_steps = values
            args.eval_steps = args.logging_steps = args.save_steps = auto_eval_steps(
                max_steps, per_epoch
            )
        return values

    def get_batch_samples(
        self, epoch_iterator: Any, num_batches: int, device: Any
    ) -> tuple[list[Any], Any]:
        """The step's micro-batches and their ``GlobalCounts``: summed over the
        processes (one all-reduce per step) with ``average_tokens_across_devices``."""
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        counts = GlobalCounts.of(batches, device)
        processes = self.accelerator.num_processes
        if processes > 1 and self.args.average_tokens_across_devices:
            total = self.accelerator.reduce(torch.stack([counts.weight, counts.tokens]), "sum")
            counts = GlobalCounts(total[0], total[1], processes, len(batches))
        if batches:
            self._steps += 1
        return batches, counts

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """In training, this micro-batch's share of the step's loss (class docstring;
        without ``GlobalCounts``, of itself alone); in evaluation, its plain token mean."""
        weight = inputs.pop("weight", None)
        labels = inputs.pop("labels")
        ids: torch.Tensor = inputs["input_ids"]
        attention, positions = inputs.get("attention_mask"), inputs.get("position_ids")
        # only the trained-on positions' logits are needed, by the CE and the KL alike
        mask, w = target_weights(labels, weight)
        logits, outputs = target_logits(model, ids, attention, mask, positions)
        ce = F.cross_entropy(logits.float(), labels[:, 1:][mask], reduction="none")
        if not model.training:
            plain = weighted_ce(ce, torch.ones_like(ce, dtype=torch.bool), None)
            if self._eval_totals is not None:  # in evaluation_loop: the set's token sums
                self._eval_totals += self._eval_sums(ce.detach(), mask)
            return (plain, outputs) if return_outputs else plain
        counts = num_items_in_batch
        if not isinstance(counts, GlobalCounts):
            counts = GlobalCounts.of([{"labels": labels, "weight": weight}], ce.device)
            self._steps += 1
        tokens = counts.tokens.clamp_min(1)
        loss = (ce * w[mask]).sum() * counts.processes / counts.weight.clamp_min(1e-12)
        parts = {"train_ce": ce.sum() * counts.processes / tokens}
        if self.kl is not None:
            assert self.base_states is not None
            peft_model = self.accelerator.unwrap_model(model)
            if positions is not None:  # the base pass on the examples apart (padded rows)
                ids, attention, mask = unpack(ids, positions, mask, self.pad_id)
            assert attention is not None  # padded rows always have their mask
            base = self.base_states(peft_model, ids, attention, mask)
            assert self.base_states.head is not None
            # kl_to_base is the mean over this batch's positions
            share = ce.shape[0] * counts.processes / float(tokens)  # 1.0 for a whole step
            kl = kl_to_base(logits, base, self.base_states.head, self.kl[1])
            parts["kl_to_base"] = kl * share
            loss = loss + self.kl[0] * parts["kl_to_base"]
        if self.ewc_terms:
            parts["ewc"] = self._ewc() / counts.micro_batches  # once per step
            loss = loss + self.ewc_weight / 2 * parts["ewc"]
        for key, value in parts.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value.detach())
        return (loss, outputs) if return_outputs else loss

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        """Evaluation batches are padded, never packed: one example a row, as the
        per-example sums of ``_eval_sums`` (and accelerate's evening out) expect."""
        collator = self.data_collator
        if isinstance(collator, PackedCollator):
            self.data_collator = Collator(collator.pad_id)
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = collator

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's loop, with ``{prefix}_loss`` the plain token mean over the whole
        evaluation set (whatever its batches and processes), plus, with a label task,
        its accuracy and baselines (``{prefix}_accuracy``, ``_correct``, ``_n``,
        ``_majority``, ``_chance``) and ``{prefix}_accuracy_rank`` (see accuracy_rank)."""
        self._eval_totals = torch.zeros(2, device=self.args.device)  # CE sum, tokens
        try:
            output = super().evaluation_loop(*args, **kwargs)
            ce_sum, tokens = self._eval_totals
        finally:
            self._eval_totals = None
        prefix = kwargs.get("metric_key_prefix", "eval")
        if tokens and output.metrics is not None:
            output.metrics[f"{prefix}_loss"] = float(ce_sum / tokens)
        if self.label_task is not None:
            model = self.accelerator.unwrap_model(self.model)  # in eval mode here
            found = accuracy_metrics(
                model,
                self.label_task,
                batch_size=self.args.per_device_eval_batch_size,
                pad_id=self.pad_id,
            )
            metrics = output.metrics
            assert metrics is not None  # the loop always returns its metrics dict
            metrics.update({f"{prefix}_{k}": v for k, v in found.items()})
            metrics[f"{prefix}_accuracy_rank"] = accuracy_rank(
                found["correct"], metrics.get(f"{prefix}_loss")
            )
        return output

    def _eval_sums(self, ce: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(CE sum, target tokens) of an evaluation batch, over all processes: per
        example there, so that accelerate drops the examples it repeated to even out
        the processes' last batches."""
        if self.accelerator.num_processes == 1:
            return torch.stack([ce.sum(), mask.sum().to(ce.dtype)])
        rows = torch.zeros(mask.shape[0], 2, device=ce.device)
        rows[:, 0].index_add_(0, mask.nonzero()[:, 0], ce)
        rows[:, 1] = mask.sum(-1)
        return self.accelerator.gather_for_metrics(rows).sum(0)

    def _ewc(self) -> torch.Tensor:
        return ewc_penalty(self.ewc_terms)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """With the training ``loss``, the mean over the steps since the last log of
        each part (``train_ce``, ...): each process holds its shares, averaged across
        processes as the Trainer averages its ``loss``."""
        if "loss" in logs and self._steps:
            sums = self._sums
            if self.accelerator.num_processes > 1:
                keys = sorted(sums)
                local = [[sums[k] for k in keys]]
                mine = torch.tensor(local, dtype=torch.float64, device=self.args.device)
                sums = dict(zip(keys, self.accelerator.gather(mine).mean(0).tolist(), strict=True))
            logs.update({k: v / self._steps for k, v in sums.items()})
            self._sums, self._steps = {}, 0
        super().log(logs, start_time)

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> Any:
        if self.step_schedule is None:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            size, gamma = self.step_schedule
            factor = functools.partial(
                step_factor,
                warmup=self.args.get_warmup_steps(num_training_steps),
                size=size,
                gamma=gamma,
            )
            opt = optimizer if optimizer is not None else self.optimizer
            assert opt is not None  # the Trainer creates the optimizer first
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            self._created_lr_scheduler = True
        return self.lr_scheduler


class EpochCallback(TrainerCallback):
    """Tells a dataset with ``set_epoch`` (the replay mix) which epoch begins."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.dataset.set_epoch(int(state.epoch or 0))


class FinalEvalCallback(TrainerCallback):
    """Evaluate, log and save at the last step too, so the curve ends where training did."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= state.max_steps:
            control.should_evaluate = control.should_log = control.should_save = True
        return control


def evaluation_line(step: int, max_steps: int, train_loss: float | None, metrics: dict) -> str:
    """One plain line per evaluation: step, training and validation loss, and the
    validation accuracy with its baselines when there is a label task."""
    line = f"step {step}/{max_steps}:"
    line += f" train loss {train_loss:.4f}," if train_loss is not None else ""
    line += f" val loss {metrics.get('eval_loss', float('nan')):.4f}"
    if "eval_accuracy" in metrics:
        line += (
            f", val accuracy {metrics['eval_accuracy']:.4f} "
            f"({metrics['eval_correct']}/{metrics['eval_n']}; majority "
            f"{metrics['eval_majority']:.4f}, chance {metrics['eval_chance']:.4f})"
        )
    return line


class EvaluationLineCallback(TrainerCallback):
    """Prints ``evaluation_line`` at every evaluation during training, so a run without
    a progress bar is never silent for long."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.train_loss: float | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.train_loss = float(logs.get("train_ce", logs["loss"]))

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
    ) -> None:
        line = evaluation_line(state.global_step, state.max_steps, self.train_loss, metrics or {})
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

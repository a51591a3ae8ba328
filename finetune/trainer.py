"""The Trainer subclass: weighted completion loss plus the anti-forgetting terms.

``compute_loss`` adds to the (per-example weighted) cross-entropy on target tokens:

- KL to base (Learning without Forgetting, Li & Hoiem 2016): KL(p_base || p_adapted)
  of the next-token distributions on the batch's real tokens. p_base comes from the same
  model with the adapter disabled, in eval mode and without gradients: no second copy.
- EWC (Kirkpatrick et al. 2017) on the LoRA delta: weight / 2 * sum F * dW^2 where
  dW = scaling * B @ A is what the adapter adds to a base weight W and F is the diagonal
  (empirical) Fisher of W on original-task data, computed once before training.

Evaluation uses the plain, unweighted cross-entropy, so validation losses of different
runs compare. The training CE (unweighted, without the extra terms) is logged as
``train_ce`` next to the Trainer's ``loss`` (the whole objective).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from finetune.encode import IGNORE, Collator


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
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, Any]:
    """(logits of the positions whose next token is trained on, shape (n, vocab); the
    model's outputs). ``mask`` is (batch, length - 1), True where a target follows.

    The LM head runs only at those positions (``logits_to_keep`` with a boolean mask),
    and no key/value cache is built: with a completion-only loss most positions are
    prompt, and the head of a small model with a large vocabulary is its costliest
    layer. A model class without that argument computes every position and the targets
    are picked from them; the values are the same either way.
    """
    keep = F.pad(mask, (0, 1), value=False)  # position t predicts token t + 1
    try:
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False
        )
        if out.logits.dim() == 2 and out.logits.shape[0] == int(keep.sum()):
            return out.logits, out
    except TypeError:  # no logits_to_keep
        pass
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
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


def kl_to_base(
    logits: torch.Tensor, base_logits: torch.Tensor, attention: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(base || adapted) per real token, averaged, times T^2 (Hinton et al. 2015)."""
    t = temperature
    log_p = F.log_softmax(logits.float() / t, dim=-1)
    log_q = F.log_softmax(base_logits.float() / t, dim=-1)
    per_token = (log_q.exp() * (log_q - log_p)).sum(-1)
    mask = attention.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1) * t * t


def lora_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every LoRA layer of a PEFT model (the active adapter's)."""
    out = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            adapter = module.active_adapters[0]
            if adapter in module.lora_A:
                out.append((name, module))
    return out


def lora_delta(module: Any) -> torch.Tensor:
    """scaling * B @ A, laid out like the base layer's weight."""
    adapter = module.active_adapters[0]
    delta = module.lora_B[adapter].weight @ module.lora_A[adapter].weight
    if getattr(module, "fan_in_fan_out", False):  # GPT-2's Conv1D stores W transposed
        delta = delta.T
    return delta * module.scaling[adapter]


def diagonal_fisher(
    model: Any, features: Sequence[dict[str, Any]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher of each LoRA-adapted base weight, mean-normalized.

    F = mean over examples of (d log p(example) / dW)^2, one example per backward pass
    (the Fisher is an expectation of squared per-example gradients), with the adapter
    disabled and dropout off. Dividing by the mean over all entries makes ``ewc.weight``
    independent of model size and loss scale.
    """
    layers = lora_layers(model)
    weights = {name: module.base_layer.weight for name, module in layers}
    fisher = {name: torch.zeros_like(w, dtype=torch.float32) for name, w in weights.items()}
    before = {name: w.requires_grad for name, w in weights.items()}
    was_training = model.training
    collate = Collator(pad_id)
    device = next(model.parameters()).device
    model.eval()
    try:
        for w in weights.values():
            w.requires_grad_(True)
        with model.disable_adapter():
            for feature in features:
                batch = {k: v.to(device) for k, v in collate([feature]).items()}
                logits = model(input_ids=batch["input_ids"]).logits
                ce, _ = token_losses(logits, batch["labels"])
                grads = torch.autograd.grad(ce.sum(), list(weights.values()))
                for name, g in zip(weights, grads, strict=True):
                    fisher[name] += g.detach().float() ** 2
    finally:
        for name, w in weights.items():
            w.requires_grad_(before[name])
        model.train(was_training)
    total = sum(float(f.sum()) for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    scale = count / total if total > 0 else 1.0
    return {name: f * scale for name, f in fisher.items()}


def step_factor(step: int, warmup: int, size: int, gamma: float) -> float:
    """Learning-rate factor of the step schedule: linear warmup, then torch's StepLR."""
    if step < warmup:
        return step / max(1, warmup)
    return float(gamma ** ((step - warmup) // size))


class FinetuneTrainer(Trainer):
    """transformers.Trainer with the loss described in the module docstring."""

    loss_is_scaled_for_ga = False  # compute_loss returns a batch mean; the Trainer divides

    def __init__(
        self,
        *args: Any,
        kl: tuple[float, float] | None = None,
        fisher: dict[str, torch.Tensor] | None = None,
        ewc_weight: float = 0.0,
        step_schedule: tuple[int, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kl = kl  # (weight, temperature)
        self.ewc_weight = ewc_weight
        self.step_schedule = step_schedule  # (size, gamma)
        peft_model = self.accelerator.unwrap_model(self.model)
        self.ewc_terms: list[tuple[Any, torch.Tensor]] = []
        if fisher:
            modules = dict(lora_layers(peft_model))
            self.ewc_terms = [(modules[name], f) for name, f in fisher.items()]
        self._sums: dict[str, float] = {}
        self._count = 0

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        weight = inputs.pop("weight", None)
        labels = inputs.pop("labels")
        if self.kl is None:  # only the trained-on positions' logits are needed
            mask = labels[:, 1:].ne(IGNORE)
            logits, outputs = target_logits(
                model, inputs["input_ids"], inputs["attention_mask"], mask
            )
            ce = F.cross_entropy(logits.float(), labels[:, 1:][mask], reduction="none")
            if weight is not None:
                weight = weight[:, None].expand_as(mask)[mask]
            mask = torch.ones_like(ce, dtype=torch.bool)  # ce holds real tokens only
        else:  # KL-to-base compares the whole distributions at every position
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            ce, mask = token_losses(outputs.logits, labels)
        if not model.training:
            loss = weighted_ce(ce, mask, None)
            return (loss, outputs) if return_outputs else loss
        plain = weighted_ce(ce, mask, None)
        loss = weighted_ce(ce, mask, weight)
        parts = {"train_ce": plain}
        if self.kl is not None:
            parts["kl_to_base"] = self._kl(model, inputs, outputs.logits)
            loss = loss + self.kl[0] * parts["kl_to_base"]
        if self.ewc_terms:
            parts["ewc"] = self._ewc()
            loss = loss + self.ewc_weight / 2 * parts["ewc"]
        for key, value in parts.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value.detach())
        self._count += 1
        return (loss, outputs) if return_outputs else loss

    def _kl(self, model: Any, inputs: dict[str, Any], logits: torch.Tensor) -> torch.Tensor:
        peft_model = self.accelerator.unwrap_model(model)
        peft_model.eval()  # the base's predictions without dropout
        try:
            with torch.no_grad(), peft_model.disable_adapter():
                base = peft_model(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                ).logits
        finally:
            peft_model.train()
        assert self.kl is not None
        return kl_to_base(logits, base, inputs["attention_mask"], self.kl[1])

    def _ewc(self) -> torch.Tensor:
        total: torch.Tensor | None = None
        for module, fisher in self.ewc_terms:
            delta = lora_delta(module)
            term = (fisher.to(delta.device) * delta.float() ** 2).sum()
            total = term if total is None else total + term
        assert total is not None
        return total

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._count:
            logs.update({k: v / self._count for k, v in self._sums.items()})
            self._sums, self._count = {}, 0
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

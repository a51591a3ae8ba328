"""The anti-forgetting terms of the training loss, with their memory bounded.

- KL to base (Learning without Forgetting, Li & Hoiem 2016): KL(p_base || p_adapted)
  of the next-token distributions at the trained-on positions (those whose next token
  is a target). p_base comes from the same model with the adapter disabled, in eval
  mode and without gradients (no second copy, no graph). That pass keeps the base's
  final hidden states at those positions, (positions, hidden), and never runs the
  output head on them (``BaseStates``); the KL and its gradient then compute the base
  logits from them a chunk of positions at a time (``ChunkedKL``, at most
  ``KL_CHUNK_ELEMENTS`` logits per chunk) with the base's own head (``BaseHead``). So
  besides the adapted logits the cross-entropy needs anyway, no [positions, vocab]
  tensor is held: with a 128k vocabulary and a 4k hidden size that is 32x less than
  keeping the base's log-probabilities, and the cross-epoch cache holds as many times
  more examples.
- EWC (Kirkpatrick et al. 2017) on the LoRA delta: weight / 2 * sum F * dW^2 where
  dW = scaling * B @ A is what the adapter adds to a base weight W and F is the diagonal
  (empirical) Fisher of W on original-task data, computed once before training
  (``diagonal_fisher``). Held whole, F takes 4 bytes per adapted base weight entry (28 GB
  for all linear layers of an 8B model); ``factored`` keeps only its row and column sums
  (Adafactor's rank-1 factorization, Shazeer & Stern 2018), 4 bytes per row and column,
  and the penalty is computed from them and the LoRA factors without a full-size tensor.
  ``plan_fisher`` states the bytes before anything is computed and refuses a budget
  overrun.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from finetune.train.encode import IGNORE, Collator
from harness.errors import UserError

KL_CHUNK_ELEMENTS = 1 << 22  # positions x vocabulary per chunk: 16 MB of float32

NO_HEAD = (
    "anti_forgetting.kl_to_base: the base model ({arch}) has no output head "
    "(get_output_embeddings() is None), so its logits cannot be computed in chunks"
)
HEAD_INPUT = (
    "anti_forgetting.kl_to_base: the base model ({arch}) called its output head {calls} "
    "time(s) with an input of shape {shape}; expected one call on the hidden states"
)
HEAD_MISMATCH = (
    "anti_forgetting.kl_to_base: the base model's ({arch}) logits are not its output head "
    "applied to its last hidden states (largest difference {diff:.3g}); it transforms "
    "them in a way the chunked KL does not know, so the term cannot be computed"
)
EWC_MEMORY = (
    "anti_forgetting.ewc.memory_mb: the {form} Fisher of the {layers} adapted weight(s) "
    "needs {need:.1f} MB (float32), more than memory_mb ({budget}){hint}"
)
EWC_FULL_HINT = "; set fisher: factored ({factored:.1f} MB) or auto, or raise memory_mb"
EWC_FACTORED_HINT = "; raise memory_mb or adapt fewer modules (lora.target_modules)"

log = logging.getLogger(__name__)


def _chunks(n: int, vocab: int) -> list[slice]:
    rows = max(1, KL_CHUNK_ELEMENTS // max(1, vocab))
    return [slice(start, start + rows) for start in range(0, n, rows)]


def _unwrapped(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class BaseHead:
    """The base model's output head, as a function of its last hidden states.

    The head module a forward pass calls (``get_output_embeddings()``) may be wrapped by
    PEFT: a ``modules_to_save`` copy (the trained copy is the wrapper's; the base head is
    its ``original_module``) or a LoRA layer (the base head is its ``base_layer``). Either
    way the module used here is the frozen original, which is what the adapter-disabled
    pass runs. What some architectures do to the head's output is applied too: Gemma-2's
    final logit soft-capping (``config.final_logit_softcapping``), Cohere's
    ``logit_scale``, Granite's ``logits_scaling``; anything else is caught by ``verify``.
    """

    def __init__(self, model: Any) -> None:
        inner = _unwrapped(model)
        self.arch = type(inner).__name__
        self.called = inner.get_output_embeddings()  # the module the forward pass calls
        if self.called is None:
            raise UserError(NO_HEAD.format(arch=self.arch))
        module = self.called
        if hasattr(module, "original_module"):  # peft modules_to_save wrapper
            module = module.original_module
        if hasattr(module, "get_base_layer"):  # a LoRA layer on the head
            module = module.get_base_layer()
        self.module = module
        config = getattr(inner, "config", None)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        scale = float(getattr(config, "logit_scale", None) or 1.0)
        self.scale = scale / float(getattr(config, "logits_scaling", None) or 1.0)
        self.verified = False

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits (rows, vocab) of hidden states (rows, hidden), without gradients and
        outside autocast, so the KL's forward and backward compute the same values."""
        weight = getattr(self.module, "weight", None)
        if isinstance(weight, torch.Tensor):
            hidden = hidden.to(weight.device)
            if weight.is_floating_point():
                hidden = hidden.to(weight.dtype)
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            logits = self.module(hidden)
            if self.scale != 1.0:
                logits = logits * self.scale
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def verify(self, logits: torch.Tensor, hidden: torch.Tensor) -> None:
        """Refuse when ``self(hidden)`` is not ``logits``, the model's own output for the
        same positions: an architecture that transforms its logits in an unknown way."""
        ours = self(hidden).float().to(logits.device)
        theirs = logits.float()
        # as precise as the coarser of the two (autocast may compute the model's in bf16)
        eps = max(torch.finfo(t.dtype).eps for t in (hidden, logits) if t.is_floating_point())
        tolerance = max(1e-4, 16 * eps) * (1.0 + float(theirs.abs().max()))
        diff = float((ours - theirs).abs().max()) if ours.shape == theirs.shape else float("inf")
        if not diff <= tolerance:
            raise UserError(HEAD_MISMATCH.format(arch=self.arch, diff=diff))
        self.verified = True


@contextmanager
def _head_inputs(head: BaseHead, skip: bool) -> Iterator[list[torch.Tensor]]:
    """Record the head's input in every forward pass inside the block; with ``skip``,
    hand the head zero positions instead, so it computes no logits (the pass then
    returns empty logits and the hidden states are what was recorded). A hook that
    lives only for this block: the model itself is never changed."""
    seen: list[torch.Tensor] = []

    def hook(_module: Any, args: tuple[Any, ...]) -> Any:
        hidden = args[0]
        seen.append(hidden)
        if skip:
            return (hidden[..., :0, :], *args[1:])
        return None

    handle = head.called.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


class BaseStates:
    """The base model's last hidden states at each example's trained-on positions.

    One adapter-disabled pass (eval mode, no gradients) per batch gives them, shape
    (positions, hidden); its output head never runs on them (``_head_inputs``). They
    are kept (up to ``budget_bytes``, in the order first seen) so that an example seen
    again needs no base pass: the base never changes during training and runs in eval
    mode, so a kept value is what a new pass would give. ``head`` turns them into the
    base's logits, a chunk at a time (``kl_to_base``).
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.kept: dict[tuple[tuple[int, ...], ...], torch.Tensor] = {}
        self.forward_passes = 0
        self.head: BaseHead | None = None

    def __call__(
        self,
        peft_model: Any,
        input_ids: torch.Tensor,
        attention: torch.Tensor | None,
        mask: torch.Tensor,
        **extra: torch.Tensor,
    ) -> torch.Tensor:
        """(positions, hidden) states, rows in the order of ``mask``'s True entries
        (row-major), as ``target_logits`` returns the adapted logits. ``mask`` is
        (batch, length - 1), True where a target follows; ``extra`` are further
        per-token model inputs (e.g. a packed row's ``position_ids``)."""
        if self.head is None:
            self.head = BaseHead(peft_model)
        lengths = [
            int(attention[b].sum()) if attention is not None else input_ids.shape[1]
            for b in range(input_ids.shape[0])
        ]
        keys = [
            (
                tuple(input_ids[b, :n].tolist()),
                tuple(mask[b].nonzero().flatten().tolist()),
                *(tuple(v[b, :n].flatten().tolist()) for v in extra.values()),
            )
            for b, n in enumerate(lengths)
        ]
        missing = [b for b, key in enumerate(keys) if key not in self.kept]
        fresh: dict[int, torch.Tensor] = {}
        if missing:
            fresh = self._compute(peft_model, input_ids, attention, mask, extra, missing)
            for b, value in fresh.items():
                size = value.numel() * value.element_size()
                if keys[b] not in self.kept and self.used + size <= self.budget:
                    self.kept[keys[b]] = value.clone()  # not a view holding the batch
                    self.used += size
        parts = [fresh[b] if b in fresh else self.kept[keys[b]] for b in range(len(keys))]
        return torch.cat(parts)

    def _compute(
        self,
        peft_model: Any,
        input_ids: torch.Tensor,
        attention: torch.Tensor | None,
        mask: torch.Tensor,
        extra: dict[str, torch.Tensor],
        rows: list[int],
    ) -> dict[int, torch.Tensor]:
        """One adapter-disabled forward pass over ``rows`` (padding trimmed to the
        longest of them), in eval mode and without gradients; the first one also checks
        the head against the model's own logits (``BaseHead.verify``)."""
        assert self.head is not None
        index = torch.tensor(rows, device=input_ids.device)
        width = input_ids.shape[1]
        if attention is not None:
            width = int(attention[index].sum(-1).max())
        inputs = {"input_ids": input_ids[index, :width]}
        if attention is not None:
            inputs["attention_mask"] = attention[index, :width]
        inputs.update({k: v[index, :width] for k, v in extra.items()})
        keep = mask[index, : width - 1]
        was_training = peft_model.training
        peft_model.eval()  # the base's predictions without dropout
        try:
            with torch.no_grad(), peft_model.disable_adapter():
                if not self.head.verified:
                    self._verify(peft_model, inputs, keep)
                hidden = self._hidden(peft_model, inputs, keep)
        finally:
            peft_model.train(was_training)
        self.forward_passes += 1
        counts = keep.sum(-1).tolist()
        return dict(zip(rows, torch.split(hidden, counts), strict=True))

    def _hidden(
        self, model: Any, inputs: dict[str, torch.Tensor], keep: torch.Tensor, skip: bool = True
    ) -> torch.Tensor:
        """The head's input at the ``keep`` positions, (positions, hidden): the model
        selects them itself when it takes ``logits_to_keep`` (a boolean mask), else they
        are picked from every position's."""
        assert self.head is not None
        wanted = F.pad(keep, (0, 1), value=False)  # position t predicts token t + 1
        n = int(wanted.sum())
        with _head_inputs(self.head, skip) as seen:
            try:
                model(**inputs, logits_to_keep=wanted, use_cache=False)
            except TypeError:  # no logits_to_keep
                seen.clear()
                model(**inputs, use_cache=False)
        shape = tuple(seen[0].shape) if seen else ()
        if len(seen) == 1 and seen[0].dim() == 2 and seen[0].shape[0] == n:
            return seen[0]
        if len(seen) == 1 and seen[0].dim() == 3 and seen[0].shape[:2] == wanted.shape:
            return seen[0][wanted]
        raise UserError(HEAD_INPUT.format(arch=self.head.arch, calls=len(seen), shape=shape))

    def _verify(self, model: Any, inputs: dict[str, torch.Tensor], keep: torch.Tensor) -> None:
        """Run the whole model (head included) at one trained-on position of the first
        row and compare its logits with the head applied to the recorded input."""
        assert self.head is not None
        first = {k: v[:1] for k, v in inputs.items()}
        one = torch.zeros_like(keep[:1])
        found = keep[0].nonzero()
        if not len(found):
            return  # no target in this row: checked on a later batch
        one[0, int(found[0])] = True
        wanted = F.pad(one, (0, 1), value=False)
        with _head_inputs(self.head, skip=False) as seen:
            try:
                out = model(**first, logits_to_keep=wanted, use_cache=False)
                logits = out.logits.reshape(-1, out.logits.shape[-1])
            except TypeError:
                seen.clear()
                out = model(**first, use_cache=False)
                logits = out.logits.reshape(-1, out.logits.shape[-1])
        if logits.shape[0] != 1:
            logits = out.logits[wanted]
        if len(seen) != 1:
            shape = tuple(seen[0].shape) if seen else ()
            raise UserError(HEAD_INPUT.format(arch=self.head.arch, calls=len(seen), shape=shape))
        hidden = seen[0].reshape(-1, seen[0].shape[-1])
        if hidden.shape[0] != 1:
            hidden = seen[0][wanted]
        self.head.verify(logits, hidden)


class ChunkedKL(torch.autograd.Function):
    """sum over positions of KL(softmax(head(h) / T) || softmax(z / T)), the base's
    distribution given by its hidden states h and output head.

    Forward and backward go over chunks of positions (at most ``KL_CHUNK_ELEMENTS``
    logits each, or one position when the vocabulary is larger), computing the base's
    logits of the chunk from h, and the backward recomputes both softmaxes (the gradient
    with respect to z is (softmax(z / T) - softmax(head(h) / T)) / T), so nothing of size
    [positions, vocab] is saved besides the adapted logits, nor made besides their
    gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        logits: torch.Tensor,
        base_hidden: torch.Tensor,
        head: BaseHead,
        temperature: float,
    ) -> torch.Tensor:
        ctx.save_for_backward(logits, base_hidden)
        ctx.head, ctx.temperature = head, temperature
        dtype = torch.promote_types(logits.dtype, torch.float32)  # at least float32
        total = torch.zeros((), dtype=dtype, device=logits.device)
        for part in _chunks(logits.shape[0], logits.shape[-1]):
            log_p = F.log_softmax(logits[part].to(dtype) / temperature, dim=-1)
            base = head(base_hidden[part]).to(device=logits.device, dtype=dtype)
            log_q = F.log_softmax(base / temperature, dim=-1)
            total += (log_q.exp() * (log_q - log_p)).sum()
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:  # type: ignore[override]
        logits, base_hidden = ctx.saved_tensors
        head, t = ctx.head, ctx.temperature
        grad = torch.empty_like(logits)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.no_grad():
            for part in _chunks(logits.shape[0], logits.shape[-1]):
                p = F.softmax(logits[part].to(dtype) / t, dim=-1)
                base = head(base_hidden[part]).to(device=logits.device, dtype=dtype)
                q = F.softmax(base / t, dim=-1)
                grad[part] = ((p - q) * (grad_out / t)).to(grad.dtype)
        return grad, None, None, None


def kl_to_base(
    logits: torch.Tensor, base_hidden: torch.Tensor, head: BaseHead, temperature: float
) -> torch.Tensor:
    """KL(base || adapted) per position, averaged, times T^2 (Hinton et al. 2015).

    ``logits`` (positions, vocab) are the adapted model's; ``base_hidden`` (positions,
    hidden) the base model's last hidden states at the same positions (``BaseStates``),
    which ``head`` turns into the base's logits a chunk at a time."""
    n = logits.shape[0]
    if n == 0:
        return logits.sum() * 0.0
    total = ChunkedKL.apply(logits, base_hidden, head, temperature)
    return total / n * temperature * temperature


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


def _matrix_shape(weight: torch.Tensor) -> tuple[int, int]:
    """(rows, columns) of a weight seen as a matrix: its first dimension by the rest."""
    rows = int(weight.shape[0])
    return rows, weight.numel() // max(1, rows)


@dataclass(frozen=True)
class FisherPlan:
    """Which form of the Fisher a run keeps and the bytes it takes, known before any
    gradient is computed (``plan_fisher``)."""

    form: str  # "full" or "factored"
    bytes: int
    full_bytes: int
    factored_bytes: int
    layers: int
    memory_mb: int

    def describe(self) -> dict[str, Any]:
        """The manifest's record of it."""
        return {
            "form": self.form,
            "bytes": self.bytes,
            "full_bytes": self.full_bytes,
            "factored_bytes": self.factored_bytes,
            "adapted_weights": self.layers,
            "memory_mb": self.memory_mb,
        }


def plan_fisher(model: Any, form: str, memory_mb: int) -> FisherPlan:
    """The Fisher's form and float32 bytes for ``model``'s LoRA-adapted weights: 4 per
    weight entry when ``full``, 4 per row and column when ``factored``; ``auto`` is
    full when that fits ``memory_mb``, else factored. Refuses (UserError) when the form
    chosen does not fit."""
    shapes = [_matrix_shape(m.base_layer.weight) for _, m in lora_layers(model)]
    full = 4 * sum(r * c for r, c in shapes)
    factored = 4 * sum(r + c for r, c in shapes)
    budget = memory_mb << 20
    if form == "auto":
        form = "full" if full <= budget else "factored"
    need = full if form == "full" else factored
    if need > budget:
        hint = EWC_FULL_HINT if form == "full" else EWC_FACTORED_HINT
        raise UserError(
            EWC_MEMORY.format(
                form=form,
                layers=len(shapes),
                need=need / 2**20,
                budget=memory_mb,
                hint=hint.format(factored=factored / 2**20),
            )
        )
    return FisherPlan(form, need, full, factored, len(shapes), memory_mb)


@dataclass
class Fisher:
    """The normalized Fisher of each adapted weight, by LoRA layer name.

    ``full``: one tensor F shaped like the weight. ``factored``: (u, v), row and column
    factors with F ~ u v^T (u_i = scale * r_i / sum(r) and v_j = c_j for the row and
    column sums r, c of the summed squared gradients), exact when the summed squared
    gradient is rank one."""

    plan: FisherPlan
    layers: dict[str, tuple[torch.Tensor, ...]]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors held."""
        return sum(t.numel() * t.element_size() for ts in self.layers.values() for t in ts)

    def dense(self, name: str) -> torch.Tensor:
        """Layer ``name``'s Fisher as a (rows, columns) matrix (for checks only: in the
        factored form this is the full-size tensor the form avoids)."""
        parts = self.layers[name]
        if len(parts) == 1:
            return parts[0].reshape(parts[0].shape[0], -1)
        return parts[0][:, None] * parts[1][None, :]


def diagonal_fisher(
    model: Any,
    features: Sequence[dict[str, Any]],
    pad_id: int,
    form: str = "full",
    memory_mb: int = 1 << 20,
) -> Fisher:
    """Empirical diagonal Fisher of each LoRA-adapted base weight, mean-normalized.

    F = mean over examples of (d log p(example) / dW)^2, one example per backward pass
    (the Fisher is an expectation of squared per-example gradients), with the adapter
    disabled and dropout off. Dividing by the mean over all entries makes ``ewc.weight``
    independent of model size and loss scale. ``form`` and ``memory_mb`` as in
    ``plan_fisher``, which states the bytes (logged) before anything is computed. Each
    weight's gradient is folded into its Fisher as soon as it is ready and then freed,
    so the gradients never all exist at once.
    """
    plan = plan_fisher(model, form, memory_mb)
    log.info("EWC: a %s Fisher of %d bytes (float32)", plan.form, plan.bytes)
    layers = lora_layers(model)
    weights = {name: module.base_layer.weight for name, module in layers}
    sums: dict[str, list[torch.Tensor]] = {}
    for name, w in weights.items():
        rows, cols = _matrix_shape(w)
        zeros = [(rows, cols)] if plan.form == "full" else [(rows,), (cols,)]
        sums[name] = [torch.zeros(s, dtype=torch.float32, device=w.device) for s in zeros]

    def fold(name: str) -> Any:
        def hook(w: torch.Tensor) -> None:
            assert w.grad is not None
            g2 = w.grad.detach().float().reshape(sums[name][0].shape[0], -1) ** 2
            if plan.form == "full":
                sums[name][0] += g2
            else:
                sums[name][0] += g2.sum(1)
                sums[name][1] += g2.sum(0)
            w.grad = None

        return hook

    before = {name: w.requires_grad for name, w in weights.items()}
    was_training = model.training
    collate = Collator(pad_id)
    device = next(model.parameters()).device
    model.eval()
    handles = []
    try:
        for name, w in weights.items():
            w.requires_grad_(True)
            handles.append(w.register_post_accumulate_grad_hook(fold(name)))
        with model.disable_adapter():
            for feature in features:
                batch = {k: v.to(device) for k, v in collate([feature]).items()}
                logits = model(input_ids=batch["input_ids"], use_cache=False).logits
                targets = batch["labels"][:, 1:]
                nll = F.cross_entropy(
                    logits[:, :-1].float().flatten(0, 1),
                    targets.flatten(),
                    ignore_index=IGNORE,
                    reduction="sum",
                )
                torch.autograd.backward(nll, inputs=list(weights.values()))
    finally:
        for handle in handles:
            handle.remove()
        for name, w in weights.items():
            w.requires_grad_(before[name])
            w.grad = None
        model.train(was_training)
    return _normalized(plan, weights, sums)


def _normalized(
    plan: FisherPlan, weights: dict[str, torch.Tensor], sums: dict[str, list[torch.Tensor]]
) -> Fisher:
    """Scale so that the (approximated) Fisher's mean over all entries is 1."""
    total = sum(float(s[0].sum()) for s in sums.values())
    count = sum(w.numel() for w in weights.values())
    scale = count / total if total > 0 else 1.0
    layers: dict[str, tuple[torch.Tensor, ...]] = {}
    for name, parts in sums.items():
        if plan.form == "full":
            layers[name] = (parts[0].reshape(weights[name].shape) * scale,)
            continue
        rows, cols = parts
        layer_total = float(rows.sum())
        u = rows * (scale / layer_total) if layer_total > 0 else torch.zeros_like(rows)
        layers[name] = (u, cols)
    return Fisher(plan, layers)


def ewc_penalty(terms: Sequence[tuple[Any, tuple[torch.Tensor, ...]]]) -> torch.Tensor:
    """sum over adapted weights of sum F * dW^2, dW = scaling * B @ A (``lora_delta``).

    A factored F = u v^T needs no (rows, columns) tensor: with dW = s B A (B: out x r,
    A: r x in), sum_ij u_i v_j dW_ij^2 = s^2 * sum((B^T diag(u) B) * (A diag(v) A^T)),
    two r x r matrices (u and v trade places when the weight is stored transposed)."""
    total: torch.Tensor | None = None
    for module, parts in terms:
        if len(parts) == 1:
            delta = lora_delta(module)
            term = (parts[0].to(delta.device) * delta.float() ** 2).sum()
        else:
            adapter = module.active_adapters[0]
            b = module.lora_B[adapter].weight.float()
            a = module.lora_A[adapter].weight.float()
            transposed = getattr(module, "fan_in_fan_out", False)
            out_f, in_f = (parts[1], parts[0]) if transposed else parts
            left = (b.T * out_f.to(b.device)) @ b
            right = (a * in_f.to(a.device)) @ a.T
            term = (left * right).sum() * float(module.scaling[adapter]) ** 2
        total = term if total is None else total + term
    assert total is not None
    return total

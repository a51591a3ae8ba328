"""Token-level batched scoring for causal LMs.

Everything here works on token ids; ``harness.model.language_model`` turns text into the rows
scored here. The conventions follow lm-evaluation-harness so that numbers agree with
it: a continuation is scored given its context, the sequence is left-truncated to the
model's window (``(context + continuation)[-(max_length + 1):][:-1]``), and rolling
(perplexity) scoring splits a text into disjoint windows, the first conditioned on a
prefix token.

Rows are sorted longest-first and batched with right padding, so padding never sits
before a scored position, and the first batch is the largest: an out-of-memory shows
up at once rather than at the end of a long run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from harness.model.distributed import ProcessGroup


@dataclass(frozen=True)
class ScoreRow:
    """One forward pass input and the targets scored at its last positions.

    ``targets`` are scored at the last ``len(targets)`` positions of ``tokens``:
    position ``len(tokens) - len(targets) + j`` predicts ``targets[j]``.
    """

    tokens: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass(frozen=True)
class RowScore:
    """Sum of log-probabilities of the row's targets and whether each was the argmax."""

    logprob: float
    greedy: bool
    n_targets: int


ROLLING_PASS_TOKENS = 1 << 19
"""Rolling windows are scored in passes of at most about this many input tokens, so
the rows of a huge text never all exist at once (a chunk of ordinary texts is one pass)."""


def rolling_windows(
    tokens: Sequence[int], prefix_token: int, max_length: int
) -> Iterator[ScoreRow]:
    """A text's tokens as disjoint scoring windows (lm-eval's rolling scheme), made one
    at a time.

    The first window predicts the first ``max_length`` tokens from ``[prefix] + tokens``;
    each later window predicts the next ``max_length`` tokens with as much preceding
    text as fits as context. Every token is predicted exactly once.
    """
    n = len(tokens)
    if n == 0:
        return
    first = min(max_length, n)
    yield ScoreRow(tokens=(prefix_token, *tokens[: first - 1]), targets=tuple(tokens[:first]))
    done = first
    while done < n:
        width = min(n - done, max_length)
        end = done + width
        # the model input is the max_length tokens just before each predicted token
        start = max(0, end - max_length - 1)
        yield ScoreRow(tokens=tuple(tokens[start : end - 1]), targets=tuple(tokens[done:end]))
        done = end


def windows_for_rolling(
    tokens: Sequence[int], prefix_token: int, max_length: int
) -> list[ScoreRow]:
    """Every window of ``rolling_windows``."""
    return list(rolling_windows(tokens, prefix_token, max_length))


def continuation_row(
    context: Sequence[int], continuation: Sequence[int], max_length: int
) -> ScoreRow:
    """The row scoring ``continuation`` after ``context``, left-truncated to the window."""
    whole = (tuple(context) + tuple(continuation))[-(max_length + 1) :]
    return ScoreRow(tokens=whole[:-1], targets=tuple(continuation))


ProgressFn = Callable[[int], None]


@torch.inference_mode()
def score_rows(
    model: torch.nn.Module,
    rows: Sequence[ScoreRow],
    *,
    batch_size: int,
    pad_token: int,
    device: torch.device,
    advance: ProgressFn | None = None,
    group: ProcessGroup | None = None,
) -> list[RowScore]:
    """Score every row; results are in the order of ``rows``.

    Rows with the same input tokens share one forward pass (the choices of a
    classification prompt that are one token each all read the prompt's last
    position). Inputs are sorted longest-first and run ``batch_size`` at a time with
    right padding; log-softmax runs in float32 on the scored positions only.
    ``advance`` is called with the number of rows finished after each batch. With a
    process ``group`` every process scores its share of the batches (each batch the
    same rows as alone) and all of them get every score.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    by_input: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        if not row.targets:
            raise ValueError("a score row needs at least one target token")
        by_input.setdefault(row.tokens, []).append(i)
    inputs = sorted(by_input, key=lambda t: -len(t))
    out: list[RowScore | None] = [None] * len(rows)
    batches = [inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size)]
    for _, chunk in group.mine(batches) if group is not None else enumerate(batches):
        width = len(chunk[0])
        ids = torch.full((len(chunk), width), pad_token, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, toks in enumerate(chunk):
            ids[b, : len(toks)] = torch.tensor(toks, dtype=torch.long)
            mask[b, : len(toks)] = 1
        # Only positions that predict a target need logits: keep the shortest tail
        # that covers every row's scored positions (absolute [len - n_t, len)).
        first_scored = min(
            len(toks) - max(len(rows[i].targets) for i in by_input[toks]) for toks in chunk
        )
        logits = _last_logits(model, ids.to(device), mask.to(device), width - first_scored)
        done = 0
        for b, toks in enumerate(chunk):
            for i in by_input[toks]:
                n_t = len(rows[i].targets)
                lo = len(toks) - n_t - first_scored
                logp = torch.log_softmax(logits[b, lo : lo + n_t].float(), dim=-1)
                tgt = torch.tensor(rows[i].targets, dtype=torch.long, device=logp.device)
                picked = logp.gather(-1, tgt[:, None]).squeeze(-1)
                greedy = bool((logp.argmax(dim=-1) == tgt).all())
                out[i] = RowScore(logprob=float(picked.sum()), greedy=greedy, n_targets=n_t)
                done += 1
        if advance is not None:
            advance(done)
    if group is not None:
        for i, score in group.gather([(i, r) for i, r in enumerate(out) if r is not None]):
            out[i] = score
    return [r for r in out if r is not None]


def _last_logits(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, keep: int
) -> torch.Tensor:
    """Logits of the last ``keep`` positions (the LM head is the costliest layer of a
    small model with a large vocabulary, so it runs only where it is needed)."""
    # use_cache=False: scoring never continues a sequence, and building the KV cache
    # costs a third of a small model's forward pass on CPU.
    try:
        logits = model(
            input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False
        ).logits
    except TypeError:  # a model class without logits_to_keep
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return logits[:, -keep:]


def fuse_activations(model: Any) -> int:
    """Swap GPT-2's composite tanh-GELU for PyTorch's fused kernel of the same function.

    ``NewGELUActivation`` computes 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as
    five separate tensor operations; ``torch.nn.functional.gelu(approximate="tanh")``
    is the same formula in one kernel (outputs agree to ~1e-6), and the activation is a
    fifth of a small model's CPU time. Returns the number of modules swapped.
    """
    from transformers.activations import ACT2FN, NewGELUActivation

    swapped = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, ACT2FN["gelu_pytorch_tanh"])
                swapped += 1
    return swapped

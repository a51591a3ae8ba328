"""Examples -> token ids and labels, with the loss on the completion only.

A prompt/completion example is tokenized as the harness scores a continuation (lm-eval's
split): the whole text is encoded, and the first ``len(encode(prompt))`` tokens are the
context. So what is trained is exactly what the audit scores. Context tokens get label
-100 (no loss), as does padding; a text example is conditioned on the BOS (else EOS)
token and its every token is a target. The end-of-sequence token is appended to the
target so that the model learns to stop.

A chat example is rendered with the chat template as the harness renders it
(harness.tasks.chat.assistant_spans: the text and the character span of each assistant
turn) and tokenized once with the tokenizer's offsets: a token is a target when any of
its characters lies in a span (all turns, or the last with ``chat.train_on: last``), so
a token straddling a span's edge is trained on. As for a prompt/completion example, the
whitespace that ends the context (the generation prompt's line break) belongs to the
target (the spans start before it): the harness scores an assistant turn as lm-eval
splits a continuation, so the tokens trained on are the tokens it scores. When the rendered text already starts
with the BOS (Llama-3-style templates write it), no special tokens are added: exactly
one BOS, as lm-eval encodes such a string. No EOS is appended: each span ends with the
template's end-of-turn marker.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finetune.data.examples import Example
from harness.errors import UserError
from harness.tasks.chat import ChatTemplate, assistant_spans

if TYPE_CHECKING:
    from torch import Tensor

IGNORE = -100  # label of positions without loss (torch cross_entropy's ignore_index)

# user-facing messages (tests assert them exactly)
NEEDS_OFFSETS = (
    "chat rows need a fast tokenizer (one that reports character offsets) to locate the "
    "assistant turns; {model} has a slow one"
)


@dataclass(frozen=True)
class ChatEncoding:
    """How chat examples are rendered and which assistant turns are targets."""

    template: ChatTemplate
    train_on: str = "all"
    """``all`` assistant turns, or the ``last`` one."""

    def describe(self) -> dict[str, Any]:
        """Provenance for the manifest: the template's source and sha256, the turns."""
        return {**self.template.describe(), "train_on": self.train_on}


def chat_tokens(
    messages: Sequence[dict[str, str]], chat: ChatEncoding, tokenizer: Any
) -> tuple[list[int], list[int]]:
    """(token ids, labels) of a conversation: -100 outside the assistant spans."""
    text, spans = assistant_spans(chat.template, messages)
    if chat.train_on == "last":
        spans = spans[-1:]
    bos = tokenizer.bos_token
    special = not (bos and text.startswith(bos))
    try:
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
    except NotImplementedError:
        model = getattr(tokenizer, "name_or_path", "the model")
        raise UserError(NEEDS_OFFSETS.format(model=model)) from None
    ids = [int(i) for i in enc["input_ids"]]
    return ids, span_labels(ids, enc["offset_mapping"], spans)


def span_labels(
    ids: Sequence[int], offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> list[int]:
    """Each token's id where any of its characters (``offsets``: [start, end)) lies in a
    span, else -100. A token straddling a span's edge is a target; a token without
    characters (a BOS the tokenizer added: offsets (0, 0)) never is."""
    return [
        tok if any(start < s_end and end > s_start for s_start, s_end in spans) else IGNORE
        for tok, (start, end) in zip(ids, offsets, strict=True)
    ]


@dataclass
class Encoded:
    """Tokenized examples, and what did not fit."""

    features: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0
    """Examples whose target was cut at max_length."""
    dropped: list[str] = field(default_factory=list)
    """Examples whose prompt alone fills max_length (``FILE line N``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": len(self.features),
            "truncated": self.truncated,
            "dropped": len(self.dropped),
            "dropped_listed": self.dropped[:50],
        }


def split_tokens(tokenizer: Any, prompt: str, target: str) -> tuple[list[int], list[int]]:
    """(context ids, target ids), split as harness.model.language_model.LanguageModel.encode_pair."""
    n_spaces = len(prompt) - len(prompt.rstrip())
    if n_spaces:  # trailing whitespace of the prompt belongs to the target
        target, prompt = prompt[-n_spaces:] + target, prompt[:-n_spaces]
    if not prompt:
        prefix = tokenizer.bos_token_id
        prefix = tokenizer.eos_token_id if prefix is None else prefix
        tokens = list(tokenizer.encode(target))
        if tokens and tokens[0] == prefix:
            return tokens[:1], tokens[1:]
        return [int(prefix)], tokens
    whole = list(tokenizer.encode(prompt + target))
    context = list(tokenizer.encode(prompt))
    return context, whole[len(context) :]


def encode_examples(
    examples: Sequence[Example],
    tokenizer: Any,
    max_length: int,
    add_eos: bool,
    chat: ChatEncoding | None = None,
) -> Encoded:
    """Token ids, labels (-100 on the context) and the loss weight of each example.
    ``chat`` encodes the chat examples (required when there are any)."""
    out = Encoded()
    eos = tokenizer.eos_token_id
    for ex in examples:
        if ex.is_chat:
            if chat is None:
                raise ValueError("chat examples need a ChatEncoding")
            ids, labels = chat_tokens(ex.message_dicts(), chat, tokenizer)
            if all(label == IGNORE for label in labels[:max_length]):
                out.dropped.append(ex.where)
                continue
            if len(ids) > max_length:
                out.truncated += 1
                ids, labels = ids[:max_length], labels[:max_length]
            out.features.append({"input_ids": ids, "labels": labels, "weight": ex.weight})
            continue
        context, target = split_tokens(tokenizer, ex.prompt, ex.target)
        if add_eos and eos is not None and (not target or target[-1] != eos):
            target = [*target, int(eos)]
        if len(context) >= max_length or not target:
            out.dropped.append(ex.where)
            continue
        ids = context + target
        if len(ids) > max_length:
            out.truncated += 1
            ids = ids[:max_length]
        labels = [IGNORE] * len(context) + ids[len(context) :]
        out.features.append({"input_ids": ids, "labels": labels, "weight": ex.weight})
    return out


@dataclass
class Collator:
    """Right-pads a batch; padding gets attention 0 and label -100."""

    pad_id: int

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in batch)
        ids, mask, labels = [], [], []
        for f in batch:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_id] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
            labels.append(f["labels"] + [IGNORE] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor(labels),
            "weight": torch.tensor([float(f.get("weight", 1.0)) for f in batch]),
        }


@dataclass
class PackedCollator:
    """Concatenates a batch into one row (batch dimension 1) without padding.

    ``position_ids`` restart at 0 with each example. That is what keeps examples apart:
    given no 2D attention mask and no key/value cache, transformers' mask builder
    (masking_utils) reads a restart as a sequence boundary and builds a block-diagonal
    causal mask (eager and sdpa, checked by the tests; its flash-attention path derives
    ``cu_seqlens`` from the same restarts). A model that ignores them would attend
    across examples, so the trainer checks once (``packing_isolates``) before training.
    The first token of every example gets label -100: it is not predicted from the
    previous example's last token. ``weight`` is per token, each its example's weight.
    Same call as ``Collator``; ``pad_id`` is unused (nothing is padded), kept so both
    are built alike.
    """

    pad_id: int

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        weights: list[float] = []
        for f in batch:
            n = len(f["input_ids"])
            if not n:
                continue
            ids += f["input_ids"]
            labels += [IGNORE, *f["labels"][1:]]
            positions += range(n)
            weights += [float(f.get("weight", 1.0))] * n
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            "weight": torch.tensor([weights]),
        }


def example_spans(position_ids: Any) -> list[tuple[int, int]]:
    """[start, end) of each example of a packed row, from its restarting positions."""
    starts = [int(i) for i in (position_ids[0] == 0).nonzero().flatten().tolist()]
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    ends = [*starts[1:], int(position_ids.shape[-1])]
    return list(zip(starts, ends, strict=True))


def unpack(input_ids: Any, position_ids: Any, mask: Any, pad_id: int) -> tuple[Any, Any, Any]:
    """A packed row as right-padded rows: (input_ids, attention_mask, mask), where
    ``mask`` (length - 1 per row, True where a target follows) keeps its True entries in
    the same order, row-major, as the packed one."""
    import torch

    spans = example_spans(position_ids)
    width = max(end - start for start, end in spans)
    ids = input_ids.new_full((len(spans), width), pad_id)
    attention = input_ids.new_zeros((len(spans), width))
    rows = mask.new_zeros((len(spans), width - 1))
    for b, (start, end) in enumerate(spans):
        ids[b, : end - start] = input_ids[0, start:end]
        attention[b, : end - start] = 1
        rows[b, : end - start - 1] = mask[0, start : end - 1]
    return ids, attention, rows.to(torch.bool)


def packing_isolates(model: Any) -> bool:
    """Whether ``model`` keeps packed examples apart (see ``PackedCollator``): the
    logits of a short random example packed after another equal its logits alone, up
    to the precision of the model's dtype."""
    import torch

    device = next(model.parameters()).device
    vocab = int(model.get_input_embeddings().num_embeddings)
    gen = torch.Generator().manual_seed(0)
    first, second = (torch.randint(0, vocab, (1, n), generator=gen) for n in (6, 5))
    packed = torch.cat([first, second], 1)
    positions = torch.tensor([[*range(6), *range(5)]])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=second.to(device), use_cache=False).logits.float()
            both = model(
                input_ids=packed.to(device), position_ids=positions.to(device), use_cache=False
            ).logits.float()
    finally:
        model.train(was_training)
    tolerance = 1e-4 if next(model.parameters()).dtype == torch.float32 else 3e-2
    scale = float(alone.abs().max().clamp_min(1.0))
    return float((both[:, 6:] - alone).abs().max()) <= tolerance * scale


def target_weights(labels: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """(mask, weights) of the next-token predictions, both (batch, length - 1): True
    where a target follows, and that target's example weight (0 elsewhere). ``weight``
    is one per example (``Collator``), one per token (``PackedCollator``) or None (1)."""
    mask = labels[:, 1:].ne(IGNORE)
    if weight is None:
        return mask, mask.float()
    per = weight.float()
    per = per[:, 1:] if per.dim() == 2 else per[:, None]
    return mask, per * mask


@dataclass(frozen=True)
class GlobalCounts:
    """What one optimizer step's loss is normalized by: sums over its global batch (all
    the micro-batches of a gradient accumulation, on all data-parallel processes), so
    the loss does not depend on how that batch is split (``FinetuneTrainer``)."""

    weight: Tensor
    """Sum of the example weights of all target tokens."""
    tokens: Tensor
    """Number of target tokens."""
    processes: int
    """Processes whose gradients the data-parallel backward averages (1 when the counts
    are this process's own)."""
    micro_batches: int
    """Micro-batches of this process in the step."""

    @classmethod
    def of(cls, batches: Sequence[dict[str, Any]], device: Any) -> GlobalCounts:
        """This process's counts (``processes`` 1)."""
        import torch

        total = torch.zeros(2, device=device)
        for batch in batches:
            mask, w = target_weights(batch["labels"], batch.get("weight"))
            # the selected weights, summed in the order compute_loss sums w * ce
            total += torch.stack([w[mask].sum(), mask.sum().float()]).to(device)
        return cls(total[0], total[1], 1, len(batches))


class ReplayMix:
    """The training features plus, in every epoch, a fresh seeded sample of replay ones.

    A map-style dataset of fixed length ``len(main) + n_replay``: index i < len(main) is
    a training example, the others draw from the replay pool through a permutation that
    depends on (seed, epoch) only, so a resumed run sees the same examples. The epoch is
    set by ``set_epoch`` (a Trainer callback calls it at each epoch's start).
    """

    def __init__(
        self, main: list[dict[str, Any]], pool: list[dict[str, Any]], n_replay: int, seed: int
    ) -> None:
        self.main, self.pool, self.n_replay, self.seed = main, pool, n_replay, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        order: list[int] = []
        round_ = 0
        while len(order) < self.n_replay and self.pool:  # cycle only if the pool is small
            perm = list(range(len(self.pool)))
            random.Random(f"{self.seed}:{epoch}:{round_}").shuffle(perm)
            order += perm
            round_ += 1
        self.order = order[: self.n_replay]

    def replay_indices(self) -> list[int]:
        """Pool indices of this epoch's replay examples."""
        return list(self.order)

    def __len__(self) -> int:
        return len(self.main) + len(self.order)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < len(self.main):
            return self.main[i]
        return self.pool[self.order[i - len(self.main)]]


def replay_count(n_train: int, fraction: float) -> int:
    """Replay examples per epoch so that they make up ``fraction`` of it."""
    return max(1, round(n_train * fraction / (1 - fraction)))

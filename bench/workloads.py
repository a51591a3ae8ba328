"""The models and data the scoring benchmarks share, built offline from ../shared/realdata.

* ``build_gpt2``: a GPT-2-style model with random weights and a byte-level BPE trained
  on SST-2 train, cached in bench/.cache (the 20M model of the three-task comparison,
  the 92M one of issue 20: 12 x 768, 8k vocabulary);
* ``sst2_dev``: SST-2 dev as rows, the prompt and choices of the classification task;
* ``hellaswag_shape``: HellaSwag-shaped items from real text: a context of about 60
  tokens (consecutive SST-2 train sentences) and four endings of 15-25 tokens, one of
  them the sentence that follows the context;
* ``few_shot_sst2``: SST-2 dev after a fixed five-shot prefix from SST-2 train.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import REALDATA

CACHE = Path(__file__).resolve().parent / ".cache"
PROMPT = "Review: {{ sentence }}\nSentiment:"
CHOICES = [" negative", " positive"]
HELLASWAG_ITEMS = 250
"""HellaSwag-shaped items: lm-eval scores 1000 inputs of about 80 tokens on the 92M
model in about as long as it scores SST-2 dev."""


def build_gpt2(
    folder: Path, *, vocab: int, n_embd: int, n_layer: int, n_head: int, n_positions: int
) -> Path:
    """A random-weights GPT-2 (seed 0) with a BPE of ``vocab`` tokens trained on SST-2
    train, saved as safetensors in ``folder`` (once)."""
    if (folder / "model.safetensors").exists():
        return folder
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        train_sentences(),
        trainers.BpeTrainer(
            vocab_size=vocab,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def model_20m() -> Path:
    return build_gpt2(
        CACHE / "gpt2-20m", vocab=16000, n_embd=384, n_layer=6, n_head=6, n_positions=256
    )


def model_92m() -> Path:
    return build_gpt2(
        CACHE / "gpt2-92m", vocab=8192, n_embd=768, n_layer=12, n_head=12, n_positions=1024
    )


def train_sentences() -> list[str]:
    lines = (REALDATA / "sst2" / "train.tsv").read_text().splitlines()[1:]
    return [line.rsplit("\t", 1)[0] for line in lines]


def sst2_dev() -> list[dict[str, Any]]:
    lines = (REALDATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    return [
        {"sentence": line.rsplit("\t", 1)[0], "label": int(line.rsplit("\t", 1)[1])}
        for line in lines
    ]


def hellaswag_shape(tokenizer: Any, n: int = HELLASWAG_ITEMS) -> list[dict[str, Any]]:
    """``n`` items ``{ctx, endings, label}`` (seed 0): SST-2 train is read in order, a
    context gathers consecutive sentences up to about 60 tokens, its true ending is the
    next sentence of 15-25 tokens, the three others are sentences of that length from
    elsewhere; endings start with a space, as HellaSwag's are scored."""

    def size(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    rng = random.Random(0)
    sentences = train_sentences()
    endings_pool = [s for s in sentences[40000:] if 15 <= size(" " + s) <= 25][:4000]
    items: list[dict[str, Any]] = []
    at = 0
    while len(items) < n:
        ctx: list[str] = []
        while size(" ".join(ctx)) < 55:
            ctx.append(sentences[at])
            at += 1
        true = sentences[at]
        at += 1
        if not 15 <= size(" " + true) <= 25:
            continue
        endings = [" " + true] + [" " + e for e in rng.sample(endings_pool, 3)]
        rng.shuffle(endings)
        items.append({"ctx": " ".join(ctx), "endings": endings, "label": endings.index(" " + true)})
    return items


FEW_SHOT = 5


def few_shot_prefix() -> str:
    """Five labelled SST-2 train reviews in the task's prompt format (fixed: the first
    five of train), each followed by a blank line."""
    lines = (REALDATA / "sst2" / "train.tsv").read_text().splitlines()[1 : 1 + FEW_SHOT]
    shots = []
    for line in lines:
        text, label = line.rsplit("\t", 1)
        shots.append(f"Review: {text}\nSentiment:{CHOICES[int(label)]}\n\n")
    return "".join(shots)


def trie_sequence(inputs: Sequence[tuple[int, ...]]) -> list[int]:
    """The distinct tokens of ``inputs``' trie, depth-first, as one sequence: what one
    example's inputs hold once (the least any scorer computes of them)."""
    seq: list[int] = []
    previous: tuple[int, ...] = ()
    for toks in sorted(set(inputs)):
        shared = 0
        while shared < min(len(previous), len(toks)) and previous[shared] == toks[shared]:
            shared += 1
        seq += toks[shared:]
        previous = toks
    return seq


def bare_forward(model: Any, sequences: list[list[int]], batch_size: int) -> None:
    """One forward pass over ``sequences`` as plain causal rows: longest first,
    right-padded batches, the last position's logits only."""
    import torch

    order = sorted(sequences, key=len, reverse=True)
    with torch.inference_mode():
        for at in range(0, len(order), batch_size):
            chunk = order[at : at + batch_size]
            ids = torch.zeros((len(chunk), len(chunk[0])), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, seq in enumerate(chunk):
                ids[b, : len(seq)] = torch.tensor(seq)
                mask[b, : len(seq)] = 1
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False)

"""Prefix-shared scoring against today's path and a bare forward (issue 20, item 1).

Two synthetic workloads on a random GPT-2 built from a config (~14M parameters, 8k
vocabulary, 6 x 384), scored with ``harness.model.scoring.score_rows``:

* HellaSwag shape: contexts of 60 tokens, 4 endings of 15-25 tokens each;
* SST-2 shape: prompts of 20-60 tokens, choices of 1 and 2 tokens.

Printed per workload (best of ``--repeat`` runs, batch 32): the old path
(``share_prefixes=False``, every input whole), the new path (packed), a bare forward
over the unique tokens (each pack's tokens once as a plain causal sequence, the same
batches, ``logits_to_keep=1``), and, for the HellaSwag shape, the KV-cache design
(contexts run once with a cache, the cache repeated across endings, endings run on
it; contexts all 60 tokens, so no padding to handle: a lower bound on its time).
Nothing is written to bench/README.md.

    PYTHONPATH=. .venv/bin/python bench/prefix_scoring.py [--repeat 3] [--examples 128]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any


def build_model() -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=8192, n_positions=1024, n_embd=384, n_layer=6, n_head=6)
    return GPT2LMHeadModel(config).eval()


def hellaswag(n: int, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    pairs = []
    for _ in range(n):
        ctx = [rng.randrange(1, 8192) for _ in range(60)]
        for _ in range(4):
            pairs.append((ctx, [rng.randrange(1, 8192) for _ in range(rng.randint(15, 25))]))
    return pairs


def sst2(n: int, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    pairs = []
    for _ in range(n):
        ctx = [rng.randrange(1, 8192) for _ in range(rng.randint(20, 60))]
        pairs += [(ctx, [4001]), (ctx, [4002, 4003])]
    return pairs


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--examples", type=int, default=128)
    args = parser.parse_args()
    model = build_model()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT-2 {params / 1e6:.1f}M params, torch threads {torch.get_num_threads()}")
    rng = random.Random(0)
    for name, pairs in [
        ("hellaswag", hellaswag(args.examples, rng)),
        ("sst2", sst2(args.examples * 2, rng)),
    ]:
        print(workload(model, name, pairs, args.repeat))


def workload(model: Any, name: str, pairs: list[tuple[list[int], list[int]]], repeat: int) -> str:
    import torch

    from harness.model.scoring import (
        _pack_batches,
        continuation_row,
        pack_prefixes,
        score_rows,
    )

    cpu = torch.device("cpu")
    rows = [continuation_row(c, x, 1024) for c, x in pairs]
    kw: dict[str, Any] = {"batch_size": 32, "pad_token": 0, "device": cpu}
    old = best(lambda: score_rows(model, rows, share_prefixes=False, **kw), repeat)
    new = best(lambda: score_rows(model, rows, **kw), repeat)
    by_input: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(rows):
        by_input.setdefault(r.tokens, []).append(i)
    packs, _ = pack_prefixes(sorted(by_input, key=len, reverse=True), by_input, rows)
    batches = _pack_batches(packs, 32)

    @torch.inference_mode()
    def bare() -> None:
        for chunk in batches:
            seqs = [p.tokens for p in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.zeros((len(seqs), width), dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for b, s in enumerate(seqs):
                ids[b, : len(s)] = torch.tensor(s)
                mask[b, : len(s)] = 1
            model(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False)

    floor = best(bare, repeat)
    unique = sum(len(p.tokens) for p in packs)
    line = (
        f"{name}: {len(rows)} rows, {unique} unique tokens | old {old:.2f}s "
        f"new {new:.2f}s bare {floor:.2f}s | old/new {old / new:.2f} "
        f"new/bare {new / floor:.2f}"
    )
    if name == "hellaswag":
        line += f" | kv-cache {best(lambda: kv_cache(model, pairs), repeat):.2f}s"
    return line


def kv_cache(model: Any, pairs: list[tuple[list[int], list[int]]]) -> None:
    """Design (b), timed only: 8 contexts (32 endings) a batch, endings right-padded."""
    import torch
    from transformers import DynamicCache

    with torch.inference_mode():
        for start in range(0, len(pairs), 32):
            chunk = pairs[start : start + 32]
            contexts = torch.tensor([c for c, _ in chunk[::4]])
            cache = DynamicCache()
            out = model(input_ids=contexts, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            cache.batch_repeat_interleave(4)
            width = max(len(x) for _, x in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.ones((len(chunk), 60 + width), dtype=torch.long)
            for b, (_, x) in enumerate(chunk):
                ids[b, : len(x)] = torch.tensor(x)
                mask[b, 60 + len(x) :] = 0
            pos = torch.arange(60, 60 + width).expand(len(chunk), -1)
            model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=True,
            )


if __name__ == "__main__":
    main()

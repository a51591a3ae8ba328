"""The scoring and generation kernels against their earlier selves and a bare forward.

In one process, on the 20M GPT-2 of bench.workloads (random weights, BPE trained on
SST-2 train) and real text, each timing the best of ``--repeat``:

* scoring (``harness.model.scoring.score_rows``, batch 32) of three task shapes, with
  the tokens of their distinct inputs run whole (what lm-eval computes) against the
  unique tokens (the least any scorer computes; their ratio bounds how far below
  lm-eval's time a scorer can go):
  SST-2 dev (a one-token and a two-token choice), HellaSwag-shaped items (four endings
  after about 60 tokens) and five-shot SST-2 (the same shots before every review):
  the path before prefix sharing (``share_prefixes=False``, every input whole), the
  packed path, and a bare forward over the unique tokens (each example's token trie
  once as a plain causal sequence, the last position's logits only); the largest
  relative difference of the log-likelihoods and whether the greedy flags agree;
* greedy generation (``harness.model.generation.greedy_generate``, batch 32, 32 new
  tokens, stops "\\n" and "."), 128 SST-2 prompts: the stop check that decoded every
  row's whole new text at each step (as before issue 20) against today's, with the
  dynamic and the static KV cache; the texts must be identical.

    PYTHONPATH=. .venv/bin/python bench/scoring_kernels.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REALDATA, write_section  # noqa: E402
from bench.workloads import (  # noqa: E402
    CHOICES,
    bare_forward,
    few_shot_prefix,
    hellaswag_shape,
    model_20m,
    sst2_dev,
    trie_sequence,
)

BATCH = 32


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def pairs_of(tok: Any, items: list[tuple[str, list[str]]]) -> list[tuple[list[int], list[int]]]:
    """(context tokens, continuation tokens) as lm-eval splits them."""
    out = []
    for context, continuations in items:
        ctx = tok(context)["input_ids"]
        for cont in continuations:
            whole = tok(context + cont)["input_ids"]
            out.append((ctx, whole[len(ctx) :]))
    return out


def workloads(tok: Any) -> dict[str, list[tuple[str, list[str]]]]:
    dev = sst2_dev()
    shots = few_shot_prefix()
    return {
        "sst2": [(f"Review: {d['sentence']}\nSentiment:", CHOICES) for d in dev],
        "hellaswag": [(d["ctx"], d["endings"]) for d in hellaswag_shape(tok)],
        "five-shot sst2": [
            (f"{shots}Review: {d['sentence']}\nSentiment:", CHOICES) for d in dev[:256]
        ],
    }


def scoring(model: Any, tok: Any, repeat: int) -> list[str]:
    import torch

    from harness.model.scoring import continuation_row, score_rows

    cpu = torch.device("cpu")
    lines = []
    for name, items in workloads(tok).items():
        rows = [continuation_row(c, x, 1024) for c, x in pairs_of(tok, items)]
        kw: dict[str, Any] = {"batch_size": BATCH, "pad_token": 0, "device": cpu}
        old_s, old = best(lambda: score_rows(model, rows, share_prefixes=False, **kw), repeat)  # noqa: B023
        new_s, new = best(lambda: score_rows(model, rows, **kw), repeat)  # noqa: B023
        sequences = []
        start = 0
        for _context, continuations in items:
            group = rows[start : start + len(continuations)]
            start += len(continuations)
            sequences.append(trie_sequence([r.tokens for r in group]))
        bare_s, _ = best(lambda: bare_forward(model, sequences, BATCH), repeat)  # noqa: B023
        worst = max(
            abs(a.logprob - b.logprob) / abs(b.logprob) for a, b in zip(new, old, strict=True)
        )
        same_greedy = all(a.greedy == b.greedy for a, b in zip(new, old, strict=True))
        unique = sum(len(s) for s in sequences)
        whole = sum(len(t) for t in {r.tokens: None for r in rows})  # lm-eval's inputs
        lines.append(
            f"| {name} | {len(items)} x {len(items[0][1])} | {whole} | {unique} "
            f"| {unique / whole:.3f} | {old_s:.2f} | {new_s:.2f} "
            f"| {bare_s:.2f} | {old_s / new_s:.2f} | {new_s / bare_s:.3f} | {worst:.1e} "
            f"| {'yes' if same_greedy else 'NO'} |"
        )
        print(lines[-1])
    return lines


def whole_text_generate(
    model: Any, tok: Any, encoded: list[list[int]], stop: list[str], new: int
) -> list[str]:
    """Greedy generation as before issue 20: each step decodes every row's whole new
    text to look for a stop string (the same batches and cut as today's)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from harness.model.generation import cut_at_stop, end_tokens

    ends = end_tokens(tok, stop)

    class WholeText(StoppingCriteria):  # type: ignore[misc]
        def __init__(self, start: int) -> None:
            self.start = start

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = []
            for row in input_ids[:, self.start :]:
                ids = row.tolist()
                if any(t in ends for t in ids):
                    done.append(True)
                    continue
                text = tok.decode(ids, skip_special_tokens=True)
                done.append(any(s in text for s in stop))
            return torch.tensor(done, dtype=torch.bool)

    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    out = [""] * len(encoded)
    with torch.inference_mode():
        for at in range(0, len(order), BATCH):
            chunk = order[at : at + BATCH]
            width = max(len(encoded[i]) for i in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, i in enumerate(chunk):
                ids[b, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[b, width - len(encoded[i]) :] = 1
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new,
                do_sample=False,
                num_beams=1,
                pad_token_id=0,
                stopping_criteria=StoppingCriteriaList([WholeText(width)]),
            )
            for b, i in enumerate(chunk):
                toks = gen[b, width:].tolist()
                cut = [k for k, t in enumerate(toks) if t in ends]
                text = tok.decode(toks[: cut[0]] if cut else toks, skip_special_tokens=True)
                out[i] = cut_at_stop(text, stop)
    return out


def generation(model: Any, tok: Any, repeat: int) -> list[str]:
    import torch

    from harness.model.generation import greedy_generate

    dev = sst2_dev()[:128]
    encoded = [tok(f"Review: {d['sentence']}\nSentiment:")["input_ids"] for d in dev]
    stop = ["\n", "."]
    kw: dict[str, Any] = {"max_new_tokens": 32, "pad_token": 0, "device": torch.device("cpu")}
    lines = []
    texts: dict[str, list[str]] = {}
    for cache in ("dynamic", "static"):
        model.generation_config.cache_implementation = None if cache == "dynamic" else "static"
        old_s, texts[f"old {cache}"] = best(
            lambda: whole_text_generate(model, tok, encoded, stop, 32), repeat
        )
        new_s, texts[f"new {cache}"] = best(
            lambda: greedy_generate(model, tok, encoded, stop=stop, batch_size=BATCH, **kw),
            repeat,
        )
        lines.append(f"| {cache} | {old_s:.2f} | {new_s:.2f} | {old_s / new_s:.2f} |")
        print(lines[-1])
    model.generation_config.cache_implementation = None
    reference = texts["old dynamic"]
    same = all(t == reference for t in texts.values())
    lines.append(f"\nTexts identical across the four runs: {'yes' if same else 'NO'}.")
    return lines


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument(
        "--threads", type=int, help="torch threads (a machine shared with other work)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    folder = model_20m()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    print(f"torch threads {torch.get_num_threads()}")
    score_lines = scoring(model, tok, args.repeat)
    gen_lines = generation(model, tok, args.repeat)
    body = "\n".join(
        [
            "| workload | examples x choices | tokens of the distinct inputs run whole "
            "(what lm-eval runs) | unique tokens | unique / whole | before (s) | packed (s) | "
            "bare forward (s) | before / packed | packed / bare | largest relative "
            "log-likelihood difference | greedy flags equal |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *score_lines,
            "",
            'Greedy generation, 128 SST-2 prompts, batch 32, 32 new tokens, stops "\\n" and ".":',
            "",
            "| KV cache | whole-text stop check (s) | newest-tokens stop check (s) | ratio |",
            "|---|---|---|---|",
            *gen_lines,
        ]
    )
    if not args.no_readme:
        write_section(
            "scoring_kernels", body, "python bench/scoring_kernels.py " + " ".join(sys.argv[1:])
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

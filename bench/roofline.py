"""How close batched scoring comes to this machine's fp32 matmul peak.

1. Peak: the best FLOP/s of square fp32 matmuls (torch.mm) over a few sizes.
2. Achieved: the harness scores SST-2 dev (872 prompts x 2 choices) with the benchmark
   GPT-2 (bench/eval_vs_lmeval.py builds it); model FLOPs are counted per scored token
   as 2 x (non-embedding parameters) + the attention products (2 x 2 x layers x
   seq x d_model), plus the LM head on the positions it runs on.

Target (issue 7): achieved >= 40% of peak.

    .venv/bin/python bench/roofline.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import REALDATA, write_section  # noqa: E402


def matmul_peak(sizes: tuple[int, ...] = (512, 1024, 2048), seconds: float = 2.0) -> float:
    import torch

    best = 0.0
    with torch.inference_mode():
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            torch.mm(a, b)  # warm-up
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                torch.mm(a, b)
                count += 1
            best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


def main() -> int:
    if not REALDATA.is_dir():
        print("skipped: ../shared/realdata is absent")
        return 0
    from bench.eval_vs_lmeval import CACHE, CHOICES, build_model
    from harness.model.language_model import ModelSource, load_model
    from harness.model.scoring import continuation_row

    folder = build_model(CACHE / "gpt2-20m")
    lm = load_model(ModelSource(path=str(folder)))
    lines = (REALDATA / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    prompts = [f"Review: {line.rsplit(chr(9), 1)[0]}\nSentiment:" for line in lines]
    pairs = [(p, c) for p in prompts for c in CHOICES]
    cfg = lm.model.config
    d, layers, vocab = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    body = sum(
        p.numel() for n, p in lm.model.named_parameters() if "wte" not in n and "wpe" not in n
    )
    # unique inputs are what the model runs (one-token choices share their prompt's pass)
    rows = {continuation_row(*lm.encode_pair(c, x), lm.max_length).tokens for c, x in pairs}
    flops = 0.0
    for toks in rows:
        n = len(toks)
        flops += 2 * body * n + 4 * layers * n * n * d + 2 * d * vocab  # head on 1 position
    lm.loglikelihood(pairs[:64], batch_size=32)  # warm-up
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        lm.loglikelihood(pairs, batch_size=32)
        best = min(best, time.perf_counter() - start)
    achieved = flops / best
    peak = matmul_peak()
    share = achieved / peak
    print(f"peak fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    print(f"scoring: {flops / 1e9:.1f} GFLOP in {best:.2f}s = {achieved / 1e9:.1f} GFLOP/s")
    print(f"share of peak: {share:.1%} (target >= 40%)")
    write_section(
        "roofline",
        "| measure | value |\n|---|---|\n"
        f"| peak fp32 matmul (GFLOP/s) | {peak / 1e9:.1f} |\n"
        f"| batched scoring, SST-2 dev, batch 32 (GFLOP/s) | {achieved / 1e9:.1f} |\n"
        f"| share of peak | {share:.1%} (target >= 40%) |",
        "python bench/roofline.py",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

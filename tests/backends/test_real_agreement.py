"""Acceptance of issue 19: the same suite through backend hf (transformers, the HF
folder) and backend openai-completions (llama-cpp-python's server on loopback, serving
the float32 GGUF of the same weights) gives the same log-likelihoods within a stated
tolerance, the same predictions and accuracy, and identical greedy generations.

Skipped (with the reason) where llama-cpp-python, its server extra or the sdist's
converter is absent; ``make test`` provides them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends.llamacpp_server import LlamaServer
from tests.backends.real_suite import (
    SERVED_NAME,
    WINDOW,
    model_section,
    records,
    results,
    run,
    write_suite,
)

pytestmark = pytest.mark.slow

PER_TOKEN = 1e-3
"""Max |log-likelihood difference| per continuation token, hf against the server. Both
compute in float32 (the GGUF's weights and the server's KV cache are float32), with
different kernels and summation orders: measured 1.2e-5 per token (B19's probe) and
at most ~2e-6 per token on these rows. 1e-3 is ~100x that and still ~1000x below the
gaps between the two choices' log-likelihoods on these rows (>= 0.37), so a misaligned
or mis-split token (an error of whole nats) cannot pass."""


def test_served_llama_cpp_agrees_with_transformers(
    trained_llama: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, gguf_file = trained_llama
    hf_suite = write_suite(tmp_path, model_section(folder, None), "hf.yaml")
    assert run(hf_suite, tmp_path / "hf") == 0
    with LlamaServer(gguf_file, n_ctx=WINDOW, model_alias=SERVED_NAME) as server:
        served = write_suite(tmp_path, model_section(folder, server.url), "served.yaml")
        assert run(served, tmp_path / "served") == 0
    ours, theirs = records(tmp_path / "hf", "sentiment"), records(tmp_path / "served", "sentiment")
    assert len(ours) == len(theirs) == 12
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        assert a["n_tokens"] == b["n_tokens"], a["id"]
        for x, y, n in zip(a["loglik"], b["loglik"], a["n_tokens"], strict=True):
            worst = max(worst, abs(x - y) / n)
    gap = min(abs(r["loglik"][0] - r["loglik"][1]) for r in ours)
    print(f"max |d log-likelihood| per token: {worst:.2e} (tolerance {PER_TOKEN:g})")
    print(f"smallest gap between the two choices (hf): {gap:.3f}")
    assert worst <= PER_TOKEN
    assert [r["pred"] for r in ours] == [r["pred"] for r in theirs]
    accuracy = [
        results(out)["tasks"]["sentiment"]["metrics"]["accuracy"]["value"]
        for out in (tmp_path / "hf", tmp_path / "served")
    ]
    assert accuracy[0] == accuracy[1]
    ours, theirs = records(tmp_path / "hf", "continue"), records(tmp_path / "served", "continue")
    assert len(ours) == 6
    print("generations:", [r["prediction"] for r in theirs])
    assert [r["prediction"] for r in ours] == [r["prediction"] for r in theirs]
    assert any(r["prediction"].strip() for r in ours)  # generations, not empty strings
    prov = results(tmp_path / "served")["provenance"]
    assert prov["device"] == server.url
    print(
        "accuracy (both):",
        accuracy[0],
        "predictions:",
        [r["pred"] for r in records(tmp_path / "hf", "sentiment")],
    )

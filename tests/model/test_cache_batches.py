"""Issue #24 defect 13: a run with a cold response cache and a run without the cache
send the model the same requests in the same batches, so their results agree to the
last bit (docs/results.md, "Reproducibility")."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.model.cache import FILE_NAME, ResponseCache, cached_map
from tests.model.test_cache import comparable
from tests.tiny_models import corpus


def chunks_computed(cache: ResponseCache | None, requests: list[int]) -> list[list[int]]:
    computed: list[list[int]] = []

    def compute(indices: list[int]) -> list[Any]:
        computed.append(indices)
        return [requests[i] * 10 for i in indices]

    out = cached_map(cache, "fp", "k", requests, compute, chunk=3, order=lambda i: -requests[i])
    assert out == [r * 10 for r in requests]
    return computed


def test_no_cache_computes_the_chunks_of_a_cold_cache(tmp_path: Path) -> None:
    requests = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    cold = chunks_computed(ResponseCache(tmp_path / FILE_NAME), requests)
    assert cold == [[5, 7, 4], [2, 0, 6], [1]]  # largest first, a repeat computed once
    assert chunks_computed(None, requests) == cold


def test_a_disabled_cache_computes_the_chunks_of_a_cold_cache(tmp_path: Path) -> None:
    requests = [3, 1, 4, 1, 5, 9, 2, 6]
    cold = chunks_computed(ResponseCache(tmp_path / FILE_NAME), requests)
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database" * 100)
    with pytest.warns(UserWarning):
        disabled = ResponseCache(broken)
    assert not disabled.enabled
    assert chunks_computed(disabled, requests) == cold


def floats_of_records(results: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(task, record id, model output) of every example: the numbers compared exactly."""
    out = []
    for task_id, task in results["tasks"].items():
        for rec in task["records"]:
            for key in ("loglik", "probs", "n_tokens", "prediction"):
                if key in rec:
                    out.append((task_id, rec["id"], rec[key]))
    return out


def build_model(folder: Path) -> Path:
    """A small GPT-2 wider than the shared tiny one: at 32 dimensions the order of
    float32 sums rarely changes a result, at 128 (window 128) the batching does."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.tiny_models import build_tokenizer

    tok: Any = build_tokenizer(folder)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=128, n_layer=2, n_head=4,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_suite(root: Path, model: Path) -> Path:
    """Three tasks; texts of common words (few tokens for their characters) mixed with
    strings of rare letters (many tokens), so length in characters and in tokens order
    the requests differently."""
    rng = random.Random(5)
    texts = corpus(120, seed=3)

    def rare(words: int) -> str:
        return " ".join(
            "".join(rng.choice("qxzjvk0123") for _ in range(rng.randint(2, 5)))
            for _ in range(words)
        )

    def mixed(i: int, common: int, rare_words: int) -> str:
        return " ".join(texts[i : i + common]) if i % 2 else rare(rare_words)

    data = root / "data"
    data.mkdir(parents=True)
    reviews = [
        {"text": mixed(i, rng.randint(1, 6), rng.randint(1, 12)), "label": i % 2} for i in range(60)
    ]
    docs = [{"document": mixed(i, 2, 8), "summary": texts[i + 1][:12]} for i in range(12)]
    # some texts longer than the 128-token window: scored in several rolling windows
    wiki = [{"text": mixed(i, rng.randint(1, 24), 60)} for i in range(30)]
    for name, rows in (("reviews", reviews), ("news", docs), ("wiki", wiki)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = root / "suite.yaml"
    suite.write_text(
        f"""schema_version: 1
name: cache-batches
model:
  path: {model}
tasks:
  - id: sentiment
    kind: classification
    data: data/reviews.jsonl
    prompt: "Review: {{{{ text }}}}\\nSentiment:"
    choices: [" negative", " positive"]
    label: label
    metrics: [accuracy, ece]
  - id: summarize
    kind: generation
    data: data/news.jsonl
    prompt: "{{{{ document }}}}\\nSummary:"
    reference: summary
    max_new_tokens: 6
    metrics: [exact_match]
  - id: lm
    kind: perplexity
    data: data/wiki.jsonl
    text: text
    metrics: [perplexity]
seed: 7
batch_size: 3
bootstrap: {{samples: 50, confidence: 0.9}}
gates:
  - {{metric: sentiment.accuracy, min: 0.0}}
"""
    )
    return suite


@pytest.mark.slow
def test_cold_cache_and_no_cache_give_identical_results(tmp_path: Path) -> None:
    from harness.cli.main import main

    suite = write_suite(tmp_path, build_model(tmp_path / "model"))
    runs = {}
    for name, extra in (("cold", []), ("uncached", ["--no-cache"]), ("warm", [])):
        out = tmp_path / name
        argv = ["run", str(suite), "--out", str(out), "--no-progress", *extra]
        assert main(argv) == 0
        runs[name] = json.loads((out / "results.json").read_text())
    cold, uncached, warm = runs["cold"], runs["uncached"], runs["warm"]
    assert cold["provenance"]["cache"]["misses"] > 0 and uncached["provenance"]["cache"] is None
    assert warm["provenance"]["cache"]["misses"] == 0
    assert len(cold["tasks"]["sentiment"]["records"]) == 60  # many batches of 3 rows
    # every per-example float equal to the last bit (== on floats), then the whole document
    assert floats_of_records(cold) == floats_of_records(uncached)
    assert comparable(cold) == comparable(uncached) == comparable(warm)

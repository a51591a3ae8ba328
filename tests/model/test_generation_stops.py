"""Stop strings end a greedy generation where the whole-text check would, at less cost.

The reference: the same prompts generated to ``max_new_tokens`` without stops, each
text cut at its first stop string (``cut_at_stop``); greedy decoding is deterministic,
so stopping early must give exactly that. The cheap per-step check decodes the newest
few tokens only; a row's whole new text is decoded when it stops (to confirm) and once
at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from harness.model.generation import cut_at_stop, greedy_generate

NEW = 24


class CountingDecodes:
    """The tokenizer, with the length of every ``decode`` call recorded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def decode(self, ids: list[int], **kw: Any) -> str:
        self.lengths.append(len(ids))
        return str(self.inner.decode(ids, **kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_stops_cut_where_the_whole_text_does(request: pytest.FixtureRequest, arch: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder: Path = request.getfixturevalue(f"tiny_{arch}")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    prompts = ["the movie was", "a film about", "the plot", "it is", "great and", "boring"]
    encoded = [tok(p)["input_ids"] for p in prompts]
    kw: dict[str, Any] = {"max_new_tokens": NEW, "pad_token": 0, "device": torch.device("cpu")}
    full = greedy_generate(model, tok, encoded, batch_size=4, **kw)
    # stop strings taken from the middle of what the model writes: several rows stop early
    stops = sorted({t[len(t) // 2 : len(t) // 2 + 2] for t in full if len(t) > 6})[:3]
    assert stops
    counting = CountingDecodes(tok)
    got = greedy_generate(model, counting, encoded, batch_size=4, stop=stops, **kw)
    want = [cut_at_stop(t, stops) for t in full]
    assert got == want
    assert sum(g != f for g, f in zip(got, full, strict=True)) >= 2  # stops did cut
    tail = max(len(s.encode()) for s in stops) + 4
    long_decodes = [n for n in counting.lengths if n > tail]
    # whole texts are decoded once per row at the end, once more per row that stopped
    assert len(long_decodes) <= 2 * len(prompts)
    assert len(counting.lengths) > len(long_decodes)  # the per-step checks were short

"""Prefix-shared scoring (``score_rows(share_prefixes=True)``) gives today's scores.

The reference is the same function with ``share_prefixes=False``: every distinct input
run whole, the path the harness had before packing (and the one lm-eval's numbers were
checked against in ``test_lmeval_reference.py``).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from harness.model.scoring import (
    _PACKING,
    Pack,
    ScoreRow,
    continuation_row,
    pack_prefixes,
    rolling_windows,
    score_rows,
)

WINDOW = 64
VOCAB = 250  # below the tiny tokenizers' sizes


def _model(folder: Path, attn: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn).eval()


def _rows(shape: str, seed: int = 0, vocab: int = VOCAB) -> list[ScoreRow]:
    """Rows of one task shape, built as ``language_model.loglikelihood`` builds them."""
    rng = random.Random(seed)

    def _tokens(rng: random.Random, n: int) -> list[int]:
        return [rng.randrange(1, vocab) for _ in range(n)]

    rows = []
    if shape == "single":  # one-token choices: all read the context's last position
        for _ in range(12):
            ctx = _tokens(rng, rng.randint(3, 30))
            rows += [continuation_row(ctx, [c], WINDOW) for c in (5, 9, 17)]
    elif shape == "multi":  # SST-2: one choice one token, the other two
        for _ in range(12):
            ctx = _tokens(rng, rng.randint(3, 30))
            rows += [continuation_row(ctx, c, WINDOW) for c in ([7], [11, 13])]
    elif shape == "per-example":  # HellaSwag: each example its own endings of any length
        for _ in range(10):
            ctx = _tokens(rng, rng.randint(2, 25))
            endings = [_tokens(rng, rng.randint(1, 12)) for _ in range(4)]
            rows += [continuation_row(ctx, e, WINDOW) for e in endings]
    elif shape == "truncated":  # contexts past the window: left-truncated per choice
        for _ in range(6):
            ctx = _tokens(rng, rng.randint(WINDOW, WINDOW + 40))
            endings = [_tokens(rng, rng.randint(1, 6)) for _ in range(3)]
            rows += [continuation_row(ctx, e, WINDOW) for e in endings]
    elif shape == "few-shot":  # a shared shots prefix, then each question and its choices
        shots = _tokens(rng, 20)
        for _ in range(8):
            ctx = shots + _tokens(rng, rng.randint(3, 10))
            rows += [continuation_row(ctx, c, WINDOW) for c in ([4], [6, 8], [10, 12, 14])]
    # shuffled, with a repeated row: order and duplicates are the caller's
    rows.append(rows[0])
    rng.shuffle(rows)
    return rows


def _compare(model: torch.nn.Module, rows: list[ScoreRow], batch_size: int) -> float:
    cpu = torch.device("cpu")
    want = score_rows(
        model, rows, batch_size=batch_size, pad_token=0, device=cpu, share_prefixes=False
    )
    got = score_rows(model, rows, batch_size=batch_size, pad_token=0, device=cpu)
    assert [s.greedy for s in got] == [s.greedy for s in want]
    assert [s.n_targets for s in got] == [s.n_targets for s in want]
    worst = max(abs(g.logprob - w.logprob) / abs(w.logprob) for g, w in zip(got, want, strict=True))
    assert worst <= 1e-4
    return worst


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("shape", ["single", "multi", "per-example", "truncated", "few-shot"])
@pytest.mark.parametrize("batch_size", [1, 32])
def test_packed_scores_equal_whole_inputs(
    request: pytest.FixtureRequest, arch: str, attn: str, shape: str, batch_size: int
) -> None:
    folder = request.getfixturevalue(f"tiny_{arch}")
    model = _model(folder, attn)
    rows = _rows(shape)
    _compare(model, rows, batch_size)
    assert _PACKING.get(model) is True or shape == "single"


def test_shapes_pack_as_expected() -> None:
    """Sharing shapes form packs; left-truncated choices share a context only when the
    window cut them alike (endings of one length)."""
    for shape in ["multi", "per-example", "truncated"]:
        rows = _rows(shape)
        by_input: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(rows):
            by_input.setdefault(r.tokens, []).append(i)
        packs, plain = pack_prefixes(list(by_input))
        assert packs, shape
        assert sum(len(p.inputs) for p in packs) + len(plain) == len(by_input)
        if shape == "truncated":
            assert all(len({len(t) for t in p.inputs}) == 1 for p in packs)
            assert plain


def test_bert_as_causal_lm(tmp_path: Path) -> None:
    """A BERT run as a causal LM (transformers 5 takes a 4D mask there too): the same
    scores as the reference, packed or not."""
    from transformers import AutoModelForCausalLM

    from tests.tiny_models import build_model

    model = AutoModelForCausalLM.from_pretrained(build_model(tmp_path / "bert", "bert")).eval()
    _compare(model, _rows("per-example", vocab=model.config.vocab_size), 8)


class _RejectsMasks(torch.nn.Module):
    """A causal LM that refuses anything but a 2D padding mask."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, **kw: object) -> object:
        mask = kw.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() != 2:
            raise ValueError("2D masks only")
        return self.inner(**kw)


def test_fallback_on_a_model_rejecting_4d_masks(tiny_gpt2: Path) -> None:
    model = _RejectsMasks(_model(tiny_gpt2, "sdpa"))
    _compare(model, _rows("multi"), 4)
    assert _PACKING[model] is False


class _IgnoresMasks(torch.nn.Module):
    """A causal LM that drops any mask but a 2D one and the position ids, silently."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, **kw: object) -> object:
        mask = kw.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() != 2:
            kw.pop("attention_mask")
        kw.pop("position_ids", None)
        return self.inner(**kw)


def test_fallback_on_a_model_ignoring_4d_masks(tiny_llama: Path) -> None:
    """The first pack is checked against its inputs run whole: a mismatch falls back."""
    model = _IgnoresMasks(_model(tiny_llama, "sdpa"))
    _compare(model, _rows("per-example"), 4)
    assert _PACKING[model] is False


def _plan(rows: list[ScoreRow]) -> tuple[list[Pack], list[tuple[int, ...]]]:
    by_input: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(rows):
        by_input.setdefault(r.tokens, []).append(i)
    return pack_prefixes(sorted(by_input, key=len, reverse=True))


def test_rolling_windows_and_long_tails_stay_whole() -> None:
    """Windows of a long text share their first token at most: never packed (the 20 MB
    row of ``test_long_rows`` made packs of thousands of windows before this rule)."""
    rng = random.Random(3)
    text = [rng.randrange(1, 5) for _ in range(2000)]
    packs, _ = _plan(list(rolling_windows(text, 0, WINDOW)))
    assert packs == []


def test_many_choices_split_into_bounded_packs() -> None:
    """300 two-token choices after one context: several packs, none over the bound."""
    ctx = list(range(1, 41))
    rows = [continuation_row(ctx, [c, c + 1], WINDOW) for c in range(1, 301)]
    packs, plain = _plan(rows)
    assert len(packs) > 1 and not plain
    assert all(len(p.tokens) <= 256 for p in packs)
    assert sum(len(p.inputs) for p in packs) == 300


def test_pack_is_the_token_trie_of_its_inputs() -> None:
    """Hand-built case: three inputs branching after two shared tokens, one of them a
    prefix of another; each token sits at its own input's position and attends to its
    ancestors only."""
    pack = Pack.of([(1, 2, 5), (1, 2, 3, 4), (1, 2, 5, 6)])
    assert pack.inputs == ((1, 2, 3, 4), (1, 2, 5), (1, 2, 5, 6))
    assert pack.tokens == (1, 2, 3, 4, 5, 6)
    assert pack.positions == (0, 1, 2, 3, 2, 3)
    assert pack.paths == ((0, 1, 2, 3), (0, 1, 4), (0, 1, 4, 5))
    ancestors = {q: {k for k in range(6) if pack.allowed()[q, k]} for q in range(6)}
    assert ancestors == {
        0: {0},
        1: {0, 1},
        2: {0, 1, 2},
        3: {0, 1, 2, 3},
        4: {0, 1, 4},
        5: {0, 1, 4, 5},
    }


def test_few_shot_prefix_is_computed_once_across_questions() -> None:
    """The few-shot shape: one pack holds several questions (distinct contexts) after
    the shared shots, which appear once in it."""
    rows = _rows("few-shot")
    packs, plain = _plan(rows)
    assert not plain
    shots = rows[0].tokens[:20]
    contexts = {toks[:-2] for p in packs for toks in p.inputs}
    assert len(packs) < len(contexts)  # questions share packs
    for pack in packs:
        assert all(toks[:20] == shots for toks in pack.inputs)
        assert pack.tokens[:20] == shots and pack.positions.count(0) == 1  # shots once
    unique = sum(len(p.tokens) for p in packs)
    whole = sum(len(t) for p in packs for t in p.inputs)
    assert unique < whole / 2


class _RecordsMasks(torch.nn.Module):
    """A causal LM that records the rank of every attention mask it is given."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.ranks: list[int] = []

    def forward(self, **kw: object) -> object:
        mask = kw.get("attention_mask")
        if isinstance(mask, torch.Tensor):
            self.ranks.append(mask.dim())
        return self.inner(**kw)


def test_prefix_sharing_can_be_switched_off(
    tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HARNESS_PREFIX_SHARING=0``: the backend scores every input whole (2D masks only),
    with the same answers."""
    from harness.model.files import ModelSource
    from harness.model.language_model import load_model

    context = "the movie was long and the plot was boring, but the actors were"
    pairs = [(context, " great"), (context, " not good"), (context, " fine")] * 2
    answers = {}
    for switch in ("1", "0"):
        monkeypatch.setenv("HARNESS_PREFIX_SHARING", switch)
        lm = load_model(ModelSource(path=str(tiny_gpt2)))
        recorder = _RecordsMasks(lm.model)
        lm.model = recorder
        answers[switch] = lm.loglikelihood(pairs, batch_size=4)
        assert (4 in recorder.ranks) == (switch == "1"), recorder.ranks
    for (a, ga, na), (b, gb, nb) in zip(answers["1"], answers["0"], strict=True):
        assert (ga, na) == (gb, nb) and a == pytest.approx(b, rel=1e-4)
